"""Plausibility limits of a live bid event, beside `parse_event`'s syntax checks. Pure functions.

A well-formed event can still be impossible, and one used to freeze a campaign: the mirror applies
totals only forward, so a `ts` weeks ahead made every later event "out of order", a spend of 1e308
every later one "decreasing". Refused events go to the dead letters, the reason naming the bound:

- time: `ts` at most `max_clock_skew_s` ahead of the worker's clock, and inside the flight (launch
  minus that skew to launch + horizon + `flight_grace_s`);
- the funnel: clicks <= impressions, conversions <= clicks;
- size: spend, revenue and conversions at most `max_plan_factor` x the projection's p90 at the
  event's elapsed time plus `plan_slack_s`, every field at most `max_counter`. Wide on purpose: a
  campaign really spending ten times its budget must reach the guards; only the absurd is refused.

`bounds_for` does the per-campaign work once a batch; `check` is a few comparisons per event and
reads the projection only for an event above a bound's launch-time floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agents.synctwin.mirror.deviation import EVENT_FIELDS, ProjectionCurve

PLANNED = (("spend", 0), ("revenue", 4), ("conversions", 3))  # metrics the projection bands, index in values


@dataclass(frozen=True, slots=True)
class EventLimits:
    max_clock_skew_s: float = 300.0  # ts at most this far ahead of the worker's clock (and before launch)
    flight_grace_s: float = 86_400.0  # ts at most launch + horizon + this
    max_plan_factor: float = 100.0  # spend, revenue, conversions at most this x the projection's p90 ...
    plan_slack_s: float = 86_400.0  # ... at the event's elapsed time plus this
    max_counter: float = 1e15  # any cumulative field
    stuck_after: int = 20  # alert when this many newer events in a row are ignored as decreasing (0: never)


@dataclass(frozen=True, slots=True)
class Bounds:
    """One campaign's limits for one batch (the worker's clock read once)."""

    now: float
    launch_ts: float
    end_ts: float  # launch + horizon
    earliest: float
    latest: float
    floors: tuple[float, float, float]  # spend, revenue, conversions always allowed (the bound at launch)
    curve: ProjectionCurve | None
    limits: EventLimits


def plan_floors(curve: ProjectionCurve | None, limits: EventLimits) -> tuple[float, float, float]:
    """The spend, revenue and conversions always allowed: the bounds at launch (they only grow)."""
    if curve is None:
        return (limits.max_counter,) * 3
    spend, revenue, conversions = (_plan_bound(curve, m, 0.0, limits) for m, _ in PLANNED)
    return spend, revenue, conversions


def bounds_for(
    launch_ts: float,
    end_ts: float,
    curve: ProjectionCurve | None,
    now: float,
    limits: EventLimits,
    floors: tuple[float, float, float] | None = None,
) -> Bounds:
    """The bounds of a campaign launched at `launch_ts` whose flight ends at `end_ts`; without a
    curve, only time, the funnel and `max_counter` are checked. `floors`: `plan_floors(curve,
    limits)`, when the caller keeps them with its curve."""
    skew, floors = limits.max_clock_skew_s, plan_floors(curve, limits) if floors is None else floors
    latest = min(now + skew, end_ts + limits.flight_grace_s)
    return Bounds(now, launch_ts, end_ts, launch_ts - skew, latest, floors, curve, limits)


def _plan_bound(curve: ProjectionCurve, metric: str, elapsed: float, limits: EventLimits) -> float:
    """The largest plausible cumulative `metric` at `elapsed` (max_counter when the band is empty)."""
    if curve.at(metric, curve.horizon_hours)[2] <= 0:
        return limits.max_counter
    p90 = curve.at(metric, (max(elapsed, 0.0) + limits.plan_slack_s) / 3600.0)[2]
    return min(limits.max_plan_factor * p90, limits.max_counter)


def check(b: Bounds, ts: float, values: tuple[float, ...]) -> str | None:
    """Why the event is impossible, or None."""
    if ts > b.latest or ts < b.earliest:
        return _time_reason(b, ts)
    spend, impressions, clicks, conversions, revenue = values
    if clicks > impressions:
        return f"clicks ({clicks:g}) above impressions ({impressions:g})"
    if conversions > clicks:
        return f"conversions ({conversions:g}) above clicks ({clicks:g})"
    cap = b.limits.max_counter
    if spend > b.floors[0] or revenue > b.floors[1] or conversions > b.floors[2] or impressions > cap:
        return _size_reason(b, ts, values)
    return None


def suspects(bounds: Sequence[Bounds], at: np.ndarray, ts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`check`'s comparisons for a batch at once (`at`: each event's index in `bounds`; `values`:
    (n, 5)): False where `check` passes the event, True where it may refuse it and must be asked."""
    edges = np.array([(b.earliest, b.latest, *b.floors) for b in bounds]).reshape(-1, 5)[at]
    spend, impressions, clicks, conversions, revenue = values.T
    cap = bounds[0].limits.max_counter if bounds else np.inf
    out = (ts < edges[:, 0]) | (ts > edges[:, 1]) | (clicks > impressions) | (conversions > clicks)
    out |= (spend > edges[:, 2]) | (revenue > edges[:, 3]) | (conversions > edges[:, 4])
    return out | (impressions > cap)


def _time_reason(b: Bounds, ts: float) -> str:
    lim = b.limits
    if ts > b.now + lim.max_clock_skew_s:
        hint = "; milliseconds instead of seconds?" if ts > 1e11 else ""
        return (
            f"field ts is {_span(ts - b.now)} ahead of the worker's clock (at most "
            f"{_span(lim.max_clock_skew_s)}: SYNCTWIN_MAX_CLOCK_SKEW_S){hint}"
        )
    if ts < b.earliest:
        return (
            f"field ts is {_span(b.launch_ts - ts)} before the campaign's launch ({b.launch_ts:.0f}; at most "
            f"{_span(lim.max_clock_skew_s)} early)"
        )
    return (
        f"field ts is {_span(ts - b.end_ts)} after the campaign's flight ended ({b.end_ts:.0f}; at most "
        f"{_span(lim.flight_grace_s)} late: SYNCTWIN_MIRROR_FLIGHT_GRACE_S)"
    )


def _size_reason(b: Bounds, ts: float, values: tuple[float, ...]) -> str | None:
    lim = b.limits
    for name, v in zip(EVENT_FIELDS, values, strict=True):
        if v > lim.max_counter:
            return f"field {name} is absurd ({v:g} > {lim.max_counter:g})"
    if b.curve is None:
        return None
    elapsed = ts - b.launch_ts
    for metric, i in PLANNED:
        bound = _plan_bound(b.curve, metric, elapsed, lim)
        if values[i] > bound:
            return (
                f"field {metric} is implausible: {values[i]:g} at {_span(max(elapsed, 0.0))} after launch, above "
                f"{lim.max_plan_factor:g} x the projection's p90 {_span(lim.plan_slack_s)} later ({bound:g}; "
                f"SYNCTWIN_MIRROR_MAX_PLAN_FACTOR)"
            )
    return None


def _span(seconds: float) -> str:
    s = abs(seconds)
    if s < 120:
        return f"{s:.0f} s"
    if s < 7_200:
        return f"{s / 60:.1f} min"
    if s < 172_800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86_400:.1f} days"
