"""`synctwin mirror`'s worker on the bid stream: the Council with the mirror alone (agents/council/redis.py).

@redis tests run against the session's own redis-server (never 6379), or a private one with an
AOF for the restart test; the rest use fakeredis (no scripting there: the WATCH/MULTI path).
Events are crafted, not timed: cumulative totals every 5 minutes of campaign time, exactly on
plan for healthy campaigns, with spend running away tenfold from hour 8 for deviating ones (a
pause around hour 11), so a day of campaign time takes milliseconds to mirror.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import fakeredis
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry
from shared_scenarios import linear_projection
from worker_processes import REPO, start_worker, stop_worker, worker_env

from agents.council.redis import RedisCouncil, redis_mirror
from agents.syncshield.backends import verify_redis
from agents.synctwin.mirror.agent import PAUSE_REASON
from agents.synctwin.mirror.deviation import MirrorConfig, MirrorState
from synctwin.app.cli import main
from synctwin.kernel.config import get_settings

PREFIX = "synctwin:"
BIDS, DEAD, CONTROL = f"{PREFIX}bids", f"{PREFIX}bids:dead", f"{PREFIX}control"
ALERTS, AUDIT = f"{PREFIX}alerts", f"{PREFIX}audit"
GROUP = "synctwin-mirror"
LAUNCH = 1_767_225_600.0
STEP = 300.0
RATE, CPA, AOV = 40.0, 10.0, 60.0
CFG = MirrorConfig()


def projection(cid: str, launch: float = LAUNCH, days: int = 3) -> dict[str, Any]:
    return linear_projection(cid, launch=launch, rate=RATE, cpa=CPA, aov=AOV, days=days)


def events(cid: str, hours: float = 24, runaway_at: float | None = None) -> list[dict[str, Any]]:
    out = []
    for i in range(1, int(hours * 3600 / STEP) + 1):
        h = i * STEP / 3600
        conv = math.floor(RATE * h)
        spend = RATE * CPA * (h if runaway_at is None or h <= runaway_at else runaway_at + 10 * (h - runaway_at))
        out.append(
            {
                "event_id": f"{cid}:{i}",
                "campaign_id": cid,
                "ts": LAUNCH + i * STEP,
                "spend": spend,
                "impressions": conv * 50,
                "clicks": conv * 2,
                "conversions": conv,
                "revenue": conv * AOV,
            }
        )
    return out


def campaigns(
    client: Any, healthy: int, deviating: int, hours: float = 24
) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """Publish the projections; return (healthy ids, deviating ids, their events interleaved by time)."""
    ok = [f"ok-{i}" for i in range(healthy)]
    bad = [f"bad-{i}" for i in range(deviating)]
    for cid in ok + bad:
        client.set(f"{PREFIX}campaign:{cid}:projection", json.dumps(projection(cid)))
    evs = [e for cid in ok for e in events(cid, hours)] + [e for cid in bad for e in events(cid, hours, 8.0)]
    evs.sort(key=lambda e: (e["ts"], e["campaign_id"]))
    return ok, bad, evs


def publish(client: Any, evs: list[dict[str, Any]], chunk: int = 1000) -> None:
    for i in range(0, len(evs), chunk):
        pipe = client.pipeline(transaction=False)
        for e in evs[i : i + chunk]:
            pipe.xadd(BIDS, {k: str(v) for k, v in e.items()})
        pipe.execute()


def mirror_worker(client: Any, *, settings: dict[str, Any] | None = None, **kw: Any) -> RedisCouncil:
    """`synctwin mirror`'s worker (`redis_mirror`) on the test's client; `settings`: overrides."""
    return redis_mirror(client, get_settings().model_copy(update=settings or {}), **kw)


def drain(worker: RedisCouncil, limit: int = 100_000) -> None:
    worker.ensure_group()
    for _ in range(limit):
        if not worker.step():
            return
    raise AssertionError("the worker never ran out of events")


def drained(client: Any, group: str = GROUP) -> bool:
    """Every entry delivered to the group and acknowledged."""
    last = client.xinfo_stream(BIDS)["last-generated-id"]
    g = next((g for g in client.xinfo_groups(BIDS) if g["name"] == group), None)
    return g is not None and g["pending"] == 0 and g["last-delivered-id"] == last


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except redis.exceptions.ConnectionError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def pending(client: Any, consumer: str | None = None) -> int:
    if consumer is None:
        return int(client.xpending(BIDS, GROUP)["pending"])
    return len(client.xpending_range(BIDS, GROUP, min="-", max="+", count=100_000, consumername=consumer))


def assert_paused_exactly_once(client: Any, deviating: list[str], healthy: list[str]) -> None:
    """One PAUSE, one WARNING alert and one AUTO_ROLLBACK_TRIGGERED audit record per deviating
    campaign, none for healthy ones; the audit chain verifies."""
    pauses = [f["campaign_id"] for _, f in client.xrange(CONTROL) if f["command"] == "PAUSE"]
    assert sorted(pauses) == sorted(deviating)
    assert all(f["reason"] == PAUSE_REASON for _, f in client.xrange(CONTROL))
    warnings = [f["title"] for _, f in client.xrange(ALERTS) if f["severity"] == "WARNING"]
    assert sorted(warnings) == sorted(f"Auto-Rollback Triggered: {cid}" for cid in deviating)
    audits = [json.loads(f["record"]) for _, f in client.xrange(AUDIT)]
    assert sorted(r["campaign_id"] for r in audits if r["event_type"] == "AUTO_ROLLBACK_TRIGGERED") == sorted(deviating)
    assert verify_redis(client, AUDIT).ok
    for cid in healthy:
        assert client.hget(f"{PREFIX}campaign:{cid}:mirror", "status") != "PAUSED"


def assert_nothing_lost(client: Any, evs: list[dict[str, Any]]) -> None:
    """Every campaign's mirror holds its newest event; every entry is acknowledged."""
    newest: dict[str, dict[str, Any]] = {}
    for e in evs:
        newest[e["campaign_id"]] = e
    for cid, e in newest.items():
        state = MirrorState.from_hash(cid, client.hgetall(f"{PREFIX}campaign:{cid}:mirror"))
        assert (state.last_ts, state.last_event_id, state.spend) == (e["ts"], e["event_id"], e["spend"]), cid
    assert drained(client)


