"""The HTTP service (`synctwin serve`), its Prometheus metrics, the mirror's metrics and the dashboard.

In-process tests use FastAPI's TestClient (httpx) and fakeredis; two tests start the real command
in a subprocess on a free loopback port (and one the mirror worker against the session's own
redis-server). Gates use a few thousand paths unless a test compares with the command line.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import fakeredis
import httpx
import pytest

with warnings.catch_warnings():  # starlette's notice about httpx's successor; httpx is what we test with
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from shared_scenarios import linear_projection

from agents.council.redis import redis_mirror
from agents.synctwin.mirror.agent import PAUSE_REASON
from agents.synctwin.mirror.deviation import MirrorState
from synctwin.app.cli import main
from synctwin.app.http import create_app
from synctwin.infra import metrics
from synctwin.kernel.config import Settings, get_settings
from synctwin.kernel.history import load_history

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
STRATEGY_FILE, HISTORY_FILE = DATA / "strategy.json", DATA / "history_90d.csv"
STRATEGY: dict[str, Any] = json.loads(STRATEGY_FILE.read_text())
ROWS: list[dict[str, Any]] = load_history(HISTORY_FILE).to_records()
CSV = HISTORY_FILE.read_text()
APPROVED = {
    "campaign_id": "summer",
    "client_id": "acme",
    "audience_size": 300_000,
    "cvr": 0.03,
    "daily_budget": 900,
}  # approved on the test history at any seed
PREFIX = "synctwin:"


def _client(settings: Settings | None = None, redis_client: Any = None) -> TestClient:
    return TestClient(create_app(settings or Settings(), redis_client=redis_client), raise_server_exceptions=False)


@pytest.fixture
def api() -> Iterator[TestClient]:
    with _client() as c:
        yield c


@pytest.fixture
def fake() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(decode_responses=True)


def body(**extra: Any) -> dict[str, Any]:
    return {"strategy": STRATEGY, "history": ROWS, "paths": 2_000, "seed": 1, **extra}


def errors(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.text
    assert "Traceback" not in response.text
    return response.json()["detail"]


# --- POST /v1/simulate -------------------------------------------------------------------------------
def test_simulate_gives_the_command_line_result_for_the_same_seed(api: TestClient, capsys: Any) -> None:
    code = main(["gate", str(STRATEGY_FILE), "--history", str(HISTORY_FILE), "--seed", "7", "--json"])
    cli = json.loads(capsys.readouterr().out)
    assert code == (0 if cli["decision"] == "APPROVED" else 1)
    for history in ({"history": ROWS}, {"history_csv": CSV}):
        r = api.post("/v1/simulate", json={"strategy": STRATEGY, **history, "seed": 7})
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["elapsed_ms"] > 0
        got.pop("elapsed_ms"), cli.pop("elapsed_ms", None)
        assert got == cli


def test_simulate_honours_paths_model_and_threshold(api: TestClient) -> None:
    r = api.post("/v1/simulate", json=body(paths=1_000, model="seed", threshold=0.5))
    assert r.status_code == 200, r.text
    d = r.json()
    assert (d["model"], d["threshold"], d["seed"]) == ("seed", 0.5, 1)  # the name asked for
    assert d["simulation_details"]["initial_simulations"] == 1_000


@pytest.mark.parametrize(
    ("change", "loc", "kind"),
    [
        ({"strategy": {**STRATEGY, "daily_budget": -5}}, ["body", "strategy", "daily_budget"], "greater_than"),
        (
            {"strategy": {k: v for k, v in STRATEGY.items() if k != "audience_size"}},
            ["body", "strategy", "audience_size"],
            "missing",
        ),
        ({"strategy": {**STRATEGY, "platform": "myspace"}}, ["body", "strategy", "platform"], "literal_error"),
        (
            {"history": [*ROWS[:2], {k: v for k, v in ROWS[2].items() if k != "clicks"}, *ROWS[3:]]},
            ["body", "history", 2, "clicks"],
            "missing",
        ),
        (
            {"history": [*ROWS[:5], {**ROWS[5], "date": ROWS[4]["date"]}, *ROWS[6:]]},
            ["body", "history", 5, "date"],
            "value_error",
        ),
        (
            {"history": [*ROWS[:3], {**ROWS[3], "spend": -1}, *ROWS[4:]]},
            ["body", "history", 3, "spend"],
            "greater_than_equal",
        ),
        ({"history": ROWS[:5]}, ["body", "history"], "value_error"),  # too few days for a baseline
        ({"history": None, "history_csv": "date,spend\n2024-01-01,5\n"}, ["body", "history_csv"], "value_error"),
        ({"history": None}, ["body", "history"], "missing"),  # no Redis to read it from
        ({"history_csv": CSV}, ["body"], "value_error"),  # both
        ({"paths": 50}, ["body", "paths"], "greater_than_equal"),
        ({"seed": -1}, ["body", "seed"], "greater_than_equal"),
        ({"threshold": 1.5}, ["body", "threshold"], "less_than"),
        ({"model": "oracle"}, ["body", "model"], "literal_error"),
        ({"surprise": 1}, ["body", "surprise"], "extra_forbidden"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(
    api: TestClient, change: dict[str, Any], loc: list[Any], kind: str
) -> None:
    detail = errors(api.post("/v1/simulate", json=body(**change)))
    assert detail[0]["loc"] == loc, detail
    assert detail[0]["type"] == kind, detail
    assert detail[0]["msg"]


def test_nan_and_infinity_are_refused_with_their_field(api: TestClient) -> None:
    # Python's json writes NaN/Infinity literals, as a careless client might
    raw = json.dumps(body(strategy={**STRATEGY, "cvr": float("nan")}))
    detail = errors(api.post("/v1/simulate", content=raw, headers={"content-type": "application/json"}))
    assert detail[0]["loc"] == ["body", "strategy", "cvr"]
    rows = [*ROWS[:3], {**ROWS[3], "revenue": float("inf")}, *ROWS[4:]]
    detail = errors(
        api.post("/v1/simulate", content=json.dumps(body(history=rows)), headers={"content-type": "application/json"})
    )
    assert detail[0]["loc"] == ["body", "history", 3, "revenue"]
    assert detail[0]["input"] == "inf"  # echoed as a string: the error body stays valid JSON


def test_a_bad_csv_names_its_line_and_field(api: TestClient) -> None:
    lines = CSV.splitlines()
    lines[5] = lines[5].replace(lines[5].split(",")[1], "lots", 1)
    detail = errors(api.post("/v1/simulate", json=body(history=None, history_csv="\n".join(lines))))
    assert detail[0]["loc"] == ["body", "history_csv"]
    assert detail[0]["ctx"] == {"line": 6, "field": "spend"}
    assert "line 6" in detail[0]["msg"]


def test_malformed_json_is_a_422(api: TestClient) -> None:
    r = api.post("/v1/simulate", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "Traceback" not in r.text


def test_paths_over_the_limit_are_a_422() -> None:
    with _client(Settings(service_max_paths=5_000)) as c:
        for name in ("paths", "max_paths"):
            detail = errors(c.post("/v1/simulate", json=body(**{name: 5_001})))
            assert detail[0]["loc"] == ["body", name]
            assert detail[0]["ctx"] == {"le": 5_000}
        assert c.post("/v1/simulate", json=body(paths=5_000)).status_code == 200


def test_a_body_over_the_limit_is_a_413() -> None:
    with _client(Settings(max_body_bytes=4_096)) as c:
        big = json.dumps(body()).encode()
        assert len(big) > 4_096
        r = c.post("/v1/simulate", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "4096 bytes" in r.json()["detail"]

        def chunks() -> Iterator[bytes]:  # streamed: no Content-Length to refuse up front
            for i in range(0, len(big), 1_000):
                yield big[i : i + 1_000]

        r = c.post("/v1/simulate", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        small = {"strategy": STRATEGY, "history_csv": "\n".join(CSV.splitlines()[:40]), "paths": 1_000}
        assert c.post("/v1/simulate", json=small).status_code == 200


def test_the_gate_runs_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """While a gate computes, /healthz still answers: the gate waits for that answer, which could
    never come if it held the event loop."""
    from agents.synctwin.gate.gatekeeper import SimulationGatekeeper

    answered = threading.Event()
    real = SimulationGatekeeper.evaluate

    def slow(self: Any, *args: Any, **kwargs: Any) -> Any:
        assert answered.wait(10), "/healthz did not answer while the gate was computing"
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SimulationGatekeeper, "evaluate", slow)
    with _client() as c:
        results: list[httpx.Response] = []
        t = threading.Thread(target=lambda: results.append(c.post("/v1/simulate", json=body())))
        t.start()
        deadline = time.monotonic() + 10
        while (metrics.sample("synctwin_gate_in_flight") or 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert c.get("/healthz").status_code == 200
        answered.set()
        t.join(20)
        assert results and results[0].status_code == 200


# --- auth ---------------------------------------------------------------------------------------------
def test_api_key_guards_v1_but_not_health_and_metrics() -> None:
    with _client(Settings(api_key="s3cret")) as c:
        assert c.post("/v1/simulate", json=body()).status_code == 401
        r = c.post("/v1/simulate", json=body(), headers={"X-API-Key": "wrong"})
        assert r.status_code == 401 and r.json()["detail"] == "missing or invalid X-API-Key header"
        assert c.get("/v1/campaigns/x", headers={"X-API-Key": "nope"}).status_code == 401
        assert c.post("/v1/simulate", json=body(), headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/healthz").status_code == 200
        assert c.get("/metrics").status_code == 200
        spec = c.get("/openapi.json").json()
        assert "X-API-Key" in json.dumps(spec["components"]["securitySchemes"])


BAD_BODIES: list[tuple[bytes, str]] = [
    (b"{not json", "application/json"),
    (b"\xff\xfe\x00", "application/json"),
    (b"[]", "application/json"),
    (b'{"strategy": {}}', "application/json"),
    (b'{"strategy": {"cvr": "x"}, "history": 5}', "application/json"),
    (b"a=1", "application/x-www-form-urlencoded"),
    (b"", "application/json"),
    (b"null", "text/plain"),
]


@pytest.mark.parametrize(("raw", "content_type"), BAD_BODIES)
def test_with_a_key_a_bad_body_without_the_key_is_401_not_a_schema_error(raw: bytes, content_type: str) -> None:
    """Auth comes before the body is read: an unauthenticated client learns nothing of the schema."""
    with _client(Settings(api_key="s3cret")) as c:
        for headers in ({}, {"X-API-Key": "wrong"}):
            r = c.post("/v1/simulate", content=raw, headers={"content-type": content_type, **headers})
            assert r.status_code == 401, (raw, r.status_code, r.text)
            assert r.headers["www-authenticate"] == "ApiKey"
        r = c.post("/v1/simulate", content=raw, headers={"content-type": content_type, "X-API-Key": "s3cret"})
        assert 400 <= r.status_code < 500 and r.status_code != 401, (raw, r.status_code)


def test_an_invented_http_method_does_not_grow_the_metrics(api: TestClient) -> None:
    for method in ("FOOBAR", "BREW", "X" * 50):
        api.request(method, "/v1/simulate")
    text = api.get("/metrics").text
    assert "FOOBAR" not in text and "BREW" not in text and 'method="other"' in text


@pytest.mark.parametrize("days", [7, 13])
def test_a_lookback_too_short_for_any_baseline_is_refused_by_the_schema(api: TestClient, days: int) -> None:
    detail = errors(api.post("/v1/simulate", json=body(lookback_days=days)))
    assert detail[0]["loc"] == ["body", "lookback_days"]
    assert api.post("/v1/simulate", json=body(lookback_days=14)).status_code in (200, 422)


def test_the_openapi_example_body_is_accepted(api: TestClient) -> None:
    """A newcomer's first try is the example /docs shows: it must be answered, not refused."""
    spec = api.get("/openapi.json").json()
    example = spec["components"]["schemas"]["SimulateRequest"]["examples"][0]
    r = api.post("/v1/simulate", json=example)
    assert r.status_code == 200, r.text
    assert r.json()["decision"] in ("APPROVED", "REJECTED")


