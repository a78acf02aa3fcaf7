"""One consumer-group worker on the bid stream `{prefix}bids`, for the workers that share it.

The mirror (agents/synctwin/mirror_redis.py) and the shadow worker (agents/synctwin/shadow_redis.py)
each read the stream in their own consumer group with the same reliability rules, kept here once:
- the group is created from the stream's start (re-reading old events changes nothing), and
  recreated when the stream disappears (deleted, or Redis restarted empty);
- Redis unavailable: back off (0.1 s doubling to 5 s) and retry; nothing is acknowledged, so
  nothing is lost. After an error the worker first re-reads its own pending entries (from 0);
- now and then (every `claim_idle_ms / 2`) XAUTOCLAIM takes over what a dead worker left idle
  past `claim_idle_ms`; an event delivered more than `max_deliveries` times (poison) goes to the
  dead letters `{prefix}bids:dead`, acknowledged in the same transaction.
A subclass processes the entries (`process`, which must acknowledge every entry it is given) and
reports its metrics; the hooks below add its per-step extras.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any, ClassVar, Generic, Protocol, TypeVar

Entry = tuple[str, dict[str, str]]
DeadLetter = tuple[str, dict[str, str], str]  # (stream entry id, the event's fields, why)


class ConsumerStats(Protocol):
    """The counters the shared loop keeps in a worker's own stats."""

    reclaimed: int
    redis_errors: int


S = TypeVar("S", bound=ConsumerStats)


