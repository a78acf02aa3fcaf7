"""The live mirror in production: a consumer-group worker on the `synctwin:bids` stream.

Reliability, in the order an event meets it:
- XREADGROUP in batches; several workers may share the group, on one machine or many;
- an invalid event (a field that is not UTF-8, missing field, NaN, negative, unknown campaign, a
  projection that does not parse) goes to `synctwin:bids:dead` with the reason, and the worker
  keeps going; so does an impossible one (agents/synctwin/event_limits.py: a ts outside the
  worker's clock or the campaign's flight, clicks above impressions, conversions above clicks, an
  absurd counter); a campaign whose newer events keep being ignored because their totals went
  backwards (a frozen mirror) gets one WARNING alert per episode;
- every write is conditional on the campaign's mirror state being the one the worker computed
  from, and acknowledges the events it applied in the same atomic step:
  * the common case (no pause) is one Lua call per batch that, per campaign, compares the hash's
    `rev` with the revision the worker read, and only then writes the new state (the changed
    fields and a new rev), XADDs its grey-zone alerts and XACKs its events; a campaign another
    worker wrote in between is re-read and its events re-applied (idempotently);
  * a PAUSE verdict takes the WATCH/MULTI/EXEC path: WATCH the mirror hash and the audit stream,
    read, apply, then MULTI: the new hash, the control command, the alert, the chained audit
    record and the XACK, EXEC. A pause is therefore written exactly once, however many workers
    race and however often an event is redelivered;
  Between batches the worker keeps each campaign's state and revision in memory (state per
  campaign, never per event), so a batch costs two round trips: the read and the write;
- XACK only with (or after) the state: a worker killed mid-batch leaves its events pending, and a
  live worker reclaims them (XAUTOCLAIM) after `claim_idle_ms`; an event delivered
  `max_deliveries` times (poison) goes to the dead letters;
- Redis unavailable: back off and retry; nothing is acknowledged, so nothing is lost. After an
  error the worker first re-reads its own pending entries (XREADGROUP from 0);
- the bid stream is trimmed (XTRIM MINID) below the oldest entry any consumer group still needs,
  never below an unacknowledged one;
- projections are cached and re-checked (by a cheap fingerprint) every `curve_ttl_s` and whenever
  a state is read afresh; the hash records the `launch_ts` its state belongs to (beside `rev`), so
  a campaign gated and launched again is mirrored afresh against its new projection.

A server without scripting (fakeredis without lupa, for the embedded demo) gets the WATCH path
for every campaign: the same guarantees, more round trips.

The consumer-group loop (backoff, own pending entries, XAUTOCLAIM, poison, dead letters) is
agents/synctwin/stream_consumer.py, shared with the shadow worker; the trim runs as its per-step hook.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agents.syncshield.backends import RedisAuditStore
from agents.synctwin.deviation import (
    InvalidEvent,
    MirrorConfig,
    MirrorState,
    ProjectionCurve,
    apply_event,
    parse_raw_event,
)
from agents.synctwin.event_limits import EventLimits, bounds_for, check, plan_floors
from agents.synctwin.mirror import PAUSE_REASON, Outcome
from agents.synctwin.stream_consumer import DeadLetter, Entry, StreamConsumer, id_key
from synctwin import metrics
from synctwin.messages import pause_fields

log = logging.getLogger("synctwin.mirror")

Event = tuple[str, str, float, tuple[float, ...]]  # (stream entry id, event_id, ts, cumulative values)

# The compare-and-set of the common path. KEYS: the bid stream, the alert stream, then the mirror
# hashes; ARGV: group, alert MAXLEN, then per campaign: the rev read, the rev to write, n fields and
# their field/value pairs, n entry ids and the ids, n alerts and per alert its length and values.
# Per campaign: if the hash's rev is the one the worker read, write the changed fields and the new
# rev, XACK the campaign's events and XADD its alerts (1); otherwise touch nothing (0).
_CAS = """
local group, maxlen = ARGV[1], ARGV[2]
local i = 3
local out = {}
for k = 3, #KEYS do
  local key = KEYS[k]
  local expected, rev = ARGV[i], ARGV[i + 1]
  local nf = tonumber(ARGV[i + 2])
  local f0 = i + 3
  local ni = tonumber(ARGV[f0 + 2 * nf])
  local i0 = f0 + 2 * nf + 1
  local na = tonumber(ARGV[i0 + ni])
  local a = i0 + ni + 1
  local cur = redis.call('HGET', key, 'rev') or '0'
  if cur == expected then
    if nf > 0 then
      redis.call('HSET', key, 'rev', rev, unpack(ARGV, f0, f0 + 2 * nf - 1))
    else
      redis.call('HSET', key, 'rev', rev)
    end
    local j = i0
    while j < i0 + ni do
      local e = math.min(j + 999, i0 + ni - 1)
      redis.call('XACK', KEYS[1], group, unpack(ARGV, j, e))
      j = e + 1
    end
    for _ = 1, na do
      local nv = tonumber(ARGV[a])
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', unpack(ARGV, a + 1, a + nv))
      a = a + nv + 1
    end
    out[#out + 1] = 1
  else
    for _ = 1, na do a = a + tonumber(ARGV[a]) + 1 end
    out[#out + 1] = 0
  end
  i = a
end
return out
"""

_TRIM_LIMIT = 100_000  # entries one XTRIM may remove (whole nodes: about a millisecond of Redis's time)
_PREFIX_BYTES = 256  # a projection's fingerprint: its length and these first bytes (campaign_id, launch_ts)
_SCALARS = tuple(n for n in MirrorState.__dataclass_fields__ if n not in ("campaign_id", "snapshots"))


def _snapshot_sig(state: MirrorState) -> tuple[float, ...]:
    """Changes whenever the snapshots do: an evaluation appends one (a new last) and drops old ones
    (a new first); a snapshot never changes once taken."""
    snaps = state.snapshots
    return (len(snaps), snaps[0][0], snaps[-1][0]) if snaps else (0,)


def _encode_changes(cached: _Cached) -> dict[str, str]:
    """The hash fields (as `MirrorState.to_hash` writes them) that differ from what was written."""
    state, written = cached.state, cached.written
    out: dict[str, str] = {}
    for name in _SCALARS:
        v = getattr(state, name)
        s = v if type(v) is str else str(v)
        if written.get(name) != s:
            out[name] = s
    if written.get("campaign_id") != state.campaign_id:
        out["campaign_id"] = state.campaign_id
    sig = _snapshot_sig(state)
    if sig != cached.snap_sig or "snapshots" not in written:
        out["snapshots"] = json.dumps(state.snapshots)
    return out


def _next_rev(rev: int) -> int:
    """The revision a write leaves: the next one, or for a new hash a random start, so a hash that
    was deleted and written again never repeats a revision a worker may still hold."""
    return rev + 1 if rev else random.randrange(1, 2**40)


@dataclass(slots=True)
class _Cached:
    """A campaign's state as last written (or read) by this worker, with the hash's revision."""

    rev: int
    state: MirrorState
    written: dict[str, str]  # the hash's fields as stored
    snap_sig: tuple[float, ...] = ()

    @property
    def launch(self) -> float | None:
        """The launch the stored state belongs to (None: a hash written without it)."""
        raw = self.written.get("launch_ts")
        return float(raw) if raw else None

    def __post_init__(self) -> None:
        if not self.snap_sig:
            self.snap_sig = _snapshot_sig(self.state)


@dataclass(slots=True)
class MirrorStats:
    events: int = 0
    applied: int = 0
    ignored: int = 0
    dead: int = 0
    pauses: int = 0
    greys: int = 0
    batches: int = 0
    reclaimed: int = 0
    conflicts: int = 0
    redis_errors: int = 0
    trimmed: int = 0
    stuck_alerts: int = 0  # campaigns whose newer events kept being ignored (one alert per episode)
    pause_latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


class RedisMirror(StreamConsumer[MirrorStats]):
    """The mirror's consumer-group worker: the group loop, reclaim and dead letters are
    StreamConsumer's; this class applies batches, trims the stream and reports its metrics."""

    log = log  # the loop's warnings under the mirror's logger

    def __init__(
        self,
        client: Any,
        cfg: MirrorConfig,
        *,
        prefix: str = "synctwin:",
        group: str = "synctwin-mirror",
        consumer: str | None = None,
        batch: int = 500,
        block_ms: int | None = 1000,
        claim_idle_ms: int = 30_000,
        max_deliveries: int = 5,
        clock: Callable[[], float] = time.time,
        stream_maxlen: int = 100_000,
        curve_ttl_s: float = 60.0,
        trim_every_s: float = 5.0,
        max_cached: int = 100_000,
        limits: EventLimits | None = None,
        heartbeat_ms: int = 5_000,
    ) -> None:
        super().__init__(
            client,
            prefix=prefix,
            group=group,
            consumer=consumer,
            batch=batch,
            block_ms=block_ms,
            claim_idle_ms=claim_idle_ms,
            max_deliveries=max_deliveries,
            stream_maxlen=stream_maxlen,
            heartbeat_ms=heartbeat_ms,
        )
        self.cfg = cfg
        self.limits = limits or EventLimits()
        self.clock = clock
        self.curve_ttl_s = curve_ttl_s  # a re-published projection (a new gate) is picked up this soon
        self.trim_every_s = trim_every_s  # 0: never trim the bid stream
        self.max_cached = max_cached
        self.control, self.alerts = f"{prefix}control", f"{prefix}alerts"
        self.audit = RedisAuditStore(client, key=f"{prefix}audit", clock=clock)
        self.curves: dict[str, tuple[float, ProjectionCurve, tuple[int, str]]] = {}  # (checked at, curve, fingerprint)
        self.states: dict[str, _Cached] = {}
        self._floors: dict[str, tuple[ProjectionCurve, tuple[float, float, float]]] = {}  # per curve, its limits
        self.stats = MirrorStats()
        self._next_trim = 0.0
        self._script: Any = None
        self._batch_started = 0.0
        self._scripting: bool | None = None  # None: not yet known
        self._reported = MirrorStats()  # the counters as last exported to Prometheus
        self._touched: set[str] = set()  # campaigns evaluated since then (their deviation gauges)

    # --- projections ---------------------------------------------------------------------------
    def _curves(self, campaign_ids: list[str]) -> dict[str, ProjectionCurve | str]:
        """Each campaign's projection curve, or why there is none (the dead-letter reason).

        Curves are kept in memory; every `curve_ttl_s` a cached one is checked against the key by
        a fingerprint (its length and first bytes, where campaign_id and launch_ts are), and read
        again only if that changed: a re-published projection (a new gate) is picked up without
        re-reading every projection every minute."""
        now = time.monotonic()
        out: dict[str, ProjectionCurve | str] = {}
        stale: list[str] = []
        missing: list[str] = []
        for cid in campaign_ids:
            hit = self.curves.get(cid)
            if hit is None:
                missing.append(cid)
            else:
                out[cid] = hit[1]
                if now - hit[0] >= self.curve_ttl_s:
                    stale.append(cid)
        if stale:
            pipe = self.client.pipeline(transaction=False)
            for cid in stale:
                key = f"{self.prefix}campaign:{cid}:projection"
                pipe.strlen(key)
                pipe.getrange(key, 0, _PREFIX_BYTES - 1)
            try:
                replies = pipe.execute()
            except UnicodeDecodeError:  # the first bytes cut a character in two: read them whole
                replies = [None] * (2 * len(stale))
            for n, cid in enumerate(stale):
                _, curve, fingerprint = self.curves[cid]
                if (replies[2 * n], replies[2 * n + 1]) == fingerprint:
                    self.curves[cid] = (now, curve, fingerprint)
                else:
                    missing.append(cid)
        if not missing:
            return out
        pipe = self.client.pipeline(transaction=False)
        for cid in missing:
            pipe.get(f"{self.prefix}campaign:{cid}:projection")
        for cid, raw in zip(missing, pipe.execute(), strict=True):
            key = f"{self.prefix}campaign:{cid}:projection"
            if raw is None:
                self.curves.pop(cid, None)
                out[cid] = f"unknown campaign {cid}: no projection at {key}"
                continue
            try:
                curve = ProjectionCurve.from_projection(json.loads(raw))
            except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
                self.curves.pop(cid, None)
                out[cid] = f"campaign {cid}: the projection at {key} is invalid ({type(exc).__name__}: {exc})"
                continue
            fingerprint = (len(raw.encode("utf-8")), raw.encode("utf-8")[:_PREFIX_BYTES].decode("utf-8", "replace"))
            self._remember(self.curves, cid, (now, curve, fingerprint))
            out[cid] = curve
        return out

    def _recheck_curves(self, work: dict[str, tuple[ProjectionCurve, list[Event]]], campaign_ids: list[str]) -> None:
        """A state read afresh from Redis (another worker wrote it, the hash was reset, or ours was
        dropped after an error) may belong to a new launch: check those campaigns' projections now
        rather than at their next `curve_ttl_s`, so no event is judged against a stale curve."""
        stale = [
            cid for cid in campaign_ids if (hit := self.curves.get(cid)) is not None and hit[0] < self._batch_started
        ]
        if not stale:
            return
        for cid in stale:
            _, curve, fingerprint = self.curves[cid]
            self.curves[cid] = (-math.inf, curve, fingerprint)
        fresh = self._curves(stale)
        for cid in stale:
            curve = fresh[cid]
            if not isinstance(curve, str):  # gone since: this batch keeps the curve it has, the next dead-letters
                work[cid] = (curve, work[cid][1])

    def _remember(self, cache: dict[str, Any], key: str, value: Any) -> None:
        cache.pop(key, None)
        cache[key] = value
        if len(cache) > self.max_cached:  # campaigns come and go: forget the longest unused
            del cache[next(iter(cache))]

    # --- the loop's hooks (StreamConsumer) -----------------------------------------------------
    def _after_error(self) -> None:
        """What we knew may be stale: re-read our own pending entries and every state we cached."""
        super()._after_error()
        self.states.clear()

    def _before_read(self, now: float) -> None:
        """Trim the bid stream every `trim_every_s` (0: never)."""
        if self.trim_every_s and now >= self._next_trim:
            self._next_trim = now + self.trim_every_s
            self.trim()

    def _count_dead(self, n: int) -> None:
        self.stats.dead += n

    def trim(self) -> int:
        """XTRIM MINID the bid stream below the oldest entry any group has not yet acknowledged
        (its first pending entry, or past its last delivered one). Never loses an event."""
        import redis

        try:
            groups = self.client.xinfo_groups(self.bids)
            floor: tuple[int, int] | None = None
            for g in groups:
                mark = id_key(g["last-delivered-id"])
                if g["pending"]:
                    first = self.client.xpending(self.bids, g["name"])["min"]
                    if first:
                        mark = min(mark, id_key(first))
                floor = mark if floor is None else min(floor, mark)
            if not floor or floor == (0, 0):
                return 0
            # approximate: whole stream nodes only (cheap); Redis caps one call at 100 nodes by
            # default, too few to keep up with a busy stream, so ask for more, a bounded few times
            n = 0
            for _ in range(10):
                done = int(
                    self.client.xtrim(self.bids, minid=f"{floor[0]}-{floor[1]}", approximate=True, limit=_TRIM_LIMIT)
                    or 0
                )
                n += done
                if done < _TRIM_LIMIT // 2:
                    break
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" in str(exc) or "no such key" in str(exc).lower():
                return 0
            log.warning("cannot trim %s (%s); trimming switched off", self.bids, exc)
            self.trim_every_s = 0.0
            return 0
        self.stats.trimmed += n
        return n

    # --- one batch -----------------------------------------------------------------------------
    def process(self, entries: list[Entry]) -> int:
        """Apply a batch; dead-letter what cannot be applied; every entry ends acknowledged (with
        the state it changed, or with its dead letter)."""
        self.stats.batches += 1
        self.stats.events += len(entries)
        by_campaign: dict[str, list[Event]] = {}
        dead: list[DeadLetter] = []
        for entry_id, fields in entries:
            if not fields:
                dead.append((entry_id, {}, "the entry was deleted from the stream before it was processed"))
                continue
            try:
                event_id, cid, ts, values = parse_raw_event(fields)
            except InvalidEvent as exc:
                dead.append((entry_id, fields, str(exc)))
                continue
            except Exception as exc:  # whatever else one entry raises must not crash the worker
                dead.append((entry_id, fields, f"cannot parse the event ({type(exc).__name__}: {exc})"))
                continue
            events = by_campaign.get(cid)
            if events is None:
                by_campaign[cid] = events = []
            events.append((entry_id, event_id, ts, values))
        work: dict[str, tuple[ProjectionCurve, list[Event]]] = {}
        if by_campaign:
            self._batch_started = time.monotonic()
            curves = self._curves(list(by_campaign))
            raw: dict[str, dict[bytes, bytes]] | None = None
            now = self.clock()
            for cid, events in by_campaign.items():
                curve = curves[cid]
                if isinstance(curve, str):
                    raw = raw if raw is not None else dict(entries)
                    dead += [(e[0], raw[e[0]], curve) for e in events]
                    continue
                ok, bad = self._within_limits(curve, events, now)
                if bad and (fresh := self._fresh_curve(cid)) is not curve:
                    if isinstance(fresh, str):  # gone since: this batch keeps the curve it has
                        fresh = curve
                    curve = fresh  # a new launch (re-published projection): judge by its flight
                    ok, bad = self._within_limits(curve, events, now)
                if bad:
                    raw = raw if raw is not None else dict(entries)
                    dead += [(e[0], raw[e[0]], why) for e, why in bad]
                if ok:
                    work[cid] = (curve, ok)
        if work:
            self._apply(work)
            self._touched.update(work)
        if dead:
            self._dead_letters(dead)
        self._report_metrics()
        return len(entries)

    def _within_limits(
        self, curve: ProjectionCurve, events: list[Event], now: float
    ) -> tuple[list[Event], list[tuple[Event, str]]]:
        """The events inside the plausibility limits, and the others with why."""
        hit = self._floors.get(curve.campaign_id)
        if hit is None or hit[0] is not curve:
            hit = (curve, plan_floors(curve, self.limits))
            self._remember(self._floors, curve.campaign_id, hit)
        b = bounds_for(curve.launch_ts, curve.launch_ts + curve.horizon_hours * 3600.0, curve, now, self.limits, hit[1])
        ok: list[Event] = []
        bad: list[tuple[Event, str]] = []
        for e in events:
            why = check(b, e[2], e[3])
            if why is None:
                ok.append(e)
            else:
                bad.append((e, why))
        return ok, bad

    def _fresh_curve(self, cid: str) -> ProjectionCurve | str:
        """The campaign's projection checked now (by its fingerprint), before an event is refused
        by a cached one: it may have been re-published for a new launch."""
        hit = self.curves.get(cid)
        if hit is not None:
            self.curves[cid] = (-math.inf, hit[1], hit[2])
        return self._curves([cid])[cid]

    def _report_metrics(self) -> None:
        """Export what changed since the last report (Prometheus counters only grow; the stats are
        this worker's running totals), and the deviation of each campaign evaluated since."""
        delta = {
            name: getattr(self.stats, name) - getattr(self._reported, name)
            for name in ("events", "dead", "ignored", "greys", "batches", "redis_errors", "pauses")
        }
        for name in delta:
            setattr(self._reported, name, getattr(self.stats, name))
        deviations = [
            (cid, cached.state.deviation) for cid in self._touched if (cached := self.states.get(cid)) is not None
        ]
        self._touched.clear()
        metrics.record_mirror(delta, deviations, pause_reason=PAUSE_REASON)

    def _apply_all(
        self, cid: str, state: MirrorState, curve: ProjectionCurve, events: list[Event]
    ) -> tuple[list[Outcome], list[dict[str, str]]]:
        """Apply a campaign's events of a batch in order; the verdicts that ask for action, and the
        alert of a frozen mirror (once, when `stuck_after` newer events in a row were ignored)."""
        outcomes = []
        stuck: list[dict[str, str]] = []
        limit = self.limits.stuck_after
        for _entry, event_id, ts, values in events:
            verdict = apply_event(state, event_id, ts, values, curve, self.cfg)
            if verdict is not None and verdict.action is not None:
                outcomes.append(Outcome(cid, verdict, state.deviation, event_id, ts))
            elif verdict is None and limit and state.stale_run == limit:
                stuck.append(self._stuck_alert(cid, state, event_id, ts, values))
        return outcomes, stuck

    def _stuck_alert(
        self, cid: str, state: MirrorState, event_id: str, ts: float, values: tuple[float, ...]
    ) -> dict[str, str]:
        details = {
            "campaign_id": cid,
            "ignored_in_a_row": state.stale_run,
            "last_applied_event": state.last_event_id,
            "last_applied_ts": state.last_ts,
            "mirror_spend": state.spend,
            "mirror_conversions": state.conversions,
            "mirror_revenue": state.revenue,
            "event_id": event_id,
            "event_ts": ts,
            "event_spend": values[0],
            "event_conversions": values[3],
            "event_revenue": values[4],
        }
        return {
            "severity": "WARNING",
            "title": f"Mirror stuck: {cid}",
            "message": (
                f"{state.stale_run} newer events in a row ignored: their totals are below the mirror's "
                f"(an implausible event was applied earlier?); {cid} is not being watched"
            ),
            "details": json.dumps(details, default=str),
            "ts": str(self.clock()),
        }

    def _scripting_available(self) -> bool:
        if self._scripting is None:
            import redis

            try:
                self._script = self.client.register_script(_CAS)
                self.client.script_load(_CAS)
                self._scripting = True
            except redis.exceptions.ResponseError as exc:
                log.info("no scripting on this server (%s): every write takes the WATCH/MULTI path", exc)
                self._scripting = False
        return self._scripting

    def _load(self, campaign_ids: list[str]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for cid in campaign_ids:
            pipe.hgetall(f"{self.prefix}campaign:{cid}:mirror")
        for cid, data in zip(campaign_ids, pipe.execute(), strict=True):
            self._remember(
                self.states, cid, _Cached(int(data.get("rev", 0) or 0), MirrorState.from_hash(cid, data), data)
            )

    def _apply(self, work: dict[str, tuple[ProjectionCurve, list[Event]]]) -> None:
        """The common path for every campaign without a pause; the WATCH path for the others."""
        slow: dict[str, tuple[ProjectionCurve, list[Event]]] = {}
        if not self._scripting_available():
            slow = work
            work = {}
        attempts = 0
        try:
            while work:
                attempts += 1
                if attempts > 20:  # heavy contention on these campaigns: let WATCH sort it out
                    slow.update(work)
                    break
                missing = [cid for cid in work if cid not in self.states]
                if missing:
                    self._load(missing)
                    self._recheck_curves(work, missing)
                keys: list[str] = [self.bids, self.alerts]
                args: list[Any] = [self.group, self.maxlen]
                done: list[tuple[str, _Cached, dict[str, str], int, int, int, int]] = []
                for cid, (curve, events) in work.items():
                    cached = self.states[cid]
                    if cached.launch is not None and cached.launch != curve.launch_ts:
                        # the campaign was launched again (a new projection): its mirror starts afresh
                        cached.state, cached.written, cached.snap_sig = MirrorState(cid), {"rev": str(cached.rev)}, ()
                    state = cached.state
                    before = state.events
                    outcomes, stuck = self._apply_all(cid, state, curve, events)
                    if any(o.pause for o in outcomes):
                        del self.states[cid]  # applied speculatively: the WATCH path reads it afresh
                        slow[cid] = (curve, events)
                        continue
                    changes = _encode_changes(cached)
                    launch = repr(curve.launch_ts)
                    if cached.written.get("launch_ts") != launch:
                        changes["launch_ts"] = launch
                    rev = _next_rev(cached.rev)
                    keys.append(f"{self.prefix}campaign:{cid}:mirror")
                    args += [cached.rev, rev, len(changes)]
                    for k, v in changes.items():
                        args += [k, v]
                    args.append(len(events))
                    args += [e[0] for e in events]
                    args.append(len(outcomes) + len(stuck))
                    for alert in [self._alert_fields(o) for o in outcomes] + stuck:
                        args.append(2 * len(alert))
                        for k, v in alert.items():
                            args += [k, v]
                    done.append(
                        (cid, cached, changes, rev, len(events), state.events - before, len(outcomes), len(stuck))
                    )
                if not done:
                    break
                results = self._script(keys=keys, args=args, client=self.client)
                retry: dict[str, tuple[ProjectionCurve, list[Event]]] = {}
                for (cid, cached, changes, rev, n, applied, greys, stuck_n), ok in zip(done, results, strict=True):
                    if ok:
                        cached.rev = rev
                        cached.written.update(changes)
                        cached.written["rev"] = str(rev)
                        cached.snap_sig = _snapshot_sig(cached.state)
                        self.stats.applied += applied
                        self.stats.ignored += n - applied
                        self.stats.greys += greys
                        self.stats.stuck_alerts += stuck_n
                    else:  # another worker wrote this campaign since we read it: read again, re-apply
                        self.stats.conflicts += 1
                        del self.states[cid]
                        retry[cid] = work[cid]
                work = retry
        except BaseException:
            for cid in (*work, *slow):
                self.states.pop(cid, None)
            raise
        for cid, (curve, events) in slow.items():
            self._apply_campaign(cid, curve, events)

    def _alert_fields(self, o: Outcome) -> dict[str, str]:
        severity, title, message, details = o.alert()
        return {
            "severity": severity,
            "title": title,
            "message": message,
            "details": json.dumps(details, default=str),
            "ts": str(self.clock()),
        }

    def _apply_campaign(self, cid: str, curve: ProjectionCurve, events: list[Event]) -> None:
        """WATCH the mirror hash (and, for a pause, the audit stream), read, apply, and write the
        state, the messages and the XACK in one MULTI/EXEC; retry on a concurrent write."""
        from redis.exceptions import WatchError

        key = f"{self.prefix}campaign:{cid}:mirror"
        ids = [e[0] for e in events]
        for _attempt in range(100):
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)
                    data = pipe.hgetall(key)
                    stored_launch = float(data["launch_ts"]) if data.get("launch_ts") else None
                    if "rev" not in data or (stored_launch is not None and stored_launch != curve.launch_ts):
                        # a new or reset hash, or another launch's: is our projection still current?
                        work = {cid: (curve, events)}
                        self._recheck_curves(work, [cid])
                        curve = work[cid][0]
                        if stored_launch is not None and stored_launch != curve.launch_ts:
                            data = {"rev": data["rev"]} if "rev" in data else {}  # a new launch starts afresh
                    rev = int(data.get("rev", 0) or 0)
                    state = MirrorState.from_hash(cid, data)
                    before = state.events
                    outcomes, stuck = self._apply_all(cid, state, curve, events)
                    pause = next((o for o in outcomes if o.pause), None)
                    audit_rec = None
                    if pause is not None:
                        audit_rec, _fields = self.audit.prepare(
                            pipe,
                            "AUTO_ROLLBACK_TRIGGERED",
                            campaign_id=cid,
                            reason=PAUSE_REASON,
                            metadata=pause.audit(self.cfg.threshold),
                        )
                    written = state.to_hash()
                    new_rev = _next_rev(rev)
                    written["rev"] = str(new_rev)
                    written["launch_ts"] = repr(curve.launch_ts)
                    pipe.multi()
                    pipe.hset(key, mapping=written)
                    for alert in [self._alert_fields(o) for o in outcomes] + stuck:
                        pipe.xadd(self.alerts, alert, maxlen=self.maxlen, approximate=True)
                    if pause is not None:
                        pipe.xadd(self.control, pause_fields(pause.command()), maxlen=self.maxlen, approximate=True)
                        assert audit_rec is not None
                        self.audit.queue(pipe, audit_rec)
                    pipe.xack(self.bids, self.group, *ids)
                    pipe.execute()
                except WatchError:
                    self.stats.conflicts += 1
                    continue
            self._remember(self.states, cid, _Cached(new_rev, state, written))
            self.stats.applied += state.events - before
            self.stats.ignored += len(events) - (state.events - before)
            if pause is not None:
                self.stats.pauses += 1
                # from the event that decided (its ts: launch + the verdict's elapsed time) to now
                self.stats.pause_latencies_ms.append(
                    (self.clock() - (curve.launch_ts + pause.verdict.elapsed)) * 1000.0
                )
            self.stats.greys += sum(1 for o in outcomes if not o.pause)
            self.stats.stuck_alerts += len(stuck)
            return
        raise RuntimeError(f"campaign {cid}: mirror state kept changing under us (100 conflicts)")