def test_without_a_key_no_header_is_needed(api: TestClient) -> None:
    assert api.post("/v1/simulate", json=body()).status_code == 200


# --- health, metrics, docs ------------------------------------------------------------------------------------
def test_healthz_reports_redis(fake: Any) -> None:
    with _client() as c:
        assert c.get("/healthz").json() == {"status": "ok", "version": "0.1.0", "redis": "not configured"}
    with _client(redis_client=fake) as c:
        assert c.get("/healthz").json()["redis"] == "reachable"
    import redis

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    dead = redis.Redis(
        host="127.0.0.1", port=port, socket_connect_timeout=1, decode_responses=True, retry=Retry(NoBackoff(), 0)
    )
    with _client(redis_client=dead) as c:
        r = c.get("/healthz")
        assert r.status_code == 200 and r.json()["redis"].startswith("unreachable")


def test_redis_down_is_a_503_not_a_traceback() -> None:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = redis.Redis(
        host="127.0.0.1", port=port, socket_connect_timeout=1, decode_responses=True, retry=Retry(NoBackoff(), 0)
    )
    with _client(redis_client=dead) as c:
        for r in (c.post("/v1/simulate", json=body()), c.get("/v1/campaigns/summer")):
            assert r.status_code == 503, r.text
            assert r.json()["detail"].startswith("Redis is unavailable") and r.headers["retry-after"] == "5"


