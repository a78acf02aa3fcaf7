"""Shard leases (synctwin/infra/leases.py) on a real redis-server and on a local 3-master Redis Cluster.

Leases expire by Redis's own clock, so these tests use short TTLs and real sleeps.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import threading
import time
from typing import Any

import pytest
import redis

from synctwin.infra.leases import LeaseLost, ShardLeases, claim_layout, default_worker_id, fenced
from synctwin.infra.shards import shard_keys
from synctwin.kernel.errors import InvalidInput

pytestmark = pytest.mark.redis

TTL = 300  # ms


@pytest.fixture(params=["server", "cluster"])
def client(request: pytest.FixtureRequest) -> Any:
    """Each test once on a plain redis-server and once on the Redis Cluster."""
    return request.getfixturevalue("redis_client" if request.param == "server" else "cluster_client")


def holders(client: Any, n: int) -> dict[int, str | None]:
    return {k: client.get(shard_keys("synctwin:", k, n).lease) for k in range(n)}


def commit(client: Any, leases: ShardLeases, shard: int, value: str) -> None:
    """A worker's commit, fenced: append to the shard's log only while holding its lease."""
    log = leases.keys(shard).key("log")
    with client.pipeline(transaction=True) as pipe:
        leases.fence(pipe, shard)
        pipe.multi()
        pipe.rpush(log, value)
        pipe.execute()


def test_two_workers_split_four_shards_two_and_two(client: Any) -> None:
    a = ShardLeases(client, "a", 4, TTL)
    b = ShardLeases(client, "b", 4, TTL)
    assert sorted(a.step().acquired) == [0, 1, 2, 3]  # alone: all of them
    first_b = b.step()
    assert first_b.acquired == []  # all taken; b is live now, so a's fair share is 2
    changes = a.step()
    assert len(changes.surplus) == 2
    assert a.release(changes.surplus) == sorted(changes.surplus)
    assert sorted(b.step().acquired) == sorted(changes.surplus)
    assert len(a.owned()) == 2 and len(b.owned()) == 2
    assert set(a.owned()) | set(b.owned()) == {0, 1, 2, 3}
    owners = holders(client, 4)
    for shard in a.owned():
        assert owners[shard] == a.token(shard)
    for shard in b.owned():
        assert owners[shard] == b.token(shard)
    # steady: nobody takes or gives anything more
    assert a.step().surplus == [] and b.step().acquired == []


def test_a_dead_workers_shards_move_to_the_other_after_the_ttl(client: Any) -> None:
    a = ShardLeases(client, "a", 4, TTL)
    b = ShardLeases(client, "b", 4, TTL)
    a.live_workers(), b.live_workers()
    a.acquire_some(), b.acquire_some()
    assert len(a.owned()) == 2 and len(b.owned()) == 2
    generations = {s: lease.generation for s, lease in b.owned().items()}
    # b dies (kill -9: no release, no renewal); a keeps stepping at a third of the TTL
    start = time.monotonic()
    while len(a.owned()) < 4:
        a.step()
        assert time.monotonic() - start < 5 * TTL / 1000, a.owned()
        time.sleep(TTL / 3000)
    took = time.monotonic() - start
    assert took >= TTL / 1000 * 0.9  # not before b's leases expired
    for shard, generation in generations.items():
        assert a.owned()[shard].generation > generation  # a new fencing token
    assert set(holders(client, 4).values()) == {a.token(s) for s in range(4)}


def test_a_stale_holder_cannot_renew_or_commit(client: Any) -> None:
    a = ShardLeases(client, "a", 2, TTL)
    stale = ShardLeases(client, "stale", 2, TTL)
    stale.acquire_some()
    assert sorted(stale.owned()) == [0, 1]
    commit(client, stale, 0, "stale-before")
    time.sleep(TTL / 1000 * 1.2)  # the stale worker stalls past its TTL (a GC pause, a frozen VM)
    assert sorted(a.acquire_some()) == [0, 1]
    # its local deadline passed: it knows it holds nothing
    assert stale.owned() == {}
    with pytest.raises(LeaseLost):
        commit(client, stale, 0, "stale-after")
    assert stale.renew() == []
    commit(client, a, 0, "new-owner")
    assert client.lrange(shard_keys("synctwin:", 0, 2).key("log"), 0, -1) == ["stale-before", "new-owner"]


def test_a_holder_that_does_not_know_it_lost_cannot_renew_or_commit(client: Any) -> None:
    # the stale worker's clock says its lease is valid (a clock frozen during its stall), Redis says not
    frozen = [0.0]
    stale = ShardLeases(client, "stale", 2, TTL, clock=lambda: frozen[0])
    stale.acquire_some()
    time.sleep(TTL / 1000 * 1.2)
    a = ShardLeases(client, "a", 2, TTL)
    assert sorted(a.acquire_some()) == [0, 1]
    assert sorted(stale.owned()) == [0, 1]  # it still believes
    assert not stale.holds(0)
    with pytest.raises(LeaseLost, match="held by a#"):
        commit(client, stale, 0, "stale")
    assert stale.renew() == [1]  # shard 0 was dropped by the failed commit, 1 by the renewal
    assert stale.owned() == {}
    assert holders(client, 2) == {0: a.token(0), 1: a.token(1)}  # the renewal did not extend a's leases
    assert client.llen(shard_keys("synctwin:", 0, 2).key("log")) == 0


def test_a_takeover_between_the_fence_and_exec_aborts_the_commit(client: Any) -> None:
    stale = ShardLeases(client, "stale", 2, TTL)
    stale.acquire_some()
    log = stale.keys(0).key("log")
    with client.pipeline(transaction=True) as pipe:
        stale.fence(pipe, 0)  # still ours here
        time.sleep(TTL / 1000 * 1.2)
        assert ShardLeases(client, "a", 2, TTL).acquire_some()  # the takeover
        pipe.multi()
        pipe.rpush(log, "stale")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert client.llen(log) == 0


def test_without_the_fence_the_stale_commit_would_land(client: Any) -> None:
    """The check the fence makes is what stops the stale write: the same commit unfenced lands."""
    stale = ShardLeases(client, "stale", 2, TTL)
    stale.acquire_some()
    time.sleep(TTL / 1000 * 1.2)
    ShardLeases(client, "a", 2, TTL).acquire_some()
    log = stale.keys(0).key("log")
    with client.pipeline(transaction=True) as pipe:
        pipe.multi()
        pipe.rpush(log, "stale")
        pipe.execute()
    assert client.lrange(log, 0, -1) == ["stale"]


def test_a_fenced_script_refuses_a_stale_token(client: Any) -> None:
    keys = shard_keys("synctwin:", 1, 2)
    script = client.register_script(fenced("return redis.call('XADD', KEYS[2], '*', 'command', ARGV[2])"))
    stale = ShardLeases(client, "stale", 2, TTL)
    stale.acquire_some()
    token = stale.token(1)
    assert script(keys=[keys.lease, keys.control], args=[token, "PAUSE"])
    time.sleep(TTL / 1000 * 1.2)
    ShardLeases(client, "a", 2, TTL).acquire_some()
    with pytest.raises(redis.ResponseError, match="LEASE_LOST"):
        script(keys=[keys.lease, keys.control], args=[token, "PAUSE"])
    assert client.xlen(keys.control) == 1


def test_three_workers_take_at_most_the_fair_share_and_cover_every_shard(client: Any) -> None:
    workers = [ShardLeases(client, f"w{i}", 4, 1_000) for i in range(3)]
    for w in workers:
        w.live_workers()
    for _ in range(3):
        for w in workers:
            w.release(w.step().surplus)
    owned = [set(w.owned()) for w in workers]
    assert all(len(o) <= 2 for o in owned)  # ceil(4 / 3)
    assert set().union(*owned) == {0, 1, 2, 3}
    assert sum(len(o) for o in owned) == 4  # disjoint


def test_release_frees_the_shards_and_leaves_the_live_workers(client: Any) -> None:
    a = ShardLeases(client, "a", 2, 5_000)
    b = ShardLeases(client, "b", 2, 5_000)
    a.step()
    assert b.live_workers() == 2
    assert a.release() == [0, 1]
    assert holders(client, 2) == {0: None, 1: None}
    assert b.live_workers() == 1
    assert sorted(b.step().acquired) == [0, 1]


def test_one_shard_lease_is_under_todays_prefix(redis_client: redis.Redis) -> None:
    lease = ShardLeases(redis_client, "a", 1, TTL)
    assert lease.acquire_some() == [0]
    assert redis_client.get("synctwin:lease") == "a#1"


def test_workers_never_hold_a_shard_at_once_and_commits_follow_generations(
    redis_server: Any, redis_client: redis.Redis
) -> None:
    """Three workers step concurrently and stall at random past the TTL; each commits, fenced, its
    lease generation to the shard's log. No two leases of a shard are ever believed valid at once,
    and no log ever goes back to an older generation (a stale holder never wrote after a newer)."""
    shards, ttl = 4, 150
    seen: dict[tuple[int, int], list[float]] = {}  # (shard, generation) -> [first seen, valid until]
    lock = threading.Lock()
    stop = time.monotonic() + 2.5

    def work(i: int) -> None:
        rng = random.Random(i)
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        leases = ShardLeases(client, default_worker_id(), shards, ttl)
        while time.monotonic() < stop:
            try:
                changes = leases.step()
                now = time.monotonic()
                with lock:  # a lease given back ends now, before its DEL is sent
                    for shard in changes.surplus:
                        seen.setdefault((shard, leases.owned()[shard].generation), [now, now])[1] = now
                leases.release(changes.surplus)
            except redis.RedisError:
                continue
            now = time.monotonic()
            for shard, lease in leases.owned().items():
                with lock:
                    span = seen.setdefault((shard, lease.generation), [now, lease.valid_until])
                    span[1] = max(span[1], lease.valid_until)
                with contextlib.suppress(LeaseLost, redis.WatchError):
                    commit(client, leases, shard, str(lease.generation))
            time.sleep(ttl / 1000 * (1.5 if rng.random() < 0.1 else 0.3))  # sometimes a stall
        client.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    takeovers = 0
    for shard in range(shards):
        spans = sorted((g, s) for (k, g), s in seen.items() if k == shard)
        takeovers += len(spans) - 1
        for (_, earlier), (_, later) in itertools.pairwise(spans):
            assert later[0] > earlier[1], (shard, spans)
        log = [int(g) for g in redis_client.lrange(shard_keys("synctwin:", shard, shards).key("log"), 0, -1)]
        assert log == sorted(log) and log, shard
    assert takeovers > 0  # the stalls did move shards


def test_the_layout_is_claimed_once_and_another_n_is_refused(client: Any) -> None:
    assert claim_layout(client, "synctwin:", 4) == 4
    assert claim_layout(client, "synctwin:", 4) == 4
    with pytest.raises(InvalidInput, match="laid out in 4 shards"):
        claim_layout(client, "synctwin:", 2)
