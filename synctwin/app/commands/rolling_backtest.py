"""`synctwin backtest --history FILE --rolling`: the gate's rolling-origin backtest, printed.

The work is harness/evaluation/rolling.py; this module reads the options and prints the windows
and the calibration summary in 80 columns (or JSON, or an HTML report)."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from synctwin.app.console import console, emit
from synctwin.app.progress import ProgressBar, interactive
from synctwin.app.reports import check_report_path, write_report
from synctwin.infra.executors import executor_from_args
from synctwin.kernel.formatting import short_money as short

TARGET_LOW, TARGET_HIGH = 0.75, 0.85  # DESIGN.md: p10-p90 should cover 75-85% of outcomes
SPARK = "▁▂▃▄▅▆▇█"


def run_rolling(args: argparse.Namespace) -> int:
    from agents.synctwin.gate.gatekeeper import SimulationGatekeeper
    from harness.evaluation.rolling import (
        DEFAULT_HORIZON,
        DEFAULT_LOOKBACK,
        DEFAULT_MIN_HISTORY,
        DEFAULT_STEP,
        RollingConfig,
        origins,
        run_rolling_backtest,
    )
    from synctwin.kernel.history import load_history

    check_report_path(args.report)

    def given(value: Any, default: Any) -> Any:
        return default if value is None else value

    config = RollingConfig(
        horizon=given(args.horizon, DEFAULT_HORIZON),
        lookback=given(args.lookback, DEFAULT_LOOKBACK),
        step=given(args.step, DEFAULT_STEP),
        min_history=given(args.min_history, DEFAULT_MIN_HISTORY),
        gross_margin=given(args.gross_margin, 1.0),
        paths=given(args.paths, 10_000),
        seed=args.seed,
        model=args.model,
        demand_headroom=args.demand_headroom,
    ).validate()
    gatekeeper = SimulationGatekeeper(model=args.model, threshold=args.threshold)
    history = load_history(args.history)
    total = len(origins(history, config))
    # without --ray/--workers the gate's own default draws each window's paths (a thread per core)
    fans_out = args.ray is not None or args.workers is not None
    with (
        executor_from_args(args) if fans_out else contextlib.nullcontext() as executor,
        ProgressBar("backtest: windows", enabled=interactive(args.json), total=max(total, 1)) as bar,
    ):
        report = run_rolling_backtest(
            history,
            gatekeeper,
            config,
            source=args.history,
            progress=(lambda done, _n: bar.update(done)) if bar.enabled else None,
            executor=executor,
        )
    data = report.to_dict()
    if args.report:
        from synctwin.app.reports.rolling import build_rolling_page

        write_report(args.report, build_rolling_page(data))
    emit(args.json, data, print_rolling, args.report)
    return 0


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def spark(counts: list[int]) -> str:
    top = max(counts) if counts else 0
    if top == 0:
        return " " * len(counts)
    return "".join(SPARK[min(len(SPARK) - 1, round(c / top * (len(SPARK) - 1)))] for c in counts)


def print_rolling(d: dict[str, Any], out: Any = None) -> None:
    """The windows and the summary, each line within 80 columns."""
    from rich import box
    from rich.table import Table

    out = out or console()
    st, s = d["settings"], d["summary"]
    t = Table(
        title=f"Rolling backtest of the {d['model']} model: {st['horizon']}-day windows",
        box=box.SIMPLE_HEAD,
        padding=0,
        show_edge=False,
        title_justify="left",
    )
    for col in ("origin", "budget", "revenue", "p10", "p50", "p90", "in", "uplift", "PIT", "conf", "won"):
        t.add_column(col, justify="left" if col in ("origin", "in", "won") else "right", no_wrap=True)
    for w in d["windows"]:
        inside = w["revenue_inside_p10_p90"]
        won = w["profitable"]
        t.add_row(
            w["origin"],
            short(w["budget"]),
            short(w["realized_revenue"]),
            short(w["revenue_p10"]),
            short(w["revenue_p50"]),
            short(w["revenue_p90"]),
            "[green]yes[/]" if inside else "[red]no[/]",
            short(w["realized_uplift"]),
            f"{w['pit']:.2f}",
            f"{w['confidence']:.0%}",
            "[green]yes[/]" if won else "no",
        )
    out.print(t)
    out.print(
        "budget = realized mean daily spend (the plan that was run); revenue = realized,\nagainst the projection's "
        "p10/p50/p90; in = inside p10-p90; uplift = realized net\nprofit uplift; PIT = share of the paths' uplift "
        "below it; conf = the gate's\nconfidence; won = realized uplift > 0."
    )
    out.print(
        f"[bold]{s['windows']} windows[/] of {st['horizon']} d every {st['step']} d, origins "
        f"{d['windows'][0]['origin']}..{d['windows'][-1]['origin']}, lookback {st['lookback']} d"
    )
    if s["overlapping"]:
        out.print(f"windows overlap: intervals from a block bootstrap of {s['bootstrap_block']} windows")
    cov = s["revenue_coverage_p10_p90"]
    lo, hi = cov["interval"]
    ok = cov["value"] is not None and TARGET_LOW <= cov["value"] <= TARGET_HIGH
    out.print(
        f"revenue p10-p90 coverage  [{'green' if ok else 'bold red'}]{pct(cov['value'])}[/] "
        f"(95% {pct(lo)}-{pct(hi)}; target 75-85%)"
    )
    med = s["revenue_below_p50"]
    out.print(f"revenue below p50         {pct(med['value'])} (target 50%; off by {pct(med['distance_from_half'])})")
    ucov, umed = s["uplift_coverage_p10_p90"], s["uplift_below_p50"]
    out.print(
        f"uplift p10-p90 coverage   {pct(ucov['value'])} (95% {pct(ucov['interval'][0])}-"
        f"{pct(ucov['interval'][1])}); below p50 {pct(umed['value'])}"
    )
    c = s["crps"]
    rel = "" if c["relative_to_revenue"] is None else f", {c['relative_to_revenue']:.1%} of revenue"
    out.print(
        f"CRPS of the uplift        {short(c['mean'])} a window (95% {short(c['interval'][0])}-"
        f"{short(c['interval'][1])}{rel})"
    )
    p = s["pit"]
    pv = "n/a" if p["chi2_pvalue"] is None else f"{p['chi2_pvalue']:.3g}"
    ks = "n/a" if p["ks_pvalue"] is None else f"{p['ks_pvalue']:.3g}"
    out.print(f"PIT histogram (10 bins)   |{spark(p['counts'])}| uniform? chi2 p={pv}, KS p={ks}")
    b = s["brier"]
    out.print(
        f"Brier of 'uplift > 0'     {b['score']:.3f} (95% {b['interval'][0]:.3f}-{b['interval'][1]:.3f}); "
        f"mean confidence {pct(b['mean_confidence'])}"
    )
    out.print(
        f"                          profitable in {pct(b['profitable_share'])} of windows; reliability "
        f"{b['reliability']:.3f}"
    )
    if d["skipped"]:
        reasons = sorted({x["reason"] for x in d["skipped"]})
        out.print(f"skipped {len(d['skipped'])} origin(s): {reasons[0]}" + (" ..." if len(reasons) > 1 else ""))
