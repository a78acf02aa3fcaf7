"""The live mirror (real-to-sim sync): every mode's one decision path, and the SimPy agent.

`MirrorBook` applies bid events to campaigns' mirror states (`deviation.apply_event`); the agent
feeds it a replay's ticks, a recording's lines or the `{prefix}bids` stream (agents/council/, whose
production keeps the states in Redis). A PAUSE verdict sends, once per campaign, a PAUSE command
(SYNCTWIN_DEVIATION_THRESHOLD), a WARNING alert and an AUTO_ROLLBACK_TRIGGERED audit event; a frozen
mirror (newer events ignored: their totals went backwards) one "Mirror stuck" WARNING per episode.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import simpy

from agents.base import Agent
from agents.synctwin.mirror.deviation import (
    EVENT_FIELDS,
    MirrorConfig,
    MirrorState,
    Parsed,
    ProjectionCurve,
    Verdict,
    apply_event,
)
from agents.synctwin.mirror.event_limits import EventLimits
from synctwin.kernel.config import Settings
from synctwin.kernel.messages import AlertMessage, AuditEvent, BidBatch, PauseCommand, Watch

PAUSE_REASON = "SYNCTWIN_DEVIATION_THRESHOLD"


def mirror_config(settings: Settings) -> MirrorConfig:
    """The mirror's test from the settings: each field is `mirror_<field>`."""
    return MirrorConfig(**{f: getattr(settings, f"mirror_{f}") for f in MirrorConfig.__dataclass_fields__})