def test_metrics_count_gate_decisions_latency_and_paths(api: TestClient) -> None:
    before_n = metrics.sample("synctwin_gate_latency_seconds_count", {"model": "curve"}) or 0.0
    before_paths = metrics.sample("synctwin_gate_paths_total", {"model": "curve"}) or 0.0
    d = api.post("/v1/simulate", json=body()).json()
    labels = {"decision": d["decision"], "risk_profile": d["risk_profile"]}
    before_decisions = (metrics.sample("synctwin_gate_decisions_total", labels) or 0.0) - 1
    text = api.get("/metrics").text
    assert "synctwin_gate_latency_seconds_bucket" in text
    assert 'synctwin_http_requests_total{method="POST",route="/v1/simulate",status="200"}' in text
    assert metrics.sample("synctwin_gate_latency_seconds_count", {"model": "curve"}) == before_n + 1
    assert metrics.sample("synctwin_gate_paths_total", {"model": "curve"}) == (
        before_paths + d["simulation_details"]["total_simulations"]
    )
    assert metrics.sample("synctwin_gate_decisions_total", labels) == before_decisions + 1
    assert metrics.sample("synctwin_gate_in_flight") == 0


def test_docs_and_openapi_are_served(api: TestClient) -> None:
    assert "swagger" in api.get("/docs").text.lower()
    spec = api.get("/openapi.json").json()
    assert {"/v1/simulate", "/v1/campaigns/{campaign_id}", "/healthz", "/metrics"} <= set(spec["paths"])


