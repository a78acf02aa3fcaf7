"""Run a scenario in-process: build the world and the Council on it, run virtual time, collect a Trace.

The Council is `build_council`'s (agents/council/build.py), the one composition `synctwin run` and
`replay --bids` use too, with the world as its ports: its ticks the event source, its platforms'
APIs the platforms, memory stores for the audit, the alerts and the clients' histories. The
harness is an observer: agents talk only through their mailboxes; the harness reads the world's
ground truth (what was really spent) and the agents' public reports at the end."""

from __future__ import annotations

import datetime as dt
import math
import time
import zlib
from collections.abc import Callable, Generator
from typing import Any

import numpy as np

from agents.council.build import Council, Gate, Ports, build_council
from agents.syncnotify.sinks import MemorySink
from agents.syncshield.backends import InMemoryAuditStore
from agents.synctwin.gate.gatekeeper import SimulationGatekeeper
from agents.syncvalue.stores import InMemoryHistoryStore
from harness.expectations import check_expectations
from harness.trace import CampaignTrace, Trace
from scenarios.schema import CampaignSpec, FaultSpec, Scenario
from synctwin.kernel.config import Settings, get_settings
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.history import History, load_history
from synctwin.kernel.messages import BidBatch, LaunchRequest
from synctwin.kernel.models import GateResult
from world.clock import make_environment
from world.history import generate_history
from world.world import World

# the audit records the timeline shows
_TIMELINE_EVENTS = ("CAMPAIGN_APPROVED", "CAMPAIGN_REJECTED", "CAMPAIGN_LAUNCHED", "CAMPAIGN_PAUSED")
_TIMELINE_EVENTS += ("BREAKER_TRANSITION", "CAMPAIGN_INVALID")


