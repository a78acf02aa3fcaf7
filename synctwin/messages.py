"""The messages agents exchange through their mailboxes (SimPy stores).

Plain slotted dataclasses: they are created in hot loops (one BidBatch per tick), where
pydantic's validation would cost 3x for nothing. Validation happens at the edges instead
(files, Redis, HTTP).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(slots=True)
class Request:
    """A message that expects an answer: the sender waits on `reply` (a SimPy event)."""

    reply: Any = field(default=None, kw_only=True)


@dataclass(slots=True)
class BaselineRequest(Request):
    client_id: str
    lookback_days: int | None = None
    gross_margin: float = 1.0


@dataclass(slots=True)
class GateRequest(Request):
    strategy: Any  # synctwin.models.Strategy
    seed: int = 0


@dataclass(slots=True)
class LaunchRequest:
    """SyncBrain is asked for a campaign (from a scenario's schedule or a person)."""

    client_id: str
    params: dict[str, Any]
    test: bool = False  # a chaos-test campaign: deployed for the drill whatever the gate says


@dataclass(slots=True)
class Deploy:
    """An approved strategy with its gate result, for SyncFlow to run."""

    strategy: Any  # synctwin.models.Strategy
    gate: Any  # synctwin.models.GateResult
    test: bool = False  # a chaos-test campaign (never a client's)


@dataclass(slots=True)
class AuditEvent:
    event_type: str
    client_id: str | None = None
    campaign_id: str | None = None
    reason: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class AlertMessage:
    severity: str
    title: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class BidBatch:
    """One tick of every live campaign's cumulative totals since launch (DESIGN.md's bid event
    fields, column-wise: one message per tick instead of one per campaign)."""

    t: float  # environment seconds
    ts: float  # epoch seconds
    campaign_ids: tuple[str, ...]
    spend: np.ndarray
    impressions: np.ndarray
    clicks: np.ndarray
    conversions: np.ndarray
    revenue: np.ndarray

    def events(self) -> list[dict[str, Any]]:
        """The per-campaign bid events of DESIGN.md (for the Redis stream)."""
        tick = round(self.t)
        return [
            {"event_id": f"{cid}:{tick}", "campaign_id": cid, "ts": self.ts, "spend": float(self.spend[i]),
             "impressions": float(self.impressions[i]), "clicks": float(self.clicks[i]),
             "conversions": float(self.conversions[i]), "revenue": float(self.revenue[i])}
            for i, cid in enumerate(self.campaign_ids)
        ]


@dataclass(slots=True)
class Watch:
    """SyncFlow tells the mirror a campaign went live: its projection, with the launch time."""

    campaign_id: str
    projection: dict[str, Any]


@dataclass(slots=True)
class PauseCommand:
    """A command for SyncFlow (the `synctwin:control` stream in production)."""

    campaign_id: str
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)
