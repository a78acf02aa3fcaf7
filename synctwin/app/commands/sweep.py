"""`synctwin sweep SCENARIO --seeds A-B [--no-grid] [--ray [ADDRESS]] [--workers N] [--json]`."""

from __future__ import annotations

import argparse
from typing import Any

from synctwin.app.console import console, emit
from synctwin.app.progress import ProgressBar, interactive
from synctwin.infra.executors import add_executor_arguments, executor_from_args

EXIT_FAILED = 1
GRID_EPILOG = (
    "A scenario may give a grid of market parameters to sweep: a top-level `sweep: {grid: {meta.cpm: [5.0, 7.5], "
    "meta.cvr: [0.035, 0.044]}}` (PLATFORM.FIELD of its world's markets; the cartesian product, at most 1,000 points). "
    "Every seed then runs at every point, and the report adds each point's runs passed and pass rates, and the worst "
    "points. --no-grid runs the scenario's own market only; `synctwin replay` always does. Exit status: 0 every run "
    "passed, 1 an expectation failed in some run, 2 invalid input."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", metavar="SCENARIO", help="a built-in's name or a scenario YAML file")
    p.add_argument(
        "--seeds",
        required=True,
        metavar="A-B",
        help="the seeds to run, inclusive (e.g. 1-1000), or one seed N; with a grid, at every grid point",
    )
    p.add_argument("--no-grid", action="store_true", help="ignore the scenario's `sweep.grid`: run its own market only")
    add_executor_arguments(p)
    p.add_argument("--json", action="store_true", help="print the report as one JSON document")
    p.epilog = GRID_EPILOG


def run(args: argparse.Namespace) -> int:
    from harness.sweep import parse_seed_range, run_sweep, sweep_size
    from scenarios.loader import load_scenario

    seeds = parse_seed_range(args.seeds)
    scenario = load_scenario(args.scenario)
    grid = not args.no_grid
    with (
        executor_from_args(args) as executor,
        ProgressBar(
            f"sweep {scenario.name}",
            enabled=interactive(args.json),
            total=sweep_size(scenario, seeds, grid=grid),
            unit="runs",
        ) as bar,
    ):
        report = run_sweep(scenario, seeds, executor=executor, progress=bar.update if bar.enabled else None, grid=grid)
    grid_skipped = scenario.sweep is not None and not grid
    emit(args.json, report.to_dict(), lambda d: print_report(d, grid_skipped=grid_skipped))
    return 0 if report.passed else EXIT_FAILED


def print_report(d: dict[str, Any], *, grid_skipped: bool = False) -> None:
    """The overall table (one row per expectation); with a grid, first one row per grid point."""
    from rich.table import Table

    out = console()
    a, b = d["seeds"]
    grid = d.get("grid")
    where = f" at {grid['size']} grid points ({' x '.join(grid['keys'])})" if grid else ""
    skipped = " (its grid skipped: --no-grid)" if grid_skipped else ""
    out.print(
        f"[bold]{d['scenario']}[/]{skipped} over seeds {a}-{b}{where}: {d['runs_passed']}/{d['runs']} runs "
        f"passed every expectation ({d['executor']}, {d['wall_s']:.1f} s wall)"
    )
    if grid:
        _print_grid(out, grid, len(d["expectations"]))
    t = Table(box=None, pad_edge=False, title="overall" if grid else None, title_justify="left")
    for col in ("expectation", "pass rate", "95% interval", "failed seeds (worst first)"):
        t.add_column(col, justify="right" if col in ("pass rate", "95% interval") else "left")
    for i, e in enumerate(d["expectations"], 1):
        lo, hi = e["interval95"]
        style = "green" if e["failures"] == 0 else "bold red"
        worst = ", ".join(_seed_ref(w) + f": {w['message']}" for w in e["worst_seeds"][:3])
        if e["failures"] > 3:
            worst += f" (+{e['failures'] - 3} more)"
        label = f"E{i} {e['expectation']}" if grid else e["expectation"]
        t.add_row(
            label, f"[{style}]{e['passes']}/{e['runs']} = {e['pass_rate']:.1%}[/]", f"{lo:.1%}-{hi:.1%}", worst or "-"
        )
    out.print(t)
    if grid and grid["worst_points"]:
        out.print("[bold]worst grid points[/]")
        for w in grid["worst_points"]:
            lo, hi = w["interval95"]
            out.print(
                f"  #{w['point']} {_params(w['params'])}: {w['runs_passed']}/{w['runs']} runs passed "
                f"(95% {lo:.0%}-{hi:.0%}); failed: {'; '.join(w['failed_expectations'])}"
            )


def _print_grid(out: Any, grid: dict[str, Any], n_expectations: int) -> None:
    """One row per point: its parameters, runs passed, and each expectation's passes (E1, E2, ...
    are the overall table's rows, whose labels are too long for columns)."""
    from rich.table import Table

    t = Table(box=None, pad_edge=False, title="per grid point", title_justify="left")
    for col in ("#", *grid["keys"], "runs passed", *(f"E{i}" for i in range(1, n_expectations + 1))):
        t.add_column(col, justify="right")
    for p in grid["points"]:
        style = "green" if p["passed"] else "bold red"
        cells = [
            f"{e['passes']}/{e['runs']}" if e["failures"] == 0 else f"[bold red]{e['passes']}/{e['runs']}[/]"
            for e in p["expectations"]
        ]
        t.add_row(
            str(p["point"]),
            *(f"{p['params'][k]:g}" for k in grid["keys"]),
            f"[{style}]{p['runs_passed']}/{p['runs']}[/]",
            *cells,
        )
    out.print(t)


def _params(params: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in params.items())


def _seed_ref(w: dict[str, Any]) -> str:
    """A failing run: its seed, and its grid point when the sweep has a grid."""
    return f"#{w['point']}/seed {w['seed']}" if "point" in w else str(w["seed"])