# ------------------------------------------------------------------------------ fakeredis (fast)
@pytest.fixture
def fake() -> Any:
    return fakeredis.FakeRedis(decode_responses=True)


def test_fakeredis_worker_pauses_exactly_once_and_acknowledges_everything(fake: Any) -> None:
    ok, bad, evs = campaigns(fake, healthy=2, deviating=1)
    publish(fake, evs)
    worker = mirror_worker(fake, consumer="w", batch=100, block_ms=None)
    drain(worker)
    assert worker.stats.events == worker.stats.applied == len(evs) and worker.stats.pauses == 1
    assert_paused_exactly_once(fake, bad, ok)
    assert pending(fake) == 0
    publish(fake, evs)  # the whole stream redelivered: nothing changes
    drain(worker)
    assert worker.stats.ignored == len(evs) and worker.stats.pauses == 1
    assert_paused_exactly_once(fake, bad, ok)


def test_a_bad_projection_dead_letters_its_events_and_the_worker_goes_on(fake: Any) -> None:
    """It used to raise out of the worker (json/KeyError from ProjectionCurve): a crash loop."""
    _, _, evs = campaigns(fake, healthy=1, deviating=0, hours=2)
    fake.set(f"{PREFIX}campaign:broken:projection", "{not json")
    fake.set(f"{PREFIX}campaign:pointless:projection", json.dumps(projection("pointless") | {"points": []}))
    fake.set(f"{PREFIX}campaign:unlaunched:projection", json.dumps(projection("unlaunched") | {"launch_ts": None}))
    others = [
        e | {"campaign_id": cid, "event_id": f"{cid}-{i}"}
        for i, e in enumerate(evs[:2])
        for cid in ("broken", "pointless", "unlaunched")
    ]
    publish(fake, others + evs)
    worker = mirror_worker(fake, consumer="w", block_ms=None)
    drain(worker)
    dead = [f for _, f in fake.xrange(DEAD)]
    assert len(dead) == 6 and worker.stats.dead == 6
    assert {f["campaign_id"] for f in dead} == {"broken", "pointless", "unlaunched"}
    assert all("projection" in f["reason"] and "is invalid" in f["reason"] for f in dead)
    assert_nothing_lost(fake, evs)


