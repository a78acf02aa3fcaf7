"""Load benchmark of the HTTP service: POST /v1/simulate at 10k paths under 20 concurrent clients.

    python benchmarks/service.py                      # --workers 1 and 2, 20 clients, 20 s each
    python benchmarks/service.py --workers 2 --duration 10 --tool python
    python benchmarks/service.py --json

The issue's figure: p50 <= 50 ms and p99 <= 150 ms under 20 concurrent clients on this machine.
`synctwin serve` runs in a subprocess on a free loopback port; the load comes from a second
process: `wrk` (apt-get install wrk) when it is on PATH, else this script again in client mode
(threads with one httpx connection each). Everything is loopback only and bounded: a fixed
number of clients for a fixed time, each request with a timeout, the server stopped at the end.

Every request carries a fresh seed (no two gates are alike, nothing can be cached) and
`"paths": 10000, "max_paths": 10000` (exactly 10k paths: no adaptive rounds). A closed loop of N
clients on C CPUs whose gate costs S seconds of CPU cannot answer faster than N*S/C per request
(Little's law); the script prints what the target would need beside what one client measures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("SYNCTWIN_BENCH_DATA", ROOT / "tests" / "data"))
TARGET_P50_MS, TARGET_P99_MS = 50.0, 150.0
PATHS = 10_000


def request_body(seed: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from synctwin.kernel.history import load_history

    strategy = json.loads((DATA / "strategy.json").read_text())
    rows = load_history(DATA / "history_90d.csv").to_records()
    return {"strategy": strategy, "history": rows, "paths": PATHS, "max_paths": PATHS, "seed": seed}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the server -----------------------------------------------------------------------------------------
class Server:
    """`synctwin serve` on a free loopback port, stopped with SIGTERM (then SIGKILL) at exit."""

    def __init__(self, workers: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCTWIN_", "PROMETHEUS_"))}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "synctwin.app.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"synctwin serve exited with {self.proc.returncode}: {self.proc.stderr.read()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"synctwin serve did not answer in {timeout} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self) -> Server:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def server_metrics(url: str) -> dict[str, float]:
    """The gate's compute time as the server measured it (mean over the run), from /metrics."""
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        for name in ("synctwin_gate_latency_seconds_sum", "synctwin_gate_latency_seconds_count"):
            if line.startswith(name + "{"):
                values[name] = values.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    n = values.get("synctwin_gate_latency_seconds_count", 0.0)
    return {
        "gates": n,
        "gate_mean_ms": 1000.0 * values.get("synctwin_gate_latency_seconds_sum", 0.0) / n if n else float("nan"),
    }


# --- load generators (each in its own process) ------------------------------------------------------------
WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local head, tail = BODY_HEAD, BODY_TAIL
local n = 0
request = function()
  n = n + 1
  local seed = math.random(0, 2000000000) + n
  return wrk.format(nil, nil, nil, head .. seed .. tail)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "mean_us": %f, "max_us": %d, ' ..
    '"errors": %d, "status_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,
    latency.max, e.connect + e.read + e.write + e.timeout, e.status, e.timeout))
