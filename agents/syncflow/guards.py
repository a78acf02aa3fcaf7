"""SyncFlow's spend guards: small state machines over numbers, free of SimPy and I/O.

Each guard moves WARMING_UP -> ARMED -> TRIGGERED (or stays DISABLED), each move a Transition
SyncFlow audits; time is the caller's `t`, so a replay and production run the same guard.

- MarginGuardian: the trailing window's margin (revenue x gross margin - spend) below -tolerance
  x spend for `persistence` checks in a row after a warm-up (CPA against its break-even). Given
  the plan, the window's revenue must also be `z_crit` (4) standard errors short: a small
  campaign's window holds a handful of orders, and over a month of 10-minute checks one comes up
  short by chance (at 3 standard errors a portfolio month still saw such a pause in ~15 runs).
- AutoRollback: a one-sided Poisson CUSUM on conversions per click against the plan's rate, tuned
  for a `drop` (30%) crash, that also needs the rate since the CUSUM left zero `drop / 2` below
  plan (statistical AND practical, as canary analysis does); a CPM shock (fewer clicks, same
  rate) does not trip it.
- BudgetEmergency: pauses before the day's spend can cross `cap_share` (110%) of the budget at
  its rate one look-ahead on, and on a sustained runaway rate.

`to_state()` is a guard's accumulated state (its configuration comes from the plan and settings),
JSON-ready; `from_state(state)` a copy in that state, so a worker taking a campaign over continues.
"""

from __future__ import annotations

import base64
import copy
import itertools
import math
import struct
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Self


class GuardState(StrEnum):
    DISABLED = "DISABLED"
    WARMING_UP = "WARMING_UP"
    ARMED = "ARMED"
    TRIGGERED = "TRIGGERED"


# read per event and per check: an enum member off its class costs ~0.25 us in Python 3.11
_ARMED, _ACTIVE = GuardState.ARMED, (GuardState.WARMING_UP, GuardState.ARMED)


@dataclass(frozen=True, slots=True)
class Transition:
    guard: str
    campaign_id: str
    from_state: str
    to_state: str
    t: float
    why: str
    detail: dict[str, Any] = field(default_factory=dict)


class Guard:
    """A per-campaign state machine; `pause_reason` is what SyncFlow pauses with when it fires."""

    name = "guard"
    pause_reason = ""

    def __init__(self, campaign_id: str, *, enabled: bool = True) -> None:
        self.campaign_id = campaign_id
        self.state = GuardState.WARMING_UP if enabled else GuardState.DISABLED
        self.transitions: list[Transition] = []

    @property
    def active(self) -> bool:
        return self.state in _ACTIVE

    def to_state(self) -> dict[str, Any]:
        """What this guard accumulated for its campaign (JSON-ready: numbers, lists, strings)."""
        return {"state": self.state.value}

    def from_state(self, state: dict[str, Any]) -> Self:
        """A copy of this guard (its configuration) in `state`, as `to_state()` gave it; ValueError
        (KeyError, TypeError) when it is not one. This guard is unchanged; the copy has no transitions."""
        new = copy.copy(self)
        new.state = GuardState(state["state"])
        new.transitions = []
        new._restore(state)
        return new

    def _restore(self, state: dict[str, Any]) -> None:
        """Set the fields `to_state()` adds (subclasses)."""

    def _move(self, to: GuardState, t: float, why: str, **detail: Any) -> Transition:
        tr = Transition(self.name, self.campaign_id, self.state.value, to.value, t, why, detail)
        self.state = to
        self.transitions.append(tr)
        return tr


