"""SyncNotify: the alert model, each sink, failure isolation, and the seed's async call shape."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import fakeredis
import numpy as np
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from agents.syncnotify import (
    Alert,
    AlertSink,
    JsonlSink,
    LogSink,
    MemorySink,
    RedisStreamSink,
    SyncNotify,
)
from synctwin.kernel.errors import InvalidInput


class Ticker:
    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now - 1.0


class BrokenSink:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc
        self.calls = 0

    def send(self, alert: Alert) -> None:
        self.calls += 1
        raise self.exc


# ---------------------------------------------------------------------------------- the model
def test_alert_model_validates_and_normalises_details() -> None:
    alert = Alert(
        severity="WARNING",
        title="Auto-Rollback Triggered: c-1",
        message="deviating",
        details={"deviation": np.float64(0.21), "series": np.arange(3), "bad": math.nan},
        ts=5.0,
    )
    assert alert.details == {"deviation": 0.21, "series": [0, 1, 2], "bad": None}
    assert json.loads(alert.model_dump_json())["details"]["deviation"] == 0.21
    assert Alert(severity="INFO", title="t", message="", ts=0.0).details == {}
    assert Alert(severity="INFO", title="t", message="", details=None, ts=0.0).details == {}
    assert Alert(severity="CRITICAL", title="t", message="", details=[{"passed": False}], ts=0.0).details == [
        {"passed": False}
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"severity": "DEBUG"},
        {"title": ""},
        {"title": "   "},
        {"details": 5},
        {"ts": math.inf},
        {"unexpected": 1},
    ],
)
def test_alert_model_rejects_bad_alerts(kwargs: dict[str, Any]) -> None:
    base: dict[str, Any] = {"severity": "INFO", "title": "t", "message": "m", "ts": 1.0}
    with pytest.raises(ValueError):
        Alert(**(base | kwargs))


def test_every_sink_implements_the_protocol() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    for sink in (LogSink(), JsonlSink("x.jsonl"), RedisStreamSink(client), MemorySink()):
        assert isinstance(sink, AlertSink)


# ---------------------------------------------------------------------------------- the sinks
def test_memory_sink_keeps_alerts_stamped_by_the_clock() -> None:
    sink = MemorySink()
    notify = SyncNotify([sink], clock=Ticker())
    first = notify.notify("INFO", "Gate approved", "c-1 approved", {"confidence": 0.91})
    second = notify.notify("CRITICAL", "Chaos Tests Failed", "1/4 failed")
    assert sink.alerts == [first, second]
    assert (first.ts, second.ts) == (1000.0, 1001.0)
    assert first.details == {"confidence": 0.91} and second.details == {}
    sink.clear()
    assert sink.alerts == []


def test_log_sink_logs_at_the_severitys_level(caplog: pytest.LogCaptureFixture) -> None:
    notify = SyncNotify([LogSink("synctwin.alerts.test")])
    with caplog.at_level(logging.DEBUG, logger="synctwin.alerts.test"):
        for severity in ("INFO", "WARNING", "CRITICAL"):
            notify.notify(severity, f"{severity} title", "the message", {"k": 1})
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.WARNING, logging.CRITICAL]
    assert caplog.records[1].getMessage() == "WARNING title: the message"
    alert_extra = caplog.records[2].alert  # type: ignore[attr-defined]
    assert alert_extra["severity"] == "CRITICAL" and alert_extra["details"] == {"k": 1}


def test_jsonl_sink_appends_one_alert_per_line(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "alerts.jsonl"
    notify = SyncNotify([JsonlSink(path)], clock=Ticker())
    sent = [notify.notify("WARNING", "a", "first", {"x": 1}), notify.notify("CRITICAL", "b", "second", [1, 2])]
    JsonlSink(path).send(sent[0])  # a second sink instance appends too, never truncates
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [Alert.model_validate_json(line) for line in lines] == [*sent, sent[0]]


def _check_stream(client: Any, key: str, sent: list[Alert]) -> None:
    entries = client.xrange(key)
    assert len(entries) == len(sent)
    for (_, fields), alert in zip(entries, sent, strict=True):
        fields = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in fields.items()
        }
        assert set(fields) == {"severity", "title", "message", "details", "ts"}
        assert fields["severity"] == alert.severity and fields["title"] == alert.title
        assert fields["message"] == alert.message
        assert json.loads(fields["details"]) == alert.details
        assert float(fields["ts"]) == alert.ts


def test_redis_stream_sink_on_fakeredis() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    notify = SyncNotify([RedisStreamSink(client)], clock=Ticker())
    sent = [
        notify.notify("WARNING", "Auto-Rollback Triggered: c-9", "deviating 21%", {"deviation": "21%"}),
        notify.notify("CRITICAL", "Chaos Tests Failed", "2/4 failed", [{"test": "api_outage"}]),
    ]
    _check_stream(client, "synctwin:alerts", sent)
    bytes_client = fakeredis.FakeRedis()
    RedisStreamSink(bytes_client, key="other:alerts").send(sent[0])
    _check_stream(bytes_client, "other:alerts", sent[:1])


def test_redis_stream_sink_trims_approximately() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    sink = RedisStreamSink(client, maxlen=10)
    alert = Alert(severity="INFO", title="t", message="m", ts=1.0)
    for _ in range(500):
        sink.send(alert)
    assert 10 <= client.xlen("synctwin:alerts") < 500


# -------------------------------------------------------------------------- failure isolation
def test_a_failing_sink_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    before, after = MemorySink(), MemorySink()
    boom, disk_full = BrokenSink(RuntimeError("boom")), BrokenSink(OSError(28, "No space left on device"))
    notify = SyncNotify([before, boom, after, disk_full])
    with caplog.at_level(logging.ERROR, logger="synctwin.syncnotify"):
        alert = notify.notify("CRITICAL", "Chaos Tests Failed", "1/4 failed", [{"passed": False}])
        notify.notify("INFO", "second", "still delivered")
    assert before.alerts[0] == alert and after.alerts[0] == alert
    assert len(before.alerts) == len(after.alerts) == 2
    assert boom.calls == disk_full.calls == 2
    assert notify.failures == 4
    assert isinstance(notify.last_error, OSError)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4 and "BrokenSink failed" in messages[0] and "boom" in messages[0]


def test_a_malformed_alert_is_invalid_input_and_reaches_no_sink() -> None:
    sink = MemorySink()
    notify = SyncNotify([sink])
    with pytest.raises(InvalidInput) as err:
        notify.notify("URGENT", "t", "m")
    assert err.value.field == "severity"
    with pytest.raises(InvalidInput) as err:
        notify.notify("INFO", " ", "m")
    assert err.value.field == "title"
    assert sink.alerts == [] and notify.failures == 0


async def test_async_alert_takes_the_seeds_call_shape() -> None:
    sink = MemorySink()
    syncnotify_client = SyncNotify([sink], clock=lambda: 42.0)
    failures = [{"name": "market_shock", "passed": False, "error": "margin breached"}]
    alert = await syncnotify_client.alert(
        severity="CRITICAL",
        title="Chaos Tests Failed",
        message=f"{len(failures)}/4 chaos tests failed. MarginGuardian may not protect clients.",
        details=failures,
    )
    assert isinstance(alert, Alert) and alert.ts == 42.0 and alert.details == failures
    assert sink.alerts == [alert]


# --------------------------------------------------------------------------- a real redis-server
def _fast_fail_client(url: str) -> redis.Redis:
    """No retries or backoff, so an outage fails the send at once instead of after seconds."""
    return redis.Redis.from_url(
        url, decode_responses=True, retry=Retry(NoBackoff(), 0), socket_connect_timeout=2, socket_timeout=2
    )


@pytest.mark.redis
def test_redis_stream_sink_on_a_real_server(redis_client: redis.Redis) -> None:
    notify = SyncNotify([RedisStreamSink(redis_client)], clock=Ticker())
    sent = [notify.notify("WARNING", "w", "one", {"a": [1, 2]}), notify.notify("INFO", "i", "two")]
    _check_stream(redis_client, "synctwin:alerts", sent)
    assert notify.failures == 0


@pytest.mark.redis
def test_redis_stream_sink_trims_approximately_on_a_real_server(redis_client: redis.Redis) -> None:
    sink = RedisStreamSink(redis_client, maxlen=10)
    alert = Alert(severity="INFO", title="t", message="m", ts=1.0)
    for _ in range(1000):
        sink.send(alert)
    length = redis_client.xlen("synctwin:alerts")
    assert 10 <= length <= 10 + 100  # at most one macro-node (stream-node-max-entries 100) over


@pytest.mark.redis
def test_a_redis_outage_is_counted_and_the_other_sinks_still_alert(
    redis_server: Any, redis_client: redis.Redis
) -> None:
    memory = MemorySink()
    client = _fast_fail_client(redis_server.url)
    notify = SyncNotify([RedisStreamSink(client), memory])
    notify.notify("INFO", "before", "server up")
    redis_server.stop()
    try:
        during = notify.notify("CRITICAL", "during", "server down")
        assert notify.failures == 1 and isinstance(notify.last_error, redis.exceptions.ConnectionError)
        assert memory.alerts[-1] == during
    finally:
        redis_server.start()
    after = notify.notify("WARNING", "after", "server back")  # the client reconnects by itself
    assert notify.failures == 1
    assert [a.title for a in memory.alerts] == ["before", "during", "after"]
    titles = [f["title"] for _, f in client.xrange("synctwin:alerts")]
    assert titles == [after.title]  # the restart lost 'before': the server keeps no data (--save "")
    client.close()


@pytest.mark.redis
def test_the_sink_reconnects_after_a_server_restart(redis_server: Any, redis_client: redis.Redis) -> None:
    client = _fast_fail_client(redis_server.url)
    sink = RedisStreamSink(client)
    alert = Alert(severity="INFO", title="t", message="m", ts=1.0)
    sink.send(alert)
    redis_server.restart()
    sink.send(alert)  # the pooled connection died with the server; redis-py notices and reconnects
    sink.send(alert)
    assert client.xlen("synctwin:alerts") == 2  # the first entry died with the server (--save "")
    client.close()


# --- one alert per episode, not per evaluation -------------------------------------------------


def _grey(notify: SyncNotify, cid: str, t: float) -> Alert:
    return notify.notify("INFO", f"Grey zone: {cid}", "deviating, watching", {"campaign_id": cid, "event_ts": t})


def test_an_episode_of_50_grey_zone_evaluations_is_one_alert_counting_50() -> None:
    sink = MemorySink()
    notify = SyncNotify([sink], clock=lambda: 0.0)
    for i in range(50):
        _grey(notify, "c1", 1_000.0 + 600.0 * i)  # every ten minutes
    _grey(notify, "c2", 2_000.0)  # another campaign is another episode
    assert [a.title for a in sink.alerts] == ["Grey zone: c1", "Grey zone: c2"]
    assert notify.count(sink.alerts[0]) == 50 and notify.suppressed == 49


def test_a_cleared_then_reentered_condition_is_two_alerts() -> None:
    sink = MemorySink()
    notify = SyncNotify([sink], clock=lambda: 0.0, keep_history=True)
    _grey(notify, "c1", 0.0)
    _grey(notify, "c1", 60.0)
    assert notify.resolve("c1", "Grey zone") is not None  # the source says it cleared
    _grey(notify, "c1", 120.0)
    _grey(notify, "c1", 180.0)
    assert len(sink.alerts) == 2 and [notify.count(a) for a in sink.alerts] == [2, 2]
    # cleared by silence: no repeat for longer than reopen_after (event time, not the clock)
    _grey(notify, "c1", 180.0 + notify.reopen_after + 1)
    assert len(sink.alerts) == 3


def test_a_source_that_names_its_episodes_gets_one_alert_each() -> None:
    """The mirror knows when it is stuck anew (another frozen event): a new `episode` is sent."""
    sink = MemorySink()
    notify = SyncNotify([sink], clock=lambda: 0.0)
    for episode, t in (("glitch-24", 10.0), ("glitch-24", 20.0), ("glitch-120", 30.0)):
        notify.notify("WARNING", "Mirror stuck: c1", "...", {"campaign_id": "c1", "episode": episode, "event_ts": t})
    assert len(sink.alerts) == 2


def test_a_higher_severity_is_sent_and_unkeyed_alerts_are_never_deduped() -> None:
    sink = MemorySink()
    notify = SyncNotify([sink], clock=lambda: 0.0)
    _grey(notify, "c1", 0.0)
    notify.notify("WARNING", "Grey zone: c1", "worse", {"campaign_id": "c1", "event_ts": 10.0})
    _grey(notify, "c1", 20.0)  # back to INFO: counted into the raised episode
    for _ in range(3):
        notify.notify("CRITICAL", "Chaos Tests Failed", "1/4 failed", {"failed": ["market_shock"]})
    assert [a.severity for a in sink.alerts] == ["INFO", "WARNING", "CRITICAL", "CRITICAL", "CRITICAL"]


def test_without_dedupe_the_count_fails() -> None:
    """The guard broken (dedupe off): every evaluation is sent, and the episode check fails."""
    sink = MemorySink()
    notify = SyncNotify([sink], clock=lambda: 0.0, dedupe=False)
    for i in range(50):
        _grey(notify, "c1", 600.0 * i)
    assert len(sink.alerts) == 50  # what the episode test above rules out
    assert notify.count(sink.alerts[0]) == 1


def test_a_replay_sends_one_alert_per_grey_zone_episode() -> None:
    """portfolio_10: healthy campaigns flapping at the grey-zone edge used to send ~350 INFO alerts."""
    from harness.runner import run_scenario
    from scenarios.loader import load_scenario

    trace = run_scenario(load_scenario("portfolio_10"), 0)
    grey = [a for a in trace.alerts if a["title"].startswith("Grey zone")]
    assert sum(a["count"] for a in grey) > 300 and len(grey) < 40
    keys = [(a["title"], a["t"]) for a in grey]
    assert len(keys) == len(set(keys))
