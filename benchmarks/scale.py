"""Scale-out: the same sweep of scenario runs in-process, on a 2-process pool and on local Ray.

    python benchmarks/scale.py                  # 500 runs of day 1 of healthy_launch, a table
    python benchmarks/scale.py --runs 1000 --json
    python benchmarks/scale.py --no-ray         # without the optional extra
    python benchmarks/scale.py --repeat 5       # medians of 5 interleaved rounds (default 3)

Issue 7's figure: on a sweep of at least 500 runs, 2 workers at least 1.6x faster than
in-process, with the process pool and with Ray. Start-up (spawning the pool, starting Ray) is
measured apart from the sweep: a nightly job pays it once. Per-task overhead is what a worker
spends on a task beyond the run itself: (workers x wall - summed run time) / runs. All three
sweeps must give the same report (asserted). The executors take turns for `--repeat` rounds
and the table gives each one's median (the machine is shared: one round can be disturbed).
From the measured per-run cost the script then estimates how a nightly sweep grows with
campaigns x seeds, and when it needs a cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.sweep import SweepReport, run_sweep  # noqa: E402
from scenarios.loader import builtin_files, scenario_from_dict  # noqa: E402
from synctwin.infra.executors import Executor, InProcessExecutor, ProcessPoolExecutor  # noqa: E402

SCENARIO = "healthy_launch"
DURATION = "1d"  # its first virtual day: ~0.1 s a run, so 500 runs take under a minute on one core
TARGET_SPEEDUP = 1.6
NIGHT_S = 4 * 3600.0  # the nightly window the estimate plans for
MACHINE_CORES = 16  # one big box, before a cluster is needed


def scenario() -> Any:
    path = builtin_files()[SCENARIO]
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["duration"] = DURATION
    return scenario_from_dict(data, source=str(path), base_dir=path.parent)


def result_of(report: SweepReport) -> dict[str, Any]:
    d = report.to_dict()
    for k in ("executor", "wall_s", "task_s"):
        d.pop(k)
    return d


def measure(name: str, make: Any, sc: Any, seeds: range) -> dict[str, Any]:
    t0 = time.perf_counter()
    ex: Executor = make()
    ex.warm_up("harness.runner")  # spawn the workers and import the scenario runner before timing
    startup = time.perf_counter() - t0
    try:
        report = run_sweep(sc, seeds, executor=ex)
    finally:
        ex.close()
    workers = ex.workers
    return {
        "executor": name,
        "workers": workers,
        "startup_s": startup,
        "wall_s": report.wall_s,
        "task_s": report.task_s,
        "per_run_s": report.task_s / len(seeds),
        "overhead_ms": 1000.0 * max(0.0, workers * report.wall_s - report.task_s) / len(seeds),
        "report": result_of(report),
    }


def median_row(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One executor's figures over its rounds: medians, and every round's wall time as measured."""
    first = rounds[0]
    for r in rounds[1:]:
        assert r["report"] == first["report"], f"{first['executor']}: a different report between rounds"
    row = dict(first)
    for key in ("startup_s", "wall_s", "task_s", "per_run_s", "overhead_ms"):
        row[key] = statistics.median(r[key] for r in rounds)
    row["walls_s"] = [round(r["wall_s"], 2) for r in rounds]
    return row