def _stream(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _client_histories(scenario: Scenario, seed: int) -> dict[str, History]:
    histories: dict[str, History] = {}
    start = scenario.world.start.date() if isinstance(scenario.world.start, dt.datetime) else scenario.world.start
    for client in scenario.clients:
        spec = client.history
        if spec.csv is not None:
            path = (scenario.base_dir / spec.csv) if scenario.base_dir else spec.csv
            histories[client.id] = load_history(path)
        else:
            gen = spec.generate
            rng = _stream(seed, 2, zlib.crc32(client.id.encode()))
            histories[client.id] = generate_history(scenario.world.platforms[gen.platform], gen, rng, start)
    return histories


class VirtualTimeGatekeeper(SimulationGatekeeper):
    """The gate as a replay sees it: its work takes no virtual time, so its result (and the audit
    record that carries it) says elapsed_ms 0. A wall-clock figure there would make two runs with
    one seed differ in their audit chain's hashes."""

    def evaluate(self, *args: Any, **kwargs: Any) -> GateResult:
        return super().evaluate(*args, **kwargs).model_copy(update={"elapsed_ms": 0.0})


def campaign_truth(scenario: Scenario, spec: CampaignSpec) -> dict[str, float]:
    """How a campaign's true rates differ from its platform's: its client's generated-history
    `rate_factors` (when that history is of the campaign's platform), overridden by the campaign's
    own `truth`. Without the default, a client generated with {aov: 0.5} would meet a world that
    sells at the platform's full order value: the gate and the world would disagree by construction."""
    client = next((c for c in scenario.clients if c.id == spec.client), None)
    gen = client.history.generate if client is not None else None
    platform = str(spec.strategy.get("platform", "meta"))
    inherited = dict(gen.rate_factors) if gen is not None and gen.platform == platform else {}
    return {**inherited, **spec.truth}


def _events_processed(env: Any) -> int:
    """SimPy events the run processed: every event gets the next id of the environment's counter,
    and those still queued at the end were not processed (SimPy has no public counter)."""
    scheduled = next(env._eid, None) if hasattr(env, "_eid") else None
    return 0 if scheduled is None else scheduled - len(getattr(env, "_queue", ()))


class _Recorder:
    """Samples the world's ground truth: hourly cumulative totals and each day's spend, and reports
    the virtual time to `progress(t, duration)` at each sample.

    Called every tick, so it does per-campaign work only when a day ends or an hour is sampled."""

    def __init__(self, trace: Trace, tick: float, progress: Callable[[float, float], None] | None) -> None:
        self.trace = trace
        self.progress = progress
        self.every = max(1, round(3600.0 / tick))
        self.n = 0
        self.current_day: int | None = None
        self.day_start: dict[str, float] = {}  # cumulative spend when the campaign's current day began
        self.last: BidBatch | None = None
        self.bid_events = 0

    def __call__(self, batch: BidBatch) -> None:
        self.bid_events += len(batch.campaign_ids)
        day = int((batch.t - 1e-9) // 86_400)  # the tick ending at midnight belongs to the day before
        if day != self.current_day:
            self.current_day = day
            if self.last is not None:  # the day of the previous tick is over
                self._close_day(self.last)
        self.last = batch
        self.n += 1
        if self.n % self.every == 0:
            self._sample(batch)
            if self.progress is not None:
                self.progress(batch.t, self.trace.duration_s)

    def _close_day(self, batch: BidBatch) -> None:
        for cid, spend in zip(batch.campaign_ids, batch.spend.tolist(), strict=True):
            self.trace.campaigns[cid].daily_spend.append(spend - self.day_start.get(cid, 0.0))
            self.day_start[cid] = spend

    def _sample(self, batch: BidBatch) -> None:
        for i, cid in enumerate(batch.campaign_ids):
            c = self.trace.campaigns[cid]
            c.hours.append(batch.t)
            c.spend.append(round(float(batch.spend[i]), 4))
            c.revenue.append(round(float(batch.revenue[i]), 4))
            c.conversions.append(float(batch.conversions[i]))
            c.clicks.append(float(batch.clicks[i]))

    def finish(self) -> None:
        batch = self.last
        if batch is None:
            return
        self._close_day(batch)
        for i, cid in enumerate(batch.campaign_ids):
            c = self.trace.campaigns[cid]
            c.daily_spend = [round(x, 4) for x in c.daily_spend]
            c.final = {
                k: float(getattr(batch, k)[i]) for k in ("spend", "revenue", "conversions", "clicks", "impressions")
            }


def run_scenario(
    scenario: Scenario,
    seed: int = 0,
    *,
    settings: Settings | None = None,
    disabled_guards: tuple[str, ...] = (),
    histories: dict[str, History] | None = None,
    realtime_factor: float | None = None,
    progress: Callable[[float, float], None] | None = None,
) -> Trace:
    """Run `scenario` for its duration in virtual time; the same seed gives the same trace.

    `realtime_factor` runs it on the wall clock instead (that many real seconds per scenario
    second, simpy.rt): the agents are the same, only the environment differs.
    `progress(t, duration)` is called about once a virtual hour while campaigns are live (a
    progress bar); the recorder calls it from the world's ticks, so it adds no SimPy event
    and the trace is the same with or without it."""
    started = time.perf_counter()
    settings = settings or get_settings()
    if seed < 0:
        raise InvalidInput(f"seed {seed} must be >= 0", field="seed")
    env = make_environment() if realtime_factor is None else make_environment(realtime=True, factor=realtime_factor)
    trace = Trace(scenario=scenario.name, seed=seed, duration_s=scenario.duration, epoch0=scenario.world.epoch0)
    fault_ids = {id(f): f.id or f"{f.kind}#{i}" for i, f in enumerate(scenario.faults)}

    def on_fault(what: str, fault: FaultSpec, t: float) -> None:
        fid = fault_ids[id(fault)]
        entry = trace.faults.setdefault(
            fid,
            {"kind": fault.kind, "platform": fault.platform, "campaign": fault.campaign, "start": None, "end": None},
        )
        if what in ("start", "end"):
            entry[what] = t
        trace.timeline.append({"t": t, "kind": f"fault_{what}", "fault": fid, "fault_kind": fault.kind})

    world = World(env, scenario.world, _stream(seed, 1), scenario.faults, on_fault)
    audit_store, alert_sink = InMemoryAuditStore(clock=world.clock.now), MemorySink()
    store = InMemoryHistoryStore({**_client_histories(scenario, seed), **(histories or {})})
    platform_of = {c.id: str(c.strategy.get("platform", "meta")) for c in scenario.campaigns}
    council = build_council(
        env,
        settings,
        Ports(None, audit_store, [alert_sink], platforms=world.apis, events=world, history=store),
        disabled_guards=(*scenario.disabled_guards, *disabled_guards),
        mirror=scenario.mirror,  # the live mirror compares every launched campaign with its projection
        clock=world.clock.now,
        alert_history=True,  # every episode kept: the report shows how many evaluations each stood for
        gate=Gate(VirtualTimeGatekeeper(settings=settings), seed, platform_of, scenario.gate_paths),
    )
    recorder = _Recorder(trace, scenario.world.tick, progress)
    world.observe(recorder)

    for spec in scenario.campaigns:
        strategy = spec.strategy
        trace.campaigns[spec.id] = CampaignTrace(
            campaign_id=spec.id,
            client_id=spec.client,
            platform=str(strategy.get("platform", "meta")),
            daily_budget=float(strategy.get("daily_budget", 0) or 0),
            launch_at=spec.launch_at,
            gross_margin=float(strategy.get("gross_margin", 1.0)),
            gross_margin_default="gross_margin" not in strategy,
        )
        world.truths[spec.id] = campaign_truth(scenario, spec)

    def schedule() -> Generator[Any, Any, None]:
        for spec in sorted(scenario.campaigns, key=lambda c: c.launch_at):
            if spec.launch_at > env.now:
                yield env.timeout(spec.launch_at - env.now)
            params = {**spec.strategy, "campaign_id": spec.id}
            yield council.brain.mailbox.put(LaunchRequest(spec.client, params, test=spec.test))

    env.process(schedule())
    # inclusive: SimPy stops *before* events at `until`, which would drop the tick that ends the
    # scenario (a 30-day run would deliver 43,199 minutes, its last day one minute short)
    env.run(until=math.nextafter(scenario.duration, math.inf))
    recorder.finish()
    if progress is not None:
        progress(scenario.duration, scenario.duration)
    trace.events = _events_processed(env)
    trace.bid_events = recorder.bid_events
    _collect(trace, council, audit_store, alert_sink, world)
    trace.expectations = check_expectations(scenario, trace)
    trace.wall_s = time.perf_counter() - started
    return trace


def _collect(trace: Trace, council: Council, audit: InMemoryAuditStore, alerts: MemorySink, world: World) -> None:
    epoch0, flow, notify = trace.epoch0, council.flow, council.notify.notify
    trace.ticks = world.ticks
    for cid, decision in council.brain.decisions.items():
        c = trace.campaigns.get(cid)
        if c is None:
            continue
        if isinstance(decision, Exception):
            c.decision, c.gate_error = "INVALID", str(decision)
            continue
        c.decision, c.confidence = decision.decision, decision.confidence_score
        c.projected_uplift = decision.projected_net_profit_uplift
        c.baseline_daily_revenue = decision.baseline.get("daily_revenue", 0.0)
        c.baseline_daily_spend = decision.baseline.get("daily_spend", 0.0)
        c.projection = [p.model_dump() for p in decision.projection.points]
    for cid, r in flow.report().items():
        c = trace.campaigns[cid]
        c.status, c.launched_at = r["status"], r["launched_at"]
        c.pause_reason, c.paused_at, c.pause_detail = r["pause_reason"], r["paused_at"], r["pause_detail"]
        c.bids, c.guards = r["bids"], r["guards"]
        if c.final and c.launched_at is not None:
            c.final["live_s"] = trace.duration_s - c.launched_at
    trace.recoveries = {p: v for p, v in flow.recoveries.items() if v}
    trace.breakers = flow.breaker_states()
    trace.audit = audit.records()
    # one alert per episode; `count`: the evaluations it stood for (a grey zone re-entered 40 times)
    trace.alerts = [
        {"t": round(a.ts - epoch0, 3), "severity": a.severity, "title": a.title, "count": notify.count(a)}
        for a in alerts.alerts
    ]
    for rec in trace.audit:
        kind = rec["event_type"]
        if kind in _TIMELINE_EVENTS:
            entry = {"t": round(rec["ts"] - epoch0, 3), "kind": kind.lower()}
            if rec["campaign_id"]:
                entry["campaign"] = rec["campaign_id"]
            if rec["reason"]:
                entry["reason"] = rec["reason"]
            if kind == "BREAKER_TRANSITION":
                entry.update(platform=rec["metadata"]["platform"], to=rec["metadata"]["to_state"])
            if kind in ("CAMPAIGN_APPROVED", "CAMPAIGN_REJECTED"):
                entry["confidence"] = rec["metadata"].get("confidence_score")
            trace.timeline.append(entry)
    trace.timeline.sort(key=lambda e: (e["t"], e["kind"]))
