"""`synctwin gate`: the pre-launch gate on a strategy file and a history file."""

from __future__ import annotations

import argparse
from typing import Any

from synctwin.app.console import console, emit
from synctwin.app.progress import ProgressBar, interactive
from synctwin.app.reports import check_report_path, write_report
from synctwin.infra.executors import add_executor_arguments, executor_from_args
from synctwin.infra.redis_conn import (
    add_redis_argument,
    add_shards_argument,
    connect_deployment,
    redis_url_arg,
    with_shards,
)
from synctwin.kernel.config import get_settings
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.formatting import money, percent, plural
from synctwin.kernel.model_names import MODEL_CHOICES, MODEL_HELP


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "strategy", metavar="STRATEGY.json", help="the campaign strategy (audience_size, cvr, daily_budget, ...)"
    )
    p.add_argument(
        "--history",
        metavar="HISTORY.csv",
        help="the client's daily history (date,spend,impressions,clicks,conversions,revenue); "
        "with --redis and no --history it is read from the store by client_id",
    )
    p.add_argument("--model", choices=MODEL_CHOICES, help=MODEL_HELP)
    p.add_argument(
        "--paths",
        type=int,
        metavar="N",
        help="Monte Carlo paths to draw first (default 10000); more "
        "are drawn while the confidence interval straddles the threshold",
    )
    p.add_argument("--max-paths", type=int, metavar="N", help="cap for adaptive sampling (default 160000)")
    p.add_argument("--seed", type=int, metavar="S", help="random seed (default: fresh, reported in the result)")
    p.add_argument("--threshold", type=float, metavar="T", help="approve when confidence > T (default 0.85)")
    p.add_argument("--lookback-days", type=int, metavar="D", help="history window of the baseline (default 90)")
    p.add_argument(
        "--calibration-log",
        metavar="AUDIT.jsonl",
        help="curve model: add the realized outcomes in this audit log (CAMPAIGN_OUTCOME/SHADOW_OUTCOME with the "
        "gate's projected revenue) to the calibration set of the predictive spread",
    )
    p.add_argument("--audit-log", metavar="FILE", help="append the decision to this hash-chained JSONL audit log")
    add_shards_argument(p)
    add_redis_argument(
        p,
        "audit to the Redis stream and, when approved, store the projection under "
        "{prefix}campaign:{id}:projection for the live mirror",
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON document")
    p.add_argument(
        "--no-suggestions",
        action="store_true",
        help="on a rejection, skip the resubmission "
        "advice (the smallest budget/audience/duration change that the gate approves)",
    )
    p.add_argument(
        "--report",
        metavar="FILE.html",
        help="also write a self-contained HTML page with plots: the paths' uplift distribution and the projection fan",
    )
    add_executor_arguments(p)


def run(args: argparse.Namespace) -> int:
    import contextlib

    from synctwin.kernel.history import load_history
    from synctwin.kernel.strategy_io import load_strategy
    from synctwin.services.gate import GateRequest, decide

    check_report_path(args.report)
    settings = with_shards(get_settings(), args.shards)
    strategy = load_strategy(args.strategy)
    args.redis = redis_url_arg(args.redis, default_to_env=False)
    client = connect_deployment(args.redis, settings.shards) if args.redis else None
    if args.history:
        history, source = load_history(args.history), args.history
    elif client is not None:
        from agents.syncvalue.stores import RedisHistoryStore

        history = RedisHistoryStore(client, settings.key_prefix).get(strategy.client_id)
        source = f"history of {strategy.client_id} in Redis"
    else:
        raise InvalidInput("--history HISTORY.csv is required (or --redis URL with the client's stored history)")
    for name in ("paths", "max_paths", "lookback_days"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise InvalidInput(f"--{name.replace('_', '-')} must be a positive number (got {value})")
    request = GateRequest(
        strategy,
        history,
        source=source,
        model=args.model,
        threshold=args.threshold,
        seed=args.seed,
        paths=args.paths,
        max_paths=args.max_paths,
        lookback_days=args.lookback_days,
        suggestions=not args.no_suggestions,
        keep_uplift=bool(args.report),
        calibration_z=_calibration_residuals(args.calibration_log) if args.calibration_log else None,
        calibration_set=f"realized outcomes from {args.calibration_log}",
    )
    # without --ray/--workers the gate's own default draws the chunks (a thread per core)
    fans_out = args.ray is not None or args.workers is not None
    try:
        with (
            executor_from_args(args) if fans_out else contextlib.nullcontext() as executor,
            ProgressBar("gate: paths", enabled=interactive(args.json), min_total=PROGRESS_MIN_PATHS) as bar,
        ):
            decision = decide(
                request,
                settings,
                client=client,
                audit_log=args.audit_log,
                executor=executor,
                progress=bar.update if bar.enabled else None,
            )
    except InvalidInput as exc:
        raise _located(exc, args.strategy, source) from None
    result = decision.result
    if args.report:
        from synctwin.app.reports.gate import build_gate_page

        write_report(args.report, build_gate_page(result, decision.uplift, strategy=strategy, source=source))
    margin_default = "gross_margin" not in strategy.model_fields_set
    emit(args.json, result.to_dict(), lambda _: print_result(result, margin_default=margin_default), args.report)
    return 0 if result.approved else 1


def _located(exc: InvalidInput, strategy_file: str, history_source: str) -> InvalidInput:
    """The gate's errors name no file: one about a strategy field names the strategy file, one
    about what the history cannot give (no impressions, hence no CPM) names the history."""
    from synctwin.kernel.models import Strategy

    if exc.source is not None:
        return exc
    if exc.field in Strategy.model_fields:
        return InvalidInput(exc.reason, source=strategy_file, field=exc.field)
    if exc.field is None:
        return InvalidInput(exc.reason, source=history_source, line=exc.line)
    return exc


def _calibration_residuals(path: str) -> Any:
    """z residuals of the audit log's full-flight outcomes; InvalidInput naming the file otherwise."""
    from pathlib import Path

    from agents.syncshield.backends import JsonlAuditStore
    from agents.synctwin.gate.calibration_log import outcome_residuals

    if not Path(path).is_file():
        raise InvalidInput("no such audit log file", source=path)
    try:
        records = JsonlAuditStore(path).records()
    except (ValueError, OSError) as exc:
        raise InvalidInput(f"cannot read the audit log: {exc}", source=path) from None
    return outcome_residuals(records)


PROGRESS_MIN_PATHS = 200_000  # below this the gate takes well under a second: no bar


def print_result(result: Any, *, margin_default: bool = False) -> None:
    """The decision and what it rests on; `margin_default`: the strategy left gross_margin out, so
    the uplift counts all revenue as profit (said on its own row: it is the biggest assumption)."""
    from rich.table import Table

    out = console()
    sd = result.simulation_details
    colour = "green" if result.approved else "red"
    lo, hi = result.confidence_interval
    out.print(
        f"[bold {colour}]{result.decision}[/] campaign [bold]{result.campaign_id}[/] "
        f"(client {result.client_id}), model {result.model}, seed {result.seed}"
    )
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_row(
        "confidence",
        f"{percent(result.confidence_score, 1)} (95% interval {percent(lo, 1)}-{percent(hi, 1)}; "
        f"approve when > {percent(result.threshold, 1)})",
    )
    t.add_row("risk profile", result.risk_profile)
    t.add_row(
        "net profit uplift",
        f"median {money(sd.median_uplift)}, p10 {money(sd.p10_uplift)}, "
        f"p90 {money(sd.p90_uplift)}, mean {money(result.expected_uplift)}",
    )
    if margin_default:
        t.add_row("gross margin", "100% (default; set gross_margin): all extra revenue counts as profit")
    t.add_row(
        "paths",
        f"{sd.total_simulations:,} ({sd.positive_outcomes:,} positive"
        + (
            f"; {plural(sd.adaptive_rounds, 'adaptive round')} from {sd.initial_simulations:,}"
            if sd.adaptive_rounds
            else ""
        )
        + ")",
    )
    b = result.baseline
    t.add_row(
        "baseline",
        f"{int(b['days'])} days: revenue {money(b['daily_revenue'])}/day, "
        f"ad spend {money(b['daily_spend'])}/day, AOV {money(b.get('avg_order_value'))}",
    )
    last = result.projection.points[-1]
    t.add_row(
        "projection",
        f"after {result.projection.horizon_days} days: spend {money(last.spend_p50)}, "
        f"revenue {money(last.revenue_p50)}, {last.conversions_p50:,.0f} conversions (medians)",
    )
    if result.extrapolation:
        e = result.extrapolation
        lo, hi = e["history_spend_range"]
        t.add_row(
            "extrapolation",
            f"budget {money(e['budget'])}/day outside the history's {money(lo)}-{money(hi)}: "
            f"uncertainty widened (log-sd +{e['widened_by']:.2f})",
        )
    if result.calibration:
        c = result.calibration
        t.add_row("calibration", f"spread x{c['scale']:.2f} ({c['method']}; n={c['n']}: {c['calibration_set']})")
    t.add_row("elapsed", f"{result.elapsed_ms:.1f} ms")
    out.print(t)
    for note in result.notes:
        if not (result.extrapolation and note == result.extrapolation.get("note")):
            out.print(f"note: {note}")
    if not result.approved:
        print_suggestions(result)


def print_suggestions(result: Any) -> None:
    """Resubmission advice under a rejection: each change was approved by a fresh simulation."""
    out = console()
    if not result.suggestions:
        out.print("suggestions: none found (no budget, audience or duration change within range passes)")
        return
    out.print("suggestions (re-submit with one of these changes; each was approved by a fresh simulation):")
    for s in result.suggestions:
        change = ", ".join(f"{k} {v:,}" for k, v in s.changes.items())
        out.print(f"  {change}  -> confidence {percent(s.confidence_score, 1)}")
