"""SyncFlow's guard states between workers: each guard's `to_state()` / `from_state()` (property
tests: the round trip is the identity, through JSON too, and a guard restored mid-stream decides
what the one that never stopped decides), the campaign's versioned hash (agents/syncflow/persist.py),
and two Councils on the memory ports handing a recording over mid-stream: the second continues
the first's guards and pauses at the events one Council pauses at; without the guards port it does not.
"""

from __future__ import annotations

import json
from typing import Any

import fakeredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_council import make_recording

from agents.council.build import ControlPort, MemoryGuardStore, Ports, build_council, pause_record, plan_from_parts
from agents.council.redis import RedisGuardStore
from agents.syncflow import persist
from agents.syncflow.guards import AutoRollback, BudgetEmergency, Guard, GuardState, MarginGuardian
from agents.syncnotify.sinks import MemorySink
from agents.syncshield.backends import InMemoryAuditStore
from synctwin.kernel.config import get_settings
from world.clock import make_environment

INTERVAL = 600.0
COLS = ("spend", "impressions", "clicks", "conversions", "revenue")  # a live event's cumulative values


def margin() -> MarginGuardian:
    return MarginGuardian("c", launched_at=0.0, gross_margin=0.4, planned_roas=3.0, order_value=50.0, persistence=2)


def rollback() -> AutoRollback:
    return AutoRollback("c", launched_at=0.0, expected_cvr=0.05, threshold=4.0)


def budget() -> BudgetEmergency:
    return BudgetEmergency("c", daily_budget=1000.0, ticks_per_day=144.0, runaway_ticks=3)


GUARDS = {"margin_guardian": margin, "auto_rollback": rollback, "budget_emergency": budget}

# per-interval increments (spend or clicks, revenue or conversions): healthy, crashed, zero
steps = st.lists(
    st.tuples(st.floats(0.0, 500.0, allow_nan=False), st.floats(0.0, 2_000.0, allow_nan=False)), max_size=60
)


def feed(guard: Guard, rows: list[tuple[float, float]], start: int = 0, totals: tuple[float, float] = (0.0, 0.0)):
    """Feed `rows` (increments) from interval `start`; the transitions fired and the totals reached."""
    a, b = totals
    out = []
    for k, (x, y) in enumerate(rows, start=start + 1):
        t = k * INTERVAL
        if isinstance(guard, BudgetEmergency):  # the day's spend so far, the tick's
            a += x
            tr = guard.evaluate(t, a % 1_100.0, x)
        else:
            a, b = a + x, b + y / (40.0 if isinstance(guard, AutoRollback) else 1.0)
            tr = guard.evaluate(t, a, b)
        out.append(None if tr is None else (tr.to_state, tr.t, tr.why, tr.detail))
    return out, (a, b)


@pytest.mark.parametrize("name", sorted(GUARDS))
@settings(max_examples=150, deadline=None)
@given(rows=steps)
def test_the_round_trip_of_a_guard_state_is_the_identity(name: str, rows: list[tuple[float, float]]) -> None:
    g = GUARDS[name]()
    feed(g, rows)
    state = g.to_state()
    assert json.loads(json.dumps(state)) == state  # JSON-ready
    again = GUARDS[name]().from_state(json.loads(json.dumps(state)))
    assert again.to_state() == state and again.state is g.state
    assert again.transitions == [] and g.to_state() == state  # the original is untouched


@pytest.mark.parametrize("name", sorted(GUARDS))
@settings(max_examples=150, deadline=None)
@given(before=steps, after=steps)
def test_a_guard_restored_mid_stream_decides_what_the_one_that_never_stopped_decides(
    name: str, before: list[tuple[float, float]], after: list[tuple[float, float]]
) -> None:
    kept = GUARDS[name]()
    _, totals = feed(kept, before)
    restored = GUARDS[name]().from_state(json.loads(json.dumps(kept.to_state())))
    assert feed(restored, after, len(before), totals)[0] == feed(kept, after, len(before), totals)[0]
    assert restored.to_state() == kept.to_state()


def test_a_fresh_guard_decides_otherwise_after_a_crash_began() -> None:
    """What the state carries: AutoRollback's CUSUM started afresh mid-crash pauses later."""
    healthy, crashed = [(1_000.0, 2_000.0)] * 12, [(1_000.0, 1_600.0)] * 12  # 5% per click, then 4%
    kept = rollback()
    _, totals = feed(kept, healthy + crashed[:2])
    fresh, restored = rollback(), rollback().from_state(kept.to_state())
    fresh.state, fresh.last = GuardState.ARMED, None  # a worker that joins mid-flight: no last check
    first = [k for k, tr in enumerate(feed(restored, crashed[2:], 14, totals)[0]) if tr]
    assert first and first == [k for k, tr in enumerate(feed(kept, crashed[2:], 14, totals)[0]) if tr]
    assert [k for k, tr in enumerate(feed(fresh, crashed[2:], 14, totals)[0]) if tr] != first