def test_a_republished_projection_is_picked_up(fake: Any) -> None:
    _, _, evs = campaigns(fake, healthy=1, deviating=0, hours=2)
    publish(fake, evs[:10])
    worker = mirror_worker(fake, consumer="w", block_ms=None, plan_ttl_s=0.0)
    drain(worker)
    assert worker.book is not None and worker.book.curves["ok-0"].launch_ts == LAUNCH
    fake.set(f"{PREFIX}campaign:ok-0:projection", json.dumps(projection("ok-0", launch=LAUNCH - 3600)))
    publish(fake, evs[10:])
    drain(worker)
    assert worker.book.curves["ok-0"].launch_ts == LAUNCH - 3600 and worker.stats.replans == 1


def _relaunch(client: Any, reset_hash: bool) -> None:
    """Launch 1 runs away and is paused; then the campaign is gated and launched again (a new
    projection, launch 1 + 5 days) and runs on plan for a day, its hash reset (as `synctwin feed`
    does) or left as it was. The worker, running all along, must judge the new run against the
    new projection at once: no second pause, the new run's events applied, not ignored."""
    client.set(f"{PREFIX}campaign:c:projection", json.dumps(projection("c")))
    first = events("c", hours=14, runaway_at=8.0)
    publish(client, first)
    worker = mirror_worker(client, consumer="w", batch=50, block_ms=None)  # curves kept 60 s
    drain(worker)
    assert worker.stats.pauses == 1
    later = LAUNCH + 5 * 86_400
    client.set(f"{PREFIX}campaign:c:projection", json.dumps(projection("c", launch=later)))
    if reset_hash:
        client.delete(f"{PREFIX}campaign:c:mirror")
    else:
        worker.plan_ttl_s = 0.0  # nobody told the mirror: it finds the new projection at its next check
    second = [e | {"ts": e["ts"] + 5 * 86_400, "event_id": f"c:2:{i}"} for i, e in enumerate(events("c", hours=24))]
    publish(client, second)
    drain(worker)
    state = MirrorState.from_hash("c", client.hgetall(f"{PREFIX}campaign:c:mirror"))
    assert client.hget(f"{PREFIX}campaign:c:mirror", "launch_ts") == repr(later)
    assert state.status != "PAUSED" and state.last_ts == second[-1]["ts"] and state.events == len(second)
    assert worker.stats.pauses == 1 and len(client.xrange(CONTROL)) == 1


@pytest.mark.parametrize("reset_hash", [True, False])
def test_a_new_launch_is_mirrored_against_its_new_projection_watch_path(fake: Any, reset_hash: bool) -> None:
    _relaunch(fake, reset_hash)


# --------------------------------------------------------------------------- real redis-server
@pytest.mark.redis
def test_the_consumer_group_is_created_once(redis_client: Any) -> None:
    worker = mirror_worker(redis_client, consumer="w")
    worker.ensure_group()
    worker.ensure_group()  # BUSYGROUP is fine
    groups = redis_client.xinfo_groups(BIDS)
    assert [g["name"] for g in groups] == [GROUP] and groups[0]["last-delivered-id"] == "0-0"
    other = mirror_worker(redis_client, group="shadow")
    other.ensure_group()
    assert sorted(g["name"] for g in redis_client.xinfo_groups(BIDS)) == sorted([GROUP, "shadow"])


