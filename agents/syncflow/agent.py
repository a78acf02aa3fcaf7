"""SyncFlow as a SimPy agent: deploys approved campaigns, bids and paces them, and guards them.

Three processes: the mailbox (Deploy messages), the watcher (the bid stream's batches: the guards)
and the bidder (pacing every `bid_interval`, each platform's API behind a circuit breaker). Pauses,
guard transitions and breaker moves go to SyncShield (audit) and SyncNotify (alerts) as messages.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

import simpy

from agents.base import Agent
from agents.syncflow.breaker import BreakerState, CircuitBreaker
from agents.syncflow.guards import AutoRollback, BudgetEmergency, Guard, GuardState, MarginGuardian, Transition
from agents.syncflow.persist import VERSION
from agents.synctwin.gate.outcomes import CAMPAIGN_OUTCOME, FLIGHT_ENDED, PAUSED, campaign_outcome
from synctwin.kernel.config import Settings
from synctwin.kernel.messages import Adopt, AlertMessage, AuditEvent, BidBatch, Deploy, PauseCommand, Watch
from world.api import ApiError

GUARDS = ("margin_guardian", "budget_emergency", "auto_rollback", "api_circuit_breaker")
SECONDS_PER_DAY = 86_400.0
PAUSE_RETRY = 5.0
BID_FLOOR, BID_CEILING = 0.5, 3.0  # the pacer's bid stays within these multiples of the planned CPM
# what a stream's rows leave in a campaign besides its guards: the guards are fed from these
REPORTED = ("status", "platform", "launched_at", "pause_reason", "paused_at", "pause_acked_at", "pause_detail")
STREAM_FIELDS = ("day", "day_start_spend", "last_spend", "last_t", "spend_today", "next_check", "daily_spend")


@dataclass(slots=True)
class BidLedger:
    """Where every bid decision went: decided = delivered + superseded + lost + pending."""

    decided: int = 0
    delivered: int = 0
    superseded: int = 0
    lost: int = 0
    pending: float | None = None
    cached_intervals: int = 0  # intervals the platform served an older, acknowledged bid
    last_ack: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        counts = {k: getattr(self, k) for k in ("decided", "delivered", "superseded", "lost")}
        return counts | {"pending": int(self.pending is not None), "cached_intervals": self.cached_intervals}


@dataclass(slots=True)
class LiveCampaign:
    strategy: Any
    gate: Any
    platform: str
    planned_cpm: float
    bid: float
    status: str = "LAUNCHING"
    launched_at: float | None = None
    pause_reason: str | None = None
    paused_at: float | None = None
    pause_acked_at: float | None = None
    pause_detail: dict[str, Any] = field(default_factory=dict)
    guards: list[Guard] = field(default_factory=list)
    budget: BudgetEmergency | None = None
    ledger: BidLedger = field(default_factory=BidLedger)
    day: int = -1
    day_start_spend: float = 0.0
    last_spend: float = 0.0
    last_t: float | None = None  # a stream's rows: env time of the last event this agent saw
    spend_today: float = 0.0
    daily_spend: list[float] = field(default_factory=list)
    stale_alerted: bool = False
    test: bool = False  # a chaos drill's campaign: no client outcome to record
    ends_at: float = float("inf")  # env time its planned flight is over
    outcome_recorded: bool = False  # CAMPAIGN_OUTCOME audited (once: at the flight's end or its pause)
    next_check: float = -math.inf  # a stream batch's rows: env time of this campaign's next slow-guard check
    pause_event_id: str | None = None  # the bid event that decided the pause


def planned_cvr_per_click(strategy: Any, baseline: dict[str, float]) -> float | None:
    """Conversions per click the plan expects: the history's, or less when the audience's demand
    (audience x cvr over the days) cannot absorb the clicks the budget buys (the gate's funnel)."""
    cvr, cpm, ctr = baseline.get("cvr_click"), strategy.cpm or baseline.get("cpm"), strategy.ctr or baseline.get("ctr")
    if not cvr or not 0 < cvr <= 1:
        return None
    if cpm and ctr:
        clicks_per_day = strategy.daily_budget / cpm * 1000.0 * ctr
        demand_per_day = strategy.audience_size * strategy.cvr / strategy.duration_days
        cvr = min(cvr, demand_per_day / clicks_per_day)
    return cvr


def planned_roas(gate: Any) -> float | None:
    """Revenue per dollar the gate's projection expects over the campaign (medians at its end):
    what MarginGuardian tests a window's shortfall against."""
    points = getattr(getattr(gate, "projection", None), "points", None)
    if not points:
        return None
    last = points[-1]
    return last.revenue_p50 / last.spend_p50 if last.spend_p50 > 0 else None


class SyncFlow(Agent):
    name = "syncflow"

    def __init__(
        self,
        env: simpy.Environment,
        *,
        apis: dict[str, Any],
        bids: simpy.Store,
        audit: simpy.Store,
        alerts: simpy.Store,
        settings: Settings,
        ticks_per_day: float,
        disabled_guards: Iterable[str] = (),
        mirror: simpy.Store | None = None,
        epoch0: float = 0.0,
        bidding: bool = True,
    ) -> None:
        self.apis, self.bids, self.audit_box, self.alert_box, self.mirror = apis, bids, audit, alerts, mirror
        self.epoch0 = epoch0  # epoch seconds at the environment's time zero
        self.settings, self.ticks_per_day, self.disabled = settings, ticks_per_day, set(disabled_guards)
        if unknown := self.disabled - set(GUARDS):
            raise ValueError(f"unknown guard(s) {sorted(unknown)}; expected some of {', '.join(GUARDS)}")
        self.campaigns: dict[str, LiveCampaign] = {}
        # campaigns a stream's rows changed since the owner last read `guard_state`: True when their
        # slow guards (MarginGuardian, AutoRollback: they change only at their checks) may have too
        self.touched: dict[str, bool] = {}
        self.breakers = {
            p: CircuitBreaker(
                p, lambda: env.now, failure_threshold=settings.breaker_failures, reset_timeout=settings.breaker_reset
            )
            for p in apis
            if "api_circuit_breaker" not in self.disabled
        }
        self.recoveries: dict[str, list[float]] = {p: [] for p in apis}  # first success after failures
        self._failing: dict[str, bool] = dict.fromkeys(apis, False)
        self._breaker_seen: dict[str, int] = dict.fromkeys(apis, 0)
        self._next_guard_check = 0.0
        self._tick = SECONDS_PER_DAY / ticks_per_day
        self._mid_flight = 1.5 * self._tick  # a stream's campaign first met later than this after launch
        super().__init__(env)
        env.process(self._watch())
        if bidding:  # production: the platforms pace their own bids; SyncFlow guards and pauses
            env.process(self._bidder())

    # --- messages out ---------------------------------------------------------------------------
    def _audit(
        self, event_type: str, campaign_id: str | None = None, reason: str | None = None, **metadata: Any
    ) -> None:
        self.audit_box.put(AuditEvent(event_type, None, campaign_id, reason, metadata))

    def _alert(self, severity: str, title: str, message: str, **details: Any) -> None:
        self.alert_box.put(AlertMessage(severity, title, message, details))

    def _audit_transition(self, tr: Transition, reason: str | None) -> None:
        reason = reason if tr.to_state == "TRIGGERED" else None
        moved = {"from_state": tr.from_state, "to_state": tr.to_state, "t": tr.t, "why": tr.why}
        self._audit("GUARD_TRANSITION", tr.campaign_id, reason, guard=tr.guard, **moved, **tr.detail)

    # --- deployment -----------------------------------------------------------------------------
    def handle(self, message: Any) -> Generator[Any, Any, None]:
        if isinstance(message, Deploy):
            self.env.process(self._launch(message))
        elif isinstance(message, Adopt):
            self._adopt(message)
        elif isinstance(message, PauseCommand):
            c = self.campaigns.get(message.campaign_id)
            if c is not None and c.status == "LIVE":
                self._pause_by(c, message, "a pause command")
        yield from ()

    def _adopt(self, message: Adopt) -> None:
        """Guard a campaign already live (production, a recording): no launch call, guards from its
        plan, the mirror told when it has a projection; its CAMPAIGN_OUTCOME is shadow mode's job."""
        plan = message.plan
        s, cid = plan.strategy, plan.campaign_id
        if cid in self.campaigns and not message.replace:
            return
        launched = plan.launch_ts - self.epoch0
        c = self._campaign(
            s,
            plan.gate(),
            status="LIVE",
            launched_at=launched,
            outcome_recorded=True,
            ends_at=launched + s.duration_days * SECONDS_PER_DAY,
        )
        c.ledger.last_ack = launched
        c.guards = self._make_guards(c, launched)
        self.campaigns[cid] = c
        self.touched[cid] = True  # its first state written whole
        if message.paused:  # an earlier worker paused it: nothing to guard, nothing to pause again
            c.status, c.pause_reason = "PAUSED", "ALREADY_PAUSED"
            return
        if self.mirror is not None and plan.projection is not None:
            self.mirror.put(Watch(cid, plan.projection))

    def _launch(self, deploy: Deploy) -> Generator[Any, Any, None]:
        s, gate = deploy.strategy, deploy.gate
        if gate.decision != "APPROVED" and not deploy.test:
            self._audit("DEPLOY_REFUSED", s.campaign_id, "NOT_APPROVED")
            return
        c = self.campaigns[s.campaign_id] = self._campaign(s, gate, test=deploy.test)
        payload = {"campaign_id": s.campaign_id, "daily_budget": s.daily_budget, "bid_cpm": c.bid}
        payload |= {k: getattr(s, k) for k in ("audience_size", "cvr", "duration_days")}
        yield from self._call_until_done(s.platform, "launch", payload)
        now = self.env.now
        c.status, c.launched_at, c.ledger.last_ack = "LIVE", now, now
        c.ends_at = now + s.duration_days * SECONDS_PER_DAY
        c.guards = self._make_guards(c, now)
        launched = {"platform": s.platform, "daily_budget": s.daily_budget, "bid_cpm": round(c.bid, 4)}
        self._audit("CAMPAIGN_LAUNCHED", s.campaign_id, **launched)
        if self.mirror is not None:  # the live mirror compares the campaign with its projection from now on
            projection = gate.projection.model_dump(mode="json") | {"launch_ts": self.epoch0 + now}
            self.mirror.put(Watch(s.campaign_id, projection))

    def _campaign(self, s: Any, gate: Any, **fields: Any) -> LiveCampaign:
        cpm = s.cpm or gate.baseline.get("cpm") or 5.0
        return LiveCampaign(s, gate, s.platform, cpm, cpm * self.settings.bid_headroom, **fields)

    def _make_guards(self, c: LiveCampaign, now: float) -> list[Guard]:
        st, cid = self.settings, c.strategy.campaign_id
        c.budget = BudgetEmergency(
            cid,
            daily_budget=c.strategy.daily_budget,
            ticks_per_day=self.ticks_per_day,
            cap_share=st.budget_cap_share,
            lookahead_ticks=st.budget_lookahead_ticks,
            runaway_factor=st.runaway_factor,
            runaway_ticks=st.runaway_ticks,
            enabled="budget_emergency" not in self.disabled,
        )
        guards: list[Guard] = [
            MarginGuardian(
                cid,
                launched_at=now,
                gross_margin=c.strategy.gross_margin,
                warmup=st.margin_warmup,
                window=st.margin_window,
                tolerance=st.margin_tolerance,
                persistence=st.margin_persistence,
                planned_roas=planned_roas(c.gate),
                order_value=c.strategy.aov or c.gate.baseline.get("avg_order_value"),
                enabled="margin_guardian" not in self.disabled,
            ),
        ]
        expected_cvr = planned_cvr_per_click(c.strategy, c.gate.baseline)
        if expected_cvr is not None:
            guards.append(
                AutoRollback(
                    cid,
                    launched_at=now,
                    expected_cvr=expected_cvr,
                    drop=st.rollback_drop,
                    threshold=st.rollback_threshold,
                    warmup=st.rollback_warmup,
                    enabled="auto_rollback" not in self.disabled,
                )
            )
        return guards

    # --- the bid stream: guards -----------------------------------------------------------------
    def _watch(self) -> Generator[Any, Any, None]:
        """Every row of every batch, in order: a world's tick (every campaign at one time, the slow
        guards on one grid) or a stream batch (one event per row at its own time, the slow guards
        every `guard_interval` per campaign, and the mirror's verdicts by row when it passes them on)."""
        interval, tick = self.settings.guard_interval, self._tick
        while True:
            batch: BidBatch = yield self.bids.get()
            campaigns, touched = self.campaigns, self.touched  # the owner swaps `touched` between batches
            now = batch.t
            times, verdicts = batch.times, batch.verdicts
            check_tick = now >= self._next_guard_check
            if check_tick:
                self._next_guard_check = now + interval
            day = int((now - 1e-9) // SECONDS_PER_DAY)  # the tick ending at midnight belongs to the day before
            spends = batch.spend.tolist()  # one conversion per tick, not one numpy scalar per campaign
            for i, cid in enumerate(batch.campaign_ids):
                c = campaigns.get(cid)
                if c is None:
                    continue
                if times is not None:
                    now = times[i]
                    day = int((now - 1e-9) // SECONDS_PER_DAY)
                if c.status != "LIVE" or now >= c.ends_at:
                    if not c.outcome_recorded and not c.test and (c.status == "LIVE" or c.pause_acked_at is not None):
                        self._record_outcome(c, batch, i)
                    if c.status != "LIVE":
                        continue
                if verdicts is not None and (command := verdicts.get(i)) is not None:
                    self._pause_by(c, command, "the mirror's verdict")
                    continue
                last_t = c.last_t
                if times is None:
                    check_slow = check_tick
                elif last_t is not None and now <= last_t:
                    continue  # a duplicate, or older than the last event judged (redelivered, republished)
                else:
                    check_slow = now >= c.next_check
                    if check_slow:
                        c.next_check = now + interval
                if check_slow or cid not in touched:
                    touched[cid] = check_slow
                spend = spends[i]
                if day != c.day:
                    if c.day >= 0:
                        c.daily_spend.append(c.spend_today)
                        c.day_start_spend = c.last_spend
                    elif times is not None and now - (c.launched_at or now) > self._mid_flight:
                        self._join_mid_flight(c, now, day, spend)
                    c.day = day
                spend_tick = spend - c.last_spend
                c.last_spend = spend
                if times is not None:  # a stream: events this agent did not see (another worker's) make a gap
                    gap = now - (last_t if last_t is not None else c.launched_at or now)
                    if gap > tick:  # ... whose spend is a rate over the gap, not one tick's worth
                        spend_tick *= tick / gap
                    c.last_t = now
                c.spend_today = spend_today = spend - c.day_start_spend
                fired = None if c.budget is None else c.budget.evaluate(now, spend_today, spend_tick)
                if fired is None and check_slow:
                    for guard in c.guards:
                        seen = len(guard.transitions)
                        if isinstance(guard, MarginGuardian):
                            fired = guard.evaluate(now, spend, float(batch.revenue[i]))
                        else:
                            fired = guard.evaluate(now, float(batch.clicks[i]), float(batch.conversions[i]))
                        for tr in guard.transitions[seen:]:
                            if tr is not fired:
                                self._audit_transition(tr, None)
                        if fired is not None:
                            break
                if fired is not None:
                    self._pause(c, fired, batch.row_event_id(i), batch.ts - batch.t + now)

    # --- a campaign's guard state, for the worker that takes it over ----------------------------
    def guard_state(self, campaign_id: str, *, slow: bool = True) -> dict[str, Any] | None:
        """A live campaign's guards and the bookkeeping they are fed from, JSON-ready and versioned
        (agents/syncflow/persist.py); None: not a live campaign (a paused one has its marker).
        `slow` False: without MarginGuardian's and AutoRollback's (unchanged since their last check)."""
        c = self.campaigns.get(campaign_id)
        if c is None or c.status != "LIVE" or c.launched_at is None:
            return None
        flow = {f: getattr(c, f) for f in STREAM_FIELDS}
        guards = {g.name: g.to_state() for g in [c.budget, *(c.guards if slow else ())] if g is not None}
        return {"v": VERSION, "launched_at": c.launched_at, "flow": flow, "guards": guards}

    def restore_guard_state(self, campaign_id: str, state: dict[str, Any]) -> bool:
        """Continue a live campaign's guards from an earlier worker's `guard_state`, judging its next
        event as that worker would have. False, nothing changed: not live, another launch's or
        version's state, or no state at all. A guard disabled here or there starts as configured here."""
        c = self.campaigns.get(campaign_id)
        if c is None or c.status != "LIVE" or state.get("v") != VERSION or state.get("launched_at") != c.launched_at:
            return False
        try:
            flow = {f: state["flow"][f] for f in STREAM_FIELDS}
            saved = state["guards"]

            def restored(g: Guard) -> Guard:
                s = saved.get(g.name)
                if s is None or g.state is GuardState.DISABLED or s.get("state") == GuardState.DISABLED:
                    return g
                return g.from_state(s)

            budget = None if c.budget is None else restored(c.budget)
            guards = [restored(g) for g in c.guards]
            day, last_t = int(flow["day"]), None if flow["last_t"] is None else float(flow["last_t"])
            spends = [float(flow[f]) for f in ("day_start_spend", "last_spend", "spend_today", "next_check")]
            daily = [float(x) for x in flow["daily_spend"]]
        except (KeyError, TypeError, ValueError, AttributeError):
            return False
        c.day, c.last_t, c.daily_spend = day, last_t, daily
        c.day_start_spend, c.last_spend, c.spend_today, c.next_check = spends
        c.budget, c.guards = budget, guards  # type: ignore[assignment]
        self.touched[campaign_id] = True
        return True

    def _join_mid_flight(self, c: LiveCampaign, now: float, day: int, spend: float) -> None:
        """A campaign first met long after its launch (a takeover, a restart) reports totals since
        launch: the spend before today is put at its average rate (the platform has no daily split)
        and this event is no tick of spend, or a restart would pause every campaign as a runaway."""
        launched = c.launched_at or now
        day_start = max(day * SECONDS_PER_DAY, launched)
        c.last_spend = spend
        c.day_start_spend = spend * (day_start - launched) / (now - launched)

    def _pause(self, c: LiveCampaign, fired: Transition, event_id: str, ts: float) -> None:
        guard = next(g for g in [c.budget, *c.guards] if g is not None and g.name == fired.guard)
        self._audit_transition(fired, guard.pause_reason)
        self._pause_for(c, guard.pause_reason, fired.why, {"guard": fired.guard, **fired.detail}, event_id, ts)

    def _pause_by(self, c: LiveCampaign, command: PauseCommand, why: str) -> None:
        """Pause as `command` asks (`why` when it says not why)."""
        detail = command.detail
        self._pause_for(c, command.reason, detail.get("why", why), detail, command.event_id, command.ts)

    def _pause_for(
        self, c: LiveCampaign, reason: str, why: str, detail: dict[str, Any], event_id: str | None, ts: float | None
    ) -> None:
        """Stop bidding now, audit and alert, and take the pause to the platform until it has it
        (the PAUSE names the event that decided: `event_id`, its epoch seconds `ts`)."""
        c.status, c.pause_reason, c.paused_at = "PAUSED", reason, self.env.now
        detail = {k: v for k, v in detail.items() if k != "why"}
        c.pause_event_id, c.pause_detail = event_id, {"why": why, **detail}
        if c.ledger.pending is not None:  # bidding stops: an undelivered bid is superseded by the pause
            c.ledger.pending = None
            c.ledger.superseded += 1
        cid = c.strategy.campaign_id
        self._audit("CAMPAIGN_PAUSED", cid, reason, why=why, **detail)
        self._alert("WARNING", f"{reason}: {cid} paused", why, campaign_id=cid, reason=reason, **detail)
        self.env.process(self._send_pause(c, PauseCommand(cid, reason, detail, event_id=event_id, ts=ts)))

    def _send_pause(self, c: LiveCampaign, command: PauseCommand) -> Generator[Any, Any, None]:
        yield from self._call_until_done(c.platform, "pause", {"campaign_id": command.campaign_id, "command": command})
        c.pause_acked_at = self.env.now

    def _record_outcome(self, c: LiveCampaign, batch: BidBatch, i: int) -> None:
        """Audit the campaign's realized outcome once: at its flight's end, or once the platform
        has its pause (what it delivered until then); the arithmetic is production's."""
        c.outcome_recorded = True
        s, launched = c.strategy, c.launched_at or 0.0
        paused = c.status == "PAUSED"
        days = ((c.paused_at or launched) - launched if paused else c.ends_at - launched) / SECONDS_PER_DAY
        reason, pause_reason = (PAUSED, c.pause_reason) if paused else (FLIGHT_ENDED, None)
        run = {"platform": c.platform, "launch_ts": self.epoch0 + launched, "days": days, "days_total": s.duration_days}
        run |= {m: float(getattr(batch, m)[i]) for m in ("spend", "revenue", "conversions")}
        meta = campaign_outcome(
            **run, gross_margin=s.gross_margin, gate=c.gate, reason=reason, pause_reason=pause_reason
        )
        self.audit_box.put(AuditEvent(CAMPAIGN_OUTCOME, s.client_id, s.campaign_id, reason, meta))

    # --- the platform API -----------------------------------------------------------------------
    def _call(self, platform: str, op: str, payload: dict[str, Any]) -> Generator[Any, Any, bool]:
        """One call through the breaker (when enabled); True when the platform acknowledged it."""
        breaker = self.breakers.get(platform)
        if breaker is not None and not breaker.allow():
            self._note_breaker(platform)
            return False
        try:
            yield from self.apis[platform].call(op, **payload)
        except ApiError as exc:
            self._failing[platform] = True
            if breaker is not None:
                breaker.failure(str(exc))
                self._note_breaker(platform)
            return False
        if self._failing[platform]:
            self._failing[platform] = False
            self.recoveries[platform].append(self.env.now)
        if breaker is not None:
            breaker.success()
            self._note_breaker(platform)
        return True

    def _call_until_done(self, platform: str, op: str, payload: dict[str, Any]) -> Generator[Any, Any, None]:
        """Launches and pauses must not be lost: retry until the platform has them."""
        while not (yield from self._call(platform, op, payload)):
            yield self.env.timeout(PAUSE_RETRY)

    def _note_breaker(self, platform: str) -> None:
        breaker = self.breakers[platform]
        for tr in breaker.transitions[self._breaker_seen[platform] :]:
            moved = {"from_state": tr.from_state, "to_state": tr.to_state, "t": tr.t, "why": tr.why}
            self._audit("BREAKER_TRANSITION", None, None, platform=platform, **moved)
            if tr.to_state == "OPEN" and tr.from_state == "CLOSED":
                self._alert(
                    "WARNING", f"{platform} API circuit open", f"serving cached bids: {tr.why}", platform=platform
                )
        self._breaker_seen[platform] = len(breaker.transitions)

    # --- bidding and pacing ---------------------------------------------------------------------
    def _next_bid(self, c: LiveCampaign) -> float:
        """Keep the day's spend on its pace: raise the bid cap when behind, lower it when ahead."""
        day_fraction = (self.env.now % SECONDS_PER_DAY) / SECONDS_PER_DAY
        target = c.strategy.daily_budget * day_fraction
        if target > 0:
            ratio = c.spend_today / target
            if ratio < 0.95:
                c.bid *= 1.05
            elif ratio > 1.02:
                c.bid *= 0.97
        c.bid = min(max(c.bid, BID_FLOOR * c.planned_cpm), BID_CEILING * c.planned_cpm)
        return c.bid

    def _bidder(self) -> Generator[Any, Any, None]:
        """Every `bid_interval` a new bid per live campaign, sent per platform; one that did not
        arrive is retried every `bid_retry` until superseded (meanwhile the platform serves the last)."""
        interval, retry = self.settings.bid_interval, self.settings.bid_retry
        next_decision = self.env.now + interval
        while True:
            yield self.env.timeout(
                max(0.0, min(next_decision, self.env.now + retry) - self.env.now)
                if self._any_pending()
                else next_decision - self.env.now
            )
            deciding = self.env.now >= next_decision
            if deciding:
                next_decision = self.env.now + interval
            by_platform: dict[str, list[LiveCampaign]] = {}
            for c in self.campaigns.values():
                if c.status == "LIVE":
                    by_platform.setdefault(c.platform, []).append(c)
            for platform, live in by_platform.items():
                if deciding:
                    for c in live:
                        ledger = c.ledger
                        if ledger.pending is not None:
                            ledger.superseded += 1
                        ledger.pending = self._next_bid(c)
                        ledger.decided += 1
                bids = {c.strategy.campaign_id: c.ledger.pending for c in live if c.ledger.pending is not None}
                if not bids:
                    continue
                delivered = yield from self._call(platform, "set_bids", {"bids": bids})
                for c in live:
                    self._settle(c, bids, delivered)

    def _any_pending(self) -> bool:
        return any(c.ledger.pending is not None for c in self.campaigns.values() if c.status == "LIVE")

    def _settle(self, c: LiveCampaign, sent: dict[str, float], delivered: bool) -> None:
        ledger, cid = c.ledger, c.strategy.campaign_id
        if cid not in sent or ledger.pending is None:
            return
        if delivered:
            ledger.delivered += 1
            ledger.pending, ledger.last_ack, c.stale_alerted = None, self.env.now, False
            return
        ledger.cached_intervals += 1  # the platform keeps serving the last bid it acknowledged
        if not self.breakers:  # without the breaker's pending queue, a failed bid is gone
            ledger.lost += 1
            ledger.pending = None
        stale = self.env.now - ledger.last_ack
        if stale > self.settings.bid_staleness_cap and not c.stale_alerted:
            c.stale_alerted = True
            self._alert("WARNING", f"stale bids: {cid}", f"serving cached bids {stale:.0f}s old", campaign_id=cid)

    # --- what the harness reads at the end ---------------------------------------------------------
    def report(self) -> dict[str, Any]:
        return {
            cid: {k: getattr(c, k) for k in REPORTED}
            | {
                "bids": c.ledger.to_dict(),
                "daily_spend": [*c.daily_spend, c.spend_today] if c.day >= 0 else [],
                "guards": {g.name: g.state.value for g in [c.budget, *c.guards] if g is not None},
            }
            for cid, c in self.campaigns.items()
        }

    def breaker_states(self) -> dict[str, str]:
        return {p: b.state.value for p, b in self.breakers.items()} | {
            p: BreakerState.CLOSED.value + " (disabled)" for p in self.apis if p not in self.breakers
        }
