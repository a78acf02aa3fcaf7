"""Benchmark of the pre-launch gate against DESIGN.md's "Figures we hold ourselves to".

    python benchmarks/gate.py            # full run (the seed's loop at 1M paths takes a while)
    python benchmarks/gate.py --quick    # smoke run: fewer repeats, 100k instead of 1M paths
    python benchmarks/gate.py --json     # the figures as JSON instead of a table

Every figure is the median of repeated time.perf_counter() runs after warmups, with min/max
and the interquartile range. The seed's own algorithm (benchmarks/seed_reference.py) runs in
the same process, so the speed-up is a ratio measured on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from agents.synctwin.gate.gatekeeper import SimulationGatekeeper, _chunk, seed_model_params  # noqa: E402
from agents.synctwin.gate.montecarlo import SEED_VARIANCE_SD, run_monte_carlo, simulate_seed_model  # noqa: E402
from agents.syncvalue.baseline import Baseline, compute_baseline  # noqa: E402
from benchmarks.seed_reference import (  # noqa: E402
    SeedSimulationGatekeeper,
    StaticBaselineClient,
    seed_baseline,
)
from synctwin.kernel.history import load_history  # noqa: E402
from synctwin.kernel.models import Strategy  # noqa: E402
from synctwin.kernel.strategy_io import load_strategy  # noqa: E402

EXAMPLES = Path(os.environ.get("SYNCTWIN_EXAMPLES", "/work/shared/examples"))
TEN_K = 10_000
ONE_M = 1_000_000


@dataclass(frozen=True, slots=True)
class Timing:
    """Wall times of repeated runs, in seconds."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def iqr(self) -> tuple[float, float]:
        if len(self.samples) < 2:
            return self.samples[0], self.samples[0]
        q1, _, q3 = statistics.quantiles(self.samples, n=4, method="inclusive")
        return q1, q3


@dataclass(slots=True)
class Row:
    """One line of the report. Times in ms; `passed` is None when no target applies."""

    name: str
    median_ms: float
    min_ms: float
    max_ms: float
    q1_ms: float
    q3_ms: float
    runs: int
    target: str = ""
    passed: bool | None = None
    note: str = ""


def measure(fn: Callable[[], object], *, repeats: int, warmups: int) -> Timing:
    """Run `fn` warmups + repeats times and time the repeats. The collector stays on (the seed's loop
    pays for its garbage); one untimed gc.collect() first, so earlier benchmarks' garbage is not billed.
    """
    gc.collect()
    for _ in range(warmups):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return Timing(tuple(samples))


def row(name: str, t: Timing, *, target: str = "", passed: bool | None = None, note: str = "") -> Row:
    q1, q3 = t.iqr
    return Row(
        name,
        t.median * 1e3,
        min(t.samples) * 1e3,
        max(t.samples) * 1e3,
        q1 * 1e3,
        q3 * 1e3,
        len(t.samples),
        target,
        passed,
        note,
    )


def seed_model_confidence(strategy: Strategy, baseline: Baseline) -> float:
    """P(uplift > 0) for the seed's model: uplift = a*v + c with v ~ N(1, 0.15), so a normal tail."""
    days = strategy.duration_days
    gm = strategy.gross_margin
    aov = strategy.aov or baseline.avg_order_value
    a = strategy.audience_size * strategy.cvr * aov * gm - strategy.daily_budget * days
    c = baseline.spend_over(days) - baseline.revenue_over(days) * gm
    if a == 0:
        return 1.0 if c > 0 else 0.0
    z = (-c / a - 1.0) / (SEED_VARIANCE_SD * math.sqrt(2.0))
    return 0.5 * (1.0 - math.erf(z)) if a > 0 else 0.5 * (1.0 + math.erf(z))


def _vm_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        m = re.search(rf"^{field}:\s+(\d+)", f.read(), re.M)
    return int(m.group(1)) if m else 0


def peak_memory_mb(fn: Callable[[], object]) -> tuple[float, float | None]:
    """(tracemalloc peak, RSS high-water growth) of one call, in MB. RSS is None off Linux."""
    rss_ok = Path("/proc/self/clear_refs").exists()
    if rss_ok:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        except OSError:
            rss_ok = False
    rss0 = _vm_kb("VmRSS") if rss_ok else 0
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss = (_vm_kb("VmHWM") - rss0) / 1024 if rss_ok else None
    return peak / 2**20, rss


