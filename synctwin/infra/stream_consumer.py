"""One consumer-group worker on the bid stream `{prefix}bids`: the reliability rules shared by the
Council's workers (agents/council/redis.py: `synctwin run`, `mirror`, `shadow`), kept here once.
- The group is created from the stream's start (re-reading old events changes nothing) and again
  when the stream disappears. Redis unavailable: back off (0.1 s doubling to 5 s) and retry, then
  re-read our own pending entries (from 0); nothing unacknowledged is lost.
- Entries are read raw (bytes) and decoded field by field: one that is not UTF-8 is a dead letter
  (its bytes kept as hex), never an exception that would crash every worker that reclaims it.
- Each worker keeps a heartbeat `{prefix}consumer:{group}:{name}` (PX `heartbeat_ms`) and its name
  in `{prefix}consumers:{group}`. At start and every `heartbeat_ms / 2` the pending entries of
  consumers whose heartbeat expired (killed workers) are claimed and processed BEFORE anything new,
  so a dead worker's batch is applied in order; at start a live-looking one is waited for (at
  most `heartbeat_ms`) until it beats or expires.
- Every `claim_idle_ms / 2` XAUTOCLAIM takes what was left idle past `claim_idle_ms` (workers without
  heartbeat); an event delivered more than `max_deliveries` times (poison) goes to `{prefix}bids:dead`.
A subclass processes the entries (`process` acknowledges all it is given) and reports metrics. A
worker of a sharded stream (agents/council/sharded.py) has an `owner` (a shard's lease) asked before
every read and fencing every commit; a shard's consumer name is the same for all its owners, so
each step re-reads its own pending entries first: a predecessor's unacknowledged batch, in order.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import redis

Entry = tuple[str, Any]  # (stream entry id, the event's fields as bytes: a dict, or a raw reply's flat list)
DeadLetter = tuple[str, dict[Any, Any], str]  # (stream entry id, the event's fields, why)
RAW = {"NEVER_DECODE": True}  # redis-py's execute_command option: this reply as bytes, on any client


def _text(x: bytes | str) -> str:
    return x if type(x) is str else x.decode("utf-8")  # type: ignore[union-attr]


def text_fields(fields: dict[Any, Any]) -> dict[str, str]:
    """An entry's fields as text for its dead letter: bytes that are not UTF-8 escaped (`\\xff`),
    and each such field's exact bytes as hex under `<name>:hex` (a name's under `<name>:name_hex`),
    so nothing is lost and the dead-letter stream stays readable by a decoding client."""
    out: dict[str, str] = {}
    for k, v in fields.items():
        kb = k if type(k) is bytes else str(k).encode()
        vb = v if type(v) is bytes else str(v).encode()
        name, value = kb.decode("utf-8", "backslashreplace"), vb.decode("utf-8", "backslashreplace")
        out[name] = value  # an escaped text encodes back to its bytes only when they were UTF-8
        if name.encode() != kb:
            out[f"{name}:name_hex"] = kb.hex()  # the name's own bytes (its escaped form may be ambiguous)
        if name.encode() != kb or value.encode() != vb:
            out[f"{name}:hex"] = vb.hex()
    return out


def field_dict(fields: Any) -> dict[Any, Any]:
    """An entry's fields as a dict (a raw reply holds them as a flat [name, value, ...] list)."""
    return fields if isinstance(fields, dict) else dict(zip(fields[0::2], fields[1::2], strict=False))


def raw_reader(client: Any) -> Any:
    """`client` with XREADGROUP's reply left as the server sent it (an entry's fields a flat list):
    redis-py's parser built a dict per entry, a sixth of a worker's drain. A client of another kind
    (a cluster's) is returned as it is: its replies are parsed, which the workers read as well."""
    if not isinstance(client, redis.Redis):
        return client
    reader = copy.copy(client)  # the same connection pool
    reader.response_callbacks = type(client.response_callbacks)(client.response_callbacks)
    reader.response_callbacks.pop("XREADGROUP", None)
    return reader


def raw_entries(raw: list[Any]) -> list[Entry]:
    """Entries read raw: ids as text (always ASCII), fields as bytes for the worker to decode; a
    deleted entry (fields None) comes back with no fields, for the worker to dead-letter."""
    return [(i.decode() if type(i) is bytes else i, f or {}) for i, f in raw if i is not None]


class ConsumerStats(Protocol):
    """The counters the shared loop keeps in a worker's own stats."""

    reclaimed: int
    redis_errors: int


S = TypeVar("S", bound=ConsumerStats)