def id_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id as (ms, seq), so ids compare as Redis orders them (not as strings)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class StreamConsumer(Generic[S]):
    """The consumer-group mechanics of a bid-stream worker; a subclass sets `stats` and `log` and
    implements `process` and `_report_metrics`."""

    log: ClassVar[logging.Logger]  # the worker's own logger (its name is what operators filter on)
    stats: S

    def __init__(self, client: Any, *, prefix: str, group: str, consumer: str | None = None, batch: int = 500,
                 block_ms: int | None = 1000, claim_idle_ms: int = 30_000, max_deliveries: int = 5,
                 stream_maxlen: int = 100_000) -> None:
        self.client = client
        self.prefix = prefix
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.batch = max(1, int(batch))
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self.maxlen = stream_maxlen
        self.bids, self.dead = f"{prefix}bids", f"{prefix}bids:dead"
        self._own_pending: str | None = "0"  # re-read our own pending entries from here first
        self._next_claim = 0.0

    # --- what a worker supplies ----------------------------------------------------------------
    def process(self, entries: list[Entry]) -> int:
        """Handle a batch and acknowledge every entry in it; the number of entries."""
        raise NotImplementedError

    def _report_metrics(self) -> None:
        """Export the growth of the counters since the last report."""
        raise NotImplementedError

    def _count_dead(self, n: int) -> None:
        """Count `n` entries written to the dead letters in this worker's stats."""
        raise NotImplementedError

    def _dead_letter(self, entry_id: str, entry_fields: dict[str, str], reason: str) -> dict[str, str]:
        """The dead-letter record of one entry: the event as it came, where it was and why."""
        return {**{k: str(v) for k, v in entry_fields.items()}, "entry_id": entry_id, "reason": reason,
                "consumer": self.consumer}

    def _on_group_ready(self) -> None:
        """After the group is (re)created, before the first read."""

    def _before_read(self, now: float) -> None:
        """Per step, after the periodic reclaim and before reading (e.g. the mirror's trim)."""

    def _after_step(self) -> None:
        """After each step of `run` that did not fail."""

    def _on_drained(self) -> None:
        """`run(once=True)` found the group empty and is about to return."""

    def _after_error(self) -> None:
        """What we knew may be stale: re-read our own pending entries first."""
        self._own_pending = "0"

    # --- the loop ------------------------------------------------------------------------------
    def ensure_group(self) -> None:
        """Create the consumer group (from the stream's start, so nothing published earlier is
        skipped: applying old events again changes nothing)."""
        import redis

        try:
            self.client.xgroup_create(self.bids, self.group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def run(self, stop: Callable[[], bool], *, once: bool = False) -> S:
        """Consume until `stop()`: the batch in hand is finished and acknowledged first (drain);
        with `once`, until the group has nothing left for us (without blocking)."""
        import redis

        backoff = 0.1
        group_ready = False
        while not stop():
            try:
                if not group_ready:
                    self.ensure_group()
                    group_ready = True
                    self._on_group_ready()
                n = self.step(block=not once)
                self._after_step()
                if once and n == 0:
                    self._on_drained()
                    break
                backoff = 0.1
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                self.stats.redis_errors += 1
                self._report_metrics()
                self._after_error()
                self.log.warning("Redis unavailable (%s); retrying in %.1f s", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            except redis.exceptions.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self._after_error()
                group_ready = False  # the stream was deleted or Redis restarted empty: recreate
        self._report_metrics()
        return self.stats

    def step(self, *, block: bool = True) -> int:
        """Reclaim what dead workers left (now and then), re-read our own pending entries after a
        restart or an error, then read and process one batch; the number of entries handled."""
        done = 0
        now = time.monotonic()
        if now >= self._next_claim:
            done += self.reclaim()
            self._next_claim = now + self.claim_idle_ms / 2000.0
        self._before_read(now)
        if self._own_pending is not None:
            reply = self.client.xreadgroup(self.group, self.consumer, {self.bids: self._own_pending},
                                           count=self.batch)
            entries = reply[0][1] if reply else []
            if entries:
                self._own_pending = entries[-1][0] if len(entries) == self.batch else None  # ids are exclusive
                return done + self.process(entries)
            self._own_pending = None
        reply = self.client.xreadgroup(self.group, self.consumer, {self.bids: ">"}, count=self.batch,
                                       block=self.block_ms if block else None)
        for _stream, entries in reply or []:
            done += self.process(entries)
        return done

    def reclaim(self) -> int:
        """XAUTOCLAIM events idle past `claim_idle_ms`; those delivered too often are dead letters."""
        claimed: list[Entry] = []
        start = "0-0"
        while True:
            reply = self.client.xautoclaim(self.bids, self.group, self.consumer, self.claim_idle_ms, start,
                                           count=self.batch)
            start, entries = reply[0], reply[1]
            claimed += [(i, f or {}) for i, f in entries if i is not None]
            if start in ("0-0", b"0-0") or not entries or len(claimed) >= 10 * self.batch:
                break
        if not claimed:
            return 0
        self.stats.reclaimed += len(claimed)
        counts = self._delivery_counts(claimed)
        poison = [(i, f, f"delivered {counts[i]} times without being processed (poison)")
                  for i, f in claimed if counts.get(i, 0) > self.max_deliveries]
        if poison:
            self._dead_letters(poison)
            self._report_metrics()
        rest = [(i, f) for i, f in claimed if counts.get(i, 0) <= self.max_deliveries]
        return len(poison) + (self.process(rest) if rest else 0)

    def _delivery_counts(self, claimed: list[Entry]) -> dict[str, int]:
        """How often each claimed entry was delivered (XPENDING of our own entries, paged: we may
        hold more pending entries in that id range than we just claimed)."""
        want = {i for i, _ in claimed}
        counts: dict[str, int] = {}
        lo, hi = min(want, key=id_key), max(want, key=id_key)
        page = max(100, len(want))
        while True:
            rows = self.client.xpending_range(self.bids, self.group, min=lo, max=hi, count=page,
                                              consumername=self.consumer)
            for p in rows:
                if p["message_id"] in want:
                    counts[p["message_id"]] = p["times_delivered"]
            if len(rows) < page or len(counts) == len(want):
                return counts
            lo = "(" + rows[-1]["message_id"]

    def _dead_letters(self, dead: list[DeadLetter]) -> None:
        """XADD the dead letters and XACK their entries in one transaction."""
        pipe = self.client.pipeline(transaction=True)
        for entry_id, fields, reason in dead:
            pipe.xadd(self.dead, self._dead_letter(entry_id, fields, reason), maxlen=self.maxlen, approximate=True)
        pipe.xack(self.bids, self.group, *[d[0] for d in dead])
        pipe.execute()
        self._count_dead(len(dead))
