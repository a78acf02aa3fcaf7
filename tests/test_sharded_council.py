"""`synctwin run --shards N`: the recorded stream of tests/test_council.py published to N = 4 shard
streams and decided by 1 worker, by 2 workers, by 2 workers with one killed -9 mid-drain, and on a
3-master Redis Cluster, gives the pauses (campaign, reason, event_id) of the unsharded single-worker
run, with no event ignored as out of order. And the guards shown failing when broken: two readers of
one shard (no leases), a stale worker's commit after a takeover (no fence); the guard states kept in
memory instead (tests/test_council.py: a takeover mid-crash pauses AutoRollback later)."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import threading
import time
from typing import Any

import pytest
import redis
from test_council import PREFIX, decided, make_recording, run_drained
from test_council import publish as publish_unsharded
from test_council import store_plans as store_unsharded
from worker_processes import start_worker, stop_worker

from agents.council.redis import redis_council
from agents.council.sharded import ShardedCouncil, ShardLease, shard_consumer, sharded_council
from synctwin.infra.leases import LeaseLost, ShardLeases
from synctwin.infra.shards import all_shards, campaign_keys, shard_of, stream_for
from synctwin.kernel.config import get_settings
from synctwin.kernel.messages import pause_from_fields

pytestmark = pytest.mark.redis

N = 4
GROUP = "synctwin-council"


def store_plans(client: Any, plans: list[dict[str, Any]]) -> None:
    """What `gate --redis --shards N` leaves: each campaign's plan under its shard's prefix."""
    for p in plans:
        base = campaign_keys(PREFIX, p["campaign_id"], N).prefix + f"campaign:{p['campaign_id']}"
        client.set(f"{base}:strategy", json.dumps(p["strategy"]))
        if p["projection"] is not None:
            client.set(f"{base}:projection", json.dumps(p["projection"]))
        client.set(f"{base}:gate", json.dumps({"baseline": p["baseline"]}))


def publish(client: Any, events: list[dict[str, str]]) -> None:
    """XADD each event to its campaign's shard stream, in recording order (a producer's routing)."""
    for start in range(0, len(events), 1000):
        pipe = client.pipeline(transaction=False)
        for e in events[start : start + 1000]:
            pipe.xadd(stream_for(PREFIX, e["campaign_id"], N), e)
        pipe.execute()


def shard_pauses(client: Any) -> list[dict[str, Any]]:
    out = []
    for keys in all_shards(PREFIX, N):
        for _, f in client.xrange(keys.control):
            p = pause_from_fields(f)
            assert shard_of(p.campaign_id, N) == keys.shard  # each pause on its campaign's shard
            out.append({"campaign_id": p.campaign_id, "reason": p.reason, "event_id": p.event_id})
    return out


def drained(client: Any) -> bool:
    for keys in all_shards(PREFIX, N):
        try:
            g = next(g for g in client.xinfo_groups(keys.bids) if g["name"] == GROUP)
        except (StopIteration, redis.ResponseError):
            return False
        if g["pending"] or g.get("lag") != 0:
            return False
    return True


def entries_read(client: Any) -> int:
    n = 0
    for keys in all_shards(PREFIX, N):
        with contextlib.suppress(redis.ResponseError):
            n += sum(g.get("entries-read") or 0 for g in client.xinfo_groups(keys.bids) if g["name"] == GROUP)
    return n


def settings() -> Any:
    return get_settings().model_copy(update={"shards": N})


def worker(client: Any, name: str, ttl_ms: int = 1000, **options: Any) -> ShardedCouncil:
    return sharded_council(client, settings(), redis_council, worker_id=name, ttl_ms=ttl_ms, **options)


@pytest.fixture(scope="module")
def recorded(redis_server: Any) -> tuple[list[dict[str, str]], list[Any], list[tuple[str, str, str]]]:
    """The recording (3 copies: 15 campaigns over the 4 shards) and the unsharded worker's pauses."""
    events, plans = make_recording(copies=3)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushdb()
    store_unsharded(client, plans)
    publish_unsharded(client, events)
    single = run_drained(client, batch=500)
    assert single.stats.ignored == 0 and single.stats.pauses > 0
    pauses = [pause_from_fields(f) for _, f in client.xrange(f"{PREFIX}control")]
    client.flushdb()
    client.close()
    return (
        events,
        plans,
        decided([{"campaign_id": p.campaign_id, "reason": p.reason, "event_id": p.event_id} for p in pauses]),
    )


def test_the_recording_spreads_over_every_shard(recorded: Any) -> None:
    events, _, _ = recorded
    assert {shard_of(e["campaign_id"], N) for e in events} == set(range(N))


