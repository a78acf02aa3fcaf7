"""`synctwin kpis`: the product's success metrics from the audit log, each with its count and goal.

What counts (records since `--since`, by record time; docs/operations-and-metrics.md):
- rejection share: campaigns whose latest decision is CAMPAIGN_REJECTED; goal 15-25%.
- false negatives: rejected campaigns whose latest final SHADOW_OUTCOME in the window made money
  (the rejection may be older); goal < 5%. A provisional outcome (`final: false`) can still flip.
- false positives: approved campaigns (CAMPAIGN_APPROVED anywhere in the log, or the outcome says
  so) whose latest final CAMPAIGN_OUTCOME/COMPLETED in the window lost money; goal < 10%.
- auto-rollbacks: campaigns with AUTO_ROLLBACK_TRIGGERED or CAMPAIGN_PAUSED over those with
  CAMPAIGN_LAUNCHED; goal < 2%.
- chaos pass rate: drills passed / drills run over CHAOS_TEST_COMPLETED; goal > 95%."""

from __future__ import annotations

import argparse
import datetime as dt
import math
from typing import Any

from synctwin.app.commands.review import add_audit_source, finite_number, load_records, parse_since
from synctwin.app.console import console, emit, say, table
from synctwin.kernel.formatting import percent, plural

GOALS = {
    "rejection_share": ("15-25%", lambda v: 0.15 <= v <= 0.25),
    "false_negative_rate": ("< 5%", lambda v: v < 0.05),
    "false_positive_rate": ("< 10%", lambda v: v < 0.10),
    "auto_rollback_share": ("< 2%", lambda v: v < 0.02),
    "chaos_pass_rate": ("> 95%", lambda v: v > 0.95),
}
OUTCOME_EVENTS = ("CAMPAIGN_OUTCOME", "CAMPAIGN_COMPLETED")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_audit_source(p, "the hash-chained JSONL audit log")
    p.add_argument(
        "--since", metavar="DATE", help="ISO date or date-time (UTC unless it has an offset); default: the whole log"
    )
    p.add_argument("--json", action="store_true", help="print the KPIs as one JSON document")


def _metric(name: str, num: int, den: int, what: str) -> dict[str, Any]:
    value = num / den if den else None
    goal, ok = GOALS[name]
    return {
        "value": value,
        "count": num,
        "of": den,
        "goal": goal,
        "met": None if value is None else ok(value),
        "counts": what,
    }


def kpis(records: list[dict[str, Any]], since: dt.datetime | None = None) -> dict[str, Any]:
    """The five KPIs from audit records (see the module docstring for what counts)."""
    start = since.timestamp() if since is not None else -math.inf
    recs = [r for r in records if isinstance(r.get("ts"), int | float) and r["ts"] >= start]

    def campaigns(*kinds: str, among: list[dict[str, Any]] = recs) -> set[str]:
        return {r["campaign_id"] for r in among if r.get("event_type") in kinds and r.get("campaign_id")}

    # an outcome arrives a flight after its decision: the decision may be older than the window
    approved_ever, rejected_ever = (
        campaigns(kind, among=records) for kind in ("CAMPAIGN_APPROVED", "CAMPAIGN_REJECTED")
    )
    # one decision per campaign, its latest: a campaign gated again (another model, a resubmission)
    # is still one campaign approved or rejected, not two decisions
    latest = {
        r["campaign_id"]: r["event_type"]
        for r in recs
        if r.get("event_type") in ("CAMPAIGN_APPROVED", "CAMPAIGN_REJECTED") and r.get("campaign_id")
    }
    decisions = len(latest)
    shadows: dict[str, dict[str, Any]] = {}
    outcomes: dict[str, dict[str, Any]] = {}
    for r in recs:
        meta = r.get("metadata") or {}
        if (
            r.get("event_type") == "SHADOW_OUTCOME"
            and r.get("campaign_id") in rejected_ever
            and meta.get("final") is not False
        ):
            shadows[r["campaign_id"]] = meta
        elif (
            r.get("event_type") in OUTCOME_EVENTS
            and _realized(meta)
            and (r.get("campaign_id") in approved_ever or meta.get("decision") == "APPROVED")
        ):
            outcomes[r["campaign_id"]] = meta
    launched = campaigns("CAMPAIGN_LAUNCHED")
    rolled = campaigns("AUTO_ROLLBACK_TRIGGERED", "CAMPAIGN_PAUSED") & launched
    chaos = [r.get("metadata") or {} for r in recs if r.get("event_type") == "CHAOS_TEST_COMPLETED"]
    n_rej = sum(kind == "CAMPAIGN_REJECTED" for kind in latest.values())
    return {
        "since": since.isoformat(timespec="seconds") if since is not None else None,
        "records": len(recs),
        "rejection_share": _metric(
            "rejection_share", n_rej, decisions, "CAMPAIGN_REJECTED among CAMPAIGN_APPROVED + CAMPAIGN_REJECTED records"
        ),
        "false_negative_rate": _metric(
            "false_negative_rate",
            sum(bool(m.get("profitable")) for m in shadows.values()),
            len(shadows),
            "rejected campaigns whose latest final SHADOW_OUTCOME was profitable",
        ),
        "false_positive_rate": _metric(
            "false_positive_rate",
            sum(m["net_profit_uplift"] <= 0 for m in outcomes.values()),
            len(outcomes),
            "approved campaigns whose final realized outcome (CAMPAIGN_OUTCOME) lost money",
        ),
        "auto_rollback_share": _metric(
            "auto_rollback_share",
            len(rolled),
            len(launched),
            "launched campaigns with AUTO_ROLLBACK_TRIGGERED or CAMPAIGN_PAUSED",
        ),
        "chaos_pass_rate": _metric(
            "chaos_pass_rate",
            sum(int(m.get("passed", 0)) for m in chaos),
            sum(int(m.get("total_tests", 0)) for m in chaos),
            "drills passed over CHAOS_TEST_COMPLETED records",
        ),
    }


def _realized(meta: dict[str, Any]) -> bool:
    """A final realized outcome with a number for its uplift."""
    return finite_number(meta.get("net_profit_uplift")) is not None and meta.get("final") is not False


KPI_NAMES = ("rejection_share", "false_negative_rate", "false_positive_rate", "auto_rollback_share", "chaos_pass_rate")


def run(args: argparse.Namespace) -> int:
    from synctwin.infra.metrics import record_kpis

    since = parse_since(args.since, dt.datetime.now(dt.UTC)) if args.since else None  # before reading anything
    records, source = load_records(args)
    result = {"source": source, **kpis(records, since)}
    record_kpis(result)
    emit(args.json, result, print_kpis)
    return 0


def print_kpis(d: dict[str, Any]) -> None:
    out = console()
    say(
        out,
        f"[bold]Success metrics[/] ({d['source']}, {plural(d['records'], 'record')}"
        + (f" since {d['since']}" if d["since"] else "")
        + ")",
        indent=0,
    )
    t = table("metric", "value", "count", "goal", "met", "what counts", right=("value", "count"))
    for name in KPI_NAMES:
        m = d[name]
        met = "-" if m["met"] is None else ("[green]yes[/]" if m["met"] else "[red]no[/]")
        t.add_row(
            name.replace("_", " "), percent(m["value"], 1), f"{m['count']}/{m['of']}", m["goal"], met, m["counts"]
        )
    out.print(t)
