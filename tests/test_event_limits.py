"""The live stream's plausibility limits (agents/synctwin/mirror/event_limits.py), as properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shared_scenarios import linear_projection

from agents.synctwin.mirror.deviation import ProjectionCurve
from agents.synctwin.mirror.event_limits import EventLimits, bounds_for, check

LAUNCH = 1_767_225_600.0
DAYS = 30
CURVE = ProjectionCurve.from_projection(linear_projection("c", launch=LAUNCH, rate=40.0, cpa=10.0, aov=60.0, days=DAYS))
END = LAUNCH + DAYS * 86_400
LIMITS = EventLimits()
NOW = END + 10 * 86_400  # the worker's clock: every event of the flight is in the past


def _event(hours: float, level: float) -> tuple[float, tuple[float, ...]]:
    """An event `hours` after launch running at `level` times the plan, with a consistent funnel."""
    conv = 40.0 * hours * level
    return LAUNCH + hours * 3600, (conv * 10.0, conv * 50.0, conv * 2.0, conv, conv * 60.0)


@settings(max_examples=300, deadline=None)
@given(hours=st.floats(0.0, DAYS * 24.0), level=st.floats(0.0, 10.0))
def test_a_campaign_running_up_to_ten_times_its_plan_is_never_refused(hours: float, level: float) -> None:
    """A real runaway must reach the mirror's tests (and be paused), not the dead letters."""
    ts, values = _event(hours, level)
    assert check(bounds_for(LAUNCH, END, CURVE, NOW, LIMITS), ts, values) is None


@settings(max_examples=300, deadline=None)
@given(hours=st.floats(0.0, DAYS * 24.0), excess=st.floats(1.001, 1e6), metric=st.sampled_from([0, 3, 4]))
def test_a_total_above_the_factor_times_the_band_a_day_later_is_refused(
    hours: float, excess: float, metric: int
) -> None:
    ts, values = _event(hours, 1.0)
    name = {0: "spend", 3: "conversions", 4: "revenue"}[metric]
    bound = LIMITS.max_plan_factor * CURVE.at(name, hours + LIMITS.plan_slack_s / 3600)[2]
    bad = list(values)
    bad[metric] = bound * excess
    if metric == 3:  # keep the funnel consistent: only the size is wrong
        bad[1], bad[2] = bad[3] * 50, bad[3] * 2
    why = check(bounds_for(LAUNCH, END, CURVE, NOW, LIMITS), ts, tuple(bad))
    assert why is not None and why.startswith(f"field {name} is ")


@given(ahead=st.floats(LIMITS.max_clock_skew_s + 1e-3, 1e12))
def test_a_ts_ahead_of_the_clock_by_more_than_the_skew_is_refused(ahead: float) -> None:
    now = LAUNCH + 86_400
    why = check(bounds_for(LAUNCH, END, CURVE, now, LIMITS), now + ahead, _event(24.0, 1.0)[1])
    assert why is not None and why.startswith("field ts is ") and "ahead of the worker's clock" in why


@given(ahead=st.floats(0.0, LIMITS.max_clock_skew_s))
def test_a_ts_within_the_skew_is_accepted(ahead: float) -> None:
    now = LAUNCH + 86_400
    assert check(bounds_for(LAUNCH, END, CURVE, now, LIMITS), now + ahead, _event(24.0, 1.0)[1]) is None


@given(conv=st.floats(0.0, 1e6), extra=st.floats(1e-6, 1e6))
def test_the_funnel_conversions_at_most_clicks_at_most_impressions(conv: float, extra: float) -> None:
    b = bounds_for(LAUNCH, END, None, NOW, LIMITS)
    ts = LAUNCH + 3600
    assert check(b, ts, (1.0, conv + extra, conv + extra, conv, 1.0)) is None
    assert "above clicks" in (check(b, ts, (1.0, conv + 2 * extra, conv, conv + extra, 1.0)) or "")
    assert "above impressions" in (check(b, ts, (1.0, conv, conv + extra, 0.0, 1.0)) or "")


def test_without_a_plan_only_the_absolute_cap_bounds_the_size() -> None:
    b = bounds_for(LAUNCH, END, None, NOW, LIMITS)
    assert check(b, LAUNCH + 3600, (1e14, 1e14, 1e13, 1e12, 1e14)) is None
    assert check(b, LAUNCH + 3600, (1e308, 1.0, 1.0, 1.0, 1.0)) == "field spend is absurd (1e+308 > 1e+15)"


def test_the_limits_come_from_the_synctwin_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.synctwin.mirror.agent import event_limits
    from synctwin.kernel.config import Settings

    for name, value in [
        ("MAX_CLOCK_SKEW_S", "60"),
        ("MIRROR_FLIGHT_GRACE_S", "3600"),
        ("MIRROR_MAX_PLAN_FACTOR", "20"),
        ("MIRROR_PLAN_SLACK_S", "7200"),
        ("MIRROR_MAX_COUNTER", "1e12"),
        ("MIRROR_STUCK_AFTER", "5"),
    ]:
        monkeypatch.setenv(f"SYNCTWIN_{name}", value)
    assert event_limits(Settings()) == EventLimits(
        max_clock_skew_s=60, flight_grace_s=3600, max_plan_factor=20, plan_slack_s=7200, max_counter=1e12, stuck_after=5
    )
    monkeypatch.setenv("SYNCTWIN_MIRROR_MAX_PLAN_FACTOR", "1")  # a factor of 1 would refuse real overspend
    with pytest.raises(ValueError, match="mirror_max_plan_factor"):
        Settings()
