"""Checking a scenario's expectations against its trace, with messages a person can act on."""

from __future__ import annotations

from harness.trace import ExpectationResult, Trace
from scenarios.schema import (
    GateExpectation,
    NeverLaunchedExpectation,
    NeverPausedExpectation,
    NoLostBidsExpectation,
    PausedExpectation,
    ProfitExpectation,
    Scenario,
    SpendCapExpectation,
)
from synctwin.kernel.formatting import duration, money, percent


def _when(t: float | None) -> str:
    return "never" if t is None else f"at {duration(t)}"


def guard_states(guards: dict[str, str]) -> str:
    """{'margin_guardian': 'DISABLED', ...} as 'margin_guardian disabled, ...' for a reader."""
    return ", ".join(f"{name} {state.lower()}" for name, state in guards.items()) or "none"


def check_expectations(scenario: Scenario, trace: Trace) -> list[ExpectationResult]:
    return [_check(e, scenario, trace) for e in scenario.expectations]


def _check(e: object, scenario: Scenario, trace: Trace) -> ExpectationResult:
    c = trace.campaigns[e.campaign]  # type: ignore[attr-defined]
    if isinstance(e, GateExpectation):
        label = f"gate {'approves' if e.decision == 'APPROVED' else 'rejects'} {c.campaign_id}"
        if e.confidence_between:
            label += f" with confidence in [{e.confidence_between[0]}, {e.confidence_between[1]}]"
        ok = c.decision == e.decision
        if ok and e.confidence_between and c.confidence is not None:
            ok = e.confidence_between[0] <= c.confidence <= e.confidence_between[1]
        got = f"got {c.decision} (confidence {percent(c.confidence, 1)})" + (
            f": {c.gate_error}" if c.gate_error else ""
        )
        return ExpectationResult(label, ok, got)
    if isinstance(e, PausedExpectation):
        label = f"{c.campaign_id} paused with {e.reason}" + (
            f" within {duration(e.within)} of {e.after}" if e.within is not None else ""
        )
        anchor = c.launched_at if e.after == "launch" else (trace.faults.get(e.after) or {}).get("start")
        if anchor is None:
            return ExpectationResult(label, False, f"{e.after} never happened (campaign {c.status.lower()})")
        if c.pause_reason is None:
            return ExpectationResult(
                label, False, f"never paused ({c.status.lower()}; guards: {guard_states(c.guards)})"
            )
        delay = c.paused_at - anchor
        ok = c.pause_reason == e.reason and delay >= 0 and (e.within is None or delay <= e.within)
        when = f"{duration(max(delay, 0))} after {e.after}" + ("" if delay >= 0 else " (before it)")
        return ExpectationResult(label, ok, f"paused with {c.pause_reason} {when}: {c.pause_detail.get('why')}")
    if isinstance(e, NeverPausedExpectation):
        label = f"{c.campaign_id} never paused"
        if c.pause_reason is None:
            return ExpectationResult(label, True, f"{c.status.lower()} to the end")
        return ExpectationResult(
            label, False, f"paused with {c.pause_reason} {_when(c.paused_at)}: {c.pause_detail.get('why')}"
        )
    if isinstance(e, NeverLaunchedExpectation):
        label = f"{c.campaign_id} never launched"
        spent = c.final.get("spend", 0.0)
        flow_saw = [
            r["event_type"]
            for r in trace.audit
            if r.get("campaign_id") == c.campaign_id
            and r["event_type"] in ("CAMPAIGN_LAUNCHED", "DEPLOY_REFUSED", "TEST_CAMPAIGN_DEPLOYED")
        ]
        ok = c.launched_at is None and not c.bids and not spent and not flow_saw
        got = (
            f"gate {c.decision or 'never asked'}, never reached SyncFlow"
            if ok
            else f"{c.status.lower()} (launched {_when(c.launched_at)}, spent {money(spent)}, "
            f"SyncFlow audited {', '.join(flow_saw) or 'nothing'})"
        )
        return ExpectationResult(label, ok, got)
    if isinstance(e, SpendCapExpectation):
        label = f"{c.campaign_id} spends at most {e.max_share:.0%} of its daily budget a day"
        share = c.max_daily_spend_share
        return ExpectationResult(
            label,
            share <= e.max_share,
            f"highest day {percent(share, 1)} of {money(c.daily_budget)} ({money(max(c.daily_spend, default=0))})",
        )
    if isinstance(e, NoLostBidsExpectation):
        return _check_bids(e, scenario, trace)
    if isinstance(e, ProfitExpectation):
        label = f"{c.campaign_id} net profit uplift >= {money(e.min_uplift)}"
        uplift = c.net_profit_uplift
        return ExpectationResult(
            label,
            uplift is not None and uplift >= e.min_uplift,
            "never launched"
            if uplift is None
            else f"realized {money(uplift)}"
            + (" (gross margin 100%: the default; set gross_margin)" if c.gross_margin_default else ""),
        )
    raise TypeError(f"unknown expectation {e!r}")


def _check_bids(e: NoLostBidsExpectation, scenario: Scenario, trace: Trace) -> ExpectationResult:
    c = trace.campaigns[e.campaign]
    label = (
        f"{c.campaign_id} loses no bid"
        + (", serves cached bids during outages" if e.cached_fallback else "")
        + f" and resumes within {duration(e.resumed_within)}"
    )
    b = c.bids
    if not b:
        return ExpectationResult(label, False, "the campaign never bid")
    problems = []
    if b["lost"]:
        problems.append(f"{b['lost']} of {b['decided']} bid decisions lost")
    accounted = b["delivered"] + b["superseded"] + b["lost"] + b["pending"]
    if accounted != b["decided"]:
        problems.append(f"bid ledger does not add up ({accounted} accounted for, {b['decided']} decided)")
    outages = [
        f
        for f in trace.faults.values()
        if f["kind"] == "api_outage"
        and f["start"] is not None
        and (f["platform"] == c.platform or f["campaign"] == c.campaign_id)
    ]
    for f in outages:
        end = f["end"]
        if end is None:
            continue
        after = [t for t in trace.recoveries.get(c.platform, []) if t >= end]
        if not after or after[0] - end > e.resumed_within:
            problems.append(
                f"bidding did not resume within {duration(e.resumed_within)} of the outage's end at {duration(end)}"
            )
    if e.cached_fallback and outages and not b["cached_intervals"]:
        problems.append("no cached bids were served during the outage")
    summary = (
        f"{b['decided']} decided: {b['delivered']} delivered, {b['superseded']} superseded, "
        f"{b['lost']} lost, {b['cached_intervals']} intervals on cached bids"
    )
    return ExpectationResult(label, not problems, "; ".join(problems) or summary)
