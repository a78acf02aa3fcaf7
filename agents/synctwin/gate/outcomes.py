"""Realized outcomes of approved campaigns (CAMPAIGN_OUTCOME): one arithmetic for every mode.

The seed's false-positive KPI ("approved but ended up unprofitable") needs what an approved
campaign earned against the baseline over the days it ran (DESIGN.md): SyncFlow in the twin and
the shadow worker both call `campaign_outcome`; shadow mode's `outcome_record` (a *rejected*
campaign's) uses the same `net_profit_uplift`. Pure functions over plain values."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

CAMPAIGN_OUTCOME = "CAMPAIGN_OUTCOME"
FLIGHT_ENDED = "FLIGHT_ENDED"  # the planned flight is over
PAUSED = "PAUSED"  # a guard or the mirror stopped it early
# the baseline fields an outcome needs: uplift (daily revenue and spend) and shadow mode's planned rates
BASELINE_KEYS = ("daily_revenue", "daily_spend", "cpm", "ctr", "cvr_click", "avg_order_value")


class GateLike(Protocol):
    """What an outcome needs of a gate decision (a GateResult has it, and so has GateFacts)."""

    @property
    def confidence_score(self) -> float: ...

    @property
    def threshold(self) -> float: ...

    @property
    def baseline(self) -> Mapping[str, float]: ...


@dataclass(frozen=True, slots=True)
class GateFacts:
    """A gate decision's essentials, as stored in Redis or the audit log (no projection, no paths)."""

    confidence_score: float
    threshold: float
    baseline: Mapping[str, float] = field(default_factory=dict)
    # the projection's p10/p50/p90 of revenue at the end of the flight: realized outcomes then calibrate the
    # gate's spread (agents/synctwin/gate/calibration_log.py)
    projected_revenue: tuple[float, float, float] | None = None

    @classmethod
    def of(cls, result: GateLike) -> GateFacts:
        return cls(
            float(result.confidence_score),
            float(result.threshold),
            {k: float(v) for k, v in result.baseline.items() if k in BASELINE_KEYS},
            projected_revenue(result),
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GateFacts:
        """From stored JSON; ValueError names what is missing or not a number."""
        conf, thr, base = d.get("confidence_score"), d.get("threshold"), d.get("baseline")
        for name, v in (("confidence_score", conf), ("threshold", thr)):
            if not _is_finite(v):
                raise ValueError(f"{name} is not a number ({v!r})")
        if not isinstance(base, Mapping) or not all(_is_finite(base.get(k)) for k in ("daily_revenue", "daily_spend")):
            raise ValueError("baseline lacks daily_revenue/daily_spend")
        pr = d.get("projected_revenue")
        ok = isinstance(pr, list | tuple) and len(pr) == 3 and all(_is_finite(v) for v in pr)
        kept = {k: float(v) for k, v in base.items() if k in BASELINE_KEYS and _is_finite(v)}
        return cls(float(conf), float(thr), kept, tuple(float(v) for v in pr) if ok else None)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        d = {"confidence_score": self.confidence_score, "threshold": self.threshold, "baseline": dict(self.baseline)}
        if self.projected_revenue is not None:
            d["projected_revenue"] = list(self.projected_revenue)
        return d


def projected_revenue(gate: Any) -> tuple[float, float, float] | None:
    """p10/p50/p90 of the projected revenue at the end of the flight, from a GateResult's projection or
    GateFacts; None when the decision carries no projection."""
    stored = getattr(gate, "projected_revenue", None)
    if stored is not None:
        return tuple(stored)  # type: ignore[return-value]
    projection = getattr(gate, "projection", None)
    points = getattr(projection, "points", None)
    if not points:
        return None
    last = points[-1]
    return (float(last.revenue_p10), float(last.revenue_p50), float(last.revenue_p90))


def _is_finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def net_profit_uplift(
    revenue: float, spend: float, days: float, baseline: Mapping[str, float], gross_margin: float
) -> float:
    """DESIGN.md: (R_new - R_base) * gross_margin - (S_new - S_base), the baseline over `days`."""
    base_rev = baseline.get("daily_revenue", 0.0) * days
    base_spend = baseline.get("daily_spend", 0.0) * days
    return (revenue - base_rev) * gross_margin - (spend - base_spend)


def campaign_outcome(
    *,
    platform: str,
    launch_ts: float,
    days: float,
    days_total: int,
    spend: float,
    revenue: float,
    conversions: float,
    gross_margin: float,
    gate: GateLike,
    reason: str,
    pause_reason: str | None = None,
    decision: str = "APPROVED",
) -> dict[str, Any]:
    """The CAMPAIGN_OUTCOME metadata of an approved campaign that ran `days` (its flight, or until
    its pause) and realized these totals. Always final: one record per campaign and launch."""
    uplift = net_profit_uplift(revenue, spend, days, gate.baseline, gross_margin)
    out: dict[str, Any] = {
        "decision": decision,
        "platform": platform,
        "launch_ts": launch_ts,
        "end_reason": reason,
        "days": round(days, 4),
        "days_total": days_total,
        "final": True,
        "spend": round(spend, 2),
        "revenue": round(revenue, 2),
        "conversions": round(conversions, 2),
        "baseline_revenue": round(gate.baseline.get("daily_revenue", 0.0) * days, 2),
        "baseline_spend": round(gate.baseline.get("daily_spend", 0.0) * days, 2),
        "gross_margin": gross_margin,  # 1.0 unless the strategy set it: revenue then counts as all profit
        "net_profit_uplift": round(uplift, 2),
        "profitable": uplift > 0,
        "confidence_score": gate.confidence_score,
        "threshold": gate.threshold,
    }
    projected = projected_revenue(gate)
    if projected is not None:
        out["projected_revenue"] = [round(v, 2) for v in projected]
    if pause_reason:
        out["pause_reason"] = pause_reason
    return out
