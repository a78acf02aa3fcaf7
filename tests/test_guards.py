"""SyncFlow's guards and the API circuit breaker as pure state machines (no SimPy, no I/O).

Each guard fires on its condition with WARMING_UP -> ARMED -> TRIGGERED and its pause reason,
stays quiet on healthy input (property tests), and never fires when DISABLED.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.syncflow.breaker import BreakerState, CircuitBreaker
from agents.syncflow.guards import AutoRollback, BudgetEmergency, GuardState, MarginGuardian, Transition

INTERVAL = 600.0  # SyncFlow's guard interval
HOUR = 3_600.0


def states(transitions: list[Transition]) -> list[tuple[str, str]]:
    return [(t.from_state, t.to_state) for t in transitions]


class Feed:
    """Feeds a guard per-interval increments as the cumulative totals SyncFlow passes it."""

    def __init__(self, guard: MarginGuardian | AutoRollback) -> None:
        self.guard, self.t, self.a, self.b = guard, 0.0, 0.0, 0.0

    def __call__(self, steps: list[tuple[float, float]]) -> Transition | None:
        """The first firing, or None."""
        for x, y in steps:
            self.t, self.a, self.b = self.t + INTERVAL, self.a + x, self.b + y
            fired = self.guard.evaluate(self.t, self.a, self.b)
            if fired is not None:
                return fired
        return None


def feed_margin(g: MarginGuardian, steps: list[tuple[float, float]]) -> Transition | None:
    return Feed(g)(steps)


# --- MarginGuardian ----------------------------------------------------------------------------------


def margin_guard(**kw: object) -> MarginGuardian:
    args = {
        "launched_at": 0.0,
        "gross_margin": 0.35,
        "warmup": 2 * HOUR,
        "window": 3 * HOUR,
        "tolerance": 0.05,
        "persistence": 3,
    } | kw
    return MarginGuardian("c", **args)  # type: ignore[arg-type]


def test_margin_guardian_pauses_a_campaign_that_loses_money() -> None:
    g = margin_guard()
    feed = Feed(g)
    healthy = [(100.0, 100.0 * 1.3 / 0.35)] * 30  # margin +30% of spend
    losing = [(100.0, 100.0 * 0.8 / 0.35)] * 30  # margin -20%
    assert feed(healthy) is None
    assert g.state is GuardState.ARMED
    fired = feed(losing)
    assert fired is not None and g.state is GuardState.TRIGGERED and g.pause_reason == "MARGIN_GUARDIAN"
    assert 2 * HOUR <= fired.t - 30 * INTERVAL <= 3 * HOUR  # as the 3-hour window fills with losses
    assert states(g.transitions) == [("WARMING_UP", "ARMED"), ("ARMED", "TRIGGERED")]
    assert fired.detail["margin_ratio"] < -0.05 and "3 checks in a row" in fired.why
    assert g.evaluate(1e9, 1e9, 0.0) is None  # a triggered guard stays quiet


def test_margin_guardian_says_nothing_during_its_warm_up() -> None:
    g = margin_guard(warmup=4 * HOUR)
    fired = feed_margin(g, [(100.0, 0.0)] * 40)  # pure loss from the start
    assert fired is not None and fired.t == 4 * HOUR + 2 * INTERVAL  # armed at 4h, three checks in a row
    assert [t.t for t in g.transitions] == [4 * HOUR, 4 * HOUR + 2 * INTERVAL]


def test_one_bad_check_is_not_enough() -> None:
    g = margin_guard(window=INTERVAL * 0.5, warmup=0.0)  # a window of one interval
    steps = [(100.0, 0.0), (100.0, 0.0), (100.0, 400.0)] * 10  # two losing intervals, then a good one
    assert feed_margin(g, steps) is None and g.breaches == 0


def test_the_statistical_test_spares_a_small_campaign_its_unlucky_hours() -> None:
    """A window of a small campaign should hold ~3 orders of $60; none came. Against a plan of
    3.8 revenue per dollar that is 1.7 standard errors short: chance, not a broken margin."""
    g = margin_guard(gross_margin=0.4, planned_roas=3.8, order_value=60.0, warmup=0.0)
    assert feed_margin(g, [(8.0, 0.0)] * 60) is None
    assert g.last_ratio == -1.0 and g.last_z is not None and -3 < g.last_z < 0
    old = margin_guard(gross_margin=0.4, warmup=0.0)  # without a plan the practical threshold decides alone
    assert feed_margin(old, [(8.0, 0.0)] * 60) is not None


def test_the_statistical_test_still_sees_a_big_campaign_turn() -> None:
    """~150 orders a window: a 33% revenue drop is many standard errors."""
    g = margin_guard(planned_roas=3.7, order_value=11.5, warmup=0.0)
    fired = feed_margin(g, [(52.0, 52.0 * 3.7 / 1.5)] * 40)
    assert fired is not None and fired.detail["shortfall_z"] < -3
    assert "standard errors short of the plan" in fired.why


@settings(max_examples=60, deadline=None)
@given(
    gm=st.floats(0.1, 1.0),
    steps=st.lists(st.tuples(st.floats(0.5, 5_000.0), st.floats(0.0, 3.0)), min_size=1, max_size=60),
    plan=st.one_of(st.none(), st.floats(1.0, 12.0)),
)
def test_margin_guardian_never_fires_while_the_margin_holds(
    gm: float, steps: list[tuple[float, float]], plan: float | None
) -> None:
    """Whatever the volumes, a margin at or above -tolerance in every interval keeps it quiet."""
    g = margin_guard(gross_margin=gm, planned_roas=plan, order_value=50.0 if plan else None, warmup=0.0)
    increments = [(s, s * (0.951 + extra) / gm) for s, extra in steps]  # revenue x gm >= 95.1% of spend
    assert feed_margin(g, increments) is None
    assert g.state in (GuardState.WARMING_UP, GuardState.ARMED)


@given(steps=st.lists(st.tuples(st.floats(0.0, 1e6), st.floats(0.0, 1e6)), max_size=40))
def test_a_disabled_margin_guardian_never_fires(steps: list[tuple[float, float]]) -> None:
    g = margin_guard(enabled=False, warmup=0.0)
    assert feed_margin(g, steps) is None
    assert g.state is GuardState.DISABLED and not g.transitions


# --- AutoRollback --------------------------------------------------------------------------------------


def feed_cvr(g: AutoRollback, steps: list[tuple[float, float]]) -> Transition | None:
    return Feed(g)(steps)


def test_auto_rollback_fires_on_a_conversion_crash() -> None:
    g = AutoRollback("c", launched_at=0.0, expected_cvr=0.04, drop=0.3, threshold=12.0, warmup=HOUR)
    rng = np.random.default_rng(1)
    on_plan = [(2_000.0, float(rng.poisson(80))) for _ in range(30)]
    crashed = [(2_000.0, float(rng.poisson(56))) for _ in range(30)]  # -30%
    feed = Feed(g)
    assert feed(on_plan) is None and g.state is GuardState.ARMED
    fired = feed(crashed)
    assert fired is not None and g.pause_reason == "AUTO_ROLLBACK"
    assert states(g.transitions) == [("WARMING_UP", "ARMED"), ("ARMED", "TRIGGERED")]
    assert fired.detail["cusum"] > 12.0 and fired.detail["realized_cvr"] < 0.04 * 0.85
    assert fired.t - 30 * INTERVAL <= 4 * HOUR  # the chaos drill's deadline


def test_fewer_clicks_at_the_same_rate_is_not_a_crash() -> None:
    """A CPM shock buys fewer clicks; the rate per click is unchanged: no rollback."""
    g = AutoRollback("c", launched_at=0.0, expected_cvr=0.04, warmup=0.0)
    assert feed_cvr(g, [(2_000.0, 80.0)] * 10 + [(700.0, 28.0)] * 100) is None


@settings(max_examples=60, deadline=None)
@given(
    cvr=st.floats(0.001, 0.5),
    steps=st.lists(st.tuples(st.floats(0.0, 50_000.0), st.floats(0.85, 2.0)), min_size=1, max_size=80),
)
def test_auto_rollback_never_fires_at_85_percent_of_plan_or_better(
    cvr: float, steps: list[tuple[float, float]]
) -> None:
    """Each interval's CUSUM step is <= 0 when conversions >= 85% of plan (log(0.7) vs 0.3): it stays at 0."""
    g = AutoRollback("c", launched_at=0.0, expected_cvr=cvr, warmup=0.0)
    assert feed_cvr(g, [(c, c * cvr * share) for c, share in steps]) is None
    assert g.cusum == 0.0


