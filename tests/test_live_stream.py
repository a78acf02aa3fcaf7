"""The live stream's hardening, from the outside: each test reproduces one defect of the issue.

1. a byte that is not UTF-8 crashed `synctwin mirror` and `synctwin shadow`, and every restarted
   worker again once it reclaimed the entry: now a dead letter (its bytes kept), and the worker
   goes on, whichever way the entry reaches it (read, reclaimed idle, taken over from a dead worker);
2. events dated weeks ahead (or in milliseconds) paused a healthy campaign and made it ignore
   every later real event: now dead letters that say which bound and by how much;
3. one absurd counter froze a campaign silently: now a dead letter, while a real runaway is still
   applied (and paused); a campaign whose newer events keep being ignored gets one alert;
4. a killed worker's batch was reclaimed after newer events and ignored as out of order: now a
   restarted worker applies it first, and nothing in order is ignored.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from typing import Any

import fakeredis
import pytest
import redis
from test_mirror_redis import (
    ALERTS,
    BIDS,
    CONTROL,
    DEAD,
    GROUP,
    LAUNCH,
    PREFIX,
    campaigns,
    drain,
    drained,
    events,
    mirror_worker,
    pending,
    projection,
    publish,
    wait_for,
)
from worker_processes import REPO, start_worker, stop_worker, synctwin_cmd, worker_env

import agents.synctwin.mirror.stream_events as stream_events
from agents.council.redis import RedisCouncil, redis_shadow
from agents.synctwin.mirror.deviation import MirrorState
from synctwin.kernel.config import get_settings

RAW = {"NEVER_DECODE": True}
FIELDS = ("event_id", "campaign_id", "ts", "spend", "impressions", "clicks", "conversions", "revenue")


@pytest.fixture(params=["fakeredis", "redis-server"])
def client(request: pytest.FixtureRequest) -> Any:
    """The embedded store (fakeredis, decoding) and a real redis-server: both must hold."""
    if request.param == "fakeredis":
        return fakeredis.FakeRedis(decode_responses=True)
    return request.getfixturevalue("redis_client")


def _with_bad_byte(good: dict[str, Any], field: str | None) -> dict[Any, Any]:
    """`good` with one field's value (or, for None, a field's name) replaced by bytes that are not UTF-8."""
    out: dict[Any, Any] = {k: str(v) for k, v in good.items()}
    if field is None:
        out[b"sp\xffend"] = out.pop("spend")
    else:
        out[field] = str(good[field]).encode() + b"\xff\xfe"
    return out


def _mirror(client: Any, **kw: Any) -> RedisCouncil:
    kw.setdefault("clock", lambda: LAUNCH + 30 * 86_400)
    return mirror_worker(client, consumer="w", batch=50, block_ms=None, **kw)


# ------------------------------------------------------------------------- 1. bytes that are not UTF-8
@pytest.mark.parametrize("how", ["read", "reclaimed", "taken-over"])
def test_a_field_that_is_not_utf8_is_a_dead_letter_however_it_reaches_the_worker(client: Any, how: str) -> None:
    _, _, evs = campaigns(client, healthy=1, deviating=0, hours=3)
    bad = [_with_bad_byte(evs[3] | {"event_id": f"bad-{f}"}, f) for f in FIELDS] + [_with_bad_byte(evs[3], None)]
    publish(client, evs[:10])
    for fields in bad:
        client.xadd(BIDS, fields)
    publish(client, evs[10:])
    worker = _mirror(client, claim_idle_ms=100)
    worker.ensure_group()
    if how != "read":  # a worker took the bad entries (and the events around them), then died
        client.execute_command("XREADGROUP", "GROUP", GROUP, "crashed", "COUNT", 40, "STREAMS", BIDS, ">", **RAW)
        if how == "taken-over":  # a worker of this version: registered, its heartbeat expired
            client.hset(f"{PREFIX}consumers:{GROUP}", "crashed", "1000")
        else:  # an older one, without heartbeat: the idle-time reclaim takes its entries
            time.sleep(0.15)
    drain(worker)
    dead = [f for _, f in client.xrange(DEAD)]
    assert len(dead) == len(bad) == worker.stats.dead
    for f, field in zip(dead, [*FIELDS, None], strict=True):
        name = field or "sp\\xffend"
        assert f["reason"].startswith("not UTF-8: ")
        assert (f"field {field} (" if field else "a field name") in f["reason"]
        assert bytes.fromhex(f[f"{name}:hex"]).endswith(b"\xff\xfe" if field else b"")  # the bytes, kept exactly
        assert f["entry_id"] and f["consumer"] == "w"
    assert bytes.fromhex(dead[3]["spend:hex"]) == str(evs[3]["spend"]).encode() + b"\xff\xfe"
    assert bytes.fromhex(dead[-1]["sp\\xffend:name_hex"]) == b"sp\xffend"  # a bad name's bytes, too
    assert bytes.fromhex(dead[-1]["sp\\xffend:hex"]) == str(evs[3]["spend"]).encode()
    state = MirrorState.from_hash("ok-0", client.hgetall(f"{PREFIX}campaign:ok-0:mirror"))
    assert (state.events, state.ignored, state.last_event_id) == (len(evs), 0, evs[-1]["event_id"])
    assert pending(client) == 0
    if how == "taken-over":
        assert worker.rescued == 40 and client.hget(f"{PREFIX}consumers:{GROUP}", "crashed") is None


def test_the_shadow_worker_counts_a_field_that_is_not_utf8_as_invalid_and_goes_on(client: Any) -> None:
    _, _, evs = campaigns(client, healthy=1, deviating=0, hours=3)
    publish(client, evs[:10])
    client.xadd(BIDS, _with_bad_byte(evs[3], "spend"))
    publish(client, evs[10:])
    shadow = redis_shadow(client, get_settings(), consumer="s", block_ms=None, clock=lambda: LAUNCH + 30 * 86_400)
    shadow.run(lambda: False, once=True)
    assert shadow.shadow is not None
    stats = shadow.shadow.stats
    assert stats.invalid == 1 and stats.events == len(evs) + 1
    assert int(client.xpending(BIDS, "synctwin-shadow")["pending"]) == 0


def test_any_other_exception_while_parsing_one_entry_is_a_dead_letter(
    fake_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row by row (entries not in the fast path's shape): one entry's surprise is its own dead letter."""
    _, _, evs = campaigns(fake_client, healthy=1, deviating=0, hours=1)
    real = stream_events.parse_raw_event

    def parse(fields: dict[bytes, bytes]) -> Any:
        if fields.get(b"event_id") == b"ok-0:5":
            raise ZeroDivisionError("something nobody expected")
        return real(fields)

    monkeypatch.setattr(stream_events, "parse_raw_event", parse)
    monkeypatch.setattr(stream_events, "_KEYS", [])  # no entry takes the fast path
    publish(fake_client, evs)
    worker = _mirror(fake_client)
    drain(worker)
    dead = [f for _, f in fake_client.xrange(DEAD)]
    assert [f["event_id"] for f in dead] == ["ok-0:5"]
    assert dead[0]["reason"] == "cannot parse the event (ZeroDivisionError: something nobody expected)"
    assert worker.stats.applied == len(evs) - 1


