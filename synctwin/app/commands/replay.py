"""`synctwin replay SCENARIO [--seed S] [--json]`, `synctwin replay --list`, and
`synctwin replay --bids EVENTS.jsonl --plans PLANS.jsonl [--json]` (a recorded stream through the
Council `synctwin run` runs, in virtual time)."""

from __future__ import annotations

import argparse
from typing import Any

from synctwin.app.console import console, emit, fit_names, say, table
from synctwin.app.progress import ProgressBar, interactive
from synctwin.app.reports import check_report_path, write_report
from synctwin.kernel.config import get_settings
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.formatting import duration, money, number, percent

EXIT_FAILED = 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", nargs="?", metavar="SCENARIO", help="a built-in's name or a scenario YAML file")
    p.add_argument(
        "--bids",
        metavar="EVENTS.jsonl",
        help="instead of a scenario: a recorded bid stream, one event "
        "per line (the stream's fields), decided by the production Council in virtual time",
    )
    p.add_argument(
        "--plans",
        metavar="PLANS.jsonl",
        help="with --bids: what the gate left per campaign, one per "
        "line: campaign_id, strategy, projection (or null), optional baseline",
    )
    p.add_argument("--list", action="store_true", help="print the built-in scenarios, one per line, name first")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0): same seed, same trace")
    p.add_argument("--json", action="store_true", help="print the trace summary as one JSON document")
    p.add_argument(
        "--audit-log",
        metavar="FILE",
        help="append the run's audit records (decisions, launches, pauses, SHADOW_OUTCOME, CAMPAIGN_OUTCOME) to this "
        "hash-chained JSONL log, at their virtual times, so `synctwin kpis`, `tune` and `review` can read a replay",
    )
    p.add_argument("--series", action="store_true", help="with --json: include hourly time series per campaign")
    p.add_argument(
        "--report",
        metavar="FILE.html",
        help="also write a self-contained HTML page with plots: each "
        "campaign's real run against its projection fan, faults and pauses, and the timeline",
    )


def run(args: argparse.Namespace) -> int:
    from scenarios.loader import list_builtins, load_scenario

    if args.bids or args.plans:
        return run_recording(args)
    if args.list:
        for name, description in list_builtins():
            print(f"{name}  {description}")
        return 0
    if not args.scenario:
        raise InvalidInput("give a SCENARIO (a built-in's name or a YAML file), or --list")
    check_report_path(args.report)
    from harness.runner import run_scenario

    scenario = load_scenario(args.scenario)
    # a bar only for runs long enough to be waited for (more than two virtual days)
    show = interactive(args.json) and scenario.duration > PROGRESS_MIN_VIRTUAL_S
    with ProgressBar(f"replay {scenario.name}", enabled=show, unit="virtual hours") as bar:
        trace = run_scenario(
            scenario, args.seed, progress=(lambda t, total: bar.update(t / 3600.0, total / 3600.0)) if show else None
        )
    if args.report:
        from synctwin.app.reports.replay import build_replay_page

        write_report(args.report, build_replay_page(trace))
    if args.audit_log:
        append_audit(args.audit_log, trace.audit)
    emit(args.json, trace.to_dict(series=args.series), lambda _: print_trace(trace), args.report)
    return 0 if trace.passed else EXIT_FAILED


PROGRESS_MIN_VIRTUAL_S = 2 * 86_400.0


def print_trace(trace: Any) -> None:
    out = console()
    say(
        out,
        f"[bold]{trace.scenario}[/] seed {trace.seed}: {duration(trace.duration_s)} of virtual time, "
        f"{trace.ticks:,} ticks in {trace.wall_s:.2f} s wall",
        indent=0,
    )
    t = table(
        "campaign", "confidence", "status", "spend", "revenue", "uplift", "top day",
        right=("confidence", "spend", "revenue", "uplift", "top day"),
        title="campaigns",
    )  # fmt: skip
    fit_names(t, list(trace.campaigns), out.width)
    for c in trace.campaigns.values():
        t.add_row(
            c.campaign_id,
            percent(c.confidence, 1) if c.confidence is not None else "-",
            c.status.lower() if c.decision != "REJECTED" else "rejected",
            money(c.final.get("spend")),
            money(c.final.get("revenue")),
            money(c.net_profit_uplift),
            percent(c.max_daily_spend_share),
        )
    out.print(t)
    for c in trace.campaigns.values():
        if c.pause_reason:
            say(out, f"{c.campaign_id} paused by {c.pause_reason} at {duration(c.paused_at)}", indent=2)
    margins = sorted({c.campaign_id for c in trace.campaigns.values() if c.gross_margin_default})
    if margins:
        say(out, f"gross margin 100% (default; set gross_margin) for {', '.join(margins)}", indent=2)
    if trace.timeline:
        out.print("[bold]timeline[/]")
        for e in trace.timeline[:40]:
            say(out, f"{duration(e['t']):>8}  {e['kind']:<18} {timeline_fields(e)}", indent=2)
        if len(trace.timeline) > 40:
            say(out, f"... {len(trace.timeline) - 40} more (see --json)", indent=2)
    out.print("[bold]expectations[/]")
    for e in trace.expectations:
        mark = "[green]PASS[/]" if e.passed else "[bold red]FAIL[/]"
        say(out, f"{mark} {e.expectation}: {e.message}", indent=2)
    if not trace.expectations:
        out.print("  (none)")


def timeline_fields(e: dict[str, Any]) -> str:
    """A timeline entry's fields as key=value, floats rounded for reading."""
    return " ".join(f"{k}={number(v) if isinstance(v, float) else v}" for k, v in e.items() if k not in ("t", "kind"))


def append_audit(path: str, records: list[dict[str, Any]]) -> None:
    """Continue the file's hash chain with the replay's records, each at its own virtual time (the
    in-memory chain's seq and hashes cannot be copied: the file may already hold records)."""
    from agents.syncshield.backends import JsonlAuditStore

    at = {"ts": 0.0}
    store = JsonlAuditStore(path, clock=lambda: at["ts"])
    for rec in records:
        at["ts"] = rec["ts"]
        store.append(
            rec["event_type"],
            **{k: rec.get(k) for k in ("client_id", "campaign_id", "reason")},
            metadata=rec.get("metadata") or {},
        )


def run_recording(args: argparse.Namespace) -> int:
    """The Council over a recording: its pauses (campaign_id, reason, event_id, ts); exit 0."""
    if not (args.bids and args.plans):
        raise InvalidInput("--bids and --plans go together")
    if args.scenario:
        raise InvalidInput("give a SCENARIO or --bids/--plans, not both")
    from harness.recording import load_events, load_plans, replay_recording

    plans = load_plans(args.plans)
    events = load_events(args.bids)
    settings = get_settings()
    emit(args.json, replay_recording(events, plans, settings, batch=settings.mirror_batch), _print_recording)
    return 0


def _print_recording(out: dict[str, Any]) -> None:
    con = console()
    con.print(
        f"{out['events']:,} events of {out['campaigns']} planned campaigns: {len(out['pauses'])} pauses, "
        f"{len(out['dead'])} dead letters, {out['alerts']} alerts, {out['audit_records']} audit records"
    )
    for p in out["pauses"]:
        con.print(f"  PAUSE {p['campaign_id']}  {p['reason']}  at event {p['event_id']} (ts {p['ts']:.0f})")
