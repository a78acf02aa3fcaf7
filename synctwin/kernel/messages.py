"""The messages agents exchange through their mailboxes (SimPy stores).

Plain slotted dataclasses: hot loops create them (a BidBatch per tick), where pydantic would cost
3x for nothing; validation happens at the edges (files, Redis, HTTP)."""

from __future__ import annotations

from collections.abc import Sequence
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
    strategy: Any  # synctwin.kernel.models.Strategy
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

    strategy: Any  # synctwin.kernel.models.Strategy
    gate: Any  # synctwin.kernel.models.GateResult
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


LiveEvent = tuple[str, str, float, tuple[float, ...]]  # (event_id, campaign_id, ts, cumulative values)


@dataclass(frozen=True, slots=True)
class LiveEvents:
    """Parsed live bid events column-wise, in stream order: a stream batch (or a recording's chunk)
    as the Council takes it. Columns, not a tuple per event: every agent reads them whole, and
    building and unpacking 2,000 tuples a batch cost more than the agents' own work."""

    event_ids: tuple[str, ...]
    campaign_ids: tuple[str, ...]
    ts: tuple[float, ...]  # epoch seconds
    values: np.ndarray  # (n, 5) float64: spend, impressions, clicks, conversions, revenue (cumulative)

    @classmethod
    def of(cls, events: Sequence[LiveEvent] | LiveEvents) -> LiveEvents:
        if isinstance(events, LiveEvents):
            return events
        if not events:
            return cls((), (), (), np.empty((0, 5)))
        ids, cids, ts, values = zip(*events, strict=True)
        return cls(ids, cids, ts, np.array(values, dtype=float).reshape(len(ids), 5))

    def __len__(self) -> int:
        return len(self.event_ids)

    def take(self, rows: Sequence[int]) -> LiveEvents:
        """These rows (indices, in order)."""
        if len(rows) == len(self.event_ids):
            return self
        ids, cids, ts = self.event_ids, self.campaign_ids, self.ts
        return LiveEvents(
            tuple([ids[i] for i in rows]),
            tuple([cids[i] for i in rows]),
            tuple([ts[i] for i in rows]),
            self.values[np.asarray(rows, dtype=np.intp)].reshape(len(rows), 5),
        )

    def rows(self) -> list[LiveEvent]:
        """One tuple per event (the few places that go event by event: a conflict's merge)."""
        values = map(tuple, self.values.tolist())
        return list(zip(self.event_ids, self.campaign_ids, self.ts, values, strict=True))


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
    # a batch of live stream entries (not one tick of a world): each row is one event, with its own
    # event_id and environment time; several rows may be one campaign's, in stream order
    event_ids: tuple[str, ...] | None = None
    times: tuple[float, ...] | None = None
    # the mirror's PAUSE verdicts on this batch, by row, when the mirror passes it on to SyncFlow
    verdicts: dict[int, PauseCommand] | None = None

    def row_time(self, i: int) -> float:
        """Row i's environment time (a tick's rows share the batch's)."""
        return self.t if self.times is None else self.times[i]

    def row_event_id(self, i: int) -> str:
        """Row i's event id (a tick's: `{campaign}:{tick}`, as `events()` publishes it)."""
        return f"{self.campaign_ids[i]}:{round(self.t)}" if self.event_ids is None else self.event_ids[i]

    def events(self) -> list[dict[str, Any]]:
        """The per-campaign bid events of DESIGN.md (for the Redis stream)."""
        tick = round(self.t)
        return [
            {
                "event_id": f"{cid}:{tick}",
                "campaign_id": cid,
                "ts": self.ts,
                "spend": float(self.spend[i]),
                "impressions": float(self.impressions[i]),
                "clicks": float(self.clicks[i]),
                "conversions": float(self.conversions[i]),
                "revenue": float(self.revenue[i]),
            }
            for i, cid in enumerate(self.campaign_ids)
        ]


@dataclass(slots=True)
class Watch:
    """SyncFlow tells the mirror a campaign went live: its projection, with the launch time."""

    campaign_id: str
    projection: dict[str, Any]


@dataclass(slots=True)
class PauseCommand:
    """A PAUSE, one shape everywhere: the mirror's ask, SyncFlow's call to the platform, a `control`
    stream entry (`pause_fields` / `pause_from_fields`). `event_id` and `ts` are the deciding bid
    event's (None only for a pause no event decided, e.g. a person's)."""

    campaign_id: str
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)
    event_id: str | None = None
    ts: float | None = None


def pause_fields(cmd: PauseCommand) -> dict[str, str]:
    """The `synctwin:control` entry of a PAUSE: command, campaign_id, reason, event_id, ts, and the
    numbers of its detail (deviation, guard) as they are, for operators."""
    out = {
        "command": "PAUSE",
        "campaign_id": cmd.campaign_id,
        "reason": cmd.reason,
        "event_id": cmd.event_id or "",
        "ts": "" if cmd.ts is None else repr(float(cmd.ts)),
    }
    for k in ("deviation", "guard"):
        v = cmd.detail.get(k)
        if v is not None:
            out[k] = f"{v:.4f}" if isinstance(v, float) else str(v)
    return out


def pause_from_fields(fields: dict[Any, Any]) -> PauseCommand:
    """A control-stream entry back as a PauseCommand (ValueError: not a PAUSE, or a field missing)."""
    f = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in fields.items()
    }
    if f.get("command") != "PAUSE" or not f.get("campaign_id") or not f.get("reason"):
        raise ValueError(f"not a PAUSE command: {f}")
    detail = {k: float(f[k]) if k == "deviation" else f[k] for k in ("deviation", "guard") if k in f}
    return PauseCommand(
        f["campaign_id"],
        f["reason"],
        detail,
        event_id=f.get("event_id") or None,
        ts=float(f["ts"]) if f.get("ts") else None,
    )


@dataclass(slots=True)
class Adopt:
    """A campaign already live on its platform (production, or a recording's) for SyncFlow to guard:
    no launch call. `plan` is an agents.council.build.Plan (strategy, projection or None, baseline)."""

    plan: Any
    paused: bool = False  # already paused (by an earlier worker): guard nothing, pause nothing
    replace: bool = False  # a re-published plan of a campaign already guarded: guard it under this one