# --- campaigns and Redis ----------------------------------------------------------------------------------------
def test_an_approval_is_published_and_the_campaign_can_be_read(fake: Any) -> None:
    with _client(redis_client=fake) as c:
        r = c.post("/v1/simulate", json={"strategy": APPROVED, "history": ROWS, "paths": 2_000, "seed": 3})
        result = r.json()
        assert result["decision"] == "APPROVED", result
        stored = json.loads(fake.get(f"{PREFIX}campaign:summer:projection"))
        assert stored["launch_ts"] is not None  # launched now, as `gate --redis` does
        assert stored["points"] == result["projection"]["points"]
        assert json.loads(fake.get(f"{PREFIX}campaign:summer:strategy"))["daily_budget"] == 900
        assert fake.get(f"{PREFIX}client:acme:history")  # the history the drills clone
        view = c.get("/v1/campaigns/summer").json()
        assert view["projection"]["points"] == result["projection"]["points"]
        assert view["mirror"] is None and view["pauses"] == [] and view["paused"] is False
        assert [d["event_type"] for d in view["decisions"]] == ["CAMPAIGN_APPROVED"]
        assert view["decisions"][0]["metadata"]["confidence_score"] == result["confidence_score"]

        # the live mirror's state and a pause show up as they are written
        state = MirrorState(
            "summer", spend=1200.0, conversions=80.0, status="PAUSED", deviation=0.31, pause_reason=PAUSE_REASON
        )
        fake.hset(f"{PREFIX}campaign:summer:mirror", mapping={**state.to_hash(), "rev": "7", "launch_ts": "1.5"})
        fake.xadd(f"{PREFIX}control", {"command": "PAUSE", "campaign_id": "other", "reason": PAUSE_REASON})
        fake.xadd(
            f"{PREFIX}control",
            {"command": "PAUSE", "campaign_id": "summer", "reason": PAUSE_REASON, "deviation": "0.3100"},
        )
        view = c.get("/v1/campaigns/summer").json()
        assert view["mirror"]["status"] == "PAUSED" and view["mirror"]["deviation"] == 0.31
        assert view["mirror"]["launch_ts"] == 1.5
        assert view["paused"] is True
        assert [(p["campaign_id"], p["reason"]) for p in view["pauses"]] == [("summer", PAUSE_REASON)]

        # a later request without history reads the client's stored one
        again = c.post("/v1/simulate", json={"strategy": APPROVED, "paths": 2_000, "seed": 3}).json()
        assert again["confidence_score"] == result["confidence_score"]