def test_a_disabled_auto_rollback_never_fires() -> None:
    g = AutoRollback("c", launched_at=0.0, expected_cvr=0.04, warmup=0.0, enabled=False)
    assert feed_cvr(g, [(10_000.0, 0.0)] * 50) is None and g.state is GuardState.DISABLED


def test_auto_rollback_rejects_rates_outside_zero_one() -> None:
    with pytest.raises(ValueError):
        AutoRollback("c", launched_at=0.0, expected_cvr=1.5)


# --- BudgetEmergency ----------------------------------------------------------------------------------

TICKS = 1_440.0


def feed_budget(g: BudgetEmergency, per_tick: list[float]) -> tuple[Transition | None, float]:
    """Ticks of spend within one day; (the firing, the day's spend through the firing tick)."""
    today = 0.0
    for k, s in enumerate(per_tick, start=1):
        today += s
        fired = g.evaluate(k * 60.0, today, s)
        if fired is not None:
            return fired, today
    return None, today


@settings(max_examples=80, deadline=None)
@given(budget=st.floats(1.0, 1e6), runaway=st.floats(3.5, 144.0), already=st.floats(0.0, 1.0))
def test_budget_emergency_stops_a_runaway_before_110_percent(budget: float, runaway: float, already: float) -> None:
    """It judges the rate, not only the total: a runaway is stopped before the day passes 110%
    of the budget (the pause reaches the platform within the tick), and within `runaway_ticks`
    ticks however much budget is left. Only a runaway buying more than a tenth of a day's budget
    in ONE tick (> 144x the pace at minute ticks) could cross the cap before any guard sees it."""
    g = BudgetEmergency("c", daily_budget=budget, ticks_per_day=TICKS)
    assert g.state is GuardState.ARMED  # no warm-up: money is at stake from the first tick
    pace = budget / TICKS
    normal = [pace] * int(already * TICKS)
    fired, today = feed_budget(g, [*normal, *[pace * runaway] * int(TICKS)])
    assert fired is not None and g.pause_reason == "BUDGET_EMERGENCY"
    assert states(g.transitions) == [("ARMED", "TRIGGERED")]
    assert today <= 1.10 * budget * (1 + 1e-9)
    assert fired.t <= (len(normal) + 5) * 60.0


