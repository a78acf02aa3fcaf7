"""Shard leases in Redis: one live worker per shard at a time, so a campaign's events are applied in
order however many workers run and whichever of them dies.

- A lease is `{shard prefix}lease` = `"{worker_id}#{generation}"` with a PX TTL, taken only when
  absent and renewed or released only by its holder (Lua); the generation is the fencing token.
- A worker that lost its lease cannot commit: `fence` WATCHes the lease in the commit's
  transaction, `FENCE_LUA` checks it at the head of a script.
- Heartbeats in `{prefix}lease:workers` (scored by the Redis server's clock) size each worker's
  fair share, ceil(N / live workers); a dead worker's leases expire and the others take them."""

from __future__ import annotations

import math
import os
import socket
import time
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from synctwin.infra.shards import ShardKeys, shard_keys
from synctwin.kernel.errors import InvalidInput

__all__ = [
    "FENCE_LUA",
    "Lease",
    "LeaseChanges",
    "LeaseLost",
    "ShardLeases",
    "claim_layout",
    "default_worker_id",
    "fenced",
]

_ACQUIRE = """
-- KEYS[1] the shard's lease, KEYS[2] its generation counter; ARGV[1] worker id, ARGV[2] TTL (ms)
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local generation = redis.call('INCR', KEYS[2])
local token = ARGV[1] .. '#' .. generation
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return token
"""

_RENEW = """
-- KEYS[1] the lease; ARGV[1] the holder's token, ARGV[2] TTL (ms): extend only one's own lease
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_RELEASE = """
-- KEYS[1] the lease; ARGV[1] the holder's token: delete only one's own lease
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_HEARTBEAT = """
-- KEYS[1] live workers (member: worker id, score: deadline in the server's ms); ARGV[1] worker id,
-- ARGV[2] TTL (ms), 0 to leave. Returns how many workers are live.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if tonumber(ARGV[2]) > 0 then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], 10 * tonumber(ARGV[2]))
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return redis.call('ZCARD', KEYS[1])
"""