def test_a_rejection_is_audited_but_publishes_nothing(fake: Any) -> None:
    with _client(redis_client=fake) as c:
        strategy = {**APPROVED, "campaign_id": "winter", "daily_budget": 5_000, "audience_size": 20_000}
        assert (
            c.post("/v1/simulate", json={"strategy": strategy, "history": ROWS, "paths": 1_000, "seed": 1}).json()[
                "decision"
            ]
            == "REJECTED"
        )
        assert fake.get(f"{PREFIX}campaign:winter:projection") is None
        view = c.get("/v1/campaigns/winter").json()
        assert view["projection"] is None
        assert [(d["event_type"], d["reason"]) for d in view["decisions"]] == [
            ("CAMPAIGN_REJECTED", "SYNCTWIN_NEGATIVE_FORECAST")
        ]


def test_campaigns_404_for_unknown_422_for_a_bad_id_503_without_redis(fake: Any) -> None:
    with _client(redis_client=fake) as c:
        r = c.get("/v1/campaigns/nobody")
        assert r.status_code == 404 and "nobody" in r.json()["detail"]
        assert c.get("/v1/campaigns/bad%20id").status_code == 422
    with _client() as c:
        r = c.get("/v1/campaigns/nobody")
        assert r.status_code == 503 and "Redis" in r.json()["detail"]


def test_an_unknown_client_without_history_is_a_422_on_client_id(fake: Any) -> None:
    with _client(redis_client=fake) as c:
        detail = errors(c.post("/v1/simulate", json={"strategy": {**APPROVED, "client_id": "ghost"}}))
        assert detail[0]["loc"] == ["body", "strategy", "client_id"]
        assert "ghost" in detail[0]["msg"]


# --- the mirror's metrics ----------------------------------------------------------------------------------------
LAUNCH, STEP, RATE, CPA, AOV = 1_767_225_600.0, 300.0, 40.0, 10.0, 60.0


def _projection(cid: str, days: int = 2) -> dict[str, Any]:
    return linear_projection(cid, launch=LAUNCH, rate=RATE, cpa=CPA, aov=AOV, days=days)


def _events(cid: str, hours: float, runaway_at: float | None = None) -> list[dict[str, str]]:
    out = []
    for i in range(1, int(hours * 3600 / STEP) + 1):
        h = i * STEP / 3600
        conv = math.floor(RATE * h)
        spend = RATE * CPA * (h if runaway_at is None or h <= runaway_at else runaway_at + 10 * (h - runaway_at))
        out.append(
            {
                "event_id": f"{cid}:{i}",
                "campaign_id": cid,
                "ts": str(LAUNCH + i * STEP),
                "spend": str(spend),
                "impressions": str(conv * 50),
                "clicks": str(conv * 2),
                "conversions": str(conv),
                "revenue": str(conv * AOV),
            }
        )
    return out