class Ownership(Protocol):
    """The right to read a stream and commit what was read (a shard's lease)."""

    def check(self) -> None:
        """Before a read: raise (LeaseLost) unless the right surely outlasts the read."""

    def fence(self, pipe: Any) -> None:
        """In a commit's transaction pipeline, before MULTI: WATCH what proves the right and check it,
        so a worker that lost it meanwhile has its EXEC fail and writes nothing."""


def id_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id as (ms, seq), so ids compare as Redis orders them (not as strings)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class StreamConsumer(Generic[S]):
    """The consumer-group mechanics of a bid-stream worker; a subclass sets `stats` and `log` and
    implements `process` and `_report_metrics`."""

    log: ClassVar[logging.Logger]  # the worker's own logger (its name is what operators filter on)
    stats: S
    owner: Ownership | None = None  # set: read and commit only while owning the stream (a shard's lease)

    def __init__(
        self,
        client: Any,
        *,
        prefix: str,
        group: str,
        consumer: str | None = None,
        batch: int = 500,
        block_ms: int | None = 1000,
        claim_idle_ms: int = 30_000,
        max_deliveries: int = 5,
        stream_maxlen: int = 100_000,
        heartbeat_ms: int = 5_000,
    ) -> None:
        self.client, self.prefix, self.group = client, prefix, group
        self._reader = raw_reader(client)
        # a read sent ahead needs its own connection from a real server's pool (not fakeredis, a cluster)
        self._can_read_ahead = type(client).__module__.startswith("redis.") and isinstance(client, redis.Redis)
        self._can_read_ahead &= getattr(client, "connection", None) is None  # not a single-connection client
        self._ahead: Any = None  # the connection whose read was sent ahead, its reply not yet taken
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.batch, self.block_ms = max(1, int(batch)), block_ms
        self.claim_idle_ms, self.max_deliveries, self.maxlen = claim_idle_ms, max_deliveries, stream_maxlen
        self.bids, self.dead = f"{prefix}bids", f"{prefix}bids:dead"
        self._own_pending: str | None = "0"  # re-read our own pending entries from here first
        self.heartbeat_ms = max(0, int(heartbeat_ms))  # 0: no heartbeat, no rescue (idle-time reclaim only)
        self.heartbeat_key = f"{prefix}consumer:{group}:{self.consumer}"
        self.registry = f"{prefix}consumers:{group}"  # the consumers that keep a heartbeat
        self._next_claim = self._next_beat = self._next_rescue = 0.0
        self._starting = True  # the first rescue waits for predecessors whose heartbeat has not expired yet
        self.rescued = 0  # entries claimed from dead consumers (heartbeat gone)

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

    def _dead_letter(self, entry_id: str, entry_fields: dict[Any, Any], reason: str) -> dict[str, str]:
        """The dead-letter record of one entry: the event as it came, where it was and why (every
        group writes to the one dead-letter stream)."""
        where = {"entry_id": entry_id, "reason": reason, "consumer": self.consumer, "group": self.group}
        return text_fields(field_dict(entry_fields)) | where

    def _on_group_ready(self) -> None:
        """After the group is (re)created, before the first read."""

    def _before_read(self, now: float) -> None:
        """Per step, after the periodic reclaim and before reading (e.g. the mirror's trim)."""

    def _after_step(self) -> None:
        """After each step of `run` that did not fail."""

    def _on_drained(self) -> None:
        """`run(once=True)` found the group empty and is about to return."""

    def _after_error(self) -> None:
        """What we knew may be stale: re-read our own pending entries first (a read sent ahead among them)."""
        self._own_pending = "0"
        self._next_beat = 0.0
        if self._ahead is not None:
            conn, self._ahead = self._ahead, None
            conn.disconnect()
            self._reader.connection_pool.release(conn)

    # --- the loop ------------------------------------------------------------------------------
    def ensure_group(self) -> None:
        """Create the consumer group (from the stream's start, so nothing published earlier is
        skipped: applying old events again changes nothing)."""
        try:
            self.client.xgroup_create(self.bids, self.group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def run(self, stop: Callable[[], bool], *, once: bool = False) -> S:
        """Consume until `stop()`: the batch in hand is finished and acknowledged first (drain);
        with `once`, until the group has nothing left for us (without blocking)."""
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
        if self._ahead is not None:  # stopped behind a backlog: the batch read ahead is in hand too
            with contextlib.suppress(redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                entries = self._collect()
                if entries:
                    self.process(entries)
        self._report_metrics()
        self._leave()
        return self.stats

    def _leave(self) -> None:
        """A clean stop (the batch in hand acknowledged): take our heartbeat and our name out of the
        registry, so the registry does not grow by a name per restart. Best effort."""
        if not self.heartbeat_ms:
            return
        self._next_beat = 0.0  # run again (e.g. `once` now and then): beat at its first step
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(self.heartbeat_key)
            pipe.hdel(self.registry, self.consumer)
            pipe.execute()
        except redis.exceptions.RedisError as exc:
            self.log.info("could not remove this worker's heartbeat (%s); it expires by itself", exc)

    def step(self, *, block: bool = True) -> int:
        """Beat; take over what dead workers left (at once) and idle ones (now and then); re-read our
        own pending entries after a restart or an error; then read and process one batch; the count."""
        done = 0
        now = time.monotonic()
        if self.owner is not None:
            self.owner.check()
            self._own_pending = self._own_pending or "0"  # a predecessor's unacknowledged entries first
        if self.heartbeat_ms:
            self.beat(now)
            if now >= self._next_rescue:
                rescued = self.rescue(wait=self._starting)
                self._starting = False
                self._next_rescue = now + self.heartbeat_ms / 2000.0
                if rescued:
                    return rescued  # their events first: the next step reads what is newer
        if now >= self._next_claim:
            done += self.reclaim()
            self._next_claim = now + self.claim_idle_ms / 2000.0
        self._before_read(now)
        if self._own_pending is not None:
            entries = self._read(self._own_pending, None)
            if entries:
                self._own_pending = entries[-1][0] if len(entries) == self.batch else None  # ids are exclusive
                return done + self.process(entries)
            self._own_pending = None
        entries = self._collect() if self._ahead is not None else self._read(">", self.block_ms if block else None)
        if entries:
            if len(entries) == self.batch and self._can_read_ahead and self.owner is None:
                self._read_ahead()
            done += self.process(entries)
        return done

    def _args(self, start: str, block: int | None) -> list[Any]:
        """XREADGROUP's arguments: our next entries after `start` (">": new ones)."""
        args: list[Any] = ["XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", self.batch]
        return [*args, *(("BLOCK", block) if block is not None else ()), "STREAMS", self.bids, start]

    def _read(self, start: str, block: int | None) -> list[Entry]:
        """XREADGROUP, the reply as bytes (a field that is not UTF-8 must not fail the whole read)."""
        reply = self._reader.execute_command(*self._args(start, block), **RAW)
        return self._entries(reply)

    def _entries(self, reply: Any) -> list[Entry]:
        if not reply:
            return []
        streams = reply.values() if isinstance(reply, dict) else (s[1] for s in reply)  # RESP3 / RESP2
        return [e for entries in streams for e in raw_entries(entries)]

    def _read_ahead(self) -> None:
        """Behind a backlog, ask for the next batch (without blocking) before processing this one:
        Redis assembles it while the worker computes (it was a third of a drain's time). Its entries
        are this consumer's pending ones from now on, as any read's; the next step takes the reply."""
        pool = self._reader.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_command(*self._args(">", None))
        except BaseException:
            conn.disconnect()
            pool.release(conn)
            raise
        self._ahead = conn

    def _collect(self) -> list[Entry]:
        """The reply of the read sent ahead (an error drops it: its entries are re-read as pending)."""
        conn, self._ahead = self._ahead, None
        pool = self._reader.connection_pool
        try:
            return self._entries(conn.read_response(disable_decoding=True))
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)

    def beat(self, now: float) -> None:
        """Refresh this worker's heartbeat (and its name in the registry) every third of its TTL."""
        if now < self._next_beat:
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.heartbeat_key, f"{time.time():.6f}", px=self.heartbeat_ms)
        pipe.hset(self.registry, self.consumer, str(self.heartbeat_ms))
        pipe.execute()
        self._next_beat = now + self.heartbeat_ms / 3000.0

    def rescue(self, *, wait: bool = False) -> int:
        """Claim (XCLAIM) and process, oldest first, the pending entries of registered consumers whose
        heartbeat expired; the number handled. `wait`: one whose heartbeat is still there is watched
        (at most `heartbeat_ms`) until it is refreshed (alive) or expires (dead, claimed)."""
        idle = self._consumers()
        others = list(idle)
        if not others:
            return 0
        registered = [n for n, r in zip(others, self.client.hmget(self.registry, others), strict=True) if r]
        if not registered:
            return 0  # older workers without heartbeats: the idle-time reclaim takes theirs
        beats = dict(zip(registered, self._beats(registered), strict=True))
        dead = [n for n, b in beats.items() if b is None]
        watched = {n: b for n, b in beats.items() if b is not None}
        deadline = time.monotonic() + self.heartbeat_ms / 1000.0 + 0.5
        while wait and watched and time.monotonic() < deadline:
            time.sleep(min(0.05, self.heartbeat_ms / 10_000.0))
            now_idle = self._consumers()
            for n, b in zip(list(watched), self._beats(list(watched)), strict=True):
                if b is None:
                    dead.append(n)  # expired: dead
                if b != watched[n] or n not in now_idle or now_idle[n] < idle[n]:
                    del watched[n]  # or alive: refreshed its heartbeat, or read again (its idle time fell)
            idle = now_idle
        done = 0
        for name in dead:
            done += self._claim_from(name)
            self.client.hdel(self.registry, name)
        return done

    def _consumers(self) -> dict[str, int]:
        """The group's other consumers with pending entries: name -> ms since it last read."""
        return {
            _text(c["name"]): int(c.get("idle", 0))
            for c in self.client.xinfo_consumers(self.bids, self.group)
            if c.get("pending") and _text(c["name"]) != self.consumer
        }

    def _beats(self, names: list[str]) -> list[Any]:
        return self.client.mget([f"{self.prefix}consumer:{self.group}:{n}" for n in names])

    def _claim_from(self, name: str) -> int:
        """Every pending entry of the dead consumer `name`, claimed and processed in stream order."""
        done = 0
        seen: set[str] = set()
        while True:
            rows = self.client.xpending_range(self.bids, self.group, "-", "+", self.batch, consumername=name)
            ids = [_text(r["message_id"]) for r in rows]
            if not ids or seen.issuperset(ids):  # nothing left, or only entries XCLAIM cannot move
                return done
            seen.update(ids)
            raw = self.client.execute_command("XCLAIM", self.bids, self.group, self.consumer, 0, *ids, **RAW)
            entries = raw_entries([e for e in raw or [] if e is not None])
            self.rescued += len(entries)
            self.stats.reclaimed += len(entries)
            done += self._handle_claimed(entries) if entries else 0

    def reclaim(self) -> int:
        """XAUTOCLAIM events idle past `claim_idle_ms`; those delivered too often are dead letters."""
        claimed: list[Entry] = []
        start = "0-0"
        while True:
            args = (self.bids, self.group, self.consumer, self.claim_idle_ms, start, "COUNT", self.batch)
            reply = self.client.execute_command("XAUTOCLAIM", *args, **RAW)
            start, entries = _text(reply[0]), reply[1]
            claimed += raw_entries(entries)
            if start == "0-0" or not entries or len(claimed) >= 10 * self.batch:
                break
        if not claimed:
            return 0
        self.stats.reclaimed += len(claimed)
        return self._handle_claimed(claimed)

    def _handle_claimed(self, claimed: list[Entry]) -> int:
        """Claimed entries: those delivered more than `max_deliveries` times are dead letters
        (poison), the rest are processed."""
        counts = self._delivery_counts(claimed)
        why = "delivered {} times without being processed (poison)"
        poison = [(i, f, why.format(counts[i])) for i, f in claimed if counts.get(i, 0) > self.max_deliveries]
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
            rows = self.client.xpending_range(self.bids, self.group, lo, hi, page, consumername=self.consumer)
            for p in rows:
                if p["message_id"] in want:
                    counts[p["message_id"]] = p["times_delivered"]
            if len(rows) < page or len(counts) == len(want):
                return counts
            lo = "(" + rows[-1]["message_id"]

    def _dead_letters(self, dead: list[DeadLetter]) -> None:
        """XADD the dead letters and XACK their entries in one transaction (fenced by the owner)."""
        pipe = self.client.pipeline(transaction=True)
        for _attempt in range(10):
            try:
                if self.owner is not None:
                    self.owner.fence(pipe)
                    pipe.multi()
                for entry_id, fields, reason in dead:
                    record = self._dead_letter(entry_id, fields, reason)
                    pipe.xadd(self.dead, record, maxlen=self.maxlen, approximate=True)
                pipe.xack(self.bids, self.group, *[d[0] for d in dead])
                pipe.execute()
                break
            except redis.exceptions.WatchError:  # the lease was renewed meanwhile (PEXPIRE): check it again
                continue
            finally:
                pipe.reset()
        else:
            raise RuntimeError(f"the dead letters of {self.bids} kept failing their fence (10 attempts)")
        self._count_dead(len(dead))