@pytest.fixture
def fake_client() -> Any:
    return fakeredis.FakeRedis(decode_responses=True)


@pytest.mark.redis
def test_the_issues_reproduction_neither_mirror_nor_shadow_crashes(redis_server: Any, redis_client: Any) -> None:
    """`redis-cli XADD synctwin:bids '*' event_id e1 ... spend "$(printf '\\xff')" ...`, then the
    commands as an operator runs them."""
    _, _, evs = campaigns(redis_client, healthy=1, deviating=0, hours=2)
    publish(redis_client, evs[:5])
    bad = ["event_id", "e1", "campaign_id", "x", "ts", "1796000000", "spend", b"\xff"]
    bad += ["impressions", "1", "clicks", "1", "conversions", "0", "revenue", "0"]
    if shutil.which("redis-cli"):
        subprocess.run(
            ["redis-cli", "-p", str(redis_server.port), "XADD", BIDS, "*", *bad], check=True, capture_output=True
        )
    else:  # the same bytes from a client that does not decode
        redis.Redis.from_url(redis_server.url).xadd(BIDS, dict(zip(bad[::2], bad[1::2], strict=True)))
    publish(redis_client, evs[5:])
    proc = start_worker("mirror", redis_server.url, "m1", "--batch", "10")
    try:
        wait_for(lambda: drained(redis_client) or proc.poll() is not None, 30, "the mirror to drain the stream")
    finally:
        code, err = stop_worker(proc)
    assert code == 0 and "Traceback" not in err, err[-2000:]
    dead = [f for _, f in redis_client.xrange(DEAD)]
    assert len(dead) == 1 and dead[0]["event_id"] == "e1" and "field spend" in dead[0]["reason"]
    assert dead[0]["spend:hex"] == "ff" and dead[0]["spend"] == "\\xff"
    assert MirrorState.from_hash("ok-0", redis_client.hgetall(f"{PREFIX}campaign:ok-0:mirror")).events == len(evs)
    shadow = subprocess.run(
        [*synctwin_cmd(), "shadow", "--redis", redis_server.url, "--once", "--json", "--quiet"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=worker_env(),
        timeout=60,
    )
    assert shadow.returncode == 0, shadow.stderr[-2000:]
    assert json.loads(shadow.stdout)["invalid"] == 1


# ------------------------------------------------------------------------------------- 2. timestamps
def test_events_dated_ahead_of_the_clock_or_outside_the_flight_are_dead_letters(fake_client: Any) -> None:
    """Four events three weeks ahead (a producer's clock bug) used to pause this healthy campaign,
    and the first of them made the mirror ignore every later real event as out of order."""
    c = fake_client
    c.set(f"{PREFIX}campaign:ok-0:projection", json.dumps(projection("ok-0", days=30)))
    c.set(f"{PREFIX}campaign:short:projection", json.dumps(projection("short", days=1)))
    now = LAUNCH + 3 * 86_400  # the worker's clock
    real = events("ok-0", hours=30)
    glitch = real[100]
    bad = [glitch | {"event_id": f"ahead-{i}", "ts": now + 21 * 86_400 + i * 3_600} for i in range(4)]
    bad.append(glitch | {"event_id": "in-ms", "ts": glitch["ts"] * 1000})
    bad.append(real[0] | {"event_id": "early", "ts": LAUNCH - 3 * 3_600})
    late = events("short", hours=1)[0] | {"event_id": "late", "ts": LAUNCH + 2.5 * 86_400}  # 36 h past a 1-day flight
    publish(c, real[:120] + bad + [late] + real[120:])
    worker = _mirror(c, clock=lambda: now)
    drain(worker)
    reasons = {f["event_id"]: f["reason"] for _, f in c.xrange(DEAD)}
    assert set(reasons) == {"ahead-0", "ahead-1", "ahead-2", "ahead-3", "in-ms", "early", "late"}
    assert reasons["ahead-0"].startswith("field ts is 21.0 days ahead of the worker's clock (at most 5.0 min")
    assert "milliseconds instead of seconds?" in reasons["in-ms"]
    assert reasons["early"].startswith("field ts is 3.0 h before the campaign's launch")
    assert reasons["late"].startswith(
        "field ts is 36.0 h after the campaign's flight ended (1767312000; at most 24.0 h late"
    )
    state = MirrorState.from_hash("ok-0", c.hgetall(f"{PREFIX}campaign:ok-0:mirror"))
    assert (state.events, state.ignored, state.last_event_id) == (len(real), 0, real[-1]["event_id"])
    assert state.status != "PAUSED" and c.xlen(CONTROL) == 0


def test_the_clock_skew_is_a_setting(fake_client: Any) -> None:
    c = fake_client
    c.set(f"{PREFIX}campaign:ok-0:projection", json.dumps(projection("ok-0", days=30)))
    now = LAUNCH + 3600
    evs = [e | {"ts": now + 240 + i} for i, e in enumerate(events("ok-0", hours=0.25))]  # 4 minutes ahead
    publish(c, evs)
    drain(_mirror(c, clock=lambda: now, settings={"max_clock_skew_s": 60}))
    assert c.xlen(DEAD) == 3
    c.delete(DEAD, f"{PREFIX}campaign:ok-0:mirror")
    c.xgroup_destroy(BIDS, GROUP)
    drain(_mirror(c, clock=lambda: now))  # the default: five minutes
    assert not c.exists(DEAD) and MirrorState.from_hash("ok-0", c.hgetall(f"{PREFIX}campaign:ok-0:mirror")).events == 3


# ---------------------------------------------------------------------------------------- 3. counters
def test_impossible_counters_are_dead_letters_and_a_real_runaway_is_still_applied(fake_client: Any) -> None:
    """`spend 1e308`, or conversions above clicks, used to be applied, and the next real events
    ignored as decreasing, silently. A campaign spending ten times its plan from launch is real:
    applied, and paused by the mirror's overspend test."""
    c = fake_client
    for cid in ("ok-0", "runaway"):
        c.set(f"{PREFIX}campaign:{cid}:projection", json.dumps(projection(cid)))
    real = events("ok-0", hours=24)
    g = real[30]  # 2.6 h after launch: spend 1,033 on a plan of 400 an hour
    bad = [
        g | {"event_id": "huge", "spend": 1e308},
        g | {"event_id": "conv>clicks", "conversions": g["clicks"] + 1},
        g | {"event_id": "clicks>imps", "clicks": g["impressions"] + 1},
        g | {"event_id": "jump", "spend": 5e6},  # a year's budget in 2.5 hours
        g | {"event_id": "imps", "impressions": 1e300},
    ]
    runaway = events("runaway", hours=24, runaway_at=0.0)  # 10x the plan from the first minute
    evs = sorted(real + runaway, key=lambda e: (e["ts"], e["campaign_id"]))
    publish(c, evs[:70] + bad + evs[70:])
    worker = _mirror(c)
    drain(worker)
    reasons = {f["event_id"]: f["reason"] for _, f in c.xrange(DEAD)}
    assert set(reasons) == {e["event_id"] for e in bad}
    assert reasons["huge"] == "field spend is absurd (1e+308 > 1e+15)"
    assert reasons["conv>clicks"] == f"conversions ({g['clicks'] + 1:g}) above clicks ({g['clicks']:g})"
    assert reasons["clicks>imps"] == f"clicks ({g['impressions'] + 1:g}) above impressions ({g['impressions']:g})"
    assert reasons["jump"].startswith(
        "field spend is implausible: 5e+06 at 2.6 h after launch, above 100 x the "
        "projection's p90 24.0 h later (1.22283e+06"
    )
    assert reasons["imps"] == "field impressions is absurd (1e+300 > 1e+15)"
    ok = MirrorState.from_hash("ok-0", c.hgetall(f"{PREFIX}campaign:ok-0:mirror"))
    assert (ok.events, ok.ignored, ok.status) == (len(real), 0, "OK")
    run = MirrorState.from_hash("runaway", c.hgetall(f"{PREFIX}campaign:runaway:mirror"))
    assert run.events == len(runaway) and run.status == "PAUSED" and run.pause_reason == "overspend"
    assert [f["campaign_id"] for _, f in c.xrange(CONTROL)] == ["runaway"]


def test_a_campaign_whose_newer_events_keep_being_ignored_gets_one_alert_per_episode(fake_client: Any) -> None:
    """A glitch inside the limits (twice the real spend) still freezes the mirror until the real
    totals catch up: one WARNING per episode, not per event, and none for duplicates."""
    c = fake_client
    c.set(f"{PREFIX}campaign:ok-0:projection", json.dumps(projection("ok-0")))
    real = events("ok-0", hours=24)
    evs = list(real)
    for at in (24, 120):  # hour 2 and hour 10: totals of hour 4 and hour 20 (24 and 120 events ahead)
        evs.insert(evs.index(real[at]) + 1, real[2 * at] | {"event_id": f"glitch-{at}", "ts": real[at]["ts"] + 1})
    publish(c, evs)
    worker = _mirror(c, settings={"mirror_stuck_after": 10})
    drain(worker)
    alerts = [f for _, f in c.xrange(ALERTS) if f["title"] == "Mirror stuck: ok-0"]
    assert len(alerts) == 2 == worker.stats.stuck_alerts and all(a["severity"] == "WARNING" for a in alerts)
    details = json.loads(alerts[0]["details"])
    assert details["ignored_in_a_row"] == 10 and details["last_applied_event"] == "glitch-24"
    assert "10 newer events in a row ignored" in alerts[0]["message"]
    state = MirrorState.from_hash("ok-0", c.hgetall(f"{PREFIX}campaign:ok-0:mirror"))
    assert state.ignored == 23 + 119 and state.stale_run == 0  # each glitch hid the events below its totals
    publish(c, real)  # the whole stream redelivered: duplicates, not a frozen mirror
    drain(worker)
    assert len([f for _, f in c.xrange(ALERTS) if f["title"] == "Mirror stuck: ok-0"]) == 2


# ----------------------------------------------------------------------------------- 4. crash recovery
HANGING_WORKER = r"""
import sys, time
import redis
from agents.council.redis import RedisCouncil, redis_mirror
from synctwin.kernel.config import get_settings

url, consumer = sys.argv[1], sys.argv[2]
client = redis.Redis.from_url(url, decode_responses=True)
worker = redis_mirror(client, get_settings(), consumer=consumer, batch=200, block_ms=100, heartbeat_ms=1000)
real_write = RedisCouncil._write
calls = {"n": 0}

def write(self, *args):
    calls["n"] += 1
    if calls["n"] == 4:  # mid-stream: hang with a whole batch in hand, unacknowledged, until killed
        client.set("test:hung", "1")
        time.sleep(3600)
    real_write(self, *args)

RedisCouncil._write = write
worker.run(lambda: False)
"""


def _mirror_hashes(client: Any, ids: list[str]) -> dict[str, dict[str, str]]:
    out = {}
    for cid in ids:
        h = client.hgetall(f"{PREFIX}campaign:{cid}:mirror")
        h.pop("rev", None)
        out[cid] = h
    return out


def _clean_pass(ids: list[str], evs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The mirror hashes one worker leaves after one pass over the stream, nothing killed."""
    ref = fakeredis.FakeRedis(decode_responses=True)
    for cid in ids:
        ref.set(f"{PREFIX}campaign:{cid}:projection", json.dumps(projection(cid)))
    publish(ref, evs)
    drain(mirror_worker(ref, consumer="ref", batch=200, block_ms=None))
    return _mirror_hashes(ref, ids)


def _ignored(client: Any, ids: list[str]) -> int:
    return sum(int(client.hget(f"{PREFIX}campaign:{cid}:mirror", "ignored") or 0) for cid in ids)


@pytest.mark.redis
def test_a_killed_workers_batch_is_applied_first_by_a_worker_restarted_at_once(
    redis_server: Any, redis_client: Any
) -> None:
    """kill -9 with a batch in hand, a new worker under a new name at once (the default idle-time
    reclaim, 30 s, never comes into it): the dead worker's batch is applied before anything newer,
    so no event that was in order in the stream is ignored, and the end state is a clean pass's."""
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
            30,
            "the first worker to hang mid-stream",
        )
        assert first.poll() is None, first.stderr.read() if first.stderr else ""
        assert pending(redis_client, "doomed") == 400  # the batch in hand and the next, read ahead
    finally:
        first.kill()  # SIGKILL
        first.communicate(timeout=10)
    second = start_worker("mirror", redis_server.url, "rescuer", "--batch", "100", SYNCTWIN_MIRROR_HEARTBEAT_MS="1000")
    try:
        wait_for(lambda: drained(redis_client), 30, "the new worker to take over and drain")
    finally:
        code, err = stop_worker(second)
    assert code == 0, err[-2000:]
    assert "400 taken over from dead workers" in err
    assert pending(redis_client, "doomed") == 0
    assert _ignored(redis_client, ok + bad) == 0
    assert _mirror_hashes(redis_client, ok + bad) == _clean_pass(ok + bad, evs)


@pytest.mark.redis
def test_kill_9_of_synctwin_mirror_and_restart_under_a_new_name_ignores_nothing(
    redis_server: Any, redis_client: Any
) -> None:
    """The issue's reproduction: `synctwin mirror` killed (-9) three times mid-stream, each time
    restarted at once under its default name (host-pid, so a new one)."""
    ok, bad, evs = campaigns(redis_client, healthy=10, deviating=5, hours=30)
    publish(redis_client, evs)
    env = {"SYNCTWIN_MIRROR_HEARTBEAT_MS": "1000"}
    left = []  # entries a killed worker left pending
    for kill in range(3):
        proc = subprocess.Popen(
            [*synctwin_cmd(), "mirror", "--redis", redis_server.url, "--batch", "50"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=worker_env(**env),
        )
        try:
            target = (kill + 1) * len(evs) // 5
            wait_for(lambda t=target: _delivered(redis_client) >= t, 30, f"the worker to read {target} events")
            deadline = time.monotonic() + 5  # and while it holds a batch, as a crash would find it
            while time.monotonic() < deadline and not pending(redis_client):
                time.sleep(0.001)
        finally:
            proc.kill()
            proc.communicate(timeout=10)
        left.append(pending(redis_client))
    assert any(left), left  # at least one kill caught a batch in hand
    last = start_worker("mirror", redis_server.url, "last", "--batch", "50", **env)
    try:
        wait_for(lambda: drained(redis_client), 60, "the last worker to drain")
    finally:
        code, err = stop_worker(last)
    assert code == 0, err[-2000:]
    assert _ignored(redis_client, ok + bad) == 0
    assert _mirror_hashes(redis_client, ok + bad) == _clean_pass(ok + bad, evs)


def _delivered(client: Any) -> int:
    g = next((g for g in client.xinfo_groups(BIDS) if g["name"] == GROUP), None)
    return int(g["entries-read"] or 0) if g else 0


def test_a_worker_waits_at_start_for_a_predecessor_whose_heartbeat_has_not_expired(fake_client: Any) -> None:
    """Restarted at once, the killed worker's heartbeat is still there: the new worker waits for it
    (at most a heartbeat's TTL) instead of reading newer events first."""
    c = fake_client
    _, _, evs = campaigns(c, healthy=2, deviating=0, hours=4)
    publish(c, evs)
    dead = mirror_worker(c, consumer="dead", batch=20, block_ms=None, heartbeat_ms=400)
    dead.ensure_group()
    dead.beat(time.monotonic())
    c.execute_command("XREADGROUP", "GROUP", GROUP, "dead", "COUNT", 20, "STREAMS", BIDS, ">", **RAW)  # then killed
    worker = mirror_worker(c, consumer="new", batch=20, block_ms=None, heartbeat_ms=400)
    assert worker.step() == 20  # its first step: the dead worker's 20 (waited for), nothing newer
    assert worker.rescued == 20 and pending(c, "dead") == 0 and pending(c, "new") == 0
    drain(worker)
    assert worker.rescued == 20 and worker.stats.ignored == 0 and drained(c)
    worker.run(lambda: False, once=True)  # a clean stop leaves no heartbeat and no name behind
    assert not c.exists(worker.heartbeat_key) and not c.hexists(f"{PREFIX}consumers:{GROUP}", "new")


def test_a_live_peer_keeps_its_pending_entries(fake_client: Any) -> None:
    """A consumer whose heartbeat is there and refreshed is alive: its entries stay its own."""
    c = fake_client
    _, _, evs = campaigns(c, healthy=2, deviating=0, hours=4)
    publish(c, evs)
    peer = mirror_worker(c, consumer="peer", batch=20, block_ms=None, heartbeat_ms=60_000)
    peer.ensure_group()
    peer.beat(time.monotonic())
    c.execute_command("XREADGROUP", "GROUP", GROUP, "peer", "COUNT", 20, "STREAMS", BIDS, ">", **RAW)
    worker = mirror_worker(c, consumer="new", batch=20, block_ms=None, heartbeat_ms=60_000)
    assert worker.rescue() == 0 and pending(c, "peer") == 20
    c.delete(peer.heartbeat_key)  # it dies: its heartbeat expires
    assert worker.rescue() == 20 and pending(c, "peer") == 0
