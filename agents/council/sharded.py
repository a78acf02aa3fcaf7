"""The Council on a sharded bid stream: a worker process (`synctwin run --shards N`, `mirror`, `shadow`)
holds some shards' leases (synctwin/infra/leases.py) and runs one RedisCouncil per shard it holds, on
the shard's prefix (its stream, dead letters, control, alerts, audit chain, campaign keys, markers).
A campaign lives in one shard, read by one live worker at a time, so its events are applied in
order however many workers run and whichever dies. Every third of the lease TTL:
- `ShardLeases.step()`: heartbeat, renew, acquire free shards up to the fair share ceil(N / live);
- a shard newly held gets a fresh council (its state is in Redis) in a thread of its own, consumer
  `shard-{k}` for every owner, so it first reads what a dead owner read and did not acknowledge;
- a shard lost has its council stopped, its commits fenced meanwhile (`ShardLease.fence`: the
  lease WATCHed in the commit's transaction); a surplus shard (more workers live) has its council
  commit the batch in hand, then the lease is released; on SIGTERM every council drains and every
  lease is released, so the others take the shards at their next step, not after a TTL.
Threads, not processes: the councils of one worker share its GIL, so more throughput is more worker
processes (docs/scale-out.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import redis

from agents.council.redis import CouncilStats, RedisCouncil
from agents.syncshield.backends import RedisAuditStore
from synctwin.infra.leases import LeaseLost, ShardLeases, claim_layout, default_worker_id
from synctwin.infra.shards import ShardKeys
from synctwin.kernel.config import Settings

log = logging.getLogger("synctwin.shards")

__all__ = ["ShardLease", "ShardedCouncil", "shard_consumer", "sharded_council"]


def shard_consumer(shard: int) -> str:
    """A shard's consumer name in its group: one name for all its successive owners, so a new owner's
    first read of its own pending entries is the dead owner's unacknowledged batch."""
    return f"shard-{shard}"


class ShardLease:
    """This worker's `Ownership` of a shard: reads only while the lease surely outlasts them, commits
    fenced by it; `lock` serializes the use of its ShardLeases (the supervisor's and every shard's)."""

    def __init__(self, leases: ShardLeases, shard: int, lock: threading.Lock, read_s: float) -> None:
        self.leases, self.shard, self.lock, self.read_s = leases, shard, lock, read_s

    def check(self) -> None:
        with self.lock:
            lease = self.leases.owned().get(self.shard)
            now = self.leases.clock()
        if lease is None:
            raise LeaseLost(self.shard, f"{self.leases.worker_id} does not hold it")
        if lease.valid_until - now < self.read_s:
            raise LeaseLost(self.shard, f"it may expire during the next read ({lease.valid_until - now:.3f} s left)")

    def fence(self, pipe: Any) -> None:
        with self.lock:
            self.leases.fence(pipe, self.shard)


@dataclass(slots=True)
class _Running:
    worker: RedisCouncil
    thread: threading.Thread
    stop: threading.Event
    error: BaseException | None = None