def seed_core(strategy: Strategy, baseline: Baseline, n: int, seed: int) -> float:
    """Our seed model without the gate around it (no baseline, no result object, a one-path
    projection): run_monte_carlo's chunked draw and the seed's statistics (confidence,
    p10/p50/p90, the median of the positive paths)."""
    out = run_monte_carlo(
        partial(_chunk, simulate_seed_model, seed_model_params(strategy, baseline)),
        seed=seed,
        paths=n,
        max_paths=n,
        chunk_paths=50_000,
        threshold=0.85,
        projection_paths=1,
    )
    return out.confidence


def cli_command() -> list[str] | None:
    """The `synctwin` console script (or `python -m synctwin.app.cli`), or None if there is no CLI yet."""
    if importlib.util.find_spec("synctwin.app.cli") is None:
        return None
    script = Path(sys.executable).parent / "synctwin"
    if script.exists():
        return [str(script)]
    found = shutil.which("synctwin")
    return [found] if found else [sys.executable, "-m", "synctwin.app.cli"]


def gate_process_error(argv: list[str]) -> str | None:
    """None if `synctwin gate ... --json` ran and printed a gate result; else what went wrong."""
    p = subprocess.run(argv, capture_output=True, text=True, check=False)
    if p.returncode not in (0, 1):
        return f"exit {p.returncode}: {(p.stderr.strip().splitlines() or [''])[-1][:160]}"
    try:
        ok = "confidence_score" in json.loads(p.stdout)
    except ValueError:
        ok = False
    return None if ok else f"exit {p.returncode}, no gate JSON: {(p.stderr.strip().splitlines() or [''])[-1][:160]}"


@dataclass(frozen=True, slots=True)
class Plan:
    """What to run: sizes, repeats and inputs."""

    quick: bool
    repeats: int
    warmups: int
    big: int
    seed: int
    seed_loop_repeats: int
    strategy_path: Path
    history_path: Path

    @property
    def judged_big(self) -> bool:
        """Targets stated at 1M paths are judged only when 1M paths ran."""
        return self.big == ONE_M


def bench_funnel(plan: Plan, gk: SimulationGatekeeper, strategy: Strategy, checks: dict[str, Any]) -> list[Row]:
    """Rows 1 and 2: the funnel model at 10k paths (baseline included) and at 1M paths (memory too)."""
    reps, warm, seed = plan.repeats, plan.warmups, plan.seed

    def funnel_10k(max_paths: int | None) -> Callable[[], Any]:
        def go() -> Any:
            baseline = compute_baseline(load_history(plan.history_path))
            return gk.evaluate(strategy, baseline, seed=seed, paths=TEN_K, max_paths=max_paths)

        return go

    details = funnel_10k(None)().simulation_details
    checks["funnel_10k_adaptive_total_simulations"] = details.total_simulations
    t_fair = measure(funnel_10k(TEN_K), repeats=reps, warmups=warm)
    rows = [
        row(
            "baseline only: load_history + compute_baseline (90 d)",
            measure(lambda: compute_baseline(load_history(plan.history_path)), repeats=reps, warmups=warm),
        ),
        row(
            "funnel 10k x 30 d + baseline, max_paths=10k (fair 10k)",
            t_fair,
            target="<= 30 ms",
            passed=t_fair.median <= 0.030,
        ),
        row(
            "funnel 10k x 30 d + baseline, adaptive (default max_paths)",
            measure(funnel_10k(None), repeats=reps, warmups=warm),
            note=f"adaptive sampling drew {details.total_simulations:,} paths "
            f"({details.adaptive_rounds} extra round(s))",
        ),
    ]
    baseline = compute_baseline(load_history(plan.history_path))

    def funnel_big() -> Any:
        return gk.evaluate(strategy, baseline, seed=seed, paths=plan.big, max_paths=plan.big)

    t = measure(funnel_big, repeats=2 if plan.quick else 5, warmups=1)
    traced, rss = peak_memory_mb(funnel_big)
    ok = t.median <= 5.0 and traced <= 1024 and (rss is None or rss <= 1024)
    rss_txt = "n/a" if rss is None else f"{rss:.1f} MB"
    rows.append(
        row(
            f"funnel {plan.big:,} x 30 d (baseline precomputed)",
            t,
            target="<= 5 s, peak <= 1 GB",
            passed=ok if plan.judged_big else None,
            note=f"tracemalloc peak {traced:.1f} MB; RSS high-water growth {rss_txt}",
        )
    )
    checks["funnel_big_peak_tracemalloc_mb"] = round(traced, 1)
    checks["funnel_big_peak_rss_growth_mb"] = None if rss is None else round(rss, 1)
    return rows


