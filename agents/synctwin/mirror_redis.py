"""The live mirror in production: a consumer-group worker on the `synctwin:bids` stream.

Reliability, in the order an event meets it:
- XREADGROUP in batches; several workers may share the group, on one machine or many;
- an invalid event (missing field, NaN, negative, unknown campaign) goes to `synctwin:bids:dead`
  with the reason, and the worker keeps going;
- each campaign's events of a batch are applied in one optimistic transaction: WATCH the mirror
  hash, read it, apply (idempotently: nothing older than the last applied event counts), then
  MULTI: the new hash, and on a PAUSE verdict the control command, the alert and the chained
  audit record, EXEC. A pause is therefore written exactly once, however many workers race
  and however often an event is redelivered;
- XACK only after that: a worker killed mid-batch leaves its events pending, and a live worker
  reclaims them (XAUTOCLAIM) after `claim_idle_ms`; an event delivered `max_deliveries` times
  (poison) goes to the dead letters;
- Redis unavailable: back off and retry; nothing is acknowledged, so nothing is lost.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agents.syncshield.backends import RedisAuditStore
from agents.synctwin.deviation import InvalidEvent, MirrorConfig, MirrorState, ProjectionCurve, apply_event, parse_event
from agents.synctwin.mirror import PAUSE_REASON, Outcome

log = logging.getLogger("synctwin.mirror")


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
    pause_latencies_ms: list[float] = field(default_factory=list)


class RedisMirror:
    def __init__(self, client: Any, cfg: MirrorConfig, *, prefix: str = "synctwin:", group: str = "synctwin-mirror",
                 consumer: str | None = None, batch: int = 500, block_ms: int = 1000, claim_idle_ms: int = 30_000,
                 max_deliveries: int = 5, clock: Callable[[], float] = time.time, stream_maxlen: int = 100_000) -> None:
        self.client = client
        self.cfg = cfg
        self.prefix = prefix
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self.clock = clock
        self.maxlen = stream_maxlen
        self.bids, self.dead = f"{prefix}bids", f"{prefix}bids:dead"
        self.control, self.alerts = f"{prefix}control", f"{prefix}alerts"
        self.audit = RedisAuditStore(client, key=f"{prefix}audit", clock=clock)
        self.curves: dict[str, ProjectionCurve] = {}
        self.stats = MirrorStats()
        self._next_claim = 0.0

    # --- setup ---------------------------------------------------------------------------------
    def ensure_group(self) -> None:
        """Create the consumer group (from the stream's start, so nothing published earlier is
        skipped: applying old events again changes nothing)."""
        import redis

        try:
            self.client.xgroup_create(self.bids, self.group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _curve(self, campaign_id: str) -> ProjectionCurve | None:
        curve = self.curves.get(campaign_id)
        if curve is None:
            raw = self.client.get(f"{self.prefix}campaign:{campaign_id}:projection")
            if raw is None:
                return None
            curve = ProjectionCurve.from_projection(json.loads(raw))
            self.curves[campaign_id] = curve
        return curve

    # --- the loop ------------------------------------------------------------------------------
    def run(self, stop: Callable[[], bool]) -> MirrorStats:
        """Consume until `stop()`: the batch in hand is finished and acknowledged first (drain)."""
        import redis

        backoff = 0.1
        group_ready = False
        while not stop():
            try:
                if not group_ready:
                    self.ensure_group()
                    group_ready = True
                self.step()
                backoff = 0.1
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                self.stats.redis_errors += 1
                log.warning("Redis unavailable (%s); retrying in %.1f s", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except redis.exceptions.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                group_ready = False  # the stream was deleted or Redis restarted empty: recreate
        return self.stats

    def step(self) -> int:
        """Reclaim what dead workers left (now and then), then read and process one batch."""
        done = 0
        if time.monotonic() >= self._next_claim:
            done += self.reclaim()
            self._next_claim = time.monotonic() + self.claim_idle_ms / 2000.0
        reply = self.client.xreadgroup(self.group, self.consumer, {self.bids: ">"}, count=self.batch,
                                       block=self.block_ms)
        for _stream, entries in reply or []:
            done += self.process(entries)
        return done

    def reclaim(self) -> int:
        """XAUTOCLAIM events idle past `claim_idle_ms`; those delivered too often are dead letters."""
        claimed: list[tuple[str, dict[str, str]]] = []
        start = "0-0"
        while True:
            reply = self.client.xautoclaim(self.bids, self.group, self.consumer, self.claim_idle_ms, start,
                                           count=self.batch)
            start, entries = reply[0], reply[1]
            claimed += [(i, f) for i, f in entries if f is not None]
            if start in ("0-0", b"0-0") or not entries:
                break
        if not claimed:
            return 0
        self.stats.reclaimed += len(claimed)
        counts = {p["message_id"]: p["times_delivered"] for p in self.client.xpending_range(
            self.bids, self.group, min=claimed[0][0], max=claimed[-1][0], count=len(claimed) + 10,
            consumername=self.consumer)}
        poison = [(i, f) for i, f in claimed if counts.get(i, 0) > self.max_deliveries]
        if poison:
            self._dead_letters([(i, f, f"delivered {counts[i]} times without being processed (poison)")
                                for i, f in poison])
            self.client.xack(self.bids, self.group, *[i for i, _ in poison])
        rest = [(i, f) for i, f in claimed if counts.get(i, 0) <= self.max_deliveries]
        return len(poison) + (self.process(rest) if rest else 0)

    def process(self, entries: list[tuple[str, dict[str, str]]]) -> int:
        """Apply a batch; dead-letter what cannot be applied; acknowledge everything handled."""
        self.stats.batches += 1
        self.stats.events += len(entries)
        by_campaign: dict[str, list[tuple[str, str, float, tuple[float, ...]]]] = {}
        raw = dict(entries)
        dead: list[tuple[str, dict[str, str], str]] = []
        for entry_id, fields in entries:
            try:
                event_id, cid, ts, values = parse_event(fields)
            except InvalidEvent as exc:
                dead.append((entry_id, fields, str(exc)))
                continue
            by_campaign.setdefault(cid, []).append((entry_id, event_id, ts, values))
        for cid, events in by_campaign.items():
            curve = self._curve(cid)
            if curve is None:
                reason = f"unknown campaign {cid}: no projection at {self.prefix}campaign:{cid}:projection"
                dead += [(e[0], raw[e[0]], reason) for e in events]
                continue
            self._apply_campaign(cid, curve, events)
        if dead:
            self._dead_letters(dead)
        ids = [entry_id for entry_id, _ in entries]
        if ids:
            self.client.xack(self.bids, self.group, *ids)
        return len(entries)

    def _dead_letters(self, dead: list[tuple[str, dict[str, str], str]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for entry_id, fields, reason in dead:
            pipe.xadd(self.dead, {**{k: str(v) for k, v in fields.items()}, "entry_id": entry_id, "reason": reason,
                                  "consumer": self.consumer}, maxlen=self.maxlen, approximate=True)
        pipe.execute()
        self.stats.dead += len(dead)

    def _apply_campaign(self, cid: str, curve: ProjectionCurve,
                        events: list[tuple[str, str, float, tuple[float, ...]]]) -> None:
        from redis.exceptions import WatchError

        key = f"{self.prefix}campaign:{cid}:mirror"
        for _attempt in range(100):
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)
                    state = MirrorState.from_hash(cid, pipe.hgetall(key))
                    before = state.events
                    outcomes = []
                    for _entry, event_id, ts, values in events:
                        verdict = apply_event(state, event_id, ts, values, curve, self.cfg)
                        if verdict is not None and verdict.action is not None:
                            outcomes.append(Outcome(cid, verdict, state.deviation))
                    pause = next((o for o in outcomes if o.pause), None)
                    audit_fields = None
                    if pause is not None:
                        _rec, audit_fields = self.audit.prepare(
                            pipe, "AUTO_ROLLBACK_TRIGGERED", campaign_id=cid, reason=PAUSE_REASON,
                            metadata=pause.audit(self.cfg.threshold))
                    pipe.multi()
                    pipe.hset(key, mapping=state.to_hash())
                    for o in outcomes:
                        severity, title, message, details = o.alert()
                        pipe.xadd(self.alerts, {"severity": severity, "title": title, "message": message,
                                                "details": json.dumps(details, default=str),
                                                "ts": str(self.clock())}, maxlen=self.maxlen, approximate=True)
                    if pause is not None:
                        pipe.xadd(self.control, {"command": "PAUSE", "campaign_id": cid, "reason": PAUSE_REASON,
                                                 "deviation": f"{pause.deviation:.4f}", "ts": str(self.clock())},
                                  maxlen=self.maxlen, approximate=True)
                        pipe.xadd(self.audit.key, audit_fields)
                    pipe.execute()
                except WatchError:
                    self.stats.conflicts += 1
                    continue
            self.stats.applied += state.events - before
            self.stats.ignored += len(events) - (state.events - before)
            if pause is not None:
                self.stats.pauses += 1
                self.stats.pause_latencies_ms.append((self.clock() - events[-1][2]) * 1000.0)
            self.stats.greys += sum(1 for o in outcomes if not o.pause)
            return
        raise RuntimeError(f"campaign {cid}: mirror state kept changing under us (100 conflicts)")
