"""`synctwin sweep SCENARIO --seeds A-B [--ray [ADDRESS]] [--workers N] [--json]`."""

from __future__ import annotations

import argparse
from typing import Any

EXIT_FAILED = 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    from synctwin.executors import add_executor_arguments

    p.add_argument("scenario", metavar="SCENARIO", help="a built-in's name or a scenario YAML file")
    p.add_argument("--seeds", required=True, metavar="A-B", help="the seeds to run, inclusive (e.g. 1-1000), "
                   "or one seed N")
    add_executor_arguments(p)
    p.add_argument("--json", action="store_true", help="print the report as one JSON document")


def run(args: argparse.Namespace) -> int:
    from harness.sweep import parse_seed_range, run_sweep
    from scenarios.loader import load_scenario
    from synctwin.executors import executor_from_args
    from synctwin.progress import ProgressBar, interactive

    seeds = parse_seed_range(args.seeds)
    scenario = load_scenario(args.scenario)
    with executor_from_args(args) as executor, \
            ProgressBar(f"sweep {scenario.name}", enabled=interactive(args.json), total=len(seeds),
                        unit="runs") as bar:
        report = run_sweep(scenario, seeds, executor=executor, progress=bar.update if bar.enabled else None)
    if args.json:
        from synctwin.console import print_json

        print_json(report.to_dict())
    else:
        print_report(report.to_dict())
    return 0 if report.passed else EXIT_FAILED


def print_report(d: dict[str, Any]) -> None:
    from rich.table import Table

    from synctwin.console import console

    out = console()
    a, b = d["seeds"]
    out.print(f"[bold]{d['scenario']}[/] over seeds {a}-{b}: {d['runs_passed']}/{d['runs']} runs passed "
              f"every expectation ({d['executor']}, {d['wall_s']:.1f} s wall)")
    t = Table(box=None, pad_edge=False)
    for col in ("expectation", "pass rate", "95% interval", "failed seeds (worst first)"):
        t.add_column(col, justify="right" if col in ("pass rate", "95% interval") else "left")
    for e in d["expectations"]:
        lo, hi = e["interval95"]
        style = "green" if e["failures"] == 0 else "bold red"
        worst = ", ".join(f"{w['seed']}: {w['message']}" for w in e["worst_seeds"][:3])
        if e["failures"] > 3:
            worst += f" (+{e['failures'] - 3} more)"
        t.add_row(e["expectation"], f"[{style}]{e['passes']}/{e['runs']} = {e['pass_rate']:.1%}[/]",
                  f"{lo:.1%}-{hi:.1%}", worst or "-")
    out.print(t)