@settings(max_examples=60, deadline=None)
@given(budget=st.floats(1.0, 1e6), shares=st.lists(st.floats(0.0, 2.9), min_size=1, max_size=1440))
def test_budget_emergency_is_quiet_within_the_budget(budget: float, shares: list[float]) -> None:
    """Bursty but below 3x the pace, and never past the budget: no pause."""
    pace = budget / TICKS
    ticks, today = [], 0.0
    for s in shares:
        if today + s * pace > budget:
            break
        ticks.append(s * pace)
        today += s * pace
    g = BudgetEmergency("c", daily_budget=budget, ticks_per_day=TICKS)
    assert feed_budget(g, ticks)[0] is None and g.state is GuardState.ARMED


def test_a_disabled_budget_emergency_never_fires() -> None:
    g = BudgetEmergency("c", daily_budget=100.0, ticks_per_day=TICKS, enabled=False)
    assert feed_budget(g, [50.0] * 100)[0] is None and g.state is GuardState.DISABLED


# --- the circuit breaker ------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_breaker_closed_open_half_open_closed() -> None:
    clock = FakeClock()
    b = CircuitBreaker("meta", clock, failure_threshold=2, reset_timeout=60.0)
    assert b.allow() and b.state is BreakerState.CLOSED
    b.failure("timeout")
    assert b.state is BreakerState.CLOSED and b.allow()  # one failure is not a pattern
    clock.t = 10.0
    b.failure("timeout")
    assert b.state is BreakerState.OPEN and not b.allow()
    clock.t = 69.0
    assert not b.allow()  # still inside the reset timeout
    clock.t = 70.0
    assert b.allow() and b.state is BreakerState.HALF_OPEN  # the probe
    assert not b.allow()  # one probe at a time
    b.success()
    assert b.state is BreakerState.CLOSED and b.failures == 0 and b.allow()
    assert [(t.from_state, t.to_state, t.t) for t in b.transitions] == [
        ("CLOSED", "OPEN", 10.0),
        ("OPEN", "HALF_OPEN", 70.0),
        ("HALF_OPEN", "CLOSED", 70.0),
    ]


def test_a_failed_probe_reopens_the_breaker_for_another_timeout() -> None:
    clock = FakeClock()
    b = CircuitBreaker("tiktok", clock, failure_threshold=1, reset_timeout=30.0)
    b.failure("down")
    clock.t = 30.0
    assert b.allow() and b.state is BreakerState.HALF_OPEN
    b.failure("still down")
    assert b.state is BreakerState.OPEN and "probe failed" in b.transitions[-1].why
    clock.t = 59.0
    assert not b.allow()
    clock.t = 60.0
    assert b.allow()
    assert [t.to_state for t in b.transitions] == ["OPEN", "HALF_OPEN", "OPEN", "HALF_OPEN"]


@given(outcomes=st.lists(st.booleans(), max_size=50), threshold=st.integers(1, 5))
def test_the_breaker_only_opens_after_enough_failures_in_a_row(outcomes: list[bool], threshold: int) -> None:
    clock = FakeClock()
    b = CircuitBreaker("google", clock, failure_threshold=threshold, reset_timeout=math.inf)
    run = 0
    for ok in outcomes:
        if b.state is not BreakerState.CLOSED:
            break
        if ok:
            b.success()
            run = 0
        else:
            b.failure("x")
            run += 1
        assert (b.state is BreakerState.OPEN) == (run >= threshold)