def bench_seed_model(plan: Plan, gk: SimulationGatekeeper, strategy: Strategy, checks: dict[str, Any]) -> list[Row]:
    """Row 3: our seed model (whole evaluate, and its core) against the seed's awaited per-path loop."""
    baseline = compute_baseline(load_history(plan.history_path))
    analytic = seed_model_confidence(strategy, baseline)
    checks["seed_model_confidence_analytic"] = round(analytic, 4)
    ref = SeedSimulationGatekeeper(StaticBaselineClient(seed_baseline(baseline)))
    strategy_dict = strategy.model_dump()
    seed, rows = plan.seed, []
    loop = asyncio.new_event_loop()
    try:
        for n in (TEN_K, plan.big):
            judged = n == TEN_K or plan.judged_big
            ours_reps = plan.repeats if n == TEN_K else (2 if plan.quick else 5)

            def ours(n: int = n) -> Any:
                return gk.evaluate(strategy, baseline, seed=seed, paths=n, max_paths=n, model="seed")

            def core(n: int = n) -> float:
                return seed_core(strategy, baseline, n, seed)

            def theirs(n: int = n) -> dict[str, Any]:
                np.random.seed(seed)
                return loop.run_until_complete(ref.simulate_strategy(strategy_dict, strategy.client_id, iterations=n))

            t_seed = measure(
                theirs,
                repeats=(3 if plan.quick else 7) if n == TEN_K else plan.seed_loop_repeats,
                warmups=1 if n == TEN_K else 0,
            )
            c_seed = theirs()["raw_confidence"] if n == TEN_K else None
            rows.append(
                row(
                    f"seed model {n:,}: the seed's per-path loop",
                    t_seed,
                    note="the yardstick" + (f"; confidence {c_seed:.4f}" if c_seed is not None else ""),
                )
            )
            for label, fn, conf in (
                ("ours, evaluate(model='seed')", ours, lambda f=ours: f().confidence_score),
                ("ours, core: draw + seed's statistics", core, core),
            ):
                t = measure(fn, repeats=ours_reps, warmups=plan.warmups)
                ratio = t_seed.median / t.median
                rows.append(
                    row(
                        f"seed model {n:,}: {label}",
                        t,
                        target=">= 100x faster than the loop",
                        passed=ratio >= 100 if judged else None,
                        note=f"{ratio:,.0f}x faster; confidence {conf():.4f} (analytic {analytic:.4f})",
                    )
                )
                key = "evaluate" if "evaluate" in label else "core"
                checks[f"seed_model_{n}_ratio_{key}"] = round(ratio, 1)
            if c_seed is not None:
                c_ours = ours().confidence_score
                checks["seed_model_10k_confidence_ours"] = c_ours
                checks["seed_model_10k_confidence_seed_loop"] = round(c_seed, 4)
                checks["seed_model_agrees"] = max(abs(c_ours - analytic), abs(c_seed - analytic)) <= 0.02
    finally:
        loop.close()
    return rows


def bench_process(plan: Plan) -> list[Row]:
    """Row 4: `synctwin gate` as a whole process, imports included."""
    name = "`synctwin gate` process, 10k paths (imports included)"
    cmd = cli_command()
    if cmd is None:
        return [skipped(name, "skipped: synctwin.app.cli does not exist yet")]
    argv = [
        *cmd,
        "gate",
        str(plan.strategy_path),
        "--history",
        str(plan.history_path),
        "--paths",
        str(TEN_K),
        "--seed",
        str(plan.seed),
        "--json",
    ]
    error = gate_process_error(argv)
    if error:
        return [skipped(name, f"skipped: the CLI does not run yet ({error})")]
    t = measure(
        lambda: subprocess.run(argv, capture_output=True, check=False),
        repeats=3 if plan.quick else 5,
        warmups=1,
    )
    return [
        row(
            name,
            t,
            target="<= 1.5 s",
            passed=t.median <= 1.5,
            note=" ".join([Path(argv[0]).name, *argv[1:2]]),
        )
    ]