def test_one_worker_on_four_shards_decides_what_one_stream_does(recorded: Any, redis_client: redis.Redis) -> None:
    events, plans, single = recorded
    store_plans(redis_client, plans)
    publish(redis_client, events)
    w = worker(redis_client, "only")
    stats = w.run(lambda: False, once=True)
    assert decided(shard_pauses(redis_client)) == single
    assert stats.events == len(events) and stats.dead == 0 and stats.ignored == 0
    assert w.taken == N and drained(redis_client)
    assert not redis_client.exists(f"{PREFIX}control") and not redis_client.exists(f"{PREFIX}bids")  # no unsharded keys
    # one constant consumer per shard, and the leases given back on stop
    for keys in all_shards(PREFIX, N):
        assert [c["name"] for c in redis_client.xinfo_consumers(keys.bids, GROUP)] == [shard_consumer(keys.shard)]
        assert not redis_client.exists(keys.lease)


def _in_threads(workers: list[ShardedCouncil], client: Any, timeout: float = 120) -> list[BaseException]:
    """Run workers (each its own leases) in threads until every shard is drained, then stop them."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def go(w: ShardedCouncil) -> None:
        try:
            w.run(stop.is_set)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    for w in workers:
        w.leases.live_workers()  # all seen live before anyone takes a shard: no handover mid-flight
    threads = [threading.Thread(target=go, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not drained(client):
        time.sleep(0.05)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(30)
    return errors


def test_two_workers_in_one_process_share_the_shards(recorded: Any, redis_client: redis.Redis) -> None:
    events, plans, single = recorded
    store_plans(redis_client, plans)
    publish(redis_client, events)
    ws = [worker(redis_client, f"w{i}", batch=200) for i in range(2)]
    assert not _in_threads(ws, redis_client)
    assert decided(shard_pauses(redis_client)) == single
    stats = [w.stats() for w in ws]
    assert sum(s.events for s in stats) == len(events) and sum(s.ignored for s in stats) == 0


def _run_procs(url: str, name: str, *extra: str) -> Any:
    return start_worker(
        "run", url, name, "--shards", str(N), "--lease-ttl-ms", "1000", "--batch", "100", *extra,
        SYNCTWIN_MIRROR_HEARTBEAT_MS="1000",
    )  # fmt: skip


def wait_split(client: Any, timeout: float = 60) -> None:
    """Until two workers hold two leases each."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holders = [client.get(k.lease) for k in all_shards(PREFIX, N)]
        names = [h.rsplit("#", 1)[0] for h in holders if h]
        if len(names) == N and sorted(names.count(n) for n in set(names)) == [2, 2]:
            return
        time.sleep(0.05)
    raise AssertionError(f"the leases did not split: {holders}")


def _ignored(stderr: str) -> int:
    found = re.search(r"(\d+) ignored \(duplicates/out of order\)", stderr)
    assert found, stderr[-2000:]
    return int(found.group(1))


