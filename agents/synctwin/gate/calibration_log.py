"""Calibration residuals from realized outcomes in an audit log (CAMPAIGN_OUTCOME, SHADOW_OUTCOME).

An outcome of a whole flight with the gate's projected revenue (p10/p50/p90) gives one residual
z = log(realized / p50) / sd, sd = (log p90 - log p10) / (2 x 1.2816): the rolling calibration's
score of the history's windows, so both join one split-conformal set."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

OUTCOME_EVENTS = ("CAMPAIGN_OUTCOME", "SHADOW_OUTCOME")
FULL_FLIGHT = 0.95  # an outcome counts when it ran at least this share of its planned days
_Z80 = 1.2815515655446004


def outcome_residual(meta: Mapping[str, Any]) -> float | None:
    """z of one outcome's metadata, or None when it cannot be scored (partial, no projection, ...)."""
    projected = meta.get("projected_revenue")
    revenue, days, total = meta.get("revenue"), meta.get("days"), meta.get("days_total")
    if meta.get("final") is False or not isinstance(projected, list | tuple) or len(projected) != 3:
        return None
    values = [revenue, days, total, *projected]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        return None
    p10, p50, p90 = (float(v) for v in projected)
    if not (0 < p10 < p90 and p50 > 0 and float(revenue) > 0 and float(total) > 0):
        return None
    if float(days) < FULL_FLIGHT * float(total):
        return None
    sd = (math.log(p90) - math.log(p10)) / (2 * _Z80)
    return math.log(float(revenue) / p50) / sd


def outcome_residuals(records: Iterable[Mapping[str, Any]]) -> np.ndarray:
    """The residuals of the latest scorable outcome per campaign and event type, in log order."""
    latest: dict[tuple[str, str], float] = {}
    for rec in records:
        event, cid = rec.get("event_type"), rec.get("campaign_id")
        if event in OUTCOME_EVENTS and isinstance(cid, str):
            z = outcome_residual(rec.get("metadata") or {})
            if z is not None:
                latest[(event, cid)] = z
    return np.array(list(latest.values()), dtype=np.float64)
