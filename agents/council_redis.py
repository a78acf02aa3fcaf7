"""The Council's Redis ports: `synctwin run`'s worker on the `{prefix}bids` stream.

The consumer-group mechanics are the mirror's (agents/synctwin/stream_consumer.py: batches,
heartbeats, a dead worker's batch claimed before anything new is read, poison and dead letters,
backoff on a lost connection). Per batch:
- every entry is decoded and checked by the mirror's parser; one that is not a bid event is a dead
  letter, and so is the event of a campaign without a plan (`{prefix}campaign:{id}:strategy`, as
  `gate --redis` stores it, with its `:projection` when there is one, and the baseline of `:gate`);
- the batch is one message to the Council (agents/council.py), run until it has decided;
- what it decided is written in ONE WATCH/MULTI/EXEC with the XACK of the batch: per PAUSE the
  marker `{prefix}campaign:{id}:paused` (its fields) and the `{prefix}control` entry, the alerts on
  `{prefix}alerts` and the audit records chained onto `{prefix}audit`. The markers are WATCHed and
  read first: a campaign another worker (or this one before a kill -9) already paused gets no second
  PAUSE, and a campaign adopted with its marker set is not guarded again. A worker killed before
  EXEC wrote nothing and acknowledged nothing: its batch is decided again by whoever claims it.

What this step does not do yet: the Council's own state (guards, mirror states) lives in the
worker's memory, so a worker that takes over a campaign mid-flight starts its guards afresh; a
re-published plan (a new gate) is read again only by a new worker; the mirror's plausibility limits
(event_limits) are applied by `synctwin mirror` only.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from agents.council import Council, OutboxAuditStore, OutboxSink, Plan, plan_from_parts
from agents.syncshield.backends import RedisAuditStore
from agents.syncshield.chain import make_record
from agents.synctwin.deviation import InvalidEvent, parse_raw_event
from agents.synctwin.stream_consumer import DeadLetter, Entry, StreamConsumer
from synctwin import metrics
from synctwin.errors import InvalidInput
from synctwin.messages import PauseCommand, pause_fields

log = logging.getLogger("synctwin.council")


@dataclass(slots=True)
class CouncilStats:
    events: int = 0
    dead: int = 0
    pauses: int = 0
    duplicates: int = 0  # pauses decided again for a campaign already paused (not written)
    batches: int = 0
    reclaimed: int = 0
    redis_errors: int = 0
    conflicts: int = 0
    pause_latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


class RedisCouncil(StreamConsumer[CouncilStats]):
    """The Council fed by a consumer group; its decisions written with the batch's acknowledgement."""

    log = log

    def __init__(
        self,
        client: Any,
        council: Council,
        *,
        prefix: str = "synctwin:",
        group: str = "synctwin-council",
        consumer: str | None = None,
        batch: int = 500,
        block_ms: int | None = 1000,
        claim_idle_ms: int = 30_000,
        max_deliveries: int = 5,
        stream_maxlen: int = 100_000,
        heartbeat_ms: int = 5_000,
        clock: Any = time.time,
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
        if not isinstance(council.ports.audit, OutboxAuditStore):
            raise TypeError("RedisCouncil needs a Council built with an OutboxAuditStore")
        self.council = council
        self.outbox_audit: OutboxAuditStore = council.ports.audit
        self.outbox_alerts = next(s for s in council.ports.alerts if isinstance(s, OutboxSink))
        self.clock = clock
        self.control, self.alerts = f"{prefix}control", f"{prefix}alerts"
        self.audit = RedisAuditStore(client, key=f"{prefix}audit", clock=clock)
        self.stats = CouncilStats()
        self._reported = CouncilStats()
        self._written: dict[str, int] = {}  # pauses written since the last report, by reason
        self._no_plan: dict[str, str] = {}  # campaigns without a usable plan: why (re-read at most every minute)
        self._no_plan_at: dict[str, float] = {}

    def marker(self, campaign_id: str) -> str:
        return f"{self.prefix}campaign:{campaign_id}:paused"

    # --- plans ---------------------------------------------------------------------------------
    def _plans(self, campaign_ids: list[str]) -> dict[str, tuple[Plan, bool] | str]:
        """Each campaign's plan and whether it is paused already, or why it has no plan."""
        pipe = self.client.pipeline(transaction=False)
        for cid in campaign_ids:
            base = f"{self.prefix}campaign:{cid}"
            pipe.get(f"{base}:strategy")
            pipe.get(f"{base}:projection")
            pipe.get(f"{base}:gate")
            pipe.exists(self.marker(cid))
        replies = pipe.execute()
        out: dict[str, tuple[Plan, bool] | str] = {}
        for n, cid in enumerate(campaign_ids):
            raw_s, raw_p, raw_g, paused = replies[4 * n : 4 * n + 4]
            base = f"{self.prefix}campaign:{cid}"
            if raw_s is None:
                out[cid] = f"unknown campaign {cid}: no plan at {base}:strategy"
                continue
            try:
                gate = json.loads(raw_g) if raw_g else {}
                baseline = gate.get("baseline") if isinstance(gate, dict) else None
                plan = plan_from_parts(
                    cid,
                    json.loads(raw_s),
                    json.loads(raw_p) if raw_p else None,
                    baseline if isinstance(baseline, dict) else None,
                    source=base,
                )
            except (ValueError, InvalidInput) as exc:
                out[cid] = f"campaign {cid}: its plan at {base} is invalid ({exc})"
                continue
            out[cid] = (plan, bool(paused))
        return out

    # --- one batch -----------------------------------------------------------------------------
    def process(self, entries: list[Entry]) -> int:
        self.stats.batches += 1
        self.stats.events += len(entries)
        council = self.council
        dead: list[DeadLetter] = []
        parsed: list[tuple[str, dict[bytes, bytes], tuple[str, str, float, tuple[float, ...]]]] = []
        for entry_id, fields in entries:
            if not fields:
                dead.append((entry_id, {}, "the entry was deleted from the stream before it was processed"))
                continue
            try:
                parsed.append((entry_id, fields, parse_raw_event(fields)))
            except InvalidEvent as exc:
                dead.append((entry_id, fields, str(exc)))
            except Exception as exc:  # whatever else one entry raises must not crash the worker
                dead.append((entry_id, fields, f"cannot parse the event ({type(exc).__name__}: {exc})"))
        fresh = sorted({e[1] for _, _, e in parsed if not council.knows(e[1])})
        if fresh:
            now = time.monotonic()
            ask = [c for c in fresh if c not in self._no_plan or now - self._no_plan_at[c] > 60.0]
            found = self._plans(ask) if ask else {}
            adopt = []
            for cid, got in found.items():
                if isinstance(got, str):
                    self._no_plan[cid], self._no_plan_at[cid] = got, now
                else:
                    self._no_plan.pop(cid, None)
                    adopt.append(got)
            council.adopt(adopt, at=self._now())
        known: list[tuple[str, dict[bytes, bytes], tuple[str, str, float, tuple[float, ...]]]] = []
        for entry_id, fields, e in parsed:
            if council.knows(e[1]):
                known.append((entry_id, fields, e))
            else:
                dead.append((entry_id, fields, self._no_plan.get(e[1], f"unknown campaign {e[1]}: no plan")))
        events, bad = council.screen([e for _, _, e in known], self.clock())
        refused = {id(e): why for e, why in bad}
        acked = [entry_id for entry_id, _, e in known if id(e) not in refused]
        dead += [(entry_id, fields, refused[id(e)]) for entry_id, fields, e in known if id(e) in refused]
        council.feed(events, at=self._now())
        self._commit(acked)
        if dead:
            self._dead_letters(dead)
        self._report_metrics()
        return len(entries)

    def _now(self) -> float:
        return max(self.council.env.now, self.clock())

    def _commit(self, ids: list[str]) -> None:
        """The batch's decisions and its XACK in one transaction; a campaign whose pause marker is
        set already loses this batch's pause, and its alerts and audit records with it."""
        pauses: list[PauseCommand] = self.council.ports.control.pauses
        audits, alerts = self.outbox_audit.pending, self.outbox_alerts.alerts
        self.council.ports.control.pauses, self.outbox_audit.pending, self.outbox_alerts.alerts = [], [], []
        if not (ids or pauses or audits or alerts):
            return
        try:
            self._write(ids, pauses, audits, alerts)
        except BaseException:  # nothing was written: keep the decisions for the next commit
            self.council.ports.control.pauses[:0] = pauses
            self.outbox_audit.pending[:0] = audits
            self.outbox_alerts.alerts[:0] = alerts
            raise

    def _write(
        self, ids: list[str], pauses: list[PauseCommand], audits: list[dict[str, Any]], alerts: list[Any]
    ) -> None:
        from redis.exceptions import WatchError

        for _attempt in range(100):
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    cids = list(dict.fromkeys(p.campaign_id for p in pauses))
                    markers = [self.marker(c) for c in cids]
                    taken: set[str] = set()
                    if markers:
                        pipe.watch(*markers)
                        taken = {c for c, m in zip(cids, markers, strict=True) if pipe.exists(m)}  # hashes: no MGET
                    keep_p = [p for p in pauses if p.campaign_id not in taken]
                    keep_a = [a for a in audits if a["campaign_id"] not in taken]
                    keep_n = [a for a in alerts if (a.details or {}).get("campaign_id") not in taken]
                    recs = []
                    for a in keep_a:
                        if not recs:
                            rec, _ = self.audit.prepare(
                                pipe,
                                a["event_type"],
                                client_id=a["client_id"],
                                campaign_id=a["campaign_id"],
                                reason=a["reason"],
                                metadata=a["metadata"],
                            )
                        else:
                            rec = make_record(
                                recs[-1],
                                a["event_type"],
                                ts=self.clock(),
                                client_id=a["client_id"],
                                campaign_id=a["campaign_id"],
                                reason=a["reason"],
                                metadata=a["metadata"],
                                key=self.audit._hmac_key,
                            )
                        recs.append(rec)
                    pipe.multi()
                    for p in keep_p:
                        fields = pause_fields(p)
                        pipe.hset(self.marker(p.campaign_id), mapping=fields)
                        pipe.xadd(self.control, fields, maxlen=self.maxlen, approximate=True)
                    for a in keep_n:
                        pipe.xadd(
                            self.alerts,
                            {
                                "severity": a.severity,
                                "title": a.title,
                                "message": a.message,
                                "details": json.dumps(a.details, separators=(",", ":"), default=str),
                                "ts": repr(a.ts),
                            },
                            maxlen=self.maxlen,
                            approximate=True,
                        )
                    for rec in recs:
                        self.audit.queue(pipe, rec)
                    if ids:
                        pipe.xack(self.bids, self.group, *ids)
                    pipe.execute()
                except WatchError:
                    self.stats.conflicts += 1
                    continue
            self.stats.pauses += len(keep_p)
            for p in keep_p:
                self._written[p.reason] = self._written.get(p.reason, 0) + 1
            self.stats.duplicates += len(pauses) - len(keep_p)
            now = self.clock()
            self.stats.pause_latencies_ms.extend((now - p.ts) * 1000.0 for p in keep_p if p.ts is not None)
            return
        raise RuntimeError("the pause markers kept changing under us (100 conflicts)")

    # --- the loop's hooks ----------------------------------------------------------------------
    def _count_dead(self, n: int) -> None:
        self.stats.dead += n

    def _report_metrics(self) -> None:
        delta = {
            name: getattr(self.stats, name) - getattr(self._reported, name)
            for name in ("events", "dead", "batches", "redis_errors", "pauses")
        }
        for name in delta:
            setattr(self._reported, name, getattr(self.stats, name))
        delta.pop("pauses")  # counted by reason below, as they are written
        metrics.record_mirror(delta, ())
        for reason, n in self._written.items():
            metrics.PAUSES.labels(reason=reason).inc(n)
        self._written.clear()


def redis_council(
    client: Any,
    settings: Any,
    *,
    group: str = "synctwin-council",
    consumer: str | None = None,
    batch: int | None = None,
    disabled_guards: Any = (),
    block_ms: int | None = 1000,
) -> RedisCouncil:
    """`synctwin run`'s worker: the Council on a wall-clock environment with the Redis ports."""
    from agents.council import ControlPort, Ports, build_council
    from world.clock import make_environment

    env = make_environment(realtime=True, initial_time=time.time())
    ports = Ports(ControlPort(), OutboxAuditStore(), [OutboxSink()])
    council = build_council(env, settings, ports, disabled_guards=disabled_guards, clock=time.time)
    return RedisCouncil(
        client,
        council,
        prefix=settings.key_prefix,
        group=group,
        consumer=consumer,
        batch=batch or settings.mirror_batch,
        block_ms=block_ms,
        claim_idle_ms=settings.mirror_claim_idle_ms,
        max_deliveries=settings.mirror_max_deliveries,
        heartbeat_ms=settings.mirror_heartbeat_ms,
    )