def event_limits(settings: Settings) -> EventLimits:
    """The live stream's plausibility limits from the settings (`mirror_<field>`, the clock skew's
    shared with the API)."""
    return EventLimits(
        **{
            f: getattr(settings, f if f == "max_clock_skew_s" else f"mirror_{f}")
            for f in EventLimits.__dataclass_fields__
        }
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a verdict asks the outside world to do: the messages a PAUSE or a grey zone sends."""

    campaign_id: str
    verdict: Verdict | None  # None: the mirror is stuck (newer events ignored in a row), `state` says how
    deviation: float
    event_id: str | None = None  # the event that decided
    ts: float | None = None  # its epoch seconds
    state: MirrorState | None = None
    values: tuple[float, ...] = ()

    def command(self) -> PauseCommand:
        """The PAUSE this verdict asks for (the one shape every mode sends)."""
        detail = {"why": self._why(), "deviation": round(self.deviation, 4)}
        return PauseCommand(self.campaign_id, PAUSE_REASON, detail, event_id=self.event_id, ts=self.ts)

    def _why(self) -> str:
        return f"Campaign performance deviating {self.deviation:.1%} from SyncTwin projection."

    @property
    def pause(self) -> bool:
        return self.verdict is not None and self.verdict.action == "PAUSE"

    def alert(self) -> tuple[str, str, str, dict[str, Any]]:
        if self.verdict is None:
            return self._stuck_alert()
        d = self.verdict.detail
        cid = self.campaign_id
        if self.pause:
            money = {
                "real_revenue": f"${d['revenue']:,.2f}",
                "projected_revenue": f"${d['projected_revenue_p50']:,.2f}",
            }
            details = {"campaign_id": cid, "deviation": f"{self.deviation:.1%}", **money}
            details |= {"action": "Campaign paused automatically", **d}
            return "WARNING", f"Auto-Rollback Triggered: {cid}", self._why(), details
        # event_ts: SyncNotify counts repeats into one episode by the events' time, not the clock's
        details = {"campaign_id": cid, **d, **({"event_ts": self.ts} if self.ts is not None else {})}
        why = f"Campaign deviating {self.deviation:.1%} from its projection; watching, not pausing."
        return "INFO", f"Grey zone: {cid}", why, details

    def _stuck_alert(self) -> tuple[str, str, str, dict[str, Any]]:
        state, cid, values = self.state, self.campaign_id, self.values
        assert state is not None
        details = {"campaign_id": cid, "ignored_in_a_row": state.stale_run, "last_applied_event": state.last_event_id}
        # each freeze is its own episode (SyncNotify)
        details |= {"episode": str(state.last_event_id), "last_applied_ts": state.last_ts}
        details |= {f"mirror_{m}": getattr(state, m) for m in ("spend", "conversions", "revenue")}
        details |= {"event_id": self.event_id, "event_ts": self.ts}
        details |= {f"event_{m}": values[i] for m, i in (("spend", 0), ("conversions", 3), ("revenue", 4))}
        why = (
            f"{state.stale_run} newer events in a row ignored: their totals are below the mirror's "
            f"(an implausible event was applied earlier?); {cid} is not being watched"
        )
        return "WARNING", f"Mirror stuck: {cid}", why, details

    def audit(self, threshold: float) -> dict[str, Any]:
        assert self.verdict is not None
        d = self.verdict.detail
        revenue = {"real_revenue": d["revenue"], "projected_revenue": d["projected_revenue_p50"]}
        return {"deviation": round(self.deviation, 4), **revenue, "threshold": threshold, **d}


class MirrorBook:
    """Projections and mirror states of the campaigns being watched. `states` and `launches` (the
    launch each state belongs to) are the state port: in memory here; a Redis driver loads them
    before a batch and writes the campaigns in `touched` with the batch's acknowledgement."""

    def __init__(self, cfg: MirrorConfig, stuck_after: int = 0) -> None:
        self.cfg = cfg
        self.stuck_after = stuck_after  # newer events ignored in a row before a "Mirror stuck" alert (0: never)
        self.curves: dict[str, ProjectionCurve] = {}
        self.states: dict[str, MirrorState] = {}
        self.launches: dict[str, float] = {}
        self.touched: set[str] = set()  # campaigns whose state changed since the driver last wrote them
        self.applied = self.ignored = self.greys = self.stuck_alerts = 0

    def watch(self, projection: dict[str, Any]) -> None:
        """Mirror a campaign against `projection` from now on; a new launch starts its state afresh."""
        curve = ProjectionCurve.from_projection(projection)
        self.curves[curve.campaign_id] = curve
        self.state(curve.campaign_id)

    def state(self, campaign_id: str) -> MirrorState:
        """The campaign's state for its current curve's launch (a fresh one for a new launch)."""
        launch = self.curves[campaign_id].launch_ts
        state = self.states.get(campaign_id)
        if state is None or self.launches.get(campaign_id, launch) != launch:
            state = self.states[campaign_id] = MirrorState(campaign_id)
            self.touched.add(campaign_id)
        self.launches[campaign_id] = launch
        return state

    def apply(self, campaign_id: str, event_id: str, ts: float, values: tuple[float, ...]) -> Outcome | None:
        """Apply one event; the outcome when the verdict asks for action (a PAUSE, entering the grey
        zone), or a "stuck" outcome (verdict None) when `stuck_after` newer events in a row were ignored."""
        return next((outcome for _, outcome in self.apply_all([(event_id, campaign_id, ts, values)])), None)

    def apply_all(self, events: Iterable[Parsed]) -> Iterator[tuple[int, Outcome]]:
        """`apply` each of one batch's events in order: (row, outcome) as each arises, to be acted on
        before the next event. A campaign's curve and state are looked up once (this runs per event):
        nothing else changes them until the batch is done."""
        watched: dict[str, tuple[ProjectionCurve, MirrorState] | None] = {}
        cfg, stuck_after = self.cfg, self.stuck_after
        for i, (event_id, cid, ts, values) in enumerate(events):
            found = watched[cid] if cid in watched else watched.setdefault(cid, self._watched(cid))
            if found is None:
                continue
            curve, state = found
            before = state.events
            verdict = apply_event(state, event_id, ts, values, curve, cfg)
            if state.events == before:
                self.ignored += 1
                if stuck_after and state.stale_run == stuck_after:
                    self.stuck_alerts += 1
                    yield i, Outcome(cid, None, state.deviation, event_id, ts, state=state, values=values)
                continue
            self.applied += 1
            if verdict is None or verdict.action is None:
                continue
            if verdict.action != "PAUSE":
                self.greys += 1
            yield i, Outcome(cid, verdict, state.deviation, event_id, ts)

    def _watched(self, campaign_id: str) -> tuple[ProjectionCurve, MirrorState] | None:
        """The campaign's curve and current state (touched: about to change), None if not watched."""
        curve = self.curves.get(campaign_id)
        if curve is None:
            return None
        state = self.state(campaign_id)
        self.touched.add(campaign_id)
        return curve, state


def _events(batch: BidBatch) -> Iterator[Parsed]:
    """A batch's rows as events (event_id, campaign_id, epoch seconds, values), column by column."""
    offset = batch.ts - batch.t  # epoch seconds at the environment's zero
    cids = batch.campaign_ids
    tick = round(batch.t)
    ids = batch.event_ids if batch.event_ids is not None else [f"{cid}:{tick}" for cid in cids]
    times = batch.times if batch.times is not None else [batch.t] * len(cids)
    rows = zip(*(getattr(batch, f).tolist() for f in EVENT_FIELDS), strict=True)  # not numpy scalars
    return zip(ids, cids, [offset + t for t in times], rows, strict=True)


class MirrorAgent(Agent):
    """The mirror inside the SimPy world: reads the world's ticks, pauses through SyncFlow."""

    name = "mirror"

    def __init__(
        self,
        env: simpy.Environment,
        *,
        bids: simpy.Store,
        syncflow: simpy.Store,
        audit: simpy.Store,
        alerts: simpy.Store,
        cfg: MirrorConfig,
        every: int = 5,
        forward: simpy.Store | None = None,
        stuck_after: int = 0,
    ) -> None:
        self.book = MirrorBook(cfg, stuck_after)
        self.bids, self.syncflow, self.audit_box, self.alert_box = bids, syncflow, audit, alerts
        self.every = every  # read every n-th tick: events are cumulative, nothing is lost between
        # the Council's pipeline: each batch goes on to SyncFlow with this mirror's PAUSE verdicts by row, weighed
        # in stream order beside its guards however the stream is batched; else a PAUSE goes to its mailbox (replays)
        self.forward = forward
        super().__init__(env)
        env.process(self._consume())

    def handle(self, message: Any) -> Generator[Any, Any, None]:
        if isinstance(message, Watch):
            self.book.watch(message.projection)
        yield from ()

    def _consume(self) -> Generator[Any, Any, None]:
        n = 0
        while True:
            batch: BidBatch = yield self.bids.get()
            n += 1
            if self.forward is None and n % self.every:
                continue
            verdicts: dict[int, PauseCommand] = {}
            for i, outcome in self.book.apply_all(_events(batch)):
                if (command := self._act(outcome)) is not None:
                    verdicts[i] = command
            if self.forward is not None:
                batch.verdicts = verdicts or None
                yield self.forward.put(batch)

    def _act(self, outcome: Outcome) -> PauseCommand | None:
        """Alert (and on a PAUSE audit); the PAUSE command, sent to SyncFlow's mailbox unless this
        mirror passes its batches on (then the caller attaches it to the batch)."""
        self.alert_box.put(AlertMessage(*outcome.alert()))
        if not outcome.pause:
            return None
        command = outcome.command()
        if self.forward is None:
            self.syncflow.put(command)
        audit = outcome.audit(self.book.cfg.threshold)
        self.audit_box.put(AuditEvent("AUTO_ROLLBACK_TRIGGERED", None, outcome.campaign_id, PAUSE_REASON, audit))
        return command