@pytest.mark.redis
def test_invalid_events_are_dead_lettered_with_the_reason_and_the_worker_goes_on(redis_client: Any) -> None:
    ok, bad, evs = campaigns(redis_client, healthy=1, deviating=1)
    good = evs[0]
    invalid = [
        ({k: v for k, v in good.items() if k != "spend"}, "missing field spend"),
        (good | {"conversions": "nan"}, "field conversions is not finite"),
        (good | {"revenue": -5}, "field revenue is negative"),
        (good | {"clicks": "many"}, "field clicks is not a number"),
        (good | {"ts": 0}, "field ts must be positive"),
        (
            good | {"campaign_id": "ghost"},
            f"unknown campaign ghost: no projection at {PREFIX}campaign:ghost:projection",
        ),
    ]
    half = len(evs) // 2
    publish(redis_client, evs[:half] + [e for e, _ in invalid] + evs[half:])
    worker = mirror_worker(redis_client, consumer="w", batch=50, block_ms=None)
    drain(worker)
    dead = [f for _, f in redis_client.xrange(DEAD)]
    assert len(dead) == len(invalid)
    for f, (_, reason) in zip(dead, invalid, strict=True):
        assert f["reason"].startswith(reason), (f["reason"], reason)
    assert all(f["consumer"] == "w" and f["entry_id"] for f in dead)
    assert dead[1]["conversions"] == "nan"  # the event as it came, beside the reason
    assert worker.stats.dead == len(invalid) and worker.stats.applied == len(evs)
    assert_nothing_lost(redis_client, evs)
    assert_paused_exactly_once(redis_client, bad, ok)


@pytest.mark.redis
def test_events_are_acknowledged_with_their_state_and_only_then(
    redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, evs = campaigns(redis_client, healthy=3, deviating=0, hours=4)
    publish(redis_client, evs)
    worker = mirror_worker(redis_client, consumer="w", batch=20, block_ms=None)
    worker.ensure_group()
    worker.step()
    assert worker.stats.events == 20 and pending(redis_client) == 20  # the next batch, read ahead
    # the write of the next batch fails: nothing of it is acknowledged, no state moves
    before = {cid: redis_client.hgetall(f"{PREFIX}campaign:{cid}:mirror") for cid in ("ok-0", "ok-1", "ok-2")}

    real_execute = redis.client.Pipeline.execute

    def broken(self: Any, *a: Any, **k: Any) -> Any:
        if self.transaction and self.command_stack:  # the batch's MULTI/EXEC: the connection drops
            self.reset()
            raise redis.exceptions.ConnectionError("connection lost mid-batch")
        return real_execute(self, *a, **k)

    monkeypatch.setattr(redis.client.Pipeline, "execute", broken)
    with pytest.raises(redis.exceptions.ConnectionError):
        worker.step()
    assert pending(redis_client, "w") == 40  # that batch, and the next one read ahead
    assert {cid: redis_client.hgetall(f"{PREFIX}campaign:{cid}:mirror") for cid in before} == before
    # the worker's loop would now back off and re-read its own pending entries first
    monkeypatch.setattr(redis.client.Pipeline, "execute", real_execute)
    worker._after_error()
    drain(worker)
    assert_nothing_lost(redis_client, evs)


@pytest.mark.redis
def test_a_big_batch_of_one_campaign_is_acknowledged_in_one_write(redis_client: Any) -> None:
    """2,500 events of one campaign in one batch: acknowledged in the one MULTI/EXEC with its state."""
    redis_client.set(f"{PREFIX}campaign:big:projection", json.dumps(projection("big", days=30)))
    evs = events("big", hours=2500 * STEP / 3600)
    publish(redis_client, evs)
    worker = mirror_worker(redis_client, consumer="w", batch=5000, block_ms=None)
    drain(worker)
    assert worker.stats.batches == 1 and worker.stats.pauses == 0 and worker.stats.applied == len(evs)
    assert_nothing_lost(redis_client, evs)


@pytest.mark.redis
def test_the_hash_written_field_by_field_is_the_whole_state(redis_client: Any, fake: Any) -> None:
    """Each commit writes only the fields that changed: the stored hash must still be exactly the
    state, on a real server and on fakeredis alike."""
    for client in (redis_client, fake):
        _, _, evs = campaigns(client, healthy=2, deviating=2)
        publish(client, evs)
    lua = mirror_worker(redis_client, consumer="w", batch=37, block_ms=None)
    watch = mirror_worker(fake, consumer="w", batch=37, block_ms=None)
    drain(lua)
    drain(watch)
    for cid in ("ok-0", "ok-1", "bad-0", "bad-1"):
        stored = redis_client.hgetall(f"{PREFIX}campaign:{cid}:mirror")
        assert stored.pop("rev") == str(lua._revs[cid])
        assert stored.pop("launch_ts") == repr(LAUNCH)  # the launch the state belongs to
        assert lua.book is not None and stored == lua.book.states[cid].to_hash()
        other = fake.hgetall(f"{PREFIX}campaign:{cid}:mirror")
        other.pop("rev")
        other.pop("launch_ts")
        assert stored == other


@pytest.mark.redis
def test_duplicates_and_out_of_order_redeliveries_change_nothing(redis_client: Any) -> None:
    ok, bad, evs = campaigns(redis_client, healthy=2, deviating=2)
    publish(redis_client, evs)
    worker = mirror_worker(redis_client, consumer="w", batch=64, block_ms=None)
    drain(worker)
    states = {cid: redis_client.hgetall(f"{PREFIX}campaign:{cid}:mirror") for cid in ok + bad}
    again = list(reversed(evs[::3])) + evs[-50:] + evs[:50]
    publish(redis_client, again)
    drain(worker)
    assert worker.stats.ignored == len(again) and worker.stats.pauses == len(bad)
    for cid, before in states.items():
        after = redis_client.hgetall(f"{PREFIX}campaign:{cid}:mirror")
        for volatile in ("ignored", "rev"):
            before.pop(volatile)
            after.pop(volatile)
        assert after == before
    assert_paused_exactly_once(redis_client, bad, ok)


@pytest.mark.redis
def test_two_workers_in_one_group_pause_each_campaign_exactly_once(redis_server: Any, redis_client: Any) -> None:
    ok, bad, evs = campaigns(redis_client, healthy=4, deviating=6)
    publish(redis_client, evs)
    clients = [redis.Redis.from_url(redis_server.url, decode_responses=True) for _ in range(2)]
    workers = [mirror_worker(c, consumer=f"w{i}", batch=16, block_ms=50) for i, c in enumerate(clients)]
    workers[0].ensure_group()
    stop = threading.Event()
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def go(w: RedisCouncil) -> None:
        try:
            start.wait()
            w.run(stop.is_set)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: drained(redis_client), 30, "both workers to drain the stream")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        for c in clients:
            c.close()
    assert not errors
    assert all(w.stats.events > 0 for w in workers)
    assert sum(w.stats.events for w in workers) == len(evs)
    assert sum(w.stats.pauses for w in workers) == len(bad)
    assert_paused_exactly_once(redis_client, bad, ok)
    assert_nothing_lost(redis_client, evs)