FENCE_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('LEASE_LOST ' .. KEYS[1]) end
"""
"""The fencing check at the head of a commit script: KEYS[1] the shard's lease key, ARGV[1] the
holder's token (`ShardLeases.token`); the script's own keys and arguments follow from index 2."""


def fenced(body: str) -> str:
    """A Lua script that runs `body` only while the caller still holds the lease (see FENCE_LUA)."""
    return FENCE_LUA + body


class LeaseLost(RuntimeError):
    """This worker no longer holds a shard's lease: whatever it read from the shard must not be
    committed (the new holder reads it again)."""

    def __init__(self, shard: int, why: str) -> None:
        self.shard = shard
        super().__init__(f"lease of shard {shard} lost: {why}")


@dataclass(frozen=True, slots=True)
class Lease:
    """A held lease. `generation` is the fencing token (larger = later holder); `valid_until` is the
    local monotonic time before which nobody else can have it (the TTL from the moment the
    acquisition or renewal was sent, less a margin for clock rates)."""

    shard: int
    token: str
    generation: int
    valid_until: float


@dataclass(frozen=True, slots=True)
class LeaseChanges:
    """What one `step()` changed: shards newly held, shards lost (stop reading them, commit nothing
    of theirs), and the surplus to release once committed (more workers are live now)."""

    acquired: list[int]
    lost: list[int]
    surplus: list[int]


def default_worker_id() -> str:
    """host:pid:random, unique per process, so two workers never share leases by name."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class ShardLeases:
    """One worker's leases over the N shards of a deployment (module docstring)."""

    def __init__(
        self,
        client: Any,
        worker_id: str,
        shards: int,
        ttl_ms: int,
        *,
        prefix: str = "synctwin:",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if shards < 1:
            raise ValueError(f"shards must be >= 1, got {shards}")
        if ttl_ms < 10:
            raise ValueError(f"a lease TTL of {ttl_ms} ms is shorter than a round trip")
        if not worker_id:
            raise ValueError("a worker needs a non-empty id")
        self.client, self.worker_id, self.shards, self.ttl_ms = client, worker_id, shards, ttl_ms
        self.prefix, self.clock = prefix, clock
        self.workers_key = f"{prefix}lease:workers"
        self._keys = [shard_keys(prefix, k, shards) for k in range(shards)]
        start = zlib.crc32(worker_id.encode("utf-8")) % shards
        # workers try the shards from different places, so they rarely race for the same one
        self._order = [(start + i) % shards for i in range(shards)]
        self._owned: dict[int, Lease] = {}
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._heartbeat = client.register_script(_HEARTBEAT)

    # --- what this worker holds ----------------------------------------------------------------
    def keys(self, shard: int) -> ShardKeys:
        return self._keys[shard]

    def owned(self) -> dict[int, Lease]:
        """The leases held and still valid by the local clock (an expired one is dropped)."""
        now = self.clock()
        for shard in [s for s, lease in self._owned.items() if lease.valid_until <= now]:
            del self._owned[shard]
        return dict(sorted(self._owned.items()))

    def token(self, shard: int) -> str:
        """The token to pass to a fenced script (ARGV[1] of FENCE_LUA); LeaseLost when not held."""
        lease = self.owned().get(shard)
        if lease is None:
            raise LeaseLost(shard, f"{self.worker_id} does not hold it")
        return lease.token

    def holds(self, shard: int) -> bool:
        """Ask Redis whether the lease is still this worker's (one GET)."""
        lease = self.owned().get(shard)
        return lease is not None and self.client.get(self._keys[shard].lease) == lease.token

    # --- the protocol ----------------------------------------------------------------------------
    def live_workers(self) -> int:
        """Refresh this worker's heartbeat; the number of live workers (this one included)."""
        return int(self._heartbeat(keys=[self.workers_key], args=[self.worker_id, self.ttl_ms]))

    def fair_share(self, live: int) -> int:
        """At most this many shards per worker: ceil(N / live workers)."""
        return math.ceil(self.shards / max(1, live))

    def acquire_some(self, live: int | None = None) -> list[int]:
        """Take free shards until this worker holds its fair share; the shards newly taken."""
        live = self.live_workers() if live is None else live
        want = self.fair_share(live) - len(self.owned())
        taken: list[int] = []
        for shard in self._order:
            if want <= 0:
                break
            if shard in self._owned:
                continue
            keys = self._keys[shard]
            sent = self.clock()
            token = self._acquire(keys=[keys.lease, keys.lease_generation], args=[self.worker_id, self.ttl_ms])
            if token is None:
                continue
            generation = int(str(token).rsplit("#", 1)[1])
            self._owned[shard] = Lease(shard, str(token), generation, self._valid_until(sent))
            taken.append(shard)
            want -= 1
        return taken

    def renew(self) -> list[int]:
        """Extend every held lease; the shards lost (another holds them, or they expired). A Redis
        error propagates and leaves the leases to their local deadline: `owned()` drops them then."""
        lost: list[int] = []
        for shard, lease in self.owned().items():
            sent = self.clock()
            if self._renew(keys=[self._keys[shard].lease], args=[lease.token, self.ttl_ms]):
                self._owned[shard] = Lease(shard, lease.token, lease.generation, self._valid_until(sent))
            else:
                del self._owned[shard]
                lost.append(shard)
        return lost

    def surplus(self, live: int) -> list[int]:
        """The held shards beyond the fair share, last-preferred first: release them when committed."""
        extra = len(self.owned()) - self.fair_share(live)
        if extra <= 0:
            return []
        held = [s for s in reversed(self._order) if s in self._owned]
        return held[:extra]

    def step(self) -> LeaseChanges:
        """One round, every TTL/3 or so: heartbeat, renew, take free shards up to the fair share."""
        before = set(self._owned)
        live = self.live_workers()
        self.renew()  # drops the leases lost in Redis and those past their local deadline
        lost = sorted(before - set(self._owned))
        acquired = self.acquire_some(live)
        return LeaseChanges(acquired=acquired, lost=lost, surplus=self.surplus(live))

    def release(self, shards: Iterable[int] | None = None) -> list[int]:
        """Give shards back (all, and leave the live workers, when None); the ones that were still ours."""
        leaving = shards is None
        chosen = list(self._owned) if shards is None else [s for s in shards if s in self._owned]
        released: list[int] = []
        for shard in chosen:
            lease = self._owned.pop(shard)
            if self._release(keys=[self._keys[shard].lease], args=[lease.token]):
                released.append(shard)
        if leaving:
            self._heartbeat(keys=[self.workers_key], args=[self.worker_id, 0])
        return sorted(released)

    def fence(self, pipe: Any, shard: int) -> None:
        """Inside a commit: WATCH the shard's lease on `pipe` (a transaction pipeline before MULTI)
        and check it is still ours. Then a takeover, or the lease's expiry, before EXEC makes EXEC
        fail (WatchError): a worker that lost its lease commits nothing. LeaseLost when lost already."""
        token = self.token(shard)
        key = self._keys[shard].lease
        pipe.watch(key)
        if pipe.get(key) != token:
            pipe.reset()
            del self._owned[shard]
            raise LeaseLost(shard, f"held by {_holder(self.client, key)}")

    def _valid_until(self, sent: float) -> float:
        ttl = self.ttl_ms / 1000.0
        return sent + ttl - (0.01 * ttl + 0.002)  # Redlock's margin for clock drift


def _holder(client: Any, key: str) -> str:
    """The current holder's token, for an error message ('nobody' when the lease is free)."""
    value = client.get(key)
    return str(value) if value else "nobody"


def claim_layout(client: Any, prefix: str, shards: int) -> int:
    """Record N in `{prefix}shards` the first time; refuse a worker or producer started with another N
    (routing by a different N would put a campaign's events where nobody reads them)."""
    key = f"{prefix}shards"
    client.set(key, shards, nx=True)
    stored = client.get(key)
    if stored is not None and int(stored) != shards:
        raise InvalidInput(
            f"this Redis is laid out in {int(stored)} shards ({key}), not {shards}: change N only by the "
            "drain-and-switch of docs/scale-out.md"
        )
    return shards
