"""Speed of the curve model, side by side with the funnel, the one-factor model and the original loop.

    python benchmarks/curve_speed.py           # full run
    python benchmarks/curve_speed.py --quick   # fewer repeats, 200k instead of 1M paths
    python benchmarks/curve_speed.py --json

Figures (targets from the issue):
- in process: the fit (baseline, response curve, rolling calibration) plus 10,000 paths over 30 days,
  median of repeated runs: <= 100 ms;
- the whole CLI `synctwin gate STRATEGY --history HISTORY --json` (a fresh interpreter): <= 1.5 s;
- 1M paths: <= 6 s wall and <= 1 GB peak RSS (measured in a child process: its ru_maxrss);
- determinism: the same seed gives the same result bit for bit in process, on threads and on a
  process pool.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from agents.synctwin.gate.gatekeeper import SimulationGatekeeper  # noqa: E402
from agents.syncvalue.baseline import compute_baseline  # noqa: E402
from benchmarks.seed_reference import SeedSimulationGatekeeper, StaticBaselineClient, seed_baseline  # noqa: E402
from synctwin.infra.executors import InProcessExecutor, ProcessPoolExecutor, ThreadExecutor  # noqa: E402
from synctwin.kernel.history import load_history  # noqa: E402
from synctwin.kernel.model_names import MODELS  # noqa: E402
from synctwin.kernel.strategy_io import load_strategy  # noqa: E402

DATA = ROOT / "tests" / "data"
STRATEGY = DATA / "strategy.json"
HISTORY = DATA / "history_90d.csv"
SEED = 20261201


def median_ms(fn: Callable[[], object], repeats: int, warmups: int = 2) -> tuple[float, float, float]:
    for _ in range(warmups):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), min(times), max(times)


def in_process(repeats: int) -> dict[str, Any]:
    """Fit + 10k paths x 30 days per model (the baseline is computed inside the timed call)."""
    strategy = load_strategy(STRATEGY)
    history = load_history(HISTORY)
    out = {}
    for model in MODELS:
        gate = SimulationGatekeeper(model=model)

        def run(gate: SimulationGatekeeper = gate) -> object:
            baseline = compute_baseline(history, gross_margin=strategy.gross_margin)
            return gate.evaluate(strategy, baseline, seed=SEED, paths=10_000, max_paths=10_000)

        out[model] = median_ms(run, repeats)
    baseline = compute_baseline(history)
    loop = SeedSimulationGatekeeper(StaticBaselineClient(seed_baseline(baseline)))
    request = {"audience_size": strategy.audience_size, "cvr": strategy.cvr, "daily_budget": strategy.daily_budget}
    out["original per-path loop"] = median_ms(
        lambda: asyncio.run(loop.simulate_strategy(request, "c", iterations=10_000)), max(3, repeats // 5), 1
    )
    return out


def cli(repeats: int) -> tuple[float, float, float]:
    argv = [
        sys.executable,
        "-m",
        "synctwin.app.cli",
        "gate",
        str(STRATEGY),
        "--history",
        str(HISTORY),
        "--json",
        "--seed",
        "1",
        "--no-suggestions",
    ]

    def run() -> None:
        p = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)
        assert p.returncode in (0, 1) and "confidence_score" in p.stdout, p.stderr[-500:]

    return median_ms(run, repeats, 1)


_BIG = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from agents.synctwin.gate.gatekeeper import SimulationGatekeeper
from agents.syncvalue.baseline import compute_baseline
from synctwin.kernel.history import load_history
from synctwin.kernel.strategy_io import load_strategy
s = load_strategy({strategy!r}); h = load_history({history!r})
t0 = time.perf_counter()
r = SimulationGatekeeper(model={model!r}).evaluate(s, compute_baseline(h), seed=1, paths={n}, max_paths={n})
dt = time.perf_counter() - t0
print(json.dumps({{"s": dt, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "paths": r.simulation_details.total_simulations}}))
"""


def big(n: int, model: str) -> dict[str, float]:
    code = _BIG.format(root=str(ROOT), strategy=str(STRATEGY), history=str(HISTORY), model=model, n=n)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def determinism() -> dict[str, bool]:
    strategy = load_strategy(STRATEGY)
    baseline = compute_baseline(load_history(HISTORY))
    gate = SimulationGatekeeper()

    def run(executor: Any) -> tuple[dict[str, Any], np.ndarray]:
        r, u = gate.evaluate_with_uplift(
            strategy, baseline, seed=7, paths=120_000, max_paths=120_000, executor=executor
        )
        d = r.to_dict()
        d.pop("elapsed_ms")
        return d, u

    a, ua = run(InProcessExecutor())
    b, ub = run(ThreadExecutor(4))
    with ProcessPoolExecutor(2) as pool:
        c, uc = run(pool)
    return {"threads": a == b and np.array_equal(ua, ub), "processes": a == c and np.array_equal(ua, uc)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    repeats = 5 if args.quick else 21
    n_big = 200_000 if args.quick else 1_000_000
    report: dict[str, Any] = {
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "in_process_ms": in_process(repeats),
        "cli_ms": cli(3 if args.quick else 7),
        "big": {m: big(n_big, m) for m in ("curve", "funnel")},
        "big_paths": n_big,
        "deterministic": determinism(),
    }
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"speed on {report['cpus']} core(s); medians (min-max) of repeated runs")
    print(f"{'what':<52} {'median':>10} {'min-max':>18}  target")
    for model, (med, lo, hi) in report["in_process_ms"].items():
        target = "<= 100 ms" if model == "curve" else ""
        print(f"{'fit + 10,000 paths x 30 days, ' + model:<52} {med:>8.1f}ms {lo:>8.1f}-{hi:<8.1f}  {target}")
    med, lo, hi = report["cli_ms"]
    print(f"{'whole CLI synctwin gate ... --json (curve)':<52} {med:>8.0f}ms {lo:>8.0f}-{hi:<8.0f}  <= 1500 ms")
    for model, b in report["big"].items():
        print(
            f"{f'{n_big:,} paths, {model} (child process)':<52} {b['s'] * 1000:>8.0f}ms "
            f"{'peak RSS ' + format(b['rss_mb'], '.0f') + ' MB':>18}  <= 6000 ms, <= 1024 MB"
        )
    d = report["deterministic"]
    print(f"bit for bit across executors: threads {d['threads']}, process pool {d['processes']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