@pytest.mark.redis
@pytest.mark.parametrize("reset_hash", [True, False])
def test_a_new_launch_is_mirrored_against_its_new_projection(redis_client: Any, reset_hash: bool) -> None:
    _relaunch(redis_client, reset_hash)


HANGING_WORKER = r"""
import sys, time
import redis
from agents.council.redis import RedisCouncil, redis_mirror
from synctwin.kernel.config import get_settings

url, consumer = sys.argv[1], sys.argv[2]
client = redis.Redis.from_url(url, decode_responses=True)
worker = redis_mirror(client, get_settings(), consumer=consumer, batch=200, block_ms=100)
real_write = RedisCouncil._write
calls = {"n": 0}

def write(self, *args):
    calls["n"] += 1
    if calls["n"] == 4:  # mid-batch: decided, its states and pauses not yet written: hang until killed
        client.set("test:hung", "1")
        time.sleep(3600)
    real_write(self, *args)

RedisCouncil._write = write
worker.run(lambda: False)
"""


def _start_mirror(url: str, consumer: str, **env: str) -> subprocess.Popen[str]:
    return start_worker("mirror", url, consumer, "--batch", "100", **env)


@pytest.mark.redis
def test_kill_9_mid_batch_another_worker_reclaims_and_nothing_is_lost(redis_server: Any, redis_client: Any) -> None:
    ok, bad, evs = campaigns(redis_client, healthy=6, deviating=4)
    publish(redis_client, evs)
    first = subprocess.Popen(
        [sys.executable, "-c", HANGING_WORKER, redis_server.url, "doomed"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=worker_env(),
    )
    try:
        wait_for(
            lambda: redis_client.get("test:hung") == "1" or first.poll() is not None,
            20,
            "the first worker to hang mid-batch",
        )
        assert first.poll() is None, first.stderr.read() if first.stderr else ""
        stuck = pending(redis_client, "doomed")
        assert 0 < stuck <= 400  # the batch in hand (decided, neither written nor acknowledged) and the next
    finally:
        first.kill()  # SIGKILL
        first.wait(10)
    second = _start_mirror(redis_server.url, "rescuer", SYNCTWIN_MIRROR_CLAIM_IDLE_MS="300")
    try:
        wait_for(lambda: drained(redis_client), 30, "the second worker to reclaim and drain")
    finally:
        code, err = stop_worker(second)
    assert code == 0, err[-2000:]
    assert pending(redis_client, "doomed") == 0
    assert_nothing_lost(redis_client, evs)
    assert_paused_exactly_once(redis_client, bad, ok)


@pytest.mark.redis
def test_kill_9_of_synctwin_mirror_mid_stream_loses_nothing(redis_server: Any, redis_client: Any) -> None:
    ok, bad, evs = campaigns(redis_client, healthy=10, deviating=5, hours=30)
    publish(redis_client, evs)
    first = _start_mirror(redis_server.url, "doomed")
    try:
        wait_for(
            lambda: any(g["last-delivered-id"] != "0-0" for g in redis_client.xinfo_groups(BIDS)),
            20,
            "the first worker to start consuming",
        )
    finally:
        first.kill()
        first.communicate(timeout=10)
    assert not drained(redis_client)
    second = _start_mirror(redis_server.url, "rescuer", SYNCTWIN_MIRROR_CLAIM_IDLE_MS="300")
    try:
        wait_for(lambda: drained(redis_client), 30, "the second worker to drain")
    finally:
        code, err = stop_worker(second)
    assert code == 0, err[-2000:]
    assert_nothing_lost(redis_client, evs)
    assert_paused_exactly_once(redis_client, bad, ok)


@pytest.mark.redis
def test_a_poison_event_goes_to_the_dead_letters(redis_client: Any) -> None:
    campaigns(redis_client, healthy=1, deviating=0, hours=1)
    publish(redis_client, events("ok-0", hours=0.25))  # three events
    worker = mirror_worker(redis_client, consumer="survivor", claim_idle_ms=20, max_deliveries=2, block_ms=None)
    worker.ensure_group()
    # two workers took the events and died before acknowledging them (a poison event kills its reader)
    ids = [i for i, _ in redis_client.xreadgroup(GROUP, "crashed-1", {BIDS: ">"}, count=10)[0][1]]
    time.sleep(0.03)
    redis_client.xclaim(BIDS, GROUP, "crashed-2", 20, ids[:2])  # the first two: a second delivery
    time.sleep(0.03)
    assert worker.reclaim() == 3  # the first two now a third time (> 2): dead; the last a second time: applied
    dead = [f for _, f in redis_client.xrange(DEAD)]
    assert [f["entry_id"] for f in dead] == ids[:2]
    assert all(f["reason"] == "delivered 3 times without being processed (poison)" for f in dead)
    state = MirrorState.from_hash("ok-0", redis_client.hgetall(f"{PREFIX}campaign:ok-0:mirror"))
    assert state.last_event_id == "ok-0:3" and state.events == 1
    assert pending(redis_client) == 0


@pytest.mark.redis
def test_the_bid_stream_is_trimmed_below_what_every_group_still_needs(redis_client: Any) -> None:
    _, _, evs = campaigns(redis_client, healthy=2, deviating=0, hours=24)  # 576 events
    publish(redis_client, evs)
    worker = mirror_worker(redis_client, consumer="w", block_ms=None, trim_every_s=0)
    drain(worker)
    laggard = mirror_worker(redis_client, group="laggard")
    laggard.ensure_group()  # a second group that has read nothing: nothing may go
    assert worker.trim() == 0 and redis_client.xlen(BIDS) == len(evs)
    entries = redis_client.xreadgroup("laggard", "slow", {BIDS: ">"}, count=300)[0][1]
    redis_client.xack(BIDS, "laggard", *[i for i, _ in entries[:250]])  # 50 still pending at 250..299
    worker.trim()
    first_needed = entries[250][0]
    assert redis_client.xrange(BIDS, min=first_needed, count=1)[0][0] == first_needed
    assert 0 < len(evs) - redis_client.xlen(BIDS) <= 250
    redis_client.xgroup_destroy(BIDS, "laggard")
    worker.trim()
    assert redis_client.xlen(BIDS) < 200  # approximate: whole nodes of 100 entries go
    publish(redis_client, evs[-5:])  # and the worker still reads what comes next
    drain(worker)
    assert drained(redis_client)


@pytest.mark.redis
def test_sigterm_finishes_the_batch_acknowledges_it_and_exits_0(redis_server: Any, redis_client: Any) -> None:
    _, _, evs = campaigns(redis_client, healthy=20, deviating=5, hours=48)
    publish(redis_client, evs)
    proc = _start_mirror(redis_server.url, "w")
    try:
        wait_for(
            lambda: any(g["last-delivered-id"] != "0-0" for g in redis_client.xinfo_groups(BIDS)),
            20,
            "the worker to start consuming",
        )
    finally:
        code, err = stop_worker(proc)
    assert code == 0, err[-2000:]
    assert "drained and stopped" in err and "Traceback" not in err
    assert pending(redis_client, "w") == 0


@pytest.mark.redis
def test_the_audit_stream_of_the_pauses_verifies(
    redis_server: Any, redis_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ok, bad, evs = campaigns(redis_client, healthy=1, deviating=3)
    publish(redis_client, evs)
    drain(mirror_worker(redis_client, consumer="w", block_ms=None))
    assert_paused_exactly_once(redis_client, bad, ok)
    assert main(["audit", "verify", "--redis", redis_server.url]) == 0
    # and the check can fail: edit the first record
    first_id, fields = redis_client.xrange(AUDIT, count=1)[0]
    record = json.loads(fields["record"]) | {"campaign_id": "someone-else"}
    redis_client.xadd(AUDIT, {**fields, "record": json.dumps(record)}, id=f"{int(first_id.split('-')[0]) + 10**12}-0")
    assert main(["audit", "verify", "--redis", redis_server.url]) == 1
    capsys.readouterr()


@pytest.mark.redis
def test_a_redis_restart_mid_stream_with_aof_loses_nothing(aof_redis_server: Any) -> None:
    """Crash Redis (SIGKILL; AOF, appendfsync always) while a worker consumes and a publisher
    publishes: the worker backs off and retries (no crash), then finishes the stream: every event
    applied, every entry acknowledged, one pause per deviating campaign."""
    url = aof_redis_server.url
    admin = redis.Redis.from_url(url, decode_responses=True)
    ok, bad, evs = campaigns(admin, healthy=6, deviating=3)
    # no retries inside redis-py for the worker: every outage reaches its own backoff loop
    wclient = redis.Redis.from_url(url, decode_responses=True, retry=Retry(NoBackoff(), 0), socket_timeout=5)
    worker = mirror_worker(wclient, consumer="w", batch=25, block_ms=50, claim_idle_ms=500)
    stop = threading.Event()
    errors: list[BaseException] = []
    published = {"n": 0}

    def consume() -> None:
        try:
            worker.run(stop.is_set)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    def produce() -> None:
        client = redis.Redis.from_url(url, decode_responses=True)
        chunk = 40
        while published["n"] < len(evs) and not stop.is_set():
            try:
                publish(client, evs[published["n"] : published["n"] + chunk])
                published["n"] += chunk  # a chunk published twice (reply lost) is only duplicates
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
            time.sleep(0.01)

    threads = [threading.Thread(target=consume), threading.Thread(target=produce)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: worker.stats.events >= len(evs) // 3, 20, "a third of the stream")
        aof_redis_server.restart(crash=True, down_s=0.3)
        wait_for(lambda: published["n"] >= len(evs) and drained(admin), 30, "the stream to be drained")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not errors, errors
    assert worker.stats.redis_errors >= 1
    assert_nothing_lost(admin, evs)
    assert_paused_exactly_once(admin, bad, ok)
    admin.close()
    wclient.close()


def test_with_an_audit_key_the_pauses_are_hmac_chained_and_the_head_moves_with_them(
    fake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mirror writes its AUTO_ROLLBACK_TRIGGERED records through `prepare` inside its own MULTI:
    with SYNCTWIN_AUDIT_KEY set they are HMAC-chained, {prefix}audit:head follows them, and verify
    needs the key."""
    from synctwin.kernel.config import get_settings

    key = "mirror-test-audit-key-0123456789"
    monkeypatch.setenv("SYNCTWIN_AUDIT_KEY", key)
    get_settings.cache_clear()
    try:
        ok, bad, evs = campaigns(fake, healthy=1, deviating=2)
        publish(fake, evs)
        drain(mirror_worker(fake, consumer="w", batch=100, block_ms=None))
    finally:
        monkeypatch.delenv("SYNCTWIN_AUDIT_KEY")
        get_settings.cache_clear()
    audits = [json.loads(f["record"]) for _, f in fake.xrange(AUDIT)]
    pauses = [r for r in audits if r["event_type"] == "AUTO_ROLLBACK_TRIGGERED"]
    assert sorted(r["campaign_id"] for r in pauses) == sorted(bad)
    assert all(fake.hget(f"{PREFIX}campaign:{cid}:mirror", "status") != "PAUSED" for cid in ok)
    assert all(r.get("chain") == "hmac-sha256" for r in audits)
    head = fake.hgetall(f"{AUDIT}:head")
    assert head["head"] == audits[-1]["hash"] and head["records"] == str(len(audits)) and "mac" in head
    assert verify_redis(fake, AUDIT, hmac_key=key).ok
    report = verify_redis(fake, AUDIT, hmac_key=None)
    assert not report.ok and "wrong or missing SYNCTWIN_AUDIT_KEY" in str(report.problem)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["take", "take", "drop", "reload", "clear"]), max_size=60))
def test_the_snapshots_text_is_json_dumps_after_any_evaluations(ops: list[str]) -> None:
    """Each snapshot's JSON is made once and reused; the window's text equals json.dumps of it
    whatever was appended, dropped, or read afresh from Redis (new objects)."""
    worker = redis_mirror(fakeredis.FakeRedis(decode_responses=True), get_settings(), block_ms=None)
    snaps: list[list[float]] = []
    for k, op in enumerate(ops):
        if op == "take":
            snaps.append([k * 3600.0, k * 1.5, k * 0.1 + 1e-9, float(k)])
        elif op == "drop" and snaps:
            snaps.pop(0)
        elif op == "reload":
            snaps = json.loads(json.dumps(snaps))
        elif op == "clear":
            snaps = []
        assert worker._snapshots_json("c", snaps) == json.dumps(snaps)


@pytest.mark.redis
@pytest.mark.parametrize("broken", [False, True])
def test_a_stop_behind_a_backlog_processes_the_batch_read_ahead(
    redis_client: Any, monkeypatch: pytest.MonkeyPatch, broken: bool
) -> None:
    """Behind a backlog a worker asks for its next batch before processing the one in hand; stopped
    then, it processes that one too before leaving (SIGTERM's drain), so nothing waits on a
    consumer that is gone. Broken (the reply dropped), the check sees the batch left pending."""
    _, _, evs = campaigns(redis_client, healthy=3, deviating=0, hours=4)
    publish(redis_client, evs)
    worker = mirror_worker(redis_client, consumer="w", batch=20, block_ms=None)
    worker.ensure_group()
    worker.step()
    assert worker._ahead is not None and pending(redis_client, "w") == 20
    if broken:
        monkeypatch.setattr(type(worker), "_collect", lambda self: [])
    worker.run(lambda: True)
    assert pending(redis_client, "w") == (20 if broken else 0)
    assert worker.stats.events == (20 if broken else 40)