def skipped(name: str, note: str) -> Row:
    return Row(name, math.nan, math.nan, math.nan, math.nan, math.nan, 0, target="<= 1.5 s", note=note)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """All four benchmarks in one process; the report as a JSON-able dict."""
    plan = Plan(
        quick=args.quick,
        repeats=args.repeats or (3 if args.quick else 15),
        warmups=1 if args.quick else 3,
        big=100_000 if args.quick else ONE_M,
        seed=args.seed,
        seed_loop_repeats=args.seed_loop_repeats,
        strategy_path=EXAMPLES / "strategy.json",
        history_path=EXAMPLES / "history_90d.csv",
    )
    strategy = load_strategy(plan.strategy_path)
    gk = SimulationGatekeeper()
    checks: dict[str, Any] = {}
    rows = bench_funnel(plan, gk, strategy, checks)
    rows += bench_seed_model(plan, gk, strategy, checks)
    rows += bench_process(plan)
    return {
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpu_count": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "platform": platform.platform(),
        },
        "settings": {
            "quick": plan.quick,
            "repeats": plan.repeats,
            "warmups": plan.warmups,
            "seed": plan.seed,
            "examples": str(EXAMPLES),
        },
        "rows": [
            {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in asdict(r).items()} for r in rows
        ],
        "checks": checks,
    }


def _ms(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "-"
    return f"{x / 1e3:.2f} s" if x >= 1000 else f"{x:.2f} ms"


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 200)
    m, s = report["machine"], report["settings"]
    console.print(
        f"python {m['python']}  numpy {m['numpy']}  CPUs {m['cpu_count']} (usable {m['cpus_usable']})  {m['platform']}"
    )
    console.print(
        f"repeats {s['repeats']}, warmups {s['warmups']}, seed {s['seed']}"
        + ("  [QUICK: 100k stands in for 1M; targets at 1M not judged]" if s["quick"] else "")
    )
    table = Table(title="gate benchmark (median of runs)")
    for col, just in (
        ("benchmark", "left"),
        ("median", "right"),
        ("min..max", "right"),
        ("IQR", "right"),
        ("n", "right"),
        ("target", "left"),
        ("pass", "center"),
        ("note", "left"),
    ):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in report["rows"]:
        verdict = {True: "[green]PASS[/]", False: "[red]FAIL[/]", None: ""}[r["passed"]]
        table.add_row(
            r["name"],
            _ms(r["median_ms"]),
            f"{_ms(r['min_ms'])}..{_ms(r['max_ms'])}",
            f"{_ms(r['q1_ms'])}..{_ms(r['q3_ms'])}",
            str(r["runs"]),
            r["target"],
            verdict,
            r["note"],
        )
    console.print(table)
    c = report["checks"]
    console.print(
        f"seed model P(uplift > 0): analytic {c['seed_model_confidence_analytic']:.4f}, "
        f"ours {c['seed_model_10k_confidence_ours']:.4f}, "
        f"seed loop {c['seed_model_10k_confidence_seed_loop']:.4f} at 10k paths -> "
        f"{'agree' if c['seed_model_agrees'] else 'DISAGREE'} (both within 2 points of analytic)"
    )
    console.print("OPENBLAS_CORETYPE is irrelevant here: the gate does no BLAS calls.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer repeats, 100k instead of 1M paths")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--repeats", type=int, default=0, help="timed runs per 10k figure (default 15, quick 3)")
    parser.add_argument("--seed-loop-repeats", type=int, default=1, help="runs of the seed's loop at 1M paths")
    parser.add_argument("--seed", type=int, default=20240601, help="Monte Carlo seed")
    args = parser.parse_args(argv)
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2, default=float))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
