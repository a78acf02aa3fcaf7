"""The Council: one composition of the agents, whatever the clock, the event source and the stores.

`build_council` wires the agents (SyncTwin's mirror; SyncFlow with MarginGuardian, AutoRollback,
the budget emergency stop and the API circuit breaker; SyncShield, SyncNotify, shadow mode; for a
Council that launches campaigns itself SyncBrain, SyncTwin's gate and SyncValue) for an environment
(virtual or wall-clock time: world/clock.py) and a set of ports. On a bid stream a batch of events
is ONE message (`Council.feed`: a BidBatch, rows in stream order), a pause is kept by the control
port as a PauseCommand (production writes it to `{prefix}control`), and SyncShield and SyncNotify
write to the audit and alert ports. `synctwin replay --bids --plans` (memory ports, virtual time)
and `synctwin run` (agents/council/redis.py, wall clock) differ in nothing else, so they decide the
same pauses. On a simulated world (harness/runner.py) the events are the world's ticks, the
platforms its APIs, and SyncBrain asks the gate (which asks SyncValue) before SyncFlow deploys.
The mirror passes each batch on to SyncFlow with its verdicts by row, weighed in row order beside
SyncFlow's own guards: which agent pauses, and at which event, does not depend on the batching.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

import numpy as np
import simpy

from agents.syncbrain.agent import SyncBrainAgent
from agents.syncflow import persist
from agents.syncflow.agent import SyncFlow
from agents.syncnotify.agent import SyncNotifyAgent
from agents.syncnotify.alerts import Alert, SyncNotify
from agents.syncshield.agent import SyncShieldAgent
from agents.syncshield.backends import AuditStore
from agents.syncshield.service import SyncShield
from agents.synctwin.gate.agent import SyncTwinAgent
from agents.synctwin.gate.gatekeeper import SimulationGatekeeper
from agents.synctwin.mirror.agent import MirrorAgent, MirrorBook, event_limits, mirror_config
from agents.synctwin.mirror.deviation import EVENT_FIELDS, ProjectionCurve
from agents.synctwin.mirror.event_limits import EventLimits, bounds_for, check, plan_floors, suspects
from agents.synctwin.shadow.agent import LiveShadowAgent, Observed, ShadowAgent, ShadowPort
from agents.syncvalue.agent import SyncValueAgent
from agents.syncvalue.service import SyncValue
from agents.syncvalue.stores import HistoryStore
from synctwin.kernel.config import Settings
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.messages import Adopt, BidBatch, LiveEvent, LiveEvents, PauseCommand, Watch
from synctwin.kernel.models import Platform, Projection, Strategy
from synctwin.kernel.strategy_io import strategy_from_dict
from world.world import World

log = logging.getLogger("synctwin.council")


@dataclass(frozen=True, slots=True)
class PlanGate:
    """What SyncFlow reads of a gate result for a campaign it adopts: the projection and baseline."""

    projection: Projection | None
    baseline: dict[str, float]
    decision: str = "APPROVED"


@dataclass(frozen=True, slots=True)
class Plan:
    """What the gate leaves for a live campaign: its strategy, its projection (None: the mirror has
    nothing to compare with, SyncFlow's guards still judge it) and the baseline rates it was gated on."""

    campaign_id: str
    strategy: Strategy | None  # None: a projection alone, enough for a Council of the mirror only
    projection: dict[str, Any] | None
    baseline: dict[str, float] = field(default_factory=dict)

    @property
    def launch_ts(self) -> float:
        if self.projection is not None and self.projection.get("launch_ts") is not None:
            return float(self.projection["launch_ts"])
        return float(self.strategy.launch_ts or 0.0) if self.strategy is not None else 0.0

    def gate(self) -> PlanGate:
        return PlanGate(
            None if self.projection is None else Projection.model_validate(self.projection), dict(self.baseline)
        )


def plan_from_parts(campaign_id: str, strategy: Any, projection: Any, baseline: Any = None, *, source: str) -> Plan:
    """A Plan from its decoded JSON parts (`strategy` None: a projection alone, for the mirror);
    InvalidInput naming `source` and the part at fault."""
    s = None
    if strategy is not None:
        s = strategy_from_dict(strategy, source=f"{source}: strategy")
        if s.campaign_id is not None and s.campaign_id != campaign_id:
            raise InvalidInput(f"the strategy is campaign {s.campaign_id!r}, the plan {campaign_id!r}", source=source)
        s = s.model_copy(update={"campaign_id": campaign_id})
    elif projection is None:
        raise InvalidInput("a plan needs a strategy or a projection", source=source)
    if projection is not None:
        if not isinstance(projection, dict):
            raise InvalidInput(
                f"projection: expected a JSON object or null, got {type(projection).__name__}", source=source
            )
        try:
            Projection.model_validate(projection)
            ProjectionCurve.from_projection(projection)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise InvalidInput(f"projection: {exc}".splitlines()[0], source=source) from None
        if projection.get("campaign_id") != campaign_id:
            raise InvalidInput(
                f"the projection is campaign {projection.get('campaign_id')!r}, the plan {campaign_id!r}", source=source
            )
    elif s is not None and s.launch_ts is None:
        raise InvalidInput("a plan without a projection needs the strategy's launch_ts", source=source)
    baseline = {} if baseline is None else baseline
    if not isinstance(baseline, dict) or not all(
        isinstance(v, int | float) and math.isfinite(v) for v in baseline.values()
    ):
        raise InvalidInput("baseline: expected an object of finite numbers", source=source)
    return Plan(campaign_id, s, projection, {k: float(v) for k, v in baseline.items()})


class ControlPort:
    """The platforms as SyncFlow sees them on a stream: a pause is kept as its PauseCommand for the
    driver to deliver (production: `{prefix}control`); they pace their own bids, so that is all."""

    def __init__(self) -> None:
        self.pauses: list[PauseCommand] = []

    def call(self, op: str, **payload: Any) -> Any:
        if op == "pause":
            self.pauses.append(payload["command"])
        return payload.get("campaign_id")
        yield  # a generator, like the simulated platforms' API  # pragma: no cover


class OutboxAuditStore:
    """SyncShield's store in production: the records of a batch wait here until the Redis driver
    writes them, chained, in the transaction that acknowledges the batch."""

    def __init__(self) -> None:
        self.pending: list[dict[str, Any]] = []

    def append(
        self,
        event_type: str,
        *,
        client_id: str | None = None,
        campaign_id: str | None = None,
        reason: str | None = None,
        metadata: Any = None,
    ) -> dict[str, Any]:
        rec = {"event_type": event_type, "client_id": client_id, "campaign_id": campaign_id, "reason": reason}
        rec["metadata"] = metadata or {}
        self.pending.append(rec)
        return rec

    def records(self) -> list[dict[str, Any]]:
        return list(self.pending)


class OutboxSink:
    """SyncNotify's sink in production: a batch's alerts, written with its acknowledgement."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


class MemoryGuardStore:
    """SyncFlow's guard states kept between the Councils of one process, encoded as production's
    (agents/council/redis.py) are, so a Council that adopts a campaign continues its guards."""

    def __init__(self) -> None:
        self.hashes: dict[str, dict[str, str]] = {}

    def load(self, campaign_ids: Iterable[str]) -> dict[str, dict[str, str]]:
        return {c: dict(self.hashes[c]) for c in campaign_ids if c in self.hashes}

    def save(self, states: Mapping[str, dict[str, Any]]) -> None:
        for cid, state in states.items():
            self.hashes.setdefault(cid, {}).update(persist.encode(state))

    def forget(self, campaign_ids: Iterable[str]) -> None:
        """A new plan of these campaigns: their guards start afresh."""
        for cid in campaign_ids:
            self.hashes.pop(cid, None)


@dataclass
class Ports:
    """Where the Council's events come from and its decisions go: on a bid stream (`events` None)
    `Council.feed` and the control port; on a world its ticks, platforms and history store. `guards`:
    SyncFlow's guard states kept for the next Council that adopts a campaign; None: this one's alone."""

    control: ControlPort | None
    audit: AuditStore
    alerts: Sequence[Any]
    platforms: Mapping[str, Any] | None = None
    events: World | None = None  # its ticks, one BidBatch each, to every reader that subscribes
    history: HistoryStore | None = None
    guards: Any = None  # MemoryGuardStore, or production's RedisGuardStore: load, save, forget


@dataclass(frozen=True, slots=True)
class Gate:
    """A Council that gates and launches campaigns itself: the gatekeeper and its Monte Carlo paths,
    SyncBrain's seed (one gate stream per campaign), and each campaign's platform (shadow mode)."""

    gatekeeper: SimulationGatekeeper
    seed: int
    platform_of: Mapping[str, str]
    paths: int | None = None


@dataclass(eq=False)
class Council:
    """The agents on one environment, as `build_council` wired them: on a bid stream fed batch by batch
    (time virtual or realtime, as `advance` is told); on a world, launch requests go to `brain`."""

    env: simpy.Environment
    ports: Ports
    limits: EventLimits  # the live stream's plausibility limits
    source: simpy.Store  # a stream's batches (`feed`)
    shield: SyncShieldAgent
    notify: SyncNotifyAgent
    flow: SyncFlow | None
    mirror: MirrorAgent | None
    brain: SyncBrainAgent | None  # a world's: launch requests
    shadow: LiveShadowAgent | None
    events: int = 0
    # per adopted campaign: its launch, the end of its flight, its curve (None: no projection), floors
    _flights: dict[str, tuple[float, float, ProjectionCurve | None, tuple[float, float, float]]] = field(
        default_factory=dict
    )

    @property
    def book(self) -> MirrorBook | None:
        """The mirror's projections and states (None: a Council without the mirror)."""
        return None if self.mirror is None else self.mirror.book

    def knows(self, campaign_id: str) -> bool:
        return campaign_id in self._flights

    def adopt(self, plans: Iterable[tuple[Plan, bool]], at: float) -> None:
        """Campaigns to guard from now on (`True`: already paused), again: under a re-published plan;
        adopted live, each continues the guard state the guards port holds of it (an earlier worker's)."""
        fresh, replaced = [], []
        for plan, paused in plans:
            replace = plan.campaign_id in self._flights
            if plan.strategy is not None and not paused:
                (replaced if replace else fresh).append(plan.campaign_id)
            if self.flow is not None and plan.strategy is not None:
                self.flow.mailbox.put(Adopt(plan, paused, replace=replace))
            elif self.mirror is not None and plan.projection is not None:
                self.mirror.mailbox.put(Watch(plan.campaign_id, plan.projection))
            curve = None if plan.projection is None else ProjectionCurve.from_projection(plan.projection)
            hours = curve.horizon_hours if curve is not None else plan.strategy.duration_days * 24.0
            launch = plan.launch_ts
            self._flights[plan.campaign_id] = (launch, launch + hours * 3600.0, curve, plan_floors(curve, self.limits))
        self.advance(at)
        if self.flow is not None and self.ports.guards is not None:
            self.ports.guards.forget(replaced)
            self.reload_guards(fresh)

    def reload_guards(self, campaign_ids: Sequence[str]) -> list[str]:
        """Continue these campaigns' guards from the state the guards port holds (another worker
        wrote it since); the ids continued. One that is not a state of this launch, or none, keeps
        the guards it has."""
        if self.flow is None or self.ports.guards is None or not campaign_ids:
            return []
        done = []
        for cid, fields in self.ports.guards.load(campaign_ids).items():
            try:
                state = persist.decode(fields)
            except ValueError as exc:
                log.warning("campaign %s: its guard state is unreadable (%s); its guards start afresh", cid, exc)
                continue
            if self.flow.restore_guard_state(cid, state):
                done.append(cid)
        return done

    def save_guards(self) -> None:
        """The guard states the last batches changed, to the guards port (production: written with
        the batch's acknowledgement)."""
        flow = self.flow
        if flow is None or not flow.touched:
            return
        touched, flow.touched = flow.touched, {}
        if self.ports.guards is None:
            return
        states = {cid: s for cid, slow in touched.items() if (s := flow.guard_state(cid, slow=slow)) is not None}
        if states:
            self.ports.guards.save(states)

    def screen(self, events: LiveEvents | Sequence[LiveEvent], now: float) -> tuple[list[int], list[tuple[int, str]]]:
        """The rows inside their plans' plausibility limits (agents/synctwin/mirror/event_limits.py),
        and the others with why (`now`: the worker's clock; a recording's: inf): one impossible event
        (a counter of 1e15, a ts weeks ahead) is a dead letter, not a pause of a healthy campaign.
        The batch is compared with every bound at once (`suspects`); `check` words (or clears) the rest."""
        events = LiveEvents.of(events)
        if not len(events):
            return [], []
        order = list(dict.fromkeys(events.campaign_ids))
        bounds = []
        for c in order:
            launch, end, curve, floors = self._flights[c]
            bounds.append(bounds_for(launch, end, curve, now, self.limits, floors))
        at = np.fromiter(map({c: k for k, c in enumerate(order)}.__getitem__, events.campaign_ids), np.intp)
        suspect = suspects(bounds, at, np.fromiter(events.ts, np.float64, len(events)), events.values)
        bad: list[tuple[int, str]] = []
        for j in np.flatnonzero(suspect).tolist():
            why = check(bounds[at[j]], events.ts[j], tuple(events.values[j].tolist()))
            if why is not None:
                bad.append((j, why))
        if not bad:
            return list(range(len(events))), []
        refused = {j for j, _ in bad}
        return [j for j in range(len(events)) if j not in refused], bad

    def feed(self, events: LiveEvents | Sequence[LiveEvent], at: float) -> None:
        """One batch of bid events, in stream order, as one message; run the Council until it has
        decided everything they ask for (time moved on to `at`)."""
        events = LiveEvents.of(events)
        if not len(events):
            self.advance(at)
            return
        columns = dict(zip(EVENT_FIELDS, events.values.T, strict=True))
        t = events.ts[-1]
        batch = BidBatch(
            t=t, ts=t, campaign_ids=events.campaign_ids, event_ids=events.event_ids, times=events.ts, **columns
        )
        self.events += len(events)
        self.source.put(batch)
        self.advance(at)
        self.save_guards()

    def observe(
        self, events: LiveEvents | Sequence[LiveEvent], invalid: int, at: float, *, screened: bool = False
    ) -> None:
        """Shadow mode's view of a batch: the events read, and how many entries did not parse
        (`screened`: the events the Council judged, inside their plans' limits already; else every
        event read, of known campaigns or not); nothing without shadow mode."""
        if self.shadow is not None:
            self.shadow.bids.put(Observed(LiveEvents.of(events), invalid, screened))
            self.advance(at)

    def advance(self, at: float) -> None:
        """Process every event up to `at` (a realtime environment does not wait: `at` is now), then
        every message those sent at the same instant: the Council is quiet when this returns."""
        env = self.env
        if at > env.now:
            env.run(until=at)
        while env.peek() <= env.now:
            env.step()


def build_council(
    env: simpy.Environment,
    settings: Settings,
    ports: Ports,
    *,
    disabled_guards: Iterable[str] = (),
    mirror: bool = True,
    flow: bool = True,
    shadow: ShadowPort | None = None,
    clock: Any = None,
    alert_history: bool = False,
    gate: Gate | None = None,
) -> Council:
    """The one composition of the Council (module docstring). `flow`/`mirror` False leave SyncFlow or
    the mirror out (the mirror alone sends its PAUSE to the control port); `shadow`: shadow mode's
    store port on a stream; `alert_history`: SyncNotify keeps closed alert episodes too (a replay's
    report counts them); `gate`: the launch side on a world. The agents are made in one fixed order:
    it fixes SimPy's order of events."""
    world = ports.events
    if not (mirror or flow or shadow):
        raise ValueError("a Council on a bid stream needs the mirror, SyncFlow or shadow mode")
    if (world is None) != (gate is None) or (world and not (flow and ports.platforms and ports.history)):
        raise ValueError("a Council on a world needs its gate, SyncFlow, the platforms' APIs and a history store")
    source: simpy.Store = simpy.Store(env)
    shield = SyncShieldAgent(env, SyncShield(ports.audit))
    notify = SyncNotifyAgent(
        env, SyncNotify(ports.alerts, clock=clock or (lambda: env.now), keep_history=alert_history)
    )
    syncflow = watcher = brain = None
    mail = {"audit": shield.mailbox, "alerts": notify.mailbox}  # SyncShield's and SyncNotify's
    if gate is not None:
        value = SyncValueAgent(env, SyncValue(ports.history, settings))
        twin = SyncTwinAgent(env, gate.gatekeeper, value.mailbox, paths=gate.paths)
    if flow:  # on a stream, SyncFlow reads the batches the mirror passes on (or the source itself)
        syncflow = SyncFlow(
            env,
            apis=ports.platforms or dict.fromkeys(get_args(Platform), ports.control),
            bids=world.subscribe() if world else simpy.Store(env) if mirror else source,
            settings=settings,
            ticks_per_day=86_400.0 / (world.spec.tick if world else settings.council_tick_s),
            disabled_guards=disabled_guards,
            epoch0=world.clock.epoch0 if world else 0.0,
            bidding=ports.platforms is not None,  # a stream's platforms pace their own bids
            **mail,
        )
    if mirror:
        pauses: simpy.Store = syncflow.mailbox if syncflow is not None else simpy.Store(env)
        # a world's tick is every campaign at one instant: the mirror reads every fifth on its own
        # and sends its PAUSE to SyncFlow's mailbox; a stream's rows are passed on with its verdicts
        watcher = MirrorAgent(
            env,
            bids=world.subscribe() if world else source,
            syncflow=pauses,
            cfg=mirror_config(settings),
            every=5 if world else 1,
            forward=syncflow.bids if syncflow is not None and not world else None,
            stuck_after=settings.mirror_stuck_after,
            **mail,
        )
        if syncflow is not None:
            syncflow.mirror = watcher.mailbox
        else:
            env.process(_deliver(pauses, ports.control))
    if gate is not None:  # SyncBrain deploys what the gate approves; shadow mode follows what it rejects
        brain = SyncBrainAgent(
            env, synctwin=twin.mailbox, syncflow=syncflow.mailbox, audit=shield.mailbox, seed=gate.seed
        )
        brain.shadow = ShadowAgent(
            env, bids=world.subscribe(), audit=shield.mailbox, platform_of=gate.platform_of
        ).mailbox
    live_shadow = None if shadow is None else LiveShadowAgent(env, store=shadow)
    return Council(env, ports, event_limits(settings), source, shield, notify, syncflow, watcher, brain, live_shadow)


def _deliver(pauses: simpy.Store, control: ControlPort) -> Generator[Any, Any, None]:
    """Without SyncFlow, the mirror's PAUSE goes to the control port itself."""
    while True:
        command: PauseCommand = yield pauses.get()
        yield from control.call("pause", campaign_id=command.campaign_id, command=command)


def pause_record(p: PauseCommand) -> dict[str, Any]:
    """A pause as `replay --bids --json` and the tests compare it."""
    return {"campaign_id": p.campaign_id, "reason": p.reason, "event_id": p.event_id, "ts": p.ts}
