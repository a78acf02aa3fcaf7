"""The live mirror's decision (deviation.py) and the SimPy mirror agent; no Redis here.

Streams are synthetic and seeded: a linear projection (conversions, spend and revenue at a steady
rate, a +-15% band) and cumulative bid events every 5 minutes drawn from it, with Poisson
conversions and gamma order values, and the seed's faults switched on at a given hour.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.synctwin.mirror.agent import PAUSE_REASON, MirrorBook
from agents.synctwin.mirror.deviation import (
    EVENT_FIELDS,
    InvalidEvent,
    MirrorConfig,
    MirrorState,
    ProjectionCurve,
    apply_event,
    parse_event,
)
from harness.runner import run_scenario
from scenarios.loader import scenario_from_dict

LAUNCH = 1_767_225_600.0
STEP = 300.0  # seconds between bid events
RATE, CPA, AOV = 40.0, 10.0, 60.0  # conversions an hour, cost and order value per conversion
CFG = MirrorConfig()


def projection(
    cid: str = "c", rate: float = RATE, spread: float = 0.15, days: int = 30, launch: float = LAUNCH
) -> dict:
    """A gate-shaped projection: cumulative p10/p50/p90 at every hour."""
    points = []
    for h in range(days * 24 + 1):
        c = rate * h
        point = {"t_hours": float(h)}
        for metric, v in (("conversions", c), ("spend", c * CPA), ("revenue", c * AOV)):
            point |= {f"{metric}_p10": v * (1 - spread), f"{metric}_p50": v, f"{metric}_p90": v * (1 + spread)}
        points.append(point)
    return {"campaign_id": cid, "launch_ts": launch, "horizon_days": days, "points": points}


CURVE = ProjectionCurve.from_projection(projection())


def stream(
    seed: int, hours: float = 72, fault: str | None = None, at: float = 30.0, rate: float = RATE
) -> list[tuple[str, float, tuple[float, ...]]]:
    """(event_id, ts, cumulative values) every STEP seconds; `fault` starts at hour `at`."""
    rng = np.random.default_rng(seed)
    t = np.arange(STEP, hours * 3600 + 1, STEP)
    after = t / 3600 > at
    lam = np.full(len(t), rate * STEP / 3600)
    spend = np.full(len(t), rate * CPA * STEP / 3600)
    if fault == "cvr_drop":
        lam = np.where(after, lam * 0.7, lam)
    elif fault == "runaway_spend":
        spend = np.where(after, spend * 10, spend)
    conv = rng.poisson(lam)
    orders = np.where(conv > 0, rng.gamma(np.maximum(conv, 1) / 0.35**2, AOV * 0.35**2), 0.0)
    cs, cc, cr = np.cumsum(spend), np.cumsum(conv).astype(float), np.cumsum(orders)
    return [
        (f"e{i}", LAUNCH + float(t[i]), (float(cs[i]), float(cc[i]) * 50, float(cc[i]) * 2, float(cc[i]), float(cr[i])))
        for i in range(len(t))
    ]


def run(events, cfg: MirrorConfig = CFG, curve: ProjectionCurve = CURVE):
    """Apply in order; (state, [(hours, action)] of every verdict with an action)."""
    state = MirrorState("c")
    actions = []
    for event_id, ts, values in events:
        v = apply_event(state, event_id, ts, values, curve, cfg)
        if v is not None and v.action is not None:
            actions.append(((ts - LAUNCH) / 3600, v.action))
    return state, actions


def pauses(actions) -> list[float]:
    return [h for h, a in actions if a == "PAUSE"]


# ------------------------------------------------------------------------------------------ parse
GOOD = {
    "event_id": "e1",
    "campaign_id": "c",
    "ts": "1767225900.5",
    "spend": "12.5",
    "impressions": "1000",
    "clicks": "20",
    "conversions": "2",
    "revenue": "120.0",
}


def test_parse_event_reads_a_good_event() -> None:
    assert parse_event(GOOD) == ("e1", "c", 1767225900.5, (12.5, 1000.0, 20.0, 2.0, 120.0))


@pytest.mark.parametrize("name", ["event_id", "campaign_id", "ts", *EVENT_FIELDS])
def test_parse_event_names_a_missing_field(name: str) -> None:
    with pytest.raises(InvalidEvent, match=rf"missing field {name}"):
        parse_event({k: v for k, v in GOOD.items() if k != name})


@pytest.mark.parametrize("name", EVENT_FIELDS)
@pytest.mark.parametrize("bad", ["nan", "NaN", "inf", "-inf"])
def test_parse_event_names_a_non_finite_field(name: str, bad: str) -> None:
    with pytest.raises(InvalidEvent, match=rf"field {name} is not finite"):
        parse_event(GOOD | {name: bad})


@pytest.mark.parametrize("name", EVENT_FIELDS)
def test_parse_event_names_a_negative_field(name: str) -> None:
    with pytest.raises(InvalidEvent, match=rf"field {name} is negative"):
        parse_event(GOOD | {name: "-0.01"})


@pytest.mark.parametrize("name", ["ts", *EVENT_FIELDS])
@pytest.mark.parametrize("bad", ["abc", "", "1,5", None, [1]])
def test_parse_event_names_a_field_that_is_not_a_number(name: str, bad: object) -> None:
    with pytest.raises(InvalidEvent, match=rf"field {name} is not a number"):
        parse_event(GOOD | {name: bad})


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "inf"])
def test_parse_event_wants_a_positive_finite_ts(bad: str) -> None:
    with pytest.raises(InvalidEvent, match=r"field ts must be positive"):
        parse_event(GOOD | {"ts": bad})


@pytest.mark.parametrize("name", ["event_id", "campaign_id"])
def test_parse_event_refuses_empty_ids(name: str) -> None:
    with pytest.raises(InvalidEvent, match=r"empty event_id or campaign_id"):
        parse_event(GOOD | {name: ""})


# ------------------------------------------------------------------------------------ idempotence
def _without_ignored(state: MirrorState) -> dict:
    d = MirrorState.from_hash(state.campaign_id, state.to_hash()).to_hash()
    d.pop("ignored")
    d.pop("stale_run")
    return d


def test_a_duplicate_an_older_event_and_totals_going_backwards_change_nothing() -> None:
    events = stream(1, hours=12)
    state, _ = run(events)
    before = _without_ignored(state)
    last_id, last_ts, last_values = events[-1]
    spend, imp, clicks, conv, rev = last_values
    replays = [
        events[-1],  # the same event again
        events[10],  # an older one
        (last_id, last_ts, last_values),
        ("later-1", last_ts + 60, (spend - 1, imp, clicks, conv, rev)),  # spend went backwards
        ("later-2", last_ts + 60, (spend, imp, clicks, conv - 1, rev)),  # conversions went backwards
        ("later-3", last_ts + 60, (spend, imp, clicks, conv, rev - 1)),  # revenue went backwards
    ]
    for event_id, ts, values in replays:
        assert apply_event(state, event_id, ts, values, CURVE, CFG) is None
    assert _without_ignored(state) == before
    assert state.ignored == len(replays)
    assert state.stale_run == 3  # the newer events whose totals went backwards: a frozen mirror's sign
    apply_event(state, "later-4", last_ts + 120, last_values, CURVE, CFG)
    assert state.stale_run == 0 and state.last_event_id == "later-4"  # applied: the run is over


RUNAWAY = stream(7, hours=30, fault="runaway_spend", at=10.0)
RUNAWAY_PAUSE = pauses(run(RUNAWAY)[1])


def test_the_property_stream_pauses_once_in_order() -> None:
    assert len(RUNAWAY_PAUSE) == 1 and RUNAWAY_PAUSE[0] > 10.0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=st.lists(st.integers(0, len(RUNAWAY) - 1), min_size=1, max_size=3 * len(RUNAWAY)))
def test_any_order_with_duplicates_never_overshoots_and_pauses_at_most_once(order: list[int]) -> None:
    """Events arriving in any order, any number of times: the totals are those of the newest
    event applied (never above what was seen), at most one pause, never one on on-plan data."""
    seen = [RUNAWAY[i] for i in order]
    state, actions = run(seen)
    newest = max(seen, key=lambda e: e[1])
    assert (state.last_ts, state.spend, state.conversions, state.revenue) == (
        newest[1],
        newest[2][0],
        newest[2][3],
        newest[2][4],
    )
    assert state.events + state.ignored == len(seen)
    assert len(pauses(actions)) <= 1
    assert all(h > 10.0 for h in pauses(actions))  # the stream is on plan until hour 10


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(redeliver=st.lists(st.tuples(st.integers(0, len(RUNAWAY) - 1), st.integers(0, len(RUNAWAY) - 1)), max_size=200))
def test_redeliveries_give_the_state_of_the_stream_applied_once(redeliver: list[tuple[int, int]]) -> None:
    """At-least-once delivery: the stream in order, with events already applied delivered again
    at any later point. The final state is exactly that of the stream applied once."""
    extra: dict[int, list[int]] = {}
    for where, which in redeliver:
        extra.setdefault(max(where, which), []).append(min(where, which))
    seen = []
    for i, e in enumerate(RUNAWAY):
        seen.append(e)
        seen += [RUNAWAY[j] for j in extra.get(i, [])]
    state, actions = run(seen)
    once, once_actions = run(RUNAWAY)
    assert _without_ignored(state) == _without_ignored(once)
    assert pauses(actions) == pauses(once_actions) == RUNAWAY_PAUSE


# ------------------------------------------------------------------------------------- decisions
@pytest.mark.parametrize("seed", range(6))
def test_on_plan_campaigns_are_never_paused(seed: int) -> None:
    state, actions = run(stream(seed, hours=72))
    assert pauses(actions) == []
    assert state.status in ("OK", "GREY")


@pytest.mark.parametrize("seed", range(3))
def test_a_cvr_drop_is_paused_after_the_fault_not_before(seed: int) -> None:
    state, actions = run(stream(seed, hours=72, fault="cvr_drop", at=30.0))
    p = pauses(actions)
    assert len(p) == 1, actions
    assert 30.0 < p[0] <= 30.0 + 24.0
    assert state.status == "PAUSED" and state.pause_reason == "shortfall"
    assert state.paused_at == pytest.approx(p[0] * 3600)


def test_runaway_spend_is_paused_within_hours() -> None:
    state, actions = run(stream(3, hours=36, fault="runaway_spend", at=12.0))
    p = pauses(actions)
    assert len(p) == 1 and 12.0 < p[0] <= 16.0
    assert state.pause_reason == "overspend"


def test_nothing_is_decided_during_the_warm_up() -> None:
    """A campaign that spends ten times its plan and converts nothing from the start: no verdict
    at all before the warm-up ends, a pause soon after."""
    events = [
        (f"e{i}", LAUNCH + i * STEP, (RATE * CPA * 10 * i * STEP / 3600, 0.0, 0.0, 0.0, 0.0)) for i in range(1, 24 * 12)
    ]
    state = MirrorState("c")
    verdicts = []
    for event_id, ts, values in events:
        v = apply_event(state, event_id, ts, values, CURVE, CFG)
        if v is not None:
            verdicts.append(v)
        if ts - LAUNCH < CFG.warmup:
            assert v is None or (v.action is None and v.status == "WARMING_UP"), v
            assert state.status == "WARMING_UP"
    first_pause = next(v for v in verdicts if v.action == "PAUSE")
    assert CFG.warmup <= first_pause.elapsed <= CFG.warmup + (CFG.persistence + 1) * CFG.interval


def test_a_small_steady_shortfall_alerts_in_the_grey_zone_without_pausing() -> None:
    """12% under plan, exactly: above the grey threshold (10%), below the practical one (15%)."""
    events = []
    for i in range(1, 72 * 12 + 1):
        c = math.floor(0.88 * RATE * i * STEP / 3600)
        events.append((f"e{i}", LAUNCH + i * STEP, (RATE * CPA * i * STEP / 3600, c * 50, c * 2, c, c * AOV)))
    state, actions = run(events)
    assert pauses(actions) == []
    assert [a for _, a in actions] == ["GREY"]  # once, when it enters the grey zone
    assert state.status == "GREY"


def test_the_comparison_is_at_the_same_elapsed_time_not_the_final_total() -> None:
    """The seed compared the revenue so far with the projection's final total, which pauses
    every campaign in its first minute. One hour in, on plan: no deviation at all."""
    state = MirrorState("c")
    c = RATE
    apply_event(state, "e", LAUNCH + 3600, (c * CPA, c * 50, c * 2, c, c * AOV), CURVE, CFG)
    assert state.deviation == pytest.approx(0.0, abs=1e-9)


# --------------------------------------------------------------------------------- serialisation
def test_the_state_round_trips_through_a_redis_hash() -> None:
    state, _ = run(stream(2, hours=40, fault="cvr_drop", at=20.0))
    assert state.snapshots and state.events > 0
    data = state.to_hash()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in data.items())
    assert MirrorState.from_hash("c", data) == state
    assert MirrorState.from_hash("x", {}) == MirrorState("x")


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=100, deadline=None)
@given(
    st.builds(
        MirrorState,
        campaign_id=st.text(min_size=1, max_size=20),
        last_ts=finite,
        last_event_id=st.text(max_size=20),
        spend=finite,
        impressions=finite,
        clicks=finite,
        conversions=finite,
        revenue=finite,
        events=st.integers(0, 10**12),
        ignored=st.integers(0, 10**12),
        next_eval=finite,
        eval_elapsed=finite,
        eval_conversions=finite,
        cusum=finite,
        cusum_self=finite,
        breaches=st.integers(0, 100),
        status=st.sampled_from(["WARMING_UP", "OK", "GREY", "PAUSED"]),
        deviation=finite,
        paused_at=finite,
        pause_reason=st.sampled_from(["", "shortfall", "overspend"]),
        snapshots=st.lists(st.lists(finite, min_size=4, max_size=4), max_size=5),
    )
)
def test_any_state_round_trips_exactly(state: MirrorState) -> None:
    assert MirrorState.from_hash(state.campaign_id, state.to_hash()) == state


# -------------------------------------------------------------------------------- the mirror book
def test_the_book_ignores_campaigns_it_does_not_watch_and_reports_a_pause_once() -> None:
    book = MirrorBook(CFG)
    assert book.apply("c", "e1", LAUNCH + 60, (1.0, 1.0, 1.0, 1.0, 1.0)) is None  # not watched
    book.watch(projection())
    outcomes = [
        o for e in stream(3, hours=36, fault="runaway_spend", at=12.0) if (o := book.apply("c", *e)) is not None
    ]
    paused = [o for o in outcomes if o.pause]
    assert len(paused) == 1
    severity, title, message, details = paused[0].alert()
    assert (severity, title) == ("WARNING", "Auto-Rollback Triggered: c")
    assert message.startswith("Campaign performance deviating ")
    assert {"campaign_id", "deviation", "real_revenue", "projected_revenue", "action"} <= set(details)
    assert paused[0].audit(CFG.threshold)["threshold"] == CFG.threshold


def test_a_projection_without_launch_time_is_refused() -> None:
    with pytest.raises(ValueError, match="no launch_ts"):
        ProjectionCurve.from_projection(projection() | {"launch_ts": None})


# ------------------------------------------------------------------------ the SimPy mirror agent
def mirror_scenario(*, mirror: bool = True, fault: bool = True) -> object:
    """A live campaign at ~60 conversions an hour whose conversion rate drops 30% on day 1, with
    the guards that would otherwise catch it (auto-rollback, MarginGuardian) switched off."""
    return scenario_from_dict(
        {
            "name": "mirror_cvr_drop",
            "duration": "3d",
            "world": {"tick": "15m"},
            "clients": [{"id": "acme", "history": {"generate": {"platform": "meta", "daily_spend": 6000}}}],
            "campaigns": [
                {
                    "id": "acme-live",
                    "client": "acme",
                    "launch_at": "0s",
                    "strategy": {
                        "platform": "meta",
                        "audience_size": 1_600_000,
                        "cvr": 0.03,
                        "daily_budget": 11_000,
                        "gross_margin": 1.0,
                    },
                }
            ],
            "faults": [{"id": "drop", "kind": "cvr_drop", "at": "1d", "campaign": "acme-live"}] if fault else [],
            "disabled_guards": ["auto_rollback", "margin_guardian"],
            "mirror": mirror,
            "gate_paths": 2000,
        }
    )


def _mirror_records(trace):
    audits = [r for r in trace.audit if r["event_type"] == "AUTO_ROLLBACK_TRIGGERED"]
    alerts = [a for a in trace.alerts if a["title"].startswith("Auto-Rollback Triggered")]
    return audits, alerts


@pytest.mark.parametrize("seed", [0, 1])
def test_the_mirror_agent_pauses_a_cvr_drop_in_virtual_time(seed: int) -> None:
    trace = run_scenario(mirror_scenario(), seed=seed)
    c = trace.campaigns["acme-live"]
    assert c.decision == "APPROVED"
    assert c.status == "PAUSED" and c.pause_reason == PAUSE_REASON
    assert 24 * 3600 < c.paused_at <= 48 * 3600
    audits, alerts = _mirror_records(trace)
    assert len(audits) == 1 and audits[0]["campaign_id"] == "acme-live" and audits[0]["reason"] == PAUSE_REASON
    assert audits[0]["metadata"]["deviation"] > CFG.threshold
    assert len(alerts) == 1 and alerts[0]["severity"] == "WARNING"


def test_without_the_mirror_nothing_pauses_the_same_campaign() -> None:
    """The check above can fail: with the mirror off (and the guards off) the drop goes unnoticed."""
    trace = run_scenario(mirror_scenario(mirror=False), seed=0)
    c = trace.campaigns["acme-live"]
    assert c.status == "LIVE" and c.pause_reason is None
    assert _mirror_records(trace) == ([], [])


def test_the_mirror_agent_leaves_a_healthy_campaign_alone() -> None:
    trace = run_scenario(mirror_scenario(fault=False), seed=2)
    c = trace.campaigns["acme-live"]
    assert c.status == "LIVE" and c.pause_reason is None
    assert _mirror_records(trace) == ([], [])