class MarginGuardian(Guard):
    name = "margin_guardian"
    pause_reason = "MARGIN_GUARDIAN"

    def __init__(
        self,
        campaign_id: str,
        *,
        launched_at: float,
        gross_margin: float,
        warmup: float = 7_200.0,
        window: float = 7_200.0,
        tolerance: float = 0.05,
        persistence: int = 3,
        min_window_spend: float = 1.0,
        planned_roas: float | None = None,
        order_value: float | None = None,
        order_value_cv: float = 0.5,
        z_crit: float = 4.0,
        enabled: bool = True,
    ) -> None:
        super().__init__(campaign_id, enabled=enabled)
        self.launched_at, self.gross_margin, self.warmup, self.window = launched_at, gross_margin, warmup, window
        self.tolerance, self.persistence, self.min_window_spend = tolerance, persistence, min_window_spend
        # the statistical test: revenue is a compound Poisson sum of orders, so its variance is
        # mean x order value x (1 + cv^2); without a plan the practical threshold decides alone
        self.planned_roas = planned_roas if planned_roas and planned_roas > 0 else None
        self.order_value = order_value if order_value and order_value > 0 else None
        self.dispersion = (1.0 + order_value_cv**2) * (self.order_value or 0.0)
        self.z_crit = z_crit
        self.samples: deque[tuple[float, float, float]] = deque()  # (t, cumulative spend, revenue)
        self.breaches = 0
        self.last_ratio: float | None = None
        self.last_z: float | None = None

    def to_state(self) -> dict[str, Any]:
        """The window's samples packed as little-endian float64 triples in base64: a worker saves
        this state every batch, and formatting a window of floats as JSON text cost it ten times more."""
        n = 3 * len(self.samples)
        packed = struct.pack(f"<{n}d", *itertools.chain.from_iterable(self.samples))
        return super().to_state() | {
            "samples_f64": base64.b64encode(packed).decode("ascii"),
            "breaches": self.breaches,
            "last_ratio": self.last_ratio,
            "last_z": self.last_z,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        packed = state.get("samples_f64")
        if packed is None:  # a state written before the packed form: a list of [t, spend, revenue]
            self.samples = deque((float(t), float(s), float(r)) for t, s, r in state["samples"])
        else:
            raw = base64.b64decode(packed, validate=True)
            if len(raw) % 24:
                raise ValueError(f"samples_f64 holds {len(raw)} bytes, not whole (t, spend, revenue) triples")
            v = struct.unpack(f"<{len(raw) // 8}d", raw)
            self.samples = deque(zip(v[0::3], v[1::3], v[2::3], strict=True))
        self.breaches = int(state["breaches"])
        self.last_ratio, self.last_z = _float_or_none(state["last_ratio"]), _float_or_none(state["last_z"])

    def shortfall_z(self, d_spend: float, d_revenue: float) -> float | None:
        """Standard errors by which the window's revenue falls short of the plan's (None: no plan)."""
        if self.planned_roas is None or not self.dispersion:
            return None
        expected = d_spend * self.planned_roas
        return (d_revenue - expected) / math.sqrt(expected * self.dispersion)

    def evaluate(self, t: float, spend: float, revenue: float) -> Transition | None:
        """Feed the cumulative totals at time t; returns the TRIGGERED transition when it fires."""
        if not self.active:
            return None
        self.samples.append((t, spend, revenue))
        while self.samples and self.samples[0][0] < t - self.window:
            self.samples.popleft()
        if t - self.launched_at < self.warmup:
            return None
        if self.state is GuardState.WARMING_UP:
            self._move(GuardState.ARMED, t, "warm-up over")
        t0, s0, r0 = self.samples[0]
        d_spend, d_revenue = spend - s0, revenue - r0
        if d_spend < self.min_window_spend:
            return None
        ratio = (d_revenue * self.gross_margin - d_spend) / d_spend
        z = self.shortfall_z(d_spend, d_revenue)
        self.last_ratio, self.last_z = ratio, z
        # practically below break-even AND (with a plan) statistically short of it
        breach = ratio < -self.tolerance and (z is None or z < -self.z_crit)
        self.breaches = self.breaches + 1 if breach else 0
        if self.breaches >= self.persistence:
            evidence = "" if z is None else f", revenue {-z:.1f} standard errors short of the plan"
            why = (
                f"margin {ratio:+.1%} of spend over the last {(t - t0) / 3600:.1f} h, "
                f"below -{self.tolerance:.0%} for {self.breaches} checks in a row{evidence}"
            )
            detail = {"margin_ratio": round(ratio, 4), "window_spend": round(d_spend, 2)}
            shortfall = {} if z is None else {"shortfall_z": round(z, 2)}
            return self._move(GuardState.TRIGGERED, t, why, **detail, window_revenue=round(d_revenue, 2), **shortfall)
        return None


class AutoRollback(Guard):
    name = "auto_rollback"
    pause_reason = "AUTO_ROLLBACK"

    def __init__(
        self,
        campaign_id: str,
        *,
        launched_at: float,
        expected_cvr: float,
        drop: float = 0.30,
        threshold: float = 10.0,
        warmup: float = 3_600.0,
        enabled: bool = True,
    ) -> None:
        super().__init__(campaign_id, enabled=enabled)
        if not (0 < expected_cvr <= 1 and 0 < drop < 1):
            raise ValueError(f"expected_cvr {expected_cvr} and drop {drop} must be in (0, 1)")
        self.launched_at, self.expected_cvr, self.drop = launched_at, expected_cvr, drop
        self.threshold, self.warmup = threshold, warmup
        self.log_ratio = math.log(1.0 - drop)
        self.cusum = 0.0
        self.last: tuple[float, float] | None = None  # cumulative clicks, conversions at the last check
        self.since_reset = [0.0, 0.0]  # clicks, conversions since the CUSUM last stood at zero

    def to_state(self) -> dict[str, Any]:
        return super().to_state() | {
            "cusum": self.cusum,
            "last": None if self.last is None else list(self.last),
            "since_reset": list(self.since_reset),
        }

    def _restore(self, state: dict[str, Any]) -> None:
        self.cusum, last, (clicks, conversions) = float(state["cusum"]), state["last"], state["since_reset"]
        self.last = None if last is None else (float(last[0]), float(last[1]))
        self.since_reset = [float(clicks), float(conversions)]

    def evaluate(self, t: float, clicks: float, conversions: float) -> Transition | None:
        """Feed cumulative clicks and conversions; one CUSUM step per call (per interval)."""
        if not self.active:
            return None
        if t - self.launched_at < self.warmup:
            self.last = (clicks, conversions)
            return None
        if self.state is GuardState.WARMING_UP:
            self._move(GuardState.ARMED, t, "warm-up over")
        c0, v0 = self.last or (0.0, 0.0)
        self.last = (clicks, conversions)
        expected = (clicks - c0) * self.expected_cvr
        if expected <= 0:
            return None
        # log-likelihood ratio of "rate x (1 - drop)" against "the planned rate", Poisson counts
        self.cusum = max(0.0, self.cusum + (conversions - v0) * self.log_ratio + expected * self.drop)
        if self.cusum == 0.0:
            self.since_reset = [0.0, 0.0]
        else:
            self.since_reset[0] += clicks - c0
            self.since_reset[1] += conversions - v0
        window_clicks, window_conversions = self.since_reset
        realized = window_conversions / window_clicks if window_clicks else self.expected_cvr
        # statistically outside the plan AND practically: at least half the crash it is tuned for
        if self.cusum > self.threshold and realized < self.expected_cvr * (1.0 - self.drop / 2):
            why = (
                f"conversion rate {realized:.2%} per click over the last {window_clicks:,.0f} clicks against "
                f"the plan's {self.expected_cvr:.2%}: CUSUM {self.cusum:.1f} > {self.threshold:g}"
            )
            detail = {"cusum": round(self.cusum, 3), "realized_cvr": round(realized, 5)}
            return self._move(GuardState.TRIGGERED, t, why, **detail, expected_cvr=self.expected_cvr)
        return None


class BudgetEmergency(Guard):
    name = "budget_emergency"
    pause_reason = "BUDGET_EMERGENCY"

    def __init__(
        self,
        campaign_id: str,
        *,
        daily_budget: float,
        ticks_per_day: float,
        cap_share: float = 1.10,
        lookahead_ticks: float = 2.0,
        runaway_factor: float = 3.0,
        runaway_ticks: int = 5,
        enabled: bool = True,
    ) -> None:
        super().__init__(campaign_id, enabled=enabled)
        if enabled:
            self.state = GuardState.ARMED  # no warm-up: money is at stake from the first tick
        self.cap, self.cap_share, self.pace = cap_share * daily_budget, cap_share, daily_budget / ticks_per_day
        self.lookahead, self.runaway_factor, self.runaway_ticks = lookahead_ticks, runaway_factor, runaway_ticks
        self.fast_ticks = 0

    def to_state(self) -> dict[str, Any]:
        return super().to_state() | {"fast_ticks": self.fast_ticks}

    def _restore(self, state: dict[str, Any]) -> None:
        self.fast_ticks = int(state["fast_ticks"])

    def evaluate(self, t: float, spend_today: float, spend_tick: float) -> Transition | None:
        """Feed the day's spend so far and the last tick's; fires before the cap can be crossed."""
        if self.state is not _ARMED:  # = not active: this guard has no warm-up (runs every tick)
            return None
        self.fast_ticks = self.fast_ticks + 1 if spend_tick > self.runaway_factor * self.pace else 0
        projected = spend_today + spend_tick * self.lookahead
        if projected >= self.cap:
            why = (
                f"today's spend {spend_today:,.2f} would reach {projected:,.2f} within "
                f"{self.lookahead:g} ticks: {self.cap_share:.0%} of the daily budget is {self.cap:,.2f}"
            )
            limit = {"cap": round(self.cap, 2)}
        elif self.fast_ticks >= self.runaway_ticks:
            why = f"spending {spend_tick / self.pace:.1f}x the budget's pace for {self.fast_ticks} ticks in a row"
            limit = {"pace": round(self.pace, 4)}
        else:
            return None  # the common case, every event: no detail built
        spent = {"spend_today": round(spend_today, 2), "spend_tick": round(spend_tick, 4)}
        return self._move(GuardState.TRIGGERED, t, why, **spent, **limit)


def _float_or_none(v: Any) -> float | None:
    return None if v is None else float(v)