def estimate(per_run_s: float, workers2_speedup: float) -> list[dict[str, Any]]:
    """Nightly sweep cost for campaigns x seeds (one run per campaign and seed, same scenario
    length as measured), on one core, on 2 workers, and the cores needed for NIGHT_S."""
    rows = []
    for campaigns in (10, 100, 1000):
        for seeds in (100, 1000):
            cpu_s = campaigns * seeds * per_run_s
            cores = max(1, int(-(-cpu_s * 1.05 // NIGHT_S)))  # 5% for per-task overhead
            rows.append(
                {
                    "campaigns": campaigns,
                    "seeds": seeds,
                    "runs": campaigns * seeds,
                    "one_core_h": cpu_s / 3600,
                    "two_workers_h": cpu_s / workers2_speedup / 3600,
                    "cores_for_window": cores,
                    "needs_cluster": cores > MACHINE_CORES,
                }
            )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=500, help="scenario runs per sweep (default 500)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds per executor; medians are reported")
    ap.add_argument("--no-ray", action="store_true", help="skip Ray (e.g. the extra is not installed)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sc = scenario()
    seeds = range(1, args.runs + 1)
    run_sweep(sc, range(0, 3))  # warm the in-process imports and caches, as the workers' warm-up does
    makers: list[tuple[str, Any]] = [
        ("in-process", InProcessExecutor),
        (f"process pool x{args.workers}", lambda: ProcessPoolExecutor(args.workers)),
    ]
    if not args.no_ray:
        try:
            from synctwin.infra.executors import RayExecutor

            makers.append((f"ray x{args.workers}", lambda: RayExecutor(workers=args.workers)))
        except Exception as exc:  # the extra missing: report, do not fail the other figures
            print(f"ray: skipped ({exc})", file=sys.stderr)
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in makers}
    for _ in range(max(1, args.repeat)):  # interleaved, so a disturbance hits one round, not one executor
        for name, make in makers:
            rounds[name].append(measure(name, make, sc, seeds))
    rows = [median_row(rs) for rs in rounds.values()]
    base = rows[0]["wall_s"]
    for r in rows:
        r["speedup"] = base / r["wall_s"]
        assert r["report"] == rows[0]["report"], f"{r['executor']}: a different report than in-process"
    parallel = rows[1:]
    ok = all(r["speedup"] >= TARGET_SPEEDUP for r in parallel)
    best2 = min((r["speedup"] for r in parallel), default=1.0)
    est = estimate(rows[0]["per_run_s"], best2)
    out = {
        "scenario": f"{SCENARIO} ({DURATION})",
        "runs": args.runs,
        "cpus": os.cpu_count(),
        "rows": [{k: v for k, v in r.items() if k != "report"} for r in rows],
        "target_speedup": TARGET_SPEEDUP,
        "meets_target": ok,
        "identical_reports": True,
        "nightly_estimate": est,
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0 if ok else 1
    print(
        f"sweep of {args.runs} runs of {SCENARIO} ({DURATION} of virtual time each), {os.cpu_count()} CPUs, "
        f"medians of {max(1, args.repeat)} interleaved rounds"
    )
    print(
        f"{'executor':<18}{'workers':>8}{'start-up s':>12}{'wall s':>9}{'speedup':>9}{'run s':>8}"
        f"{'overhead/task ms':>18}  rounds' wall s"
    )
    for r in rows:
        print(
            f"{r['executor']:<18}{r['workers']:>8}{r['startup_s']:>12.2f}{r['wall_s']:>9.2f}{r['speedup']:>8.2f}x"
            f"{r['per_run_s']:>8.3f}{r['overhead_ms']:>18.2f}  {', '.join(f'{w:.2f}' for w in r['walls_s'])}"
        )
    print(
        f"identical reports on every executor: yes; target 2 workers >= {TARGET_SPEEDUP}x: {'met' if ok else 'NOT met'}"
    )
    print(
        f"\nnightly sweep estimate at {rows[0]['per_run_s'] * 1000:.0f} ms a run (one run = one campaign x one "
        f"seed of this scenario; scale by your scenario's length), {NIGHT_S / 3600:.0f} h window:"
    )
    print(f"{'campaigns':>10}{'seeds':>7}{'runs':>11}{'1 core h':>10}{'2 workers h':>13}{'cores needed':>14}  verdict")
    for e in est:
        verdict = (
            "cluster (Ray)" if e["needs_cluster"] else ("one machine" if e["cores_for_window"] > 2 else "a laptop")
        )
        print(
            f"{e['campaigns']:>10}{e['seeds']:>7}{e['runs']:>11,}{e['one_core_h']:>10.2f}{e['two_workers_h']:>13.2f}"
            f"{e['cores_for_window']:>14}  {verdict}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
