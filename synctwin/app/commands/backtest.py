"""`synctwin backtest [DIR_OR_FILE]`: the gate against campaigns whose outcome is known;
`synctwin backtest --history FILE --rolling`: the gate's rolling-origin backtest on one history."""

from __future__ import annotations

import argparse
from typing import Any

from synctwin.app.console import console, emit, fit_names, say, table
from synctwin.app.progress import ProgressBar, interactive
from synctwin.infra.executors import add_executor_arguments, executor_from_args
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.formatting import money, percent
from synctwin.kernel.model_names import MODEL_CHOICES, MODEL_HELP


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "cases",
        nargs="?",
        metavar="DIR_OR_FILE",
        help="a backtest case file (JSON: strategy, history, outcome) or a directory of them; "
        "default: the 10 built-in historical campaigns (5 profitable, 5 not)",
    )
    p.add_argument("--model", choices=MODEL_CHOICES, help=MODEL_HELP)
    p.add_argument("--paths", type=int, metavar="N", help="Monte Carlo paths per campaign or window (default 10000)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument("--threshold", type=float, metavar="T", help="approve when confidence > T (default 0.85)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON document")
    g = p.add_argument_group("rolling-origin backtest on one history (--history FILE --rolling)")
    g.add_argument(
        "--history",
        metavar="FILE",
        help="the account's daily history (date,spend,impressions,clicks,conversions,revenue)",
    )
    g.add_argument(
        "--rolling",
        action="store_true",
        help="fit on the past, project the next D days, compare "
        "with what happened, slide: p10-p90 and p50 coverage, CRPS, PIT, Brier of 'uplift > 0'",
    )
    g.add_argument("--horizon", type=int, metavar="D", help="days projected from each origin (default 30)")
    g.add_argument(
        "--lookback", type=int, metavar="D", help="days of history behind each origin for the baseline (default 90)"
    )
    g.add_argument(
        "--step",
        type=int,
        metavar="D",
        help="days between origins (default 7; windows overlap when shorter than the horizon)",
    )
    g.add_argument("--min-history", type=int, metavar="D", help="days of history the first origin needs (default 28)")
    g.add_argument(
        "--gross-margin",
        type=float,
        metavar="GM",
        help="share of revenue that is profit before ad spend, for the uplift (default 1)",
    )
    g.add_argument(
        "--demand-headroom",
        type=float,
        metavar="X",
        help="each window's audience x cvr as X times "
        "what the budget buys at the history's rate (default 10, so demand does not bind; 1 for one-factor)",
    )
    g.add_argument(
        "--report",
        metavar="FILE.html",
        help="also write a self-contained HTML page: the PIT "
        "histogram and the projection against what happened, window by window",
    )
    add_executor_arguments(p)


ROLLING_ONLY = ("horizon", "lookback", "step", "min_history", "gross_margin", "demand_headroom", "report")


def run(args: argparse.Namespace) -> int:
    if args.rolling or args.history:
        if not args.history:
            raise InvalidInput("--rolling needs --history FILE (the account's daily history)", field="--history")
        if not args.rolling:
            raise InvalidInput("--history is for the rolling backtest: add --rolling", field="--rolling")
        if args.cases:
            raise InvalidInput(
                "give either DIR_OR_FILE (campaigns with known outcomes) or --history FILE --rolling, not both",
                source=args.cases,
            )
        from synctwin.app.commands.rolling_backtest import run_rolling

        return run_rolling(args)
    for name in ROLLING_ONLY:
        if getattr(args, name) is not None:
            raise InvalidInput(
                "only applies to the rolling backtest (--history FILE --rolling)", field=f"--{name.replace('_', '-')}"
            )
    from agents.synctwin.gate.gatekeeper import SimulationGatekeeper
    from harness.evaluation.backtest import builtin_historical_dir, load_cases, run_backtest

    cases = load_cases(args.cases or builtin_historical_dir())
    gatekeeper = SimulationGatekeeper(model=args.model, threshold=args.threshold)
    with (
        executor_from_args(args) as executor,
        ProgressBar("backtest: cases", enabled=interactive(args.json), total=len(cases)) as bar,
    ):
        report = run_backtest(
            cases,
            gatekeeper,
            seed=args.seed,
            paths=args.paths,
            model=args.model,
            progress=bar.update if bar.enabled else None,
            executor=executor,
        )
    emit(args.json, report.to_dict(), print_report)
    return 0


def print_report(d: dict[str, Any]) -> None:
    out = console()
    t = table(
        "campaign", "decision", "confidence", "projected uplift", "realized uplift", "verdict",
        right=("confidence", "projected uplift", "realized uplift"),
        title="Gate decisions against known outcomes",
    )  # fmt: skip
    fit_names(t, [row["name"] for row in d["cases"]], out.width)
    for row in d["cases"]:
        verdict = row["verdict"]
        style = "green" if verdict in ("TP", "TN") else "bold red"
        t.add_row(
            row["name"],
            row["decision"],
            percent(row["confidence"], 1),
            money(row["projected_uplift"]),
            money(row["realized_uplift"]),
            f"[{style}]{verdict}[/]",
        )
    out.print(t)
    m = d["confusion"]
    out.print(
        f"                 profitable  unprofitable\n"
        f"  approved     {m['TP']:>10}  {m['FP']:>12}\n"
        f"  rejected     {m['FN']:>10}  {m['TN']:>12}"
    )
    for what, n, other, rate, goal in (
        ("false negatives (rejected but profitable)", "FN", "TP", "fn_rate", "< 5%"),
        ("false positives (approved but unprofitable)", "FP", "TN", "fp_rate", "< 10%"),
    ):
        say(out, f"{what}: {m[n]}/{m[other] + m[n]} = {percent(d[rate], 1)} (goal {goal})", indent=0)
    say(out, f"rejection share {percent(d['rejection_share'], 1)}, accuracy {percent(d['accuracy'], 1)}", indent=0)
    cash = d["money"]
    say(
        out,
        f"in money: captured {money(cash['captured_profit'])}, avoided losses {money(cash['avoided_losses'])}, "
        f"approved losses {money(cash['approved_losses'])}, missed profit {money(cash['missed_profit'])}",
        indent=0,
    )