class ShardedCouncil:
    """One worker's councils over the shards it holds (module docstring). `make(keys)` builds the
    council of a shard (its prefix `keys.prefix`, its consumer `shard_consumer(keys.shard)`)."""

    def __init__(
        self,
        leases: ShardLeases,
        make: Callable[[ShardKeys], RedisCouncil],
        *,
        block_ms: int,
        step_s: float | None = None,
    ) -> None:
        self.leases, self.make = leases, make
        self.step_s = leases.ttl_ms / 3000.0 if step_s is None else step_s
        # a read may block this long; the lease must outlast it (plus a margin for the batch's start)
        self.read_s = block_ms / 1000.0 + 0.05 * leases.ttl_ms / 1000.0
        self.lock = threading.Lock()
        self.running: dict[int, _Running] = {}
        self.done: list[RedisCouncil] = []  # councils that ended (drained, lost, released)
        self.drained: set[int] = set()  # `once`: shards whose council found nothing more to read
        self.surplus: set[int] = set()
        self.taken = 0  # acquisitions
        self.crashed: BaseException | None = None  # a council's error other than LeaseLost: the worker stops

    # --- the loop ------------------------------------------------------------------------------
    def run(self, stop: Callable[[], bool], *, once: bool = False) -> CouncilStats:
        """Supervise until `stop()` (then drain and release everything); with `once`, until every
        shard held at the first step is drained (none held: at once). The councils' summed stats."""
        next_step = 0.0
        stepped = False
        try:
            while not stop():
                now = time.monotonic()
                if now >= next_step:
                    stepped |= self._step()
                    next_step = now + self.step_s
                with self.lock:
                    owned = set(self.leases.owned())
                if self._reap() is not None:
                    break
                for k, r in self.running.items():
                    if k not in owned or k in self.surplus:
                        r.stop.set()  # finish the batch in hand (a lost shard's commit is fenced anyway)
                for k in sorted(self.surplus - set(self.running)):
                    with self.lock:
                        released = self.leases.release([k])
                    self.surplus.discard(k)
                    log.info("shard %d released for another worker%s", k, "" if released else " (lost already)")
                for k in sorted(owned - set(self.running) - self.surplus - self.drained):
                    self._start(k, once=once)
                if once and stepped and not self.running and owned <= self.drained:
                    break
                time.sleep(0.02)
        finally:
            self.stop_all()
            for r in self.running.values():
                r.thread.join()
            self._reap()
            with self.lock:
                self.leases.release()
        if self.crashed is not None:
            raise self.crashed
        return self.stats()

    def _step(self) -> bool:
        """One lease step; False when Redis could not be reached (the leases then run out by the local
        clock and their councils stop)."""
        try:
            with self.lock:
                changes = self.leases.step()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.warning("cannot renew the shard leases (%s); retrying", exc)
            return False
        if changes.acquired:
            self.taken += len(changes.acquired)
            log.info("shards %s taken (%s)", changes.acquired, self.leases.worker_id)
        if changes.lost:
            log.warning("shards %s lost: another worker holds them now", changes.lost)
        self.surplus |= set(changes.surplus)
        return True

    def _start(self, shard: int, *, once: bool) -> None:
        keys = self.leases.keys(shard)
        worker = self.make(keys)
        worker.owner = ShardLease(self.leases, shard, self.lock, self.read_s)
        r = _Running(worker, threading.Thread(), threading.Event())
        r.thread = threading.Thread(
            target=self._drive, args=(shard, r, once), name=f"council-{keys.prefix}", daemon=True
        )
        self.running[shard] = r
        r.thread.start()

    def _drive(self, shard: int, r: _Running, once: bool) -> None:
        try:
            r.worker.run(r.stop.is_set, once=once)
            if once and not r.stop.is_set():
                self.drained.add(shard)
        except BaseException as exc:  # reported by the supervisor's thread
            r.error = exc

    def _reap(self) -> BaseException | None:
        """Collect the councils that ended; a lease lost under one is logged, any other error stops
        the worker (kept in `crashed`, raised by `run` once the others have drained)."""
        for k in [k for k, r in self.running.items() if not r.thread.is_alive()]:
            r = self.running.pop(k)
            self.done.append(r.worker)
            if isinstance(r.error, LeaseLost):
                log.warning("%s; its council stopped, nothing of it committed since", r.error)
            elif r.error is not None:
                log.error("the council of shard %d failed: %r", k, r.error)
                self.crashed = self.crashed or r.error
                self.stop_all()
        return self.crashed

    def stop_all(self) -> None:
        for r in self.running.values():
            r.stop.set()

    # --- what the commands ask of a worker ----------------------------------------------------
    @property
    def consumer(self) -> str:
        return self.leases.worker_id

    @property
    def bids(self) -> list[str]:
        """Every shard's bid stream (the metrics' backlog is their sum)."""
        return [self.leases.keys(k).bids for k in range(self.leases.shards)]

    def check_appendable(self) -> None:
        """Every shard's audit chain can be appended to (else the InvalidInput naming its key), now,
        rather than at a shard's first audited decision hours later."""
        for k in range(self.leases.shards):
            RedisAuditStore(self.leases.client, key=self.leases.keys(k).audit).check_appendable()

    # --- what it did ---------------------------------------------------------------------------
    def workers(self) -> list[RedisCouncil]:
        return [*self.done, *(r.worker for r in self.running.values())]

    def stats(self) -> CouncilStats:
        """The councils' counters summed (pause latencies pooled)."""
        total = CouncilStats()
        for w in self.workers():
            total.pause_latencies_ms.extend(w.stats.pause_latencies_ms)
            for name in (f.name for f in fields(CouncilStats) if f.name != "pause_latencies_ms"):
                setattr(total, name, getattr(total, name) + getattr(w.stats, name))
        return total

    @property
    def rescued(self) -> int:
        return sum(w.rescued for w in self.workers())

    def shadow_summary(self) -> dict[str, int]:
        """Shadow mode's counters summed over the shards' councils."""
        total: dict[str, int] = {}
        for w in self.workers():
            if w.shadow is not None:
                for name, n in w.shadow.stats.to_dict().items():
                    total[name] = total.get(name, 0) + n
        return total


def sharded_council(
    client: Any,
    settings: Settings,
    factory: Callable[..., RedisCouncil],
    *,
    worker_id: str | None = None,
    ttl_ms: int | None = None,
    block_ms: int = 1000,
    step_s: float | None = None,
    **options: Any,
) -> ShardedCouncil:
    """A worker over `settings.shards` shards: `factory` (`redis_council`, `redis_mirror`, `redis_shadow`)
    called per shard with its prefix and consumer; a worker started with another N than the layout's is
    refused (`claim_layout`); reads block at most a quarter of the TTL, never outlasting a lease."""
    ttl = settings.lease_ttl_ms if ttl_ms is None else ttl_ms
    claim_layout(client, settings.key_prefix, settings.shards)
    leases = ShardLeases(client, worker_id or default_worker_id(), settings.shards, ttl, prefix=settings.key_prefix)
    block = max(1, min(block_ms, ttl // 4))

    def make(keys: ShardKeys) -> RedisCouncil:
        return factory(
            client, settings, prefix=keys.prefix, consumer=shard_consumer(keys.shard), block_ms=block, **options
        )

    return ShardedCouncil(leases, make, block_ms=block, step_s=step_s)