def test_two_worker_processes_decide_what_one_stream_does(
    recorded: Any, redis_server: Any, redis_client: redis.Redis
) -> None:
    events, plans, single = recorded
    store_plans(redis_client, plans)
    procs = [_run_procs(redis_server.url, f"p{i}") for i in range(2)]
    try:
        wait_split(redis_client)  # then publish: each shard read by one worker from its first event
        publish(redis_client, events)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not drained(redis_client):
            time.sleep(0.1)
        results = [stop_worker(p) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for code, err in results:
        assert code == 0, err[-2000:]
        assert _ignored(err) == 0
    assert drained(redis_client)
    assert decided(shard_pauses(redis_client)) == single


def test_a_worker_killed_mid_drain_changes_no_decision(
    recorded: Any, redis_server: Any, redis_client: redis.Redis
) -> None:
    events, plans, single = recorded
    store_plans(redis_client, plans)
    publish(redis_client, events)
    first, second = _run_procs(redis_server.url, "doomed"), _run_procs(redis_server.url, "survivor")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and entries_read(redis_client) < len(events) // 4:
            time.sleep(0.005)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert 0 < entries_read(redis_client) < len(events), "not killed mid-drain"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not drained(redis_client):
            time.sleep(0.1)
        code, err = stop_worker(second)
    finally:
        for p in (first, second):
            if p.poll() is None:
                p.kill()
    assert code == 0, err[-2000:]
    assert _ignored(err) == 0
    assert drained(redis_client) and sum(redis_client.xlen(k.dead) for k in all_shards(PREFIX, N)) == 0
    # every pause, for every reason, at the very event: the survivor continued the dead worker's guard
    # states (the shard's `{prefix}guards` hash) where its last commit left them
    assert decided(shard_pauses(redis_client)) == single


def test_on_a_redis_cluster_two_workers_decide_what_one_stream_does(recorded: Any, cluster_client: Any) -> None:
    events, plans, single = recorded
    store_plans(cluster_client, plans)
    publish(cluster_client, events)
    ws = [worker(cluster_client, f"c{i}", batch=300) for i in range(2)]
    assert not _in_threads(ws, cluster_client)
    assert decided(shard_pauses(cluster_client)) == single
    assert sum(w.stats().ignored for w in ws) == 0 and sum(w.stats().events for w in ws) == len(events)


# --- the guards, broken ---------------------------------------------------------------------------
def test_two_readers_of_one_shard_without_leases_decide_otherwise(recorded: Any, redis_client: redis.Redis) -> None:
    """What the leases prevent: two councils reading one shard's stream at once interleave its
    campaigns' events (each reads a batch; the later one is decided first, as racing workers do).
    Taking turns batch by batch would not show it: every state they share is in Redis."""
    events, plans, single = recorded
    store_plans(redis_client, plans)
    publish(redis_client, events)
    ignored = 0
    for keys in all_shards(PREFIX, N):
        pair = [
            redis_council(redis_client, settings(), prefix=keys.prefix, consumer=f"r{i}", batch=50, block_ms=None)
            for i in range(2)
        ]
        for w in pair:
            w.ensure_group()
        while True:  # both read, then the second batch is decided before the first
            got = [w._read(">", None) for w in pair]
            if not any(got):
                break
            for w, entries in reversed(list(zip(pair, got, strict=True))):
                if entries:
                    w.process(entries)
        for w in pair:
            w._report_metrics()
        ignored += sum(w.stats.ignored for w in pair)
    assert ignored > 0 or decided(shard_pauses(redis_client)) != single


def _stalled_batch(client: Any, fenced: bool) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Worker A reads a batch of a shard and stalls past its lease; B takes the shard over and drains
    it; then A's commit runs. What A's commit changed in the shard's keys, and A's error if any."""
    la = ShardLeases(client, "A", N, 300, prefix=PREFIX)
    la.step()
    shard = next(shard_of(e, N) for e in ["k0-feed-cvr-crash"])
    keys = la.keys(shard)
    a = redis_council(client, settings(), prefix=keys.prefix, consumer=shard_consumer(shard), batch=400, block_ms=None)
    if fenced:
        a.owner = ShardLease(la, shard, threading.Lock(), 0.0)
    a.ensure_group()
    a.step(block=False)  # a first batch, committed while A holds the lease
    stall, resume = threading.Event(), threading.Event()
    feed = a.council.feed

    def stalled_feed(*args: Any, **kwargs: Any) -> Any:
        stall.set()
        resume.wait(30)
        return feed(*args, **kwargs)

    a.council.feed = stalled_feed  # type: ignore[method-assign]
    error: dict[str, Any] = {}

    def go() -> None:
        try:
            a.step(block=False)
        except BaseException as exc:  # LeaseLost, with the fence
            error["exc"] = exc

    t = threading.Thread(target=go)
    t.start()
    assert stall.wait(10)
    time.sleep(0.4)  # A's lease expires in Redis
    b = worker(client, "B", ttl_ms=2000)
    b.run(lambda: False, once=True)  # B takes every shard, A's unacknowledged batch first
    assert shard in {k for k in range(N)} and b.taken == N
    before = _snapshot(client, keys)
    resume.set()
    t.join(30)
    return error.get("exc"), before, _snapshot(client, keys)


def _snapshot(client: Any, keys: Any) -> dict[str, Any]:
    out: dict[str, Any] = {s: client.xlen(s) for s in (keys.control, keys.alerts, keys.audit, keys.dead)}
    for key in client.scan_iter(match=f"{keys.prefix}campaign:*:mirror"):
        out[key] = client.hget(key, "rev")
    out["pending"] = client.xpending(keys.bids, GROUP)["pending"]
    return out


def test_a_stale_worker_commits_nothing_after_a_takeover(recorded: Any, redis_client: redis.Redis) -> None:
    events, plans, _ = recorded
    store_plans(redis_client, plans)
    publish(redis_client, events)
    error, before, after = _stalled_batch(redis_client, fenced=True)
    assert isinstance(error, LeaseLost)
    assert after == before


def test_without_the_fence_a_stale_worker_commits_after_a_takeover(recorded: Any, redis_client: redis.Redis) -> None:
    events, plans, _ = recorded
    store_plans(redis_client, plans)
    publish(redis_client, events)
    error, before, after = _stalled_batch(redis_client, fenced=False)
    assert error is None
    assert after != before  # its EXEC went through: states (or alerts, audit records) written by the stale worker