def test_from_state_refuses_what_is_not_a_state() -> None:
    with pytest.raises(KeyError):
        rollback().from_state({"state": "ARMED", "cusum": 1.0})
    with pytest.raises(ValueError):
        budget().from_state({"state": "ASLEEP", "fast_ticks": 0})


def test_the_campaign_hash_is_versioned() -> None:
    state = {"v": persist.VERSION, "launched_at": 5.0, "flow": {"day": 1}, "guards": {"auto_rollback": {"x": 1}}}
    fields = persist.encode(state)
    assert set(fields) == {"v", "launched_at", "flow", "auto_rollback"} and persist.decode(fields) == state
    with pytest.raises(ValueError, match="version 2"):
        persist.decode(fields | {"v": "2"})
    with pytest.raises(ValueError, match="no field"):
        persist.decode({k: v for k, v in fields.items() if k != "flow"})


# --- two Councils on the memory ports --------------------------------------------------------------
def _events_and_plans() -> tuple[list[Any], dict[str, Any]]:
    rows, plans = make_recording()
    events = [(r["event_id"], r["campaign_id"], float(r["ts"]), tuple(float(r[k]) for k in COLS)) for r in rows]
    return events, {
        p["campaign_id"]: plan_from_parts(p["campaign_id"], p["strategy"], p["projection"], p["baseline"], source="t")
        for p in plans
    }


def _councils(events: list[Any], plans: dict[str, Any], cut: int | None, store: Any) -> list[tuple[str, str, str]]:
    """SyncFlow alone (the mirror's states are another port's) over the recording in batches of 50;
    at batch `cut` a second Council takes every campaign over on the same guards port."""
    pauses: list[dict[str, Any]] = []
    council = None
    for k, start in enumerate(range(0, len(events), 50)):
        if council is None or k == cut:
            if council is not None:
                pauses += [pause_record(p) for p in council.ports.control.pauses]
            env = make_environment(initial_time=events[start][2])
            ports = Ports(ControlPort(), InMemoryAuditStore(), [MemorySink()], guards=store)
            council = build_council(env, get_settings(), ports, mirror=False)
            paused = {p["campaign_id"] for p in pauses}
            council.adopt([(p, p.campaign_id in paused) for p in plans.values()], at=env.now)
        chunk = events[start : start + 50]
        council.feed(chunk, at=max(council.env.now, chunk[-1][2]))
    pauses += [pause_record(p) for p in council.ports.control.pauses]
    return sorted((p["campaign_id"], p["reason"], p["event_id"]) for p in pauses)


def test_a_council_that_takes_over_on_the_guards_port_pauses_where_one_council_does() -> None:
    events, plans = _events_and_plans()
    one = _councils(events, plans, None, None)
    assert {r for _, r, _ in one} == {"AUTO_ROLLBACK", "BUDGET_EMERGENCY"}
    cuts = range(20, 34)  # before the crash (24 h), during it, and after its pause
    assert all(_councils(events, plans, cut, MemoryGuardStore()) == one for cut in cuts)
    # without the port the second Council starts its guards afresh: some cut pauses at another event
    assert any(_councils(events, plans, cut, None) != one for cut in cuts)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["v", "launched_at", "flow", "margin_guardian", "budget_emergency"]),
            st.text(max_size=30),
            min_size=1,
        ),
        min_size=1,
        max_size=6,
    )
)
def test_the_guards_hash_field_is_the_json_of_every_field_written_so_far(batches: list[dict[str, str]]) -> None:
    """RedisGuardStore assembles a campaign's value from each field's escaped text (only what
    changed is escaped again): after any sequence of commits it is json.dumps of all its fields,
    and `load` reads back exactly them (a takeover sees what was written)."""
    client = fakeredis.FakeRedis(decode_responses=True)
    store, merged = RedisGuardStore(client, "t:"), {}
    for changes in batches:
        store.pending["c1"] = dict(changes)
        pipe = client.pipeline(transaction=True)
        store.queue(pipe)
        pipe.execute()
        store.committed()
        merged |= changes
        assert client.hget("t:guards", "c1") == json.dumps(merged)
    assert RedisGuardStore(client, "t:").load(["c1"]) == {"c1": merged}


def test_margin_guardians_window_is_packed_and_a_list_written_before_still_reads() -> None:
    g = margin()
    for k in range(1, 30):
        g.evaluate(k * INTERVAL, 100.0 * k, 250.0 * k + 0.1 / 3)
    state = g.to_state()
    assert "samples" not in state and isinstance(state["samples_f64"], str)
    old = {k: v for k, v in state.items() if k != "samples_f64"} | {"samples": [list(x) for x in g.samples]}
    assert margin().from_state(old).to_state() == state  # the list form of an earlier worker
    assert list(margin().from_state(state).samples) == list(g.samples)  # bit for bit
    with pytest.raises(ValueError):
        margin().from_state(state | {"samples_f64": state["samples_f64"][:-4]})  # not whole triples
    with pytest.raises(ValueError):
        margin().from_state(state | {"samples_f64": "not base64!"})
