"""Every PromQL expression of dashboards/synctwin.json, evaluated by a real Prometheus against the
real processes, with the values the known events must give.

    python benchmarks/dashboard_check.py            # needs redis-server and prometheus on PATH

What it runs, through the command line only (the way an operator would):
- a throwaway redis-server on a free port;
- `synctwin serve --redis URL` (gates over HTTP: one approval and one rejection; its /metrics
  also exports the success metrics from the audit stream);
- `synctwin run --redis URL --metrics-port P` (the production Council) and
  `synctwin feed --redis URL` (four campaigns, two of which deviate: exactly 2 pauses);
- `synctwin chaos --schedule '* * * * *' --drill api_outage --metrics-port P` (one drill run that
  passes, within the first minute);
- Prometheus scraping the three every second.
Then it asks Prometheus (HTTP API) for every expression of every panel ($__rate_interval as 1m) and
checks: each returns data, and the ones with a known answer give it (pauses = 2, drills passed = 1,
the last run passed, decisions APPROVED and REJECTED both seen, the success metrics equal to
`synctwin kpis --redis URL --json`). Exit 0 when all hold, 1 otherwise; a table either way.
Takes about 1-2 minutes (the cron's first minute dominates). Skips (exit 0, says why) when
prometheus or redis-server is missing: `apt-get install -y prometheus redis-server`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "dashboards" / "synctwin.json"
EXAMPLES = ROOT / "scenarios" / "builtin" / "examples"
SYNCTWIN = [sys.executable, "-m", "synctwin.app.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str, body: Any = None, timeout: float = 60.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read().decode()
    except urllib.error.HTTPError as exc:  # a 4xx/5xx body is still the answer
        raw = exc.read().decode()
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def wait_for(what: str, check: Any, timeout: float) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            got = check()
        except OSError:
            got = None
        if got:
            return got
        time.sleep(0.5)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def history_rows() -> list[dict[str, Any]]:
    lines = (EXAMPLES / "history_90d.csv").read_text().splitlines()
    head = lines[0].split(",")
    rows = []
    for line in lines[1:]:
        cells = line.split(",")
        rows.append({k: v if k == "date" else float(v) for k, v in zip(head, cells, strict=True)})
    return rows


def panel_queries() -> list[tuple[str, str]]:
    d = json.loads(DASHBOARD.read_text())
    return [
        (str(p.get("title")), t["expr"].replace("$__rate_interval", "1m"))
        for p in d["panels"]
        for t in p.get("targets", [])
        if t.get("expr")
    ]


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    out = http(f"{prom}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    if not isinstance(out, dict) or out.get("status") != "success":
        raise SystemExit(f"Prometheus refused {expr!r}: {out}")
    return out["data"]["result"]


def values(result: list[dict[str, Any]], label: str | None = None) -> dict[str, float]:
    return {(r["metric"].get(label, "") if label else ""): float(r["value"][1]) for r in result}


def main() -> int:
    missing = [b for b in ("prometheus", "redis-server") if shutil.which(b) is None]
    if missing:
        print(f"skipped: {', '.join(missing)} not installed (apt-get install -y prometheus redis-server)")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="synctwin-dashboard-"))
    ports = {k: free_port() for k in ("redis", "serve", "run", "chaos", "prometheus")}
    url = f"redis://127.0.0.1:{ports['redis']}/0"
    env = {**os.environ, "SYNCTWIN_REDIS_URL": url, "PYTHONUNBUFFERED": "1"}
    env.pop("SYNCTWIN_API_KEY", None)
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, *cmd: str) -> subprocess.Popen[bytes]:
        log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    try:
        start("redis", "redis-server", "--port", str(ports["redis"]), "--save", "", "--appendonly", "no")
        wait_for("redis", lambda: socket.create_connection(("127.0.0.1", ports["redis"]), 1).close() or True, 20)
        start("serve", *SYNCTWIN, "serve", "--port", str(ports["serve"]), "--redis", url)
        base = f"http://127.0.0.1:{ports['serve']}"
        wait_for("synctwin serve", lambda: isinstance(http(f"{base}/healthz"), dict), 60)
        start(
            "chaos",
            *SYNCTWIN,
            "chaos",
            "--schedule",
            "* * * * *",
            "--drill",
            "api_outage",
            "--metrics-port",
            str(ports["chaos"]),
        )
        start("run", *SYNCTWIN, "run", "--redis", url, "--metrics-port", str(ports["run"]))
        prom_cfg = tmp / "prometheus.yml"
        targets = ", ".join(f"'127.0.0.1:{ports[k]}'" for k in ("serve", "run", "chaos"))
        prom_cfg.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"scrape_configs: [{{job_name: synctwin, static_configs: [{{targets: [{targets}]}}]}}]\n"
        )
        start(
            "prometheus",
            "prometheus",
            f"--config.file={prom_cfg}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
        )
        prom = f"http://127.0.0.1:{ports['prometheus']}"
        wait_for("prometheus", lambda: http(f"{prom}/-/ready").startswith("Prometheus"), 60)
        # every target scraped with each series at its starting value, before any event
        wait_for("three scraped targets", lambda: len(query(prom, "up == 1")) == 3, 60)
        time.sleep(3)
        strategy = json.loads((EXAMPLES / "strategy.json").read_text())
        rows = history_rows()
        decisions = []
        for sid, changes in (
            ("dash-approve", {"daily_budget": 1100, "cvr": 0.03}),
            ("dash-reject", {"daily_budget": 3000, "cvr": 0.01}),
        ):
            body = {"strategy": {**strategy, **changes, "campaign_id": sid}, "history": rows, "seed": 1, "paths": 2000}
            decisions.append(http(f"{base}/v1/simulate", body)["decision"])
        # one refused request: the HTTP errors panel has a known 4xx
        http(f"{base}/v1/simulate", {"strategy": {"cvr": "x"}})
        feed = subprocess.run(
            [*SYNCTWIN, "feed", "--redis", url, "--speed", "36000", "--duration", "3d"],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if feed.returncode != 0:
            raise SystemExit(f"synctwin feed failed: {feed.stderr[-2000:]}")
        wait_for(
            "2 PAUSE commands",
            lambda: (
                query(prom, "sum(synctwin_pauses_total)") and values(query(prom, "sum(synctwin_pauses_total)"))[""] >= 2
            ),
            120,
        )
        wait_for("the first chaos run", lambda: query(prom, "synctwin_chaos_last_run_passed"), 100)
        time.sleep(16)  # the last events scraped a few times; the service's KPIs refreshed (every 15 s)
        kpis = json.loads(
            subprocess.run(
                [*SYNCTWIN, "kpis", "--redis", url, "--json"],
                cwd=tmp,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )

        checks: list[tuple[str, str, bool, str]] = []
        for title, expr in panel_queries():
            result = query(prom, expr)
            checks.append((title, expr, bool(result), f"{len(result)} series" if result else "no data"))

        def expect(title: str, expr: str, ok: Any, got: Any) -> None:
            checks.append((title, expr, bool(ok), str(got)))

        pauses = values(query(prom, "sum by (reason) (increase(synctwin_pauses_total[1h]))"), "reason")
        # 2 pauses; which guard gets there first (SyncFlow's or the mirror's) is run's business
        expect(
            "Pauses by reason: 2 in all",
            "sum by (reason) (increase(...[1h]))",
            round(sum(pauses.values())) == 2,
            pauses,
        )
        passed = values(query(prom, 'sum(increase(synctwin_chaos_drills_total{verdict="PASS"}[7d]))'))
        expect(
            "Drills passed = 1",
            'increase(chaos_drills_total{verdict="PASS"}[7d])',
            round(passed.get("", 0)) == 1,
            passed,
        )
        last = values(query(prom, "min(synctwin_chaos_last_run_passed)"))
        expect("All drills passed (last run) = 1", "min(synctwin_chaos_last_run_passed)", last.get("") == 1.0, last)
        seen = values(query(prom, "sum by (decision) (increase(synctwin_gate_decisions_total[1h]))"), "decision")
        expect(
            "Gate decisions: APPROVED and REJECTED both counted",
            "sum by (decision) (increase(...))",
            decisions == ["APPROVED", "REJECTED"]
            and round(seen.get("REJECTED", 0)) >= 1
            and round(seen.get("APPROVED", 0)) >= 1,
            seen,
        )
        kpi = values(query(prom, "max by (kpi) (synctwin_kpi_value)"), "kpi")
        for name in ("rejection_share", "auto_rollback_share"):
            want = kpis[name]["value"]
            expect(
                f"Success metric {name} = synctwin kpis",
                f'synctwin_kpi_value{{kpi="{name}"}}',
                want is not None and abs(kpi.get(name, -1) - want) < 1e-9,
                f"{kpi.get(name)} (kpis: {want})",
            )

        width = max(len(t) for t, *_ in checks)
        for title, expr, ok, got in checks:
            print(f"{'PASS' if ok else 'FAIL'}  {title:<{width}}  {got}  | {expr}")
        failed = [c for c in checks if not c[2]]
        print(f"\n{len(checks) - len(failed)}/{len(checks)} checks passed; logs in {tmp}")
        return 1 if failed else 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
