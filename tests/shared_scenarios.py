"""Test data more than one test module uses (kept in one place)."""

from __future__ import annotations

from typing import Any

# portfolio_10's thin-margin campaign alone: ~180 orders an hour at a 35% gross margin, ~28% above
# break-even, in a calm market; a campaign-scoped CPM shock at 4h turns it about 15% unprofitable.
SHOCK: dict = {
    "name": "thin_margin_shock",
    "description": "a thin-margin campaign and a CPM shock",
    "duration": "9h",
    "world": {"tick": "1m", "platforms": {"meta": {"cpm_drift_sd": 0.005}}},
    "clients": [
        {
            "id": "kettle",
            "history": {
                "generate": {
                    "platform": "meta",
                    "daily_spend": 6000,
                    "rate_factors": {"cpm": 0.7, "ctr": 1.2, "cvr": 1.6, "aov": 0.163},
                }
            },
        }
    ],
    "campaigns": [
        {
            "id": "thin",
            "client": "kettle",
            "launch_at": "0s",
            "strategy": {
                "platform": "meta",
                "audience_size": 8000000,
                "cvr": 0.025,
                "daily_budget": 12000,
                "gross_margin": 0.35,
            },
        }
    ],
    "faults": [{"id": "shock", "kind": "cpm_shock", "at": "4h", "campaign": "thin", "multiplier": 1.5}],
    "expectations": [
        {"expect": "gate", "campaign": "thin", "decision": "APPROVED"},
        {"expect": "paused", "campaign": "thin", "reason": "MARGIN_GUARDIAN", "after": "shock", "within": "4h"},
    ],
}


def linear_projection(cid: str, *, launch: float, rate: float, cpa: float, aov: float, days: int) -> dict[str, Any]:
    """A projection growing `rate` conversions an hour, with a +-15% band: easy to reason about."""
    points = []
    for h in range(days * 24 + 1):
        c = rate * h
        point: dict[str, float] = {"t_hours": float(h)}
        for metric, v in (("conversions", c), ("spend", c * cpa), ("revenue", c * aov)):
            point |= {f"{metric}_p10": v * 0.85, f"{metric}_p50": v, f"{metric}_p90": v * 1.15}
        points.append(point)
    return {"campaign_id": cid, "launch_ts": launch, "horizon_days": days, "points": points}