def test_mirror_metrics_follow_what_the_worker_does(fake: Any) -> None:
    for cid in ("steady", "runaway"):
        fake.set(f"{PREFIX}campaign:{cid}:projection", json.dumps(_projection(cid)))
    evs = _events("steady", 16) + _events("runaway", 16, runaway_at=6.0)
    evs.sort(key=lambda e: float(e["ts"]))
    evs.append(dict(evs[10]))  # a duplicate: ignored
    evs.append(
        {
            "event_id": "x",
            "campaign_id": "nobody",
            "ts": "1",
            "spend": "1",
            "impressions": "1",
            "clicks": "1",
            "conversions": "1",
            "revenue": "1",
        }
    )  # unknown campaign: dead letter
    evs.append({"event_id": "y", "campaign_id": "steady", "ts": "nan"})  # invalid: dead letter
    for e in evs:
        fake.xadd(f"{PREFIX}bids", e)
    names = (
        "synctwin_mirror_events_processed_total",
        "synctwin_mirror_events_dead_lettered_total",
        "synctwin_mirror_events_ignored_total",
        "synctwin_mirror_batches_total",
    )
    before = {n: metrics.sample(n) or 0.0 for n in names}
    pauses_before = metrics.sample("synctwin_pauses_total", {"reason": PAUSE_REASON}) or 0.0
    worker = redis_mirror(
        fake, get_settings(), prefix=PREFIX, consumer="t", batch=50, block_ms=None, clock=lambda: LAUNCH + 16 * 3600
    )
    worker.ensure_group()
    while worker.step():
        pass
    grown = {n: (metrics.sample(n) or 0.0) - before[n] for n in names}
    assert grown["synctwin_mirror_events_processed_total"] == len(evs) == worker.stats.events
    assert grown["synctwin_mirror_events_dead_lettered_total"] == 2
    assert grown["synctwin_mirror_events_ignored_total"] == worker.stats.ignored >= 1
    assert grown["synctwin_mirror_batches_total"] == worker.stats.batches
    assert worker.stats.pauses == 1
    assert metrics.sample("synctwin_pauses_total", {"reason": PAUSE_REASON}) == pauses_before + 1
    runaway = metrics.sample("synctwin_mirror_deviation", {"campaign_id": "runaway"})
    steady = metrics.sample("synctwin_mirror_deviation", {"campaign_id": "steady"})
    assert runaway is not None and steady is not None
    assert runaway > 0.15 > steady

    lag = metrics.MirrorLagCollector(fake, f"{PREFIX}bids", "synctwin-mirror")
    families = {f.name: f for f in lag.collect()}
    assert [s.value for s in families["synctwin_mirror_pending_events"].samples] == [0.0]


def test_a_campaign_no_longer_evaluated_loses_its_deviation_series() -> None:
    t0 = 1_000_000.0
    metrics.record_mirror({}, [("gone-campaign", 0.4), ("live-campaign", 0.05)], now=t0)
    assert metrics.sample("synctwin_mirror_deviation", {"campaign_id": "gone-campaign"}) == 0.4
    metrics.record_mirror({}, [("live-campaign", 0.06)], now=t0 + metrics.DEVIATION_STALE_S - 1)
    assert metrics.sample("synctwin_mirror_deviation", {"campaign_id": "gone-campaign"}) == 0.4  # not yet stale
    metrics.record_mirror({}, [("live-campaign", 0.07)], now=t0 + metrics.DEVIATION_STALE_S + 1)
    assert metrics.sample("synctwin_mirror_deviation", {"campaign_id": "gone-campaign"}) is None
    assert metrics.sample("synctwin_mirror_deviation", {"campaign_id": "live-campaign"}) == 0.07


CHAOS = {"runner": "chaos"}


