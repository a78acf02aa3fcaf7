"""Shadow mode and live outcomes in production: the Redis port of the Council's shadow agent
(`LiveShadowAgent`), fed by the bid stream through the Council's consumer group.

1. **The market.** Each bid event (cumulative counters since launch) of a campaign with a published
   plan is kept as that campaign's latest value of the UTC day, per platform: sorted set
   `{prefix}market:{platform}:{date}`, member `{campaign}|{launch_ts}|{metric}`, by ZADD GT in the
   MULTI/EXEC of the batch's XACK. Counters only grow, so the maximum is the latest, and a maximum is
   commutative and idempotent: duplicates, redeliveries, older events or a second worker change
   nothing. A day's market is the sum over campaigns of (that day's value - their previous day's).
2. **Shadow outcomes.** A day closes when an event `grace_s` past its end arrives (`--once`: any day
   before the newest event). Each pending rejection (`{prefix}shadow:pending`) whose flight covers a
   closed day is re-simulated under that day's market (`shadow_day`) and a SHADOW_OUTCOME audited
   with its running totals (`{prefix}campaign:{id}:shadow`) in one WATCH/MULTI/EXEC: each (campaign,
   day) once, across restarts and workers. The final day's record is `final` and ends the pending.
3. **Live outcomes.** Each approved campaign (`{prefix}outcome:pending`) whose flight is over or that
   was paused (the mirror's hash, or a PAUSE on `{prefix}control`) gets, `grace_s` later, one
   CAMPAIGN_OUTCOME from its latest totals within the flight (`{prefix}campaign:{id}:totals`, ZADD GT),
   with the marker `{prefix}campaign:{id}:outcome` in the same transaction.

Events without a published plan are acknowledged and counted (`unknown`), and so are invalid ones
(`invalid`) and impossible ones (`implausible`: agents/synctwin/mirror/event_limits.py, a ts outside
the clock or the flight): one would otherwise raise a day's market maximum for good, or close days
early. The stream's mechanics (poison, backoff, takeover) are the Council's consumer's.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from agents.syncshield.backends import RedisAuditStore
from agents.synctwin.gate.outcomes import CAMPAIGN_OUTCOME, FLIGHT_ENDED, PAUSED, GateFacts, campaign_outcome
from agents.synctwin.mirror.agent import PAUSE_REASON
from agents.synctwin.mirror.deviation import EVENT_FIELDS, ProjectionCurve
from agents.synctwin.mirror.event_limits import Bounds, EventLimits, bounds_for, check
from agents.synctwin.shadow.agent import (
    DAY,
    SHADOW_OUTCOME,
    MarketDay,
    ShadowTotals,
    flight_days,
    market_from_sums,
    outcome_record,
    planned_market,
    shadow_day,
)
from synctwin.infra import metrics
from synctwin.infra.keyed_writes import KeyedWrites
from synctwin.kernel.messages import LiveEvents
from synctwin.kernel.models import Strategy

log = logging.getLogger("synctwin.shadow")

METRICS = EVENT_FIELDS  # spend, impressions, clicks, conversions, revenue
MARKET_TTL_S = 400 * 86_400  # market days are kept a little over a year
_SUMS = ("spend", "revenue", "conversions", "days")  # ShadowTotals' sums, as kept in {prefix}campaign:{id}:shadow


def day_of(ts: float) -> int:
    """The UTC day (index since the epoch) an event belongs to; one exactly at midnight closes
    the day before (as in the SimPy twin)."""
    return int((ts - 1e-6) // DAY)


def iso(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def market_key(prefix: str, platform: str, day: int) -> str:
    return f"{prefix}market:{platform}:{iso(day)}"


def market_sums(client: Any, prefix: str, platform: str, day: int) -> tuple[dict[str, float], int]:
    """The live campaigns' summed counters on `platform` during `day` (each: its value at the day's
    end less at its previous day's with data, zero on launch day; one first seen later is left out,
    its counters hold more than the day), and how many campaigns."""
    ends: dict[tuple[str, str], dict[str, float]] = {}
    for member, score in client.zrange(market_key(prefix, platform, day), 0, -1, withscores=True):
        cid, launch, metric = member.rsplit("|", 2)
        ends.setdefault((cid, launch), {})[metric] = float(score)
    sums, n = [0.0] * len(METRICS), 0
    for (cid, launch), end in sorted(ends.items()):
        if len(end) != len(METRICS) or (start := _previous(client, prefix, platform, day, cid, launch)) is None:
            continue
        delta = [end[m] - s for m, s in zip(METRICS, start, strict=True)]
        if min(delta) >= 0:  # else a relaunch under the same launch time: not one campaign's counters
            sums, n = [a + b for a, b in zip(sums, delta, strict=True)], n + 1
    return dict(zip(METRICS, sums, strict=True)), n


def _previous(client: Any, prefix: str, platform: str, day: int, cid: str, launch: str) -> list[float] | None:
    launch_day = int(float(launch) // DAY)
    if day <= launch_day:
        return [0.0] * len(METRICS)
    members = [f"{cid}|{launch}|{m}" for m in METRICS]
    for d in range(day - 1, launch_day - 1, -1):
        values = client.zmscore(market_key(prefix, platform, d), members)
        if all(v is not None for v in values):
            return [float(v) for v in values]
    return None


def observed_market(client: Any, prefix: str, platform: str, day: int) -> MarketDay | None:
    """The rates live campaigns on `platform` met during `day`, or None (no delivery to learn from)."""
    sums, n = market_sums(client, prefix, platform, day)
    return market_from_sums(*(sums[m] for m in METRICS)) if n else None


@dataclass(frozen=True, slots=True)
class _Plan:
    platform: str | None  # None: no published plan (an unknown campaign)
    launch_ts: float
    end_ts: float  # launch + the projection's horizon: its realized totals stop here
    checked: float
    curve: ProjectionCurve | None = None  # its bands, for the plausibility limits (None: time and funnel only)


@dataclass(frozen=True, slots=True)
class _Rejection:
    strategy: Strategy
    gate: GateFacts
    launch_ts: float


@dataclass(slots=True)
class ShadowStats:
    events: int = 0
    applied: int = 0
    invalid: int = 0
    unknown: int = 0
    before_launch: int = 0
    implausible: int = 0
    poison: int = 0
    batches: int = 0
    reclaimed: int = 0
    shadow_outcomes: int = 0
    campaign_outcomes: int = 0
    outcomes_skipped: int = 0
    conflicts: int = 0
    redis_errors: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class RedisShadowStore:
    """Shadow mode's Redis port: what `LiveShadowAgent` observes of each batch is folded into the
    market, the campaigns' totals and the shadow clock, queued for the Council's commit (one
    MULTI/EXEC with the batch's XACK: `queue`); `settle` records what closed days owe, in
    transactions of its own (at start, every `settle_every_s`, when a batch began a new day, and
    at the end of `run(once=True)` without grace)."""

    plan_ttl_s = 60.0  # a re-published plan is picked up this soon
    settle_every_s = 5.0

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "synctwin:",
        grace_s: float = 3600.0,
        limits: EventLimits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.limits = limits or EventLimits()
        self.clock = clock
        self.grace_s = grace_s
        self.control = f"{prefix}control"
        self.clock_key = f"{prefix}shadow:clock"
        self.shadow_pending, self.outcome_pending = f"{prefix}shadow:pending", f"{prefix}outcome:pending"
        self.audit = RedisAuditStore(client, key=f"{prefix}audit")
        self.stats = ShadowStats()
        self._reported = ShadowStats()
        self._plans: dict[str, _Plan] = {}
        self._rejections: dict[str, tuple[str, _Rejection | None]] = {}  # id -> (raw JSON, parsed or None)
        self._pauses: dict[str, list[tuple[float, float, str]]] = {}  # id -> PAUSE commands (entry s, ts, reason)
        self._timings: dict[tuple[str, float], tuple[int, float]] = {}  # (id, launch) -> (horizon days, decided)
        self._next_day: dict[tuple[str, str], int] = {}  # (rejection, launch) -> first day not yet recorded (a hint)
        self._control_cursor: str | None = None
        self._next_settle = 0.0
        self._seen_day: int | None = None  # the newest event's day this worker wrote
        self._warned: set[str] = set()
        self._market: dict[tuple[str, int, str], list[float]] = {}  # what the next commit writes
        self._totals: dict[tuple[str, str], list[float]] = {}
        self._newest: float | None = None
        self._member_names: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}

    def due(self) -> bool:
        """Time to settle: every `settle_every_s`, or at once when a batch began a new day."""
        return time.monotonic() >= self._next_settle

    # --- one batch: the market -----------------------------------------------------------------
    def observe(self, rows: LiveEvents, invalid: int = 0, screened: bool = False) -> None:
        """Fold a batch's events into the per-day market and totals for the next `queue`, with numpy
        by (campaign, day) maximum (all ZADD GT keeps); `invalid`: entries that did not parse;
        `screened`: already checked against their plans' limits."""
        n = len(rows)
        self.stats.batches += 1
        self.stats.events += n + invalid
        self.stats.invalid += invalid
        if not n:
            return
        cids, values = rows.campaign_ids, rows.values
        plans = self._plans_for(set(cids))
        order = list(plans)
        at = np.fromiter(map({cid: k for k, cid in enumerate(order)}.__getitem__, cids), np.intp, n)
        ts = np.fromiter(rows.ts, np.float64, n)
        ok = np.array([plans[c].platform is not None for c in order])[at]
        self.stats.unknown += n - int(np.count_nonzero(ok))
        early = ok & (ts < np.array([plans[c].launch_ts for c in order])[at])  # an earlier launch's events
        self.stats.before_launch += int(np.count_nonzero(early))
        ok &= ~early
        if not screened:
            now = self.clock()
            bounds: dict[str, Bounds] = {}
            for i in np.flatnonzero(ok).tolist():
                cid = cids[i]
                if (b := bounds.get(cid)) is None:
                    p = plans[cid]
                    b = bounds[cid] = bounds_for(p.launch_ts, p.end_ts, p.curve, now, self.limits)
                if (why := check(b, rows.ts[i], tuple(values[i].tolist()))) is not None:
                    ok[i] = False
                    self.stats.implausible += 1
                    note = "campaign %s: an implausible event ignored (%s); later ones are counted as implausible"
                    self._warn(f"implausible:{cid}", note, cid, why)
        sel = np.flatnonzero(ok)
        if not len(sel):
            return
        at, ts, vals = at[sel], ts[sel], values[sel]
        launches = {c: repr(plans[c].launch_ts) for c in order if plans[c].platform is not None}
        day = np.floor_divide(ts - 1e-6, DAY).astype(np.int64)  # day_of, for the whole batch
        first = int(day.min())
        span = int(day.max()) - first + 1
        keys, maxima = _group_max(at * span + (day - first), vals)
        for key, mx in zip(keys, maxima, strict=True):
            cid, d = order[key // span], key % span
            _fold(self._market, (plans[cid].platform, first + d, f"{cid}|{launches[cid]}"), mx)
        inside = ts <= np.array([plans[c].end_ts for c in order])[at]  # what it delivered within its flight
        if inside.any():
            keys, maxima = _group_max(at[inside], np.column_stack((ts[inside], vals[inside])))
            for k, mx in zip(keys, maxima, strict=True):
                _fold(self._totals, (order[k], launches[order[k]]), mx)
        newest = float(ts.max())
        self._newest = newest if self._newest is None else max(self._newest, newest)
        self.stats.applied += len(sel)

    @property
    def pending(self) -> bool:
        """Folded events not yet written."""
        return bool(self._market or self._totals or self._newest is not None)

    def queue(self, pipe: Any, writes: KeyedWrites | None = None) -> None:
        """In the Council's MULTI: the market, totals and clock folded since the last commit
        (ZADD GT: a maximum, so a redelivered or duplicated batch changes nothing). The campaigns'
        totals go to `writes` when given (one command for them all, sent by the caller)."""
        by_key: dict[tuple[str, int], list[Any]] = {}  # one ZADD per day's market, whatever the campaigns
        for (platform, day, member), vals in self._market.items():
            by_key.setdefault((platform, day), []).extend(_pairs(vals, self._names(member)))
        for (platform, day), args in by_key.items():
            key = market_key(self.prefix, platform, day)
            pipe.execute_command("ZADD", key, "GT", *args)
            pipe.expire(key, MARKET_TTL_S)
        for (cid, launch), vals in self._totals.items():
            args = _pairs(vals, self._names(launch, ("ts", *METRICS)))
            if writes is None:
                pipe.execute_command("ZADD", f"{self.prefix}campaign:{cid}:totals", "GT", *args)
            else:
                writes.add("ZADD", f"{self.prefix}campaign:{cid}:totals", "GT", *args)
        if self._newest is not None:
            pipe.zadd(self.clock_key, {"ts": self._newest}, gt=True)

    def _names(self, member: str, metrics: tuple[str, ...] = METRICS) -> tuple[str, ...]:
        """`{member}|{metric}` for each metric, made once per campaign (and launch)."""
        names = self._member_names.get((member, metrics))
        if names is None:
            names = _bounded(self._member_names)[(member, metrics)] = tuple(f"{member}|{m}" for m in metrics)
        return names

    def committed(self) -> None:
        """The queued writes are in Redis: forget them; a batch that began a new day settles now."""
        newest = self._newest
        self._market, self._totals, self._newest = {}, {}, None
        if newest is not None and (self._seen_day is None or day_of(newest) > self._seen_day):
            if self._seen_day is not None:
                self._next_settle = 0.0  # a new day has begun: settle now, not in a few seconds
            self._seen_day = day_of(newest)
        self._report_metrics()

    def forget(self, campaign_ids: Iterable[str]) -> None:
        """Plans re-published (the Council read them again): read them afresh at their next event."""
        for cid in campaign_ids:
            self._plans.pop(cid, None)

    def _plans_for(self, campaign_ids: Collection[str]) -> dict[str, _Plan]:
        """Each campaign's platform (its published strategy) and launch (its projection), cached
        for `plan_ttl_s`, so a re-published plan is picked up that soon."""
        now = time.monotonic()
        out = {c: p for c in campaign_ids if (p := self._plans.get(c)) and now - p.checked < self.plan_ttl_s}
        missing = [cid for cid in campaign_ids if cid not in out]
        pipe = self.client.pipeline(transaction=False)
        for cid in missing:
            pipe.get(f"{self.prefix}campaign:{cid}:strategy")
            pipe.get(f"{self.prefix}campaign:{cid}:projection")
        replies = pipe.execute() if missing else []
        for cid, strategy, projection in zip(missing, replies[::2], replies[1::2], strict=True):
            plan = _Plan(None, 0.0, 0.0, now)
            try:
                if strategy is not None and projection is not None:
                    proj = json.loads(projection)
                    launch = float(proj["launch_ts"])
                    end = launch + float(proj.get("horizon_days", 366)) * DAY
                    plan = _Plan(str(json.loads(strategy).get("platform", "meta")), launch, end, now, _curve(proj))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                why = "campaign %s: its published plan does not parse (%s); its events are ignored"
                self._warn(f"plan:{cid}", why, cid, exc)
            _bounded(self._plans)[cid] = out[cid] = plan
        return out

    # --- closed days: shadow outcomes and live outcomes -----------------------------------------
    def settle(self, *, final: bool = False) -> int:
        """Record what closed days owe: shadow outcomes of pending rejections, outcomes of approved
        campaigns whose flight ended or that were paused. `final`: no grace (the stream is drained)."""
        self._next_settle = time.monotonic() + self.settle_every_s
        clock = self.client.zscore(self.clock_key, "ts")
        if clock is None:
            return 0
        grace = 0.0 if final else self.grace_s
        closed_before = int((float(clock) - grace) // DAY)
        n = self._settle_rejections(closed_before)
        n += self._settle_outcomes(float(clock), grace)
        self._report_metrics()
        return n

    def _settle_rejections(self, closed_before: int) -> int:
        markets: dict[tuple[str, int], MarketDay | None] = {}
        n = 0
        for cid, launch in self.client.zrange(self.shadow_pending, 0, -1, withscores=True):
            hint = self._next_day.get((cid, repr(float(launch))))
            if hint is not None and hint >= closed_before:  # progress only moves forward: nothing due yet
                continue
            rej = self._rejection(cid)
            if rej is not None:
                n += self._shadow(cid, rej, closed_before, markets)
        return n

    def _rejection(self, cid: str) -> _Rejection | None:
        raw = self.client.get(f"{self.prefix}campaign:{cid}:rejection")
        if raw is None:
            self._warn(f"rej:{cid}", "campaign %s is pending in %s but has no rejection key", cid, self.shadow_pending)
            return None
        hit = self._rejections.get(cid)
        if hit is not None and hit[0] == raw:
            return hit[1]
        try:
            doc = json.loads(raw)
            rej: _Rejection | None = _Rejection(
                Strategy.model_validate(doc["strategy"]), GateFacts.from_dict(doc), float(doc["launch_ts"])
            )
        except (ValueError, KeyError, TypeError) as exc:
            self._warn(f"rej:{cid}", "campaign %s: its rejection does not parse (%s); not shadowed", cid, exc)
            rej = None
        self._rejections[cid] = (raw, rej)
        return rej

    def _shadow(
        self, cid: str, rej: _Rejection, closed_before: int, markets: dict[tuple[str, int], MarketDay | None]
    ) -> int:
        """Record each closed flight day of one rejection not yet recorded, in order."""
        from redis.exceptions import WatchError

        s = rej.strategy
        days = flight_days(rej.launch_ts, s.duration_days)
        planned = planned_market(s, rej.gate)
        key = f"{self.prefix}campaign:{cid}:shadow"
        launch = repr(rej.launch_ts)
        written = 0
        for _attempt in range(10 * len(days) + 100):
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)
                    state = pipe.hgetall(key)
                    if state.get("launch_ts") != launch:
                        state = {}  # nothing recorded yet for this rejection
                    i = int(state.get("next", 0))
                    if i >= len(days) or days[i][0] >= closed_before:
                        _bounded(self._next_day)[(cid, launch)] = days[i][0] if i < len(days) else 1 << 40
                        return written
                    day, share = days[i]
                    if (s.platform, day) not in markets:
                        markets[(s.platform, day)] = observed_market(self.client, self.prefix, s.platform, day)
                    totals = ShadowTotals(*(float(state.get(f, 0.0)) for f in _SUMS), int(state.get("observed", 0)))
                    recorded = shadow_day(s, totals, markets[(s.platform, day)], planned, share)
                    last = i == len(days) - 1
                    if last:  # it leaves the pending set: unless re-published meanwhile (a new launch)
                        pipe.watch(self.shadow_pending)
                        if pipe.zscore(self.shadow_pending, cid) != rej.launch_ts:
                            return written
                    audit = None
                    if recorded or last:
                        meta = outcome_record(s, rej.gate, totals, final=last)
                        meta |= {"date": iso(day), "launch_ts": rej.launch_ts}
                        ids = {"client_id": s.client_id, "campaign_id": cid}
                        audit, _ = self.audit.prepare(pipe, SHADOW_OUTCOME, **ids, reason="SHADOW_MODE", metadata=meta)
                    pipe.multi()
                    kept = {"launch_ts": launch, "next": str(i + 1), "date": iso(day), "final": str(int(last))}
                    kept |= {f: repr(getattr(totals, f)) for f in _SUMS} | {"observed": str(totals.observed)}
                    pipe.hset(key, mapping=kept)
                    if audit is not None:
                        self.audit.queue(pipe, audit)
                    if last:
                        pipe.zrem(self.shadow_pending, cid)
                    pipe.execute()
                except WatchError:
                    self.stats.conflicts += 1
                    continue
            if audit is not None:
                written += 1
                self.stats.shadow_outcomes += 1
            if last:
                return written
        raise RuntimeError(f"campaign {cid}: shadow state kept changing under us")

    def _settle_outcomes(self, clock: float, grace: float) -> int:
        """Outcomes of the approved campaigns whose run is over: a pass reads each pending
        campaign's mirror status only (its horizon is cached), and its plan and totals when due."""
        pending = [
            (cid, float(launch)) for cid, launch in self.client.zrange(self.outcome_pending, 0, -1, withscores=True)
        ]
        if not pending:
            return 0
        self._read_control()
        pipe = self.client.pipeline(transaction=False)
        for cid, _launch in pending:
            pipe.hmget(f"{self.prefix}campaign:{cid}:mirror", ["status", "paused_at", "launch_ts"])
        due = []
        for (cid, launch), mirror in zip(pending, pipe.execute(), strict=True):
            timing = self._timing(cid, launch)
            if timing is None:
                continue
            moment, reason, days, pause_reason = self._ending(cid, launch, timing[0], mirror, timing[1])
            if clock >= moment + grace:
                due.append((cid, launch, timing[0], reason, days, pause_reason))
        if not due:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for cid, *_rest in due:
            pipe.get(f"{self.prefix}campaign:{cid}:strategy")
            pipe.get(f"{self.prefix}campaign:{cid}:gate")
            pipe.zrange(f"{self.prefix}campaign:{cid}:totals", 0, -1, withscores=True)
        replies = pipe.execute()
        n = 0
        for k, (cid, launch, horizon, reason, days, pause_reason) in enumerate(due):
            strategy_raw, gate_raw, totals_raw = replies[3 * k : 3 * k + 3]
            try:
                strategy = Strategy.model_validate_json(strategy_raw)
                gate_doc = json.loads(gate_raw)
                gate = GateFacts.from_dict(gate_doc)
            except (ValueError, KeyError, TypeError) as exc:
                self._warn(f"outcome:{cid}", "campaign %s: no usable plan for its outcome (%s)", cid, exc)
                continue
            totals = {m.partition("|")[2]: float(v) for m, v in totals_raw if m.partition("|")[0] == repr(launch)}
            meta = None
            if len(totals) == len(METRICS) + 1:
                meta = campaign_outcome(
                    platform=strategy.platform,
                    launch_ts=launch,
                    days=days,
                    days_total=horizon,
                    **{m: totals[m] for m in ("spend", "revenue", "conversions")},
                    gross_margin=strategy.gross_margin,
                    gate=gate,
                    reason=reason,
                    pause_reason=pause_reason,
                    decision=str(gate_doc.get("decision", "APPROVED")),
                )
            n += self._write_outcome(cid, strategy.client_id, launch, reason, meta)
        return n

    def _timing(self, cid: str, launch: float) -> tuple[int, float] | None:
        """(horizon days, when the plan was published) of one launch, read once."""
        hit = self._timings.get((cid, launch))
        if hit is None:
            projection, gate = self.client.mget(*(f"{self.prefix}campaign:{cid}:{k}" for k in ("projection", "gate")))
            try:
                hit = (int(json.loads(projection)["horizon_days"]), float(json.loads(gate).get("decided_ts", 0.0)))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                self._warn(f"outcome:{cid}", "campaign %s: no usable projection or gate for its outcome (%s)", cid, exc)
                return None
            _bounded(self._timings)[(cid, launch)] = hit
        return hit

    def _ending(
        self, cid: str, launch: float, horizon: int, mirror: list[str | None], decided_ts: float
    ) -> tuple[float, str, float, str | None]:
        """(when the campaign's run ended, why, days run, pause reason): its pause (the mirror's
        state, else the first PAUSE command since its plan was published), else its flight's end."""
        status, paused_at, mirror_launch = mirror
        elapsed: float | None = None
        reason: str | None = None
        if status == "PAUSED" and paused_at and mirror_launch and float(mirror_launch) == launch:
            elapsed, reason = float(paused_at), PAUSE_REASON  # the mirror's own (overspend, shortfall) is detail
        else:
            cmds = [c for c in self._pauses.get(cid, ()) if c[0] >= decided_ts - 1.0]
            if cmds:
                first = min(cmds)
                elapsed, reason = max(0.0, first[1] - launch), first[2] or None
        end = launch + horizon * DAY
        if elapsed is not None and launch + elapsed < end:
            return launch + elapsed, PAUSED, elapsed / DAY, reason
        return end, FLIGHT_ENDED, float(horizon), None

    def _read_control(self) -> None:
        """PAUSE commands on the control stream since the last read (the whole stream at first)."""
        while True:
            start = "-" if self._control_cursor is None else f"({self._control_cursor}"
            entries = self.client.xrange(self.control, min=start, max="+", count=1000)
            for entry_id, f in entries:
                self._control_cursor = entry_id
                if f.get("command") == "PAUSE" and f.get("campaign_id"):
                    entry_s = int(entry_id.partition("-")[0]) / 1000.0
                    try:
                        ts = float(f.get("ts", entry_s))
                    except ValueError:
                        ts = entry_s
                    self._pauses.setdefault(f["campaign_id"], []).append((entry_s, ts, f.get("reason", "")))
            if len(entries) < 1000:
                return

    def _write_outcome(self, cid: str, client_id: str, launch: float, reason: str, meta: dict[str, Any] | None) -> int:
        """One CAMPAIGN_OUTCOME per launch: the audit record, the marker and leaving the pending set
        in one WATCH/MULTI/EXEC. `meta` None: the campaign never delivered; it just leaves the set."""
        from redis.exceptions import WatchError

        marker = f"{self.prefix}campaign:{cid}:outcome"
        for _attempt in range(1000):
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(marker, self.outcome_pending)
                    done = pipe.get(marker)
                    if pipe.zscore(self.outcome_pending, cid) != launch:
                        return 0  # re-published (a new launch) or settled by another worker meanwhile
                    audit = None
                    if meta is not None and not (done and json.loads(done).get("launch_ts") == launch):
                        audit, _fields = self.audit.prepare(
                            pipe, CAMPAIGN_OUTCOME, client_id=client_id, campaign_id=cid, reason=reason, metadata=meta
                        )
                    pipe.multi()
                    if audit is not None:
                        pipe.set(marker, json.dumps(meta))
                        self.audit.queue(pipe, audit)
                    pipe.zrem(self.outcome_pending, cid)
                    pipe.execute()
                except WatchError:
                    self.stats.conflicts += 1
                    continue
            if audit is not None:
                self.stats.campaign_outcomes += 1
                return 1
            if meta is None:
                self.stats.outcomes_skipped += 1
                log.info("campaign %s: its flight ended without a single bid event; no outcome to record", cid)
            return 0
        raise RuntimeError(f"campaign {cid}: outcome kept changing under us")

    # --- reporting -----------------------------------------------------------------------------
    def _warn(self, key: str, msg: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg, *args)

    def _report_metrics(self) -> None:
        """Export the growth of the counters since the last report (Prometheus counters only grow)."""
        now, before = self.stats.to_dict(), self._reported.to_dict()
        delta = {k: now[k] - before[k] for k in now if now[k] != before[k]}
        if delta:
            self._reported = ShadowStats(**now)
            metrics.record_shadow(delta)


def _bounded(cache: dict[Any, Any]) -> dict[Any, Any]:
    """`cache`, emptied first once it holds 100,000 entries: a bound on a worker's memory, not an LRU."""
    if len(cache) > 100_000:
        cache.clear()
    return cache


def _curve(projection: dict[str, Any]) -> ProjectionCurve | None:
    """The projection's bands, or None when it has none that parse (the plan's limits then stay
    those of time and the funnel)."""
    try:
        return ProjectionCurve.from_projection(projection)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None


def _group_max(keys: np.ndarray, cols: np.ndarray) -> tuple[list[int], list[list[float]]]:
    """The distinct keys and, per key, the element-wise maximum of its rows of `cols`."""
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    starts = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1])))
    return k[starts].tolist(), np.maximum.reduceat(cols[order], starts, axis=0).tolist()


def _fold(acc: dict[Any, list[float]], key: Any, values: list[float]) -> None:
    """Keep the element-wise maximum: of cumulative counters, the latest event's."""
    cur = acc.get(key)
    acc[key] = list(values) if cur is None else list(map(max, cur, values))


def _pairs(values: list[float], names: tuple[str, ...]) -> list[Any]:
    """ZADD's arguments: score, member, score, member, ..."""
    return [x for pair in zip(values, names, strict=True) for x in pair]