end
"""


def run_wrk(url: str, clients: int, duration: float) -> dict[str, Any]:
    body = json.dumps(request_body(0))
    head, tail = body.split('"seed": 0', 1)
    lua = WRK_SCRIPT.replace("BODY_HEAD", _lua_string(head + '"seed": ')).replace("BODY_TAIL", _lua_string(tail))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(lua)
        script = fh.name
    try:
        threads = max(1, min(clients, 2))
        out = subprocess.run(
            [
                "wrk",
                "-t",
                str(threads),
                "-c",
                str(clients),
                "-d",
                f"{duration:g}s",
                "--timeout",
                "10s",
                "-s",
                script,
                f"{url}/v1/simulate",
            ],
            capture_output=True,
            text=True,
            timeout=duration + 60,
            check=True,
        )
    finally:
        os.unlink(script)
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("JSON "))
    r = json.loads(line[5:])
    seconds = r["duration_us"] / 1e6
    return {
        "tool": "wrk",
        "requests": r["requests"],
        "seconds": seconds,
        "throughput": r["requests"] / seconds,
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "mean_ms": r["mean_us"] / 1000,
        "max_ms": r["max_us"] / 1000,
        "errors": r["errors"] + r["status_errors"],
    }


def _lua_string(s: str) -> str:
    return "[==[" + s + "]==]"


def run_python(url: str, clients: int, duration: float) -> dict[str, Any]:
    """This script in client mode, in its own process, so the load does not share our GIL."""
    out = subprocess.run(
        [sys.executable, __file__, "--client", url, "--clients", str(clients), "--duration", str(duration)],
        capture_output=True,
        text=True,
        timeout=duration + 120,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout)


def client_mode(url: str, clients: int, duration: float) -> None:
    """Closed loop: each thread posts, waits for the answer, posts again, until the time is up."""
    import httpx

    base = request_body(0)
    stop_at = time.monotonic() + duration
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def worker(k: int) -> None:
        rng = random.Random(k)
        mine: list[float] = []
        bad = 0
        with httpx.Client(timeout=30.0) as client:
            while time.monotonic() < stop_at:
                payload = json.dumps({**base, "seed": rng.randrange(2**31)})
                t0 = time.perf_counter()
                try:
                    r = client.post(f"{url}/v1/simulate", content=payload, headers={"content-type": "application/json"})
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                dt = time.perf_counter() - t0
                if ok:
                    mine.append(dt)
                else:
                    bad += 1
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 60)
    seconds = time.perf_counter() - started
    latencies.sort()
    n = len(latencies)

    def q(p: float) -> float:
        return 1000 * latencies[min(n - 1, int(p * n))] if n else float("nan")

    print(
        json.dumps(
            {
                "tool": "python (httpx threads)",
                "requests": n,
                "seconds": seconds,
                "throughput": n / seconds,
                "p50_ms": q(0.50),
                "p99_ms": q(0.99),
                "mean_ms": 1000 * statistics.fmean(latencies) if n else float("nan"),
                "max_ms": 1000 * latencies[-1] if n else float("nan"),
                "errors": errors[0],
            }
        )
    )


# --- the run ----------------------------------------------------------------------------------------------
def measure(workers: int, clients: int, duration: float, tool: str) -> dict[str, Any]:
    load = run_wrk if tool == "wrk" else run_python
    with Server(workers) as server:
        load(server.url, 2, 2.0)  # warm-up: imports, numpy's first calls, connection pools
        unloaded = load(server.url, 1, min(5.0, duration))
        before = server_metrics(server.url)
        loaded = load(server.url, clients, duration)
        after = server_metrics(server.url)
    gates = after["gates"] - before["gates"]
    compute_ms = (
        (after["gate_mean_ms"] * after["gates"] - before["gate_mean_ms"] * before["gates"]) / gates
        if gates
        else float("nan")
    )
    return {
        "workers": workers,
        "clients": clients,
        "cpus": os.cpu_count() or 1,
        "unloaded": unloaded,
        "loaded": loaded,
        "server_gate_compute_ms_under_load": compute_ms,
    }


def report(results: list[dict[str, Any]]) -> None:
    print(
        f"POST /v1/simulate, {PATHS:,} paths, fresh seed per request; {results[0]['cpus']} CPUs; "
        f"load from a second process ({results[0]['loaded']['tool']})"
    )
    print(
        f"target under {results[0]['clients']} concurrent clients: p50 <= {TARGET_P50_MS:.0f} ms, "
        f"p99 <= {TARGET_P99_MS:.0f} ms"
    )
    print(
        f"{'workers':>7} {'clients':>7} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'errors':>6}  verdict"
    )
    for r in results:
        for label, m in (("1", r["unloaded"]), (str(r["clients"]), r["loaded"])):
            loaded = m is r["loaded"]
            verdict = ""
            if loaded:
                ok50, ok99 = m["p50_ms"] <= TARGET_P50_MS, m["p99_ms"] <= TARGET_P99_MS
                x50, x99 = m["p50_ms"] / TARGET_P50_MS, m["p99_ms"] / TARGET_P99_MS
                verdict = "MET" if ok50 and ok99 else f"missed (p50 {x50:.1f}x, p99 {x99:.1f}x target)"
            print(
                f"{r['workers']:>7} {label:>7} {m['requests']:>8} {m['throughput']:>7.1f} {m['p50_ms']:>8.1f} "
                f"{m['p99_ms']:>8.1f} {m['max_ms']:>8.1f} {m['errors']:>6}  {verdict}"
            )
        m = r["loaded"]
        need = r["clients"] / (TARGET_P50_MS / 1000)
        print(
            f"{'':>7} gate compute under load (server's histogram): {r['server_gate_compute_ms_under_load']:.1f} ms "
            f"mean. Little's law: {r['clients']} clients at {m['throughput']:.1f} req/s wait "
            f"{1000 * r['clients'] / m['throughput']:.0f} ms on average; a {TARGET_P50_MS:.0f} ms p50 needs "
            f"~{need:.0f} req/s, i.e. <= {1000 * r['cpus'] / need:.1f} ms of CPU per gate on {r['cpus']} CPUs "
            f"(unloaded here: {r['unloaded']['mean_ms']:.1f} ms)"
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", default="1,2", help="server worker processes to try, comma-separated (default 1,2)")
    p.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load per configuration (default 20)")
    p.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--json", action="store_true")
    p.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)  # internal: the load process
    args = p.parse_args()
    if not 1 <= args.clients <= 200 or not 0 < args.duration <= 300:
        p.error("--clients must be 1-200 and --duration 0-300 s (the run stays bounded)")
    if args.client:
        client_mode(args.client, args.clients, args.duration)
        return 0
    tool = args.tool if args.tool != "auto" else ("wrk" if shutil.which("wrk") else "python")
    results = [measure(int(w), args.clients, args.duration, tool) for w in args.workers.split(",")]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