def test_a_process_that_never_ran_a_drill_exports_no_drill_verdict() -> None:
    """serve, mirror and shadow import the metrics too: an unset 'last run passed' would read 0
    (failed) on the dashboard though no drill ever ran there."""
    code = (
        "from prometheus_client import generate_latest; from synctwin.infra import metrics; "
        "print(generate_latest(metrics.REGISTRY).decode())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "# TYPE synctwin_chaos_last_run_passed gauge" in out
    samples = [line for line in out.splitlines() if line and not line.startswith("#")]
    assert not [line for line in samples if line.startswith("synctwin_chaos_last_run")]


def test_known_series_exist_at_zero_before_their_first_event() -> None:
    """increase() over a series that appears with its first event misses that event (a dashboard
    showing 1 pause of 2): pauses by reason, gate decisions and shadow outcomes start at 0."""
    code = (
        "from prometheus_client import generate_latest; from synctwin.infra import metrics; "
        "print(generate_latest(metrics.REGISTRY).decode())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for reason in ("SYNCTWIN_DEVIATION_THRESHOLD", "MARGIN_GUARDIAN", "AUTO_ROLLBACK", "BUDGET_EMERGENCY"):
        assert f'synctwin_pauses_total{{reason="{reason}"}} 0.0' in out
    assert 'synctwin_gate_decisions_total{decision="REJECTED",risk_profile="CRITICAL"} 0.0' in out
    assert 'synctwin_shadow_outcomes_recorded_total{event_type="CAMPAIGN_OUTCOME"} 0.0' in out


def test_record_chaos_run_counts_verdicts_and_stamps_the_run() -> None:
    def result(name: str, passed: bool) -> Any:
        return SimpleNamespace(drill=SimpleNamespace(name=name), passed=passed)

    before = metrics.sample("synctwin_chaos_drills_total", {"drill": "market_shock", "verdict": "FAIL"}) or 0.0
    run = SimpleNamespace(results=[result("market_shock", False), result("api_outage", True)], wall_s=0.8)
    metrics.record_chaos_run(run, finished_at=1_700_000_000.0)
    assert metrics.sample("synctwin_chaos_drills_total", {"drill": "market_shock", "verdict": "FAIL"}) == before + 1
    assert metrics.sample("synctwin_chaos_last_run_timestamp_seconds", CHAOS) == 1_700_000_000.0
    assert metrics.sample("synctwin_chaos_last_run_passed", CHAOS) == 0.0
    assert metrics.sample("synctwin_chaos_last_run_duration_seconds", CHAOS) == 0.8
    metrics.record_chaos_run(SimpleNamespace(results=[result("api_outage", True)], wall_s=0.2))
    assert metrics.sample("synctwin_chaos_last_run_passed", CHAOS) == 1.0


# --- the dashboard ------------------------------------------------------------------------------------------------
def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_a_panel_queries_the_window_its_title_names_and_turns_green_at_its_goal() -> None:
    dashboard = json.loads((REPO / "dashboards" / "synctwin.json").read_text())
    windows = {"(7 days)": "[7d]", "(24 h)": "[1d]", "(1 h)": "[1h]"}
    checked = 0
    for panel in _panels(dashboard):
        for words, window in windows.items():
            if words in panel.get("title", ""):
                for target in panel.get("targets", []):
                    ranges = re.findall(r"\[[0-9]+[smhdw]\]", target["expr"])
                    assert ranges and set(ranges) == {window}, (panel["title"], target["expr"])
                    checked += 1
    assert checked >= 2
    rate = next(p for p in _panels(dashboard) if p.get("title", "").startswith("Chaos pass rate"))
    green = [
        step["value"] for step in rate["fieldConfig"]["defaults"]["thresholds"]["steps"] if step["color"] == "green"
    ]
    assert green == [0.95]  # the goal synctwin kpis holds the drills to (> 95%)


def test_the_dashboard_only_queries_metrics_we_export() -> None:
    dashboard = json.loads((REPO / "dashboards" / "synctwin.json").read_text())
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    known = metrics.metric_names()
    queried = set()
    panels = [p for p in _panels(dashboard) if p.get("type") != "row"]
    assert len(panels) >= 6
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\bsynctwin_[a-z0-9_]+", target["expr"]))
            assert names, (panel["title"], target["expr"])
            assert names <= known, (panel["title"], names - known)
            queried |= names
    for wanted in (
        "synctwin_gate_decisions_total",
        "synctwin_gate_latency_seconds_bucket",
        "synctwin_mirror_events_processed_total",
        "synctwin_pauses_total",
        "synctwin_chaos_drills_total",
    ):
        assert wanted in queried


# --- the real commands ----------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[str], timeout: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the process exited with {proc.returncode}: {proc.communicate()}")
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer in {timeout} s")


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise


@pytest.mark.parametrize("workers", [1, 2])
def test_synctwin_serve_answers_and_stops_on_sigterm(workers: int) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCTWIN_", "PROMETHEUS_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "synctwin.app.cli", "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        assert _wait_http(f"{base}/healthz", proc).json()["status"] == "ok"
        for _ in range(3):
            r = httpx.post(f"{base}/v1/simulate", json=body(), timeout=30)
            assert r.status_code == 200, r.text
        text = httpx.get(f"{base}/metrics", timeout=5).text
        # with several workers any one answers for all of them (prometheus multiprocess mode)
        count = re.search(r'^synctwin_gate_latency_seconds_count\{model="curve"\} (\S+)$', text, re.M)
        assert count and float(count.group(1)) == 3.0, text[:2000]
    finally:
        code = _stop(proc)
    assert code == 0, proc.communicate()


def test_serve_refuses_a_port_in_use_with_one_line(capsys: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert main(["serve", "--port", str(s.getsockname()[1])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("synctwin serve: error: cannot listen on 127.0.0.1:") and "Traceback" not in err


@pytest.mark.redis
def test_synctwin_mirror_serves_its_metrics(redis_server: Any, redis_client: Any) -> None:
    redis_client.set(f"{PREFIX}campaign:steady:projection", json.dumps(_projection("steady")))
    for e in _events("steady", 4):
        redis_client.xadd(f"{PREFIX}bids", e)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCTWIN_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "synctwin.app.cli",
            "mirror",
            "--redis",
            redis_server.url,
            "--metrics-port",
            str(port),
            "--quiet",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline:
            text = _wait_http(url, proc).text
            if re.search(r"^synctwin_mirror_events_processed_total 48\.0$", text, re.M):
                break
            time.sleep(0.1)
        assert re.search(r"^synctwin_mirror_events_processed_total 48\.0$", text, re.M), text[:3000]
        assert re.search(r'^synctwin_mirror_pending_events\{group="synctwin-mirror"\} 0\.0$', text, re.M)
        assert re.search(r'^synctwin_mirror_stream_lag\{group="synctwin-mirror"\} 0\.0$', text, re.M)
        assert 'synctwin_mirror_deviation{campaign_id="steady"}' in text
    finally:
        code = _stop(proc)
    assert code == 0, proc.communicate()


def test_settings_carry_the_service_defaults_and_hide_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SYNCTWIN_"):
            monkeypatch.delenv(name)
    s = Settings()
    assert (s.host, s.port, s.service_max_paths, s.max_body_bytes) == ("127.0.0.1", 8000, 200_000, 1_048_576)
    assert s.api_key is None
    monkeypatch.setenv("SYNCTWIN_API_KEY", "hunter2-secret")
    s = Settings()
    assert s.api_key is not None and s.api_key.get_secret_value() == "hunter2-secret"
    assert "hunter2" not in repr(s)


def test_metrics_export_the_success_metrics_from_the_audit_stream(fake: fakeredis.FakeRedis) -> None:
    """The dashboard's success-metrics row: the service sets the KPI gauges from the audit stream at
    scrape time (only `synctwin kpis` did, once); without Redis nothing is computed."""
    from agents.syncshield.backends import RedisAuditStore
    from synctwin.infra import metrics

    store = RedisAuditStore(fake, key="synctwin:audit")
    for cid, kind in (("k1", "CAMPAIGN_APPROVED"), ("k2", "CAMPAIGN_APPROVED"), ("k3", "CAMPAIGN_REJECTED")):
        store.append(kind, campaign_id=cid)
    store.append("CHAOS_TEST_COMPLETED", metadata={"total_tests": 4, "passed": 3, "failed": 1})
    text = _client(redis_client=fake).get("/metrics").text
    assert 'synctwin_kpi_value{kpi="rejection_share"} 0.3333333333333333' in text
    assert 'synctwin_kpi_count{kpi="chaos_pass_rate"} 3.0' in text
    assert metrics.sample("synctwin_kpi_goal_met", {"kpi": "chaos_pass_rate"}) == 0.0
