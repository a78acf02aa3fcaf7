"""Shadow mode and live outcomes in production (`synctwin shadow`: the Council with shadow mode alone).

A crafted world, exact in binary arithmetic: live campaigns launched at midnight publish their
cumulative counters every hour; on Meta they meet a rich market (CPM 5, CTR 2%, 5% of clicks
convert, orders of 80), on TikTok a poor one (CPM 20, CTR 0.5%, 5%, orders of 20). Two rejected
strategies, one per platform, planned with the *opposite* rates, so a shadow that ignored the
observed market would reverse both verdicts. fakeredis runs the worker in-process; the
@redis tests run `synctwin shadow` processes against the session's own redis-server.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fakeredis
import numpy as np
import pytest
import simpy
from worker_processes import REPO, start_worker, stop_worker, synctwin_cmd, worker_env

from agents.council.redis import RedisCouncil, redis_council, redis_shadow
from agents.syncshield.backends import RedisAuditStore, verify_redis
from agents.synctwin.gate.gatekeeper import SimulationGatekeeper
from agents.synctwin.gate.outcomes import CAMPAIGN_OUTCOME, net_profit_uplift
from agents.synctwin.shadow.agent import SHADOW_OUTCOME, MarketDay, ShadowAgent, simulate_day
from agents.synctwin.shadow.store import ShadowStats, day_of, iso, market_key, market_sums, observed_market
from agents.syncvalue.baseline import compute_baseline
from harness.evaluation.tuning import live_evidence
from synctwin.app.cli import main
from synctwin.app.commands.kpis import kpis
from synctwin.infra import metrics
from synctwin.kernel.config import get_settings
from synctwin.kernel.history import load_history
from synctwin.kernel.messages import BidBatch
from synctwin.kernel.models import Strategy
from synctwin.services.publishing import publish_plan, record_decision

PREFIX = "synctwin:"
HISTORY = load_history(REPO / "tests" / "data" / "history_90d.csv")
LAUNCH = 1_767_225_600.0  # 2026-01-01 00:00 UTC
DAY0 = day_of(LAUNCH + 1)
HOUR = 3600.0
# per hour of a live campaign: spend, impressions, clicks, conversions, revenue
RICH = (10.0, 2000.0, 40.0, 2.0, 160.0)  # Meta: CPM 5, CTR 2%, 5% of clicks convert, AOV 80
POOR = (20.0, 1000.0, 5.0, 0.25, 5.0)  # TikTok: CPM 20, CTR 0.5%, 5%, AOV 20
RICH_RATES = {"cpm": 5.0, "ctr": 0.02, "cvr_click": 0.05, "avg_order_value": 80.0}
POOR_RATES = {"cpm": 50.0, "ctr": 0.005, "cvr_click": 0.01, "avg_order_value": 20.0}
BASE = {"daily_revenue": 2000.0, "daily_spend": 500.0}
_GATE = SimulationGatekeeper()


def gated(strategy: Strategy, decision: str, rates: dict[str, float]) -> Any:
    """A real gate result for `strategy`, with the decision and baseline a test needs."""
    result = _GATE.evaluate(strategy, compute_baseline(HISTORY), seed=1, paths=2_000)
    return result.model_copy(update={"decision": decision, "baseline": {**result.baseline, **BASE, **rates}})


def strategy(cid: str, platform: str, **kw: Any) -> Strategy:
    fields = {
        "campaign_id": cid,
        "client_id": f"client-{cid}",
        "platform": platform,
        "audience_size": 10_000_000,
        "cvr": 0.01,
        "daily_budget": 1000.0,
        "duration_days": 2,
        "gross_margin": 0.5,
        "launch_ts": LAUNCH,
    }
    return Strategy(**(fields | kw))


def reject(client: Any, cid: str, platform: str, planned: dict[str, float], prefix: str = PREFIX) -> Strategy:
    s = strategy(cid, platform)
    record_decision(gated(s, "REJECTED", planned), client=client, prefix=prefix, strategy=s)
    return s


def approve(client: Any, cid: str, platform: str, prefix: str = PREFIX) -> Strategy:
    s = strategy(cid, platform, daily_budget=240.0)
    result = gated(s, "APPROVED", RICH_RATES)
    record_decision(result, client=client, prefix=prefix, strategy=s)
    publish_plan(client, prefix, s, HISTORY, result)
    return s


def events(cid: str, per_hour: tuple[float, ...], hours: int, *, stop_at: float | None = None) -> list[dict[str, Any]]:
    """Cumulative counters every hour since LAUNCH; after `stop_at` hours they stop growing (a pause)."""
    out = []
    for h in range(1, hours + 1):
        k = h if stop_at is None else min(h, stop_at)
        values = [v * k for v in per_hour]
        out.append(
            {
                "event_id": f"{cid}:{h}",
                "campaign_id": cid,
                "ts": LAUNCH + h * HOUR,
                **dict(zip(("spend", "impressions", "clicks", "conversions", "revenue"), values, strict=True)),
            }
        )
    return out


def publish(client: Any, evs: list[dict[str, Any]], prefix: str = PREFIX) -> None:
    pipe = client.pipeline(transaction=False)
    for e in evs:
        pipe.xadd(f"{prefix}bids", {k: str(v) for k, v in e.items()})
    pipe.execute()


def world(client: Any, prefix: str = PREFIX, hours: int = 50) -> list[dict[str, Any]]:
    """Two rejections (their plans reversed), four approved live campaigns (one paused by the mirror,
    one by a PAUSE command only), one approved campaign that never delivers; the bid stream."""
    reject(client, "rej-meta", "meta", POOR_RATES, prefix)
    reject(client, "rej-tiktok", "tiktok", RICH_RATES, prefix)
    for cid, platform in (
        ("live-meta", "meta"),
        ("live-tiktok", "tiktok"),
        ("live-paused", "meta"),
        ("live-ctl", "meta"),
        ("live-silent", "meta"),
    ):
        approve(client, cid, platform, prefix)
    client.hset(
        f"{prefix}campaign:live-paused:mirror",
        mapping={
            "status": "PAUSED",
            "paused_at": str(10 * HOUR),
            "launch_ts": repr(LAUNCH),
            "pause_reason": "overspend",
        },
    )  # the mirror's own word; the outcome names the pause command's reason
    client.xadd(
        f"{prefix}control",
        {"command": "PAUSE", "campaign_id": "live-ctl", "reason": "MANUAL", "ts": str(LAUNCH + 5 * HOUR)},
    )
    evs = (
        events("live-meta", RICH, hours)
        + events("live-tiktok", POOR, hours)
        + events("live-paused", RICH, hours, stop_at=10)
        + events("live-ctl", RICH, hours, stop_at=5)
        + events("stranger", RICH, hours)
    )  # no published plan: ignored
    evs.sort(key=lambda e: (e["ts"], e["campaign_id"]))
    return evs


def audit(client: Any, prefix: str = PREFIX) -> list[dict[str, Any]]:
    return RedisAuditStore(client, key=f"{prefix}audit").records()


def of_type(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in records if r["event_type"] == kind]


def rates(m: MarketDay | None) -> tuple[float, ...]:
    assert m is not None
    return (m.cpm, m.ctr, m.cvr, m.aov)


def shadow_worker(client: Any, **kw: Any) -> RedisCouncil:
    """`synctwin shadow --redis`'s worker (`redis_shadow`: the Council with shadow mode alone)."""
    return redis_shadow(client, get_settings(), **kw)


def run_once(worker: RedisCouncil) -> ShadowStats:
    """Drain the stream (`--once`), settling without grace at the end; shadow mode's counters."""
    worker.run(lambda: False, once=True)
    assert worker.shadow is not None
    return worker.shadow.stats


@pytest.fixture
def fake() -> Any:
    return fakeredis.FakeRedis(decode_responses=True)


# ------------------------------------------------------------------------------ the market (fakeredis)
def test_the_market_is_each_days_delivery_whatever_the_order_duplicates_or_redeliveries(fake: Any) -> None:
    evs = world(fake)
    publish(fake, evs)
    worker = shadow_worker(fake, block_ms=None, grace_s=0)
    stats = run_once(worker)
    assert stats.unknown == 50 and stats.applied == 4 * 50 and stats.invalid == 0
    meta_day0, n = market_sums(fake, PREFIX, "meta", DAY0)
    # hours 1..24 (the event at midnight closes day 0): live-meta 24 h, live-paused 10 h, live-ctl 5 h
    assert n == 3 and meta_day0 == {m: v * (24 + 10 + 5) for m, v in zip(meta_day0, RICH, strict=True)}
    meta_day1, _ = market_sums(fake, PREFIX, "meta", DAY0 + 1)
    assert meta_day1["spend"] == RICH[0] * 24  # the paused ones delivered nothing more
    assert rates(observed_market(fake, PREFIX, "meta", DAY0)) == pytest.approx((5.0, 0.02, 0.05, 80.0), rel=1e-12)
    assert rates(observed_market(fake, PREFIX, "tiktok", DAY0 + 1)) == pytest.approx(
        (20.0, 0.005, 0.05, 20.0), rel=1e-12
    )
    assert observed_market(fake, PREFIX, "google", DAY0) is None
    # the same events shuffled, each twice, in small batches, into a second namespace: the same keys
    other = "again:"
    world(fake, other)
    shuffled = evs + evs
    random.Random(7).shuffle(shuffled)
    publish(fake, shuffled, other)
    again = shadow_worker(fake, prefix=other, block_ms=None, grace_s=0, batch=7)
    run_once(again)
    for platform in ("meta", "tiktok"):
        for day in range(DAY0, DAY0 + 3):
            assert fake.zrange(market_key(other, platform, day), 0, -1, withscores=True) == fake.zrange(
                market_key(PREFIX, platform, day), 0, -1, withscores=True
            )
            assert market_sums(fake, other, platform, day) == market_sums(fake, PREFIX, platform, day)
    # and processing everything again changes nothing
    before = {k: fake.zrange(k, 0, -1, withscores=True) for k in fake.keys(f"{PREFIX}market:*")}
    worker.process(
        [(f"0-{i}", {k.encode(): str(v).encode() for k, v in e.items()}) for i, e in enumerate(evs, start=1)]
    )
    assert {k: fake.zrange(k, 0, -1, withscores=True) for k in fake.keys(f"{PREFIX}market:*")} == before


def test_the_market_the_worker_learns_is_the_simpy_agents(fake: Any) -> None:
    """One arithmetic: the same cumulative series as BidBatch messages and as bid events."""
    env = simpy.Environment()
    bids, sink = simpy.Store(env), simpy.Store(env)
    agent = ShadowAgent(env, bids=bids, audit=sink, platform_of={"a": "meta", "b": "meta"})
    rates = {"a": np.array([7.0, 1500, 30, 1.5, 99]), "b": np.array([3.0, 900, 11, 0.5, 41])}

    def feed() -> Any:
        for h in range(1, 51):
            yield env.timeout(HOUR)
            cols = np.array([rates["a"] * h, rates["b"] * (h if h < 30 else 29)]).T
            bids.put(BidBatch(env.now, LAUNCH + env.now, ("a", "b"), *cols))

    env.process(feed())
    env.run(until=51 * HOUR)
    for cid in ("a", "b"):
        fake.set(f"{PREFIX}campaign:{cid}:strategy", json.dumps({"platform": "meta"}))
        fake.set(f"{PREFIX}campaign:{cid}:projection", json.dumps({"launch_ts": LAUNCH, "horizon_days": 2}))
        publish(fake, events(cid, tuple(float(x) for x in rates[cid]), 50, stop_at=29 if cid == "b" else None))
    run_once(shadow_worker(fake, block_ms=None))
    for day in (0, 1):
        ours, theirs = observed_market(fake, PREFIX, "meta", DAY0 + day), agent.market[("meta", day)]
        for name in ("cpm", "ctr", "cvr", "aov"):
            assert getattr(ours, name) == pytest.approx(getattr(theirs, name), rel=1e-12)


def test_unknown_invalid_and_pre_launch_events_are_acknowledged_and_counted(fake: Any) -> None:
    approve(fake, "live-meta", "meta")
    publish(fake, events("live-meta", RICH, 3) + events("nobody", RICH, 2))
    fake.xadd(f"{PREFIX}bids", {"event_id": "x", "campaign_id": "live-meta", "ts": "soon"})
    fake.xadd(
        f"{PREFIX}bids",
        {
            "event_id": "y",
            "campaign_id": "live-meta",
            "ts": str(LAUNCH - 60),
            "spend": "1",
            "impressions": "1",
            "clicks": "1",
            "conversions": "1",
            "revenue": "1",
        },
    )
    worker = shadow_worker(fake, block_ms=None)
    before = metrics.sample("synctwin_shadow_events_ignored_total", {"why": "unknown_campaign"}) or 0.0
    stats = run_once(worker)
    assert (stats.events, stats.applied, stats.unknown, stats.invalid, stats.before_launch) == (7, 3, 2, 1, 1)
    assert fake.xpending(f"{PREFIX}bids", "synctwin-shadow")["pending"] == 0
    assert metrics.sample("synctwin_shadow_events_ignored_total", {"why": "unknown_campaign"}) == before + 2


# ------------------------------------------------------------------------------ outcomes (fakeredis)
def expected_shadow(per_day: MarketDay, days: int = 2) -> dict[str, float]:
    s = strategy("x", "meta")
    spend, _conv, rev = simulate_day(s, per_day)
    uplift = net_profit_uplift(days * rev, days * spend, days, BASE, s.gross_margin)
    return {"spend": days * spend, "revenue": days * rev, "net_profit_uplift": uplift}


def test_shadow_outcomes_follow_the_observed_market_once_per_campaign_day(fake: Any) -> None:
    publish(fake, world(fake))
    first = shadow_worker(fake, block_ms=None, grace_s=HOUR)
    run_once(first)
    records = audit(fake)
    shadows = of_type(records, SHADOW_OUTCOME)
    assert sorted((r["campaign_id"], r["metadata"]["date"]) for r in shadows) == [
        ("rej-meta", iso(DAY0)),
        ("rej-meta", iso(DAY0 + 1)),
        ("rej-tiktok", iso(DAY0)),
        ("rej-tiktok", iso(DAY0 + 1)),
    ]
    final = {r["campaign_id"]: r["metadata"] for r in shadows if r["metadata"]["final"]}
    rich = expected_shadow(MarketDay(cpm=5.0, ctr=0.02, cvr=0.05, aov=80.0))
    poor = expected_shadow(MarketDay(cpm=20.0, ctr=0.005, cvr=0.05, aov=20.0))
    # the rejection on Meta would have made money under Meta's observed market (its plan said not) ...
    assert final["rej-meta"]["profitable"] is True and final["rej-meta"]["market_days_observed"] == 2
    assert final["rej-meta"]["net_profit_uplift"] == pytest.approx(rich["net_profit_uplift"], abs=0.01) == 13_000
    assert final["rej-meta"]["spend"] == rich["spend"] == 2000
    assert final["rej-meta"]["revenue"] == pytest.approx(rich["revenue"]) == 32_000
    # ... the one on TikTok would have lost money (its plan promised the opposite)
    assert final["rej-tiktok"]["profitable"] is False
    assert final["rej-tiktok"]["net_profit_uplift"] == pytest.approx(poor["net_profit_uplift"], abs=0.01) == -2750
    assert final["rej-meta"]["days"] == 2 and final["rej-meta"]["threshold"] == 0.85
    assert 0 <= final["rej-meta"]["confidence_score"] <= 1
    assert fake.zcard(f"{PREFIX}shadow:pending") == 0
    # a second worker, a restart, settling again: nothing is recorded twice
    run_once(shadow_worker(fake, consumer="other", block_ms=None, grace_s=0))
    first.shadow.settle(final=True)
    assert len(of_type(audit(fake), SHADOW_OUTCOME)) == 4
    assert verify_redis(fake, f"{PREFIX}audit").ok


def test_a_day_closes_only_when_a_later_event_arrives_and_the_grace_has_passed(fake: Any) -> None:
    evs = world(fake)
    publish(fake, [e for e in evs if e["ts"] <= LAUNCH + 24 * HOUR])  # day 0 complete, nothing after it
    worker = shadow_worker(fake, block_ms=None, grace_s=1.5 * HOUR)
    worker.ensure_group()
    while worker.step(block=False):
        pass
    worker.shadow.settle()
    assert of_type(audit(fake), SHADOW_OUTCOME) == []  # no later event yet: day 0 may still get events
    publish(fake, [e for e in evs if LAUNCH + 24 * HOUR < e["ts"] <= LAUNCH + 25 * HOUR])
    while worker.step(block=False):
        pass
    worker.shadow.settle()
    assert of_type(audit(fake), SHADOW_OUTCOME) == []  # 01:00 of day 1: within the grace of 90 minutes
    publish(fake, [e for e in evs if LAUNCH + 25 * HOUR < e["ts"] <= LAUNCH + 26 * HOUR])
    while worker.step(block=False):
        pass
    worker.shadow.settle()
    shadows = of_type(audit(fake), SHADOW_OUTCOME)
    assert sorted(r["campaign_id"] for r in shadows) == ["rej-meta", "rej-tiktok"]
    assert all(r["metadata"]["date"] == iso(DAY0) and r["metadata"]["final"] is False for r in shadows)


def test_a_day_without_a_market_on_the_platform_uses_the_plans_rates(fake: Any) -> None:
    s = reject(fake, "rej-google", "google", RICH_RATES)
    approve(fake, "live-meta", "meta")
    publish(fake, events("live-meta", RICH, 50))  # nothing live on Google
    run_once(shadow_worker(fake, block_ms=None))
    [day0, day1] = of_type(audit(fake), SHADOW_OUTCOME)
    assert day1["metadata"]["final"] is True and day1["metadata"]["market_days_observed"] == 0
    _spend, _conv, rev = simulate_day(s, MarketDay(cpm=5.0, ctr=0.02, cvr=0.05, aov=80.0))
    assert day1["metadata"]["revenue"] == pytest.approx(2 * rev) and day0["metadata"]["days"] == 1


def test_one_campaign_outcome_per_approved_campaign_at_its_flights_end_or_pause(fake: Any) -> None:
    publish(fake, world(fake))
    run_once(shadow_worker(fake, block_ms=None))
    shadow_worker(fake, consumer="again", block_ms=None).shadow.settle(final=True)
    outcomes = {r["campaign_id"]: r for r in of_type(audit(fake), CAMPAIGN_OUTCOME)}
    assert sorted(outcomes) == ["live-ctl", "live-meta", "live-paused", "live-tiktok"]  # live-silent never ran
    assert len(of_type(audit(fake), CAMPAIGN_OUTCOME)) == 4
    m = outcomes["live-meta"]["metadata"]
    assert outcomes["live-meta"]["reason"] == "FLIGHT_ENDED" and m["days"] == 2 and m["final"] is True
    assert m["spend"] == RICH[0] * 48 and m["revenue"] == RICH[4] * 48  # within its flight: 48 of 50 hours
    assert m["net_profit_uplift"] == pytest.approx(net_profit_uplift(RICH[4] * 48, RICH[0] * 48, 2, BASE, 0.5))
    assert m["net_profit_uplift"] == 2360 and m["profitable"] is True  # (7,680 - 4,000) * 0.5 - (480 - 1,000)
    t = outcomes["live-tiktok"]["metadata"]
    assert t["net_profit_uplift"] == -1840 and t["profitable"] is False and t["spend"] == POOR[0] * 48
    p = outcomes["live-paused"]
    assert p["reason"] == "PAUSED" and p["metadata"]["pause_reason"] == "SYNCTWIN_DEVIATION_THRESHOLD"
    assert p["metadata"]["days"] == pytest.approx(10 / 24, abs=1e-4) and p["metadata"]["spend"] == RICH[0] * 10
    c = outcomes["live-ctl"]
    assert c["reason"] == "PAUSED" and c["metadata"]["pause_reason"] == "MANUAL"
    assert c["metadata"]["days"] == pytest.approx(5 / 24, abs=1e-4)
    assert c["metadata"]["net_profit_uplift"] == pytest.approx(
        net_profit_uplift(RICH[4] * 5, RICH[0] * 5, 5 / 24, BASE, 0.5), abs=0.01
    )
    assert c["metadata"]["profitable"] is True
    assert fake.zcard(f"{PREFIX}outcome:pending") == 0
    # kpis and tune read them: 1 of the 4 approved campaigns lost money
    k = kpis(audit(fake))
    assert (k["false_positive_rate"]["count"], k["false_positive_rate"]["of"]) == (1, 4)
    assert k["false_negative_rate"]["count"] == 1 and k["false_negative_rate"]["of"] == 2
    assert sorted((e.name, e.profitable) for e in live_evidence(audit(fake))) == [
        ("live-ctl", True),
        ("live-meta", True),
        ("live-paused", True),
        ("live-tiktok", False),
    ]


def test_an_outcome_waits_for_the_flight_or_the_pause_and_its_grace(fake: Any) -> None:
    evs = world(fake)
    publish(fake, [e for e in evs if e["ts"] <= LAUNCH + 48 * HOUR])
    worker = shadow_worker(fake, block_ms=None, grace_s=HOUR)
    worker.ensure_group()
    while worker.step(block=False):
        pass
    worker.shadow.settle()
    done = {r["campaign_id"] for r in of_type(audit(fake), CAMPAIGN_OUTCOME)}
    assert done == {"live-paused", "live-ctl"}  # their pauses are long past; the flights end at 48 h + 1 h
    publish(fake, [e for e in evs if e["ts"] > LAUNCH + 48 * HOUR])
    while worker.step(block=False):
        pass
    worker.shadow.settle()
    assert {r["campaign_id"] for r in of_type(audit(fake), CAMPAIGN_OUTCOME)} == done | {"live-meta", "live-tiktok"}


def test_a_new_plan_for_the_same_campaign_gets_its_own_outcome(fake: Any) -> None:
    approve(fake, "live-meta", "meta")
    publish(fake, events("live-meta", RICH, 50))
    run_once(shadow_worker(fake, block_ms=None))
    assert len(of_type(audit(fake), CAMPAIGN_OUTCOME)) == 1
    s = strategy("live-meta", "meta", launch_ts=LAUNCH + 3 * 86_400, daily_budget=240.0)
    publish_plan(fake, PREFIX, s, HISTORY, gated(s, "APPROVED", RICH_RATES))
    assert fake.get(f"{PREFIX}campaign:live-meta:outcome") is None
    publish(
        fake,
        [e | {"event_id": f"2:{e['event_id']}", "ts": e["ts"] + 3 * 86_400} for e in events("live-meta", RICH, 50)],
    )
    run_once(shadow_worker(fake, block_ms=None))
    launches = [r["metadata"]["launch_ts"] for r in of_type(audit(fake), CAMPAIGN_OUTCOME)]
    assert launches == [LAUNCH, LAUNCH + 3 * 86_400]


def test_publishing_keeps_what_shadow_and_outcomes_need(fake: Any) -> None:
    s = reject(fake, "rej-meta", "meta", POOR_RATES)
    doc = json.loads(fake.get(f"{PREFIX}campaign:rej-meta:rejection"))
    assert doc["strategy"]["daily_budget"] == 1000.0 and doc["launch_ts"] == LAUNCH
    assert doc["baseline"]["daily_revenue"] == 2000.0 and doc["baseline"]["cpm"] == 50.0
    assert 0 <= doc["confidence_score"] <= 1 and doc["threshold"] == 0.85
    assert fake.zscore(f"{PREFIX}shadow:pending", "rej-meta") == LAUNCH
    [rec] = audit(fake)
    assert (
        rec["event_type"] == "CAMPAIGN_REJECTED"
        and rec["metadata"]["strategy"] == s.model_dump(mode="json", exclude_none=True)
        and rec["metadata"]["launch_ts"] == LAUNCH
    )
    assert "projection" not in rec["metadata"]
    approve(fake, "ok", "meta")
    gate = json.loads(fake.get(f"{PREFIX}campaign:ok:gate"))
    assert gate["decision"] == "APPROVED" and gate["baseline"]["daily_spend"] == 500.0 and gate["launch_ts"] == LAUNCH
    assert fake.zscore(f"{PREFIX}outcome:pending", "ok") == LAUNCH
    assert json.loads(fake.get(f"{PREFIX}campaign:ok:projection"))["launch_ts"] == LAUNCH  # unchanged keys
    assert json.loads(fake.get(f"{PREFIX}campaign:ok:strategy"))["campaign_id"] == "ok"


# ------------------------------------------------------------------------------ the command line
def test_cli_bad_input_exits_2_with_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cases = [
        ([], "give --redis URL"),
        (["--redis", "redis://x", "--market", "m.csv"], "not both"),
        (["--market", str(tmp_path / "none.csv"), "--audit-log", str(tmp_path / "a.jsonl")], "no such market file"),
        (["--redis", "redis://127.0.0.1:1/0"], "cannot reach Redis"),
        (["--redis", "redis://127.0.0.1:1/0", "--batch", "0"], "--batch must be positive"),
        (["--redis", "redis://127.0.0.1:1/0", "--grace", "soon"], "not a duration"),
    ]
    for argv, needle in cases:
        assert main(["shadow", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1 and "Traceback" not in err, (argv, err)


def _market_csv(path: Path, days: list[str], rows: dict[str, str]) -> Path:
    path.write_text(
        "date,platform,cpm,ctr,cvr,aov\n" + "".join(f"{d},{p},{r}\n" for d in days for p, r in rows.items())
    )
    return path


def test_cli_market_file_appends_final_shadow_outcomes_once(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    for cid, platform, planned in (("rej-meta", "meta", POOR_RATES), ("rej-tiktok", "tiktok", RICH_RATES)):
        s = strategy(cid, platform)
        record_decision(gated(s, "REJECTED", planned), audit_log=str(log), strategy=s)
    s = strategy("later", "meta", launch_ts=LAUNCH + 5 * 86_400)
    record_decision(gated(s, "REJECTED", POOR_RATES), audit_log=str(log), strategy=s)
    from agents.syncshield.backends import JsonlAuditStore

    JsonlAuditStore(log).append("CAMPAIGN_REJECTED", campaign_id="old", metadata={"confidence_score": 0.5})
    market = _market_csv(
        tmp_path / "m.csv",
        ["2026-01-01", "2026-01-02", "2026-01-03"],
        {"meta": "5,0.02,0.05,80", "tiktok": "20,0.005,0.05,20"},
    )
    assert main(["shadow", "--market", str(market), "--audit-log", str(log), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sorted(r["campaign_id"] for r in out["appended"]) == ["rej-meta", "rej-tiktok"]
    assert out["in_progress"] == ["later"] and out["without_strategy"] == ["old"]
    shadows = {
        r["campaign_id"]: r["metadata"] for r in JsonlAuditStore(log).records() if r["event_type"] == SHADOW_OUTCOME
    }
    assert shadows["rej-meta"]["profitable"] is True and shadows["rej-meta"]["net_profit_uplift"] == 13_000
    assert shadows["rej-tiktok"]["profitable"] is False and shadows["rej-tiktok"]["net_profit_uplift"] == -2750
    assert main(["shadow", "--market", str(market), "--audit-log", str(log)]) == 0  # idempotent
    assert "0 SHADOW_OUTCOME appended" in capsys.readouterr().out
    assert len([r for r in JsonlAuditStore(log).records() if r["event_type"] == SHADOW_OUTCOME]) == 2
    assert main(["audit", "verify", str(log)]) == 0
    capsys.readouterr()
    # a gap in the market file: exit 2 naming the date, nothing appended
    gap = _market_csv(tmp_path / "gap.csv", ["2026-01-01", "2026-01-03"], {"meta": "5,0.02,0.05,80"})
    size = log.stat().st_size
    assert main(["shadow", "--market", str(gap), "--audit-log", str(log)]) == 2
    err = capsys.readouterr().err
    assert "2026-01-02" in err and err.count("\n") == 1 and log.stat().st_size == size
    # a flight the file does not cover (its first day): exit 2 naming it, nothing appended
    late = _market_csv(
        tmp_path / "late.csv",
        ["2026-01-02", "2026-01-03", "2026-01-04", "2026-01-05", "2026-01-06", "2026-01-07"],
        {"meta": "5,0.02,0.05,80"},
    )
    log2 = tmp_path / "audit2.jsonl"
    s = strategy("rej-meta", "meta")
    record_decision(gated(s, "REJECTED", POOR_RATES), audit_log=str(log2), strategy=s)
    size = log2.stat().st_size
    assert main(["shadow", "--market", str(late), "--audit-log", str(log2)]) == 2
    err = capsys.readouterr().err
    assert "rej-meta" in err and "2026-01-01" in err and log2.stat().st_size == size


# ------------------------------------------------------------------------------ real redis-server
def start(url: str, consumer: str, *extra: str) -> subprocess.Popen[str]:
    return start_worker("shadow", url, consumer, "--batch", "20", *extra)


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def big_world(client: Any, prefix: str = PREFIX, copies: int = 6) -> list[dict[str, Any]]:
    """`copies` of every campaign of `world`, every 5 minutes: enough events to kill a worker among."""
    evs = []
    for k in range(copies):
        for cid, platform, planned in (("rej-meta", "meta", POOR_RATES), ("rej-tiktok", "tiktok", RICH_RATES)):
            reject(client, f"{cid}-{k}", platform, planned, prefix)
        for cid, platform, rates in (("live-meta", "meta", RICH), ("live-tiktok", "tiktok", POOR)):
            approve(client, f"{cid}-{k}", platform, prefix)
            for e in events(f"{cid}-{k}", tuple(v / 12 for v in rates), 50 * 12):
                evs.append(e | {"event_id": f"{e['event_id']}", "ts": LAUNCH + (e["ts"] - LAUNCH) / 12})
    evs.sort(key=lambda e: (e["ts"], e["campaign_id"]))
    return evs


def group_drained(client: Any, group: str = "synctwin-shadow") -> bool:
    last = client.xinfo_stream(f"{PREFIX}bids")["last-generated-id"]
    g = next((g for g in client.xinfo_groups(f"{PREFIX}bids") if g["name"] == group), None)
    return g is not None and g["pending"] == 0 and g["last-delivered-id"] == last


@pytest.mark.redis
def test_kill_9_mid_stream_then_restart_counts_nothing_twice(redis_server: Any, redis_client: Any) -> None:
    evs = big_world(redis_client)
    publish(redis_client, evs)
    doomed = start(redis_server.url, "doomed")
    try:
        wait_for(
            lambda: any(g["last-delivered-id"] != "0-0" for g in redis_client.xinfo_groups(f"{PREFIX}bids")),
            30,
            "the first worker to start consuming",
        )
    finally:
        doomed.kill()  # SIGKILL, mid-stream
        doomed.communicate(timeout=10)
    assert not group_drained(redis_client)
    rescue = subprocess.run(
        [
            *synctwin_cmd(),
            "shadow",
            "--redis",
            redis_server.url,
            "--consumer",
            "rescuer",
            "--once",
            "--claim-idle-ms",
            "0",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=worker_env(),
        timeout=120,
    )
    assert rescue.returncode == 0, rescue.stderr[-2000:]
    assert "SHADOW_OUTCOME" in rescue.stdout and "Traceback" not in rescue.stderr
    assert group_drained(redis_client)
    # a single clean pass over the same events, in its own namespace
    clean = "clean:"
    publish(redis_client, big_world(redis_client, clean), clean)
    run_once(shadow_worker(redis_client, prefix=clean, block_ms=None, grace_s=0))
    for platform in ("meta", "tiktok"):
        for day in range(DAY0, DAY0 + 3):
            assert market_sums(redis_client, PREFIX, platform, day) == market_sums(redis_client, clean, platform, day)
            assert redis_client.zrange(
                market_key(PREFIX, platform, day), 0, -1, withscores=True
            ) == redis_client.zrange(market_key(clean, platform, day), 0, -1, withscores=True)
    sums, n = market_sums(redis_client, PREFIX, "meta", DAY0)
    assert n == 6 and sums["spend"] == pytest.approx(6 * 24 * RICH[0])  # each campaign's day counted once

    def outcomes(prefix: str) -> list[tuple[str, str, float]]:
        return sorted(
            (r["campaign_id"], r["event_type"], r["metadata"]["net_profit_uplift"])
            for r in audit(redis_client, prefix)
            if r["event_type"] in (SHADOW_OUTCOME, CAMPAIGN_OUTCOME)
        )

    assert outcomes(PREFIX) == outcomes(clean) and len(outcomes(PREFIX)) == 6 * (2 * 2 + 2)


@pytest.mark.redis
def test_two_workers_record_each_outcome_exactly_once_and_stop_on_sigterm(redis_server: Any, redis_client: Any) -> None:
    evs = big_world(redis_client, copies=8)
    workers = [start(redis_server.url, name, "--grace", "30m") for name in ("w1", "w2")]
    try:
        publish(redis_client, evs)  # while both consume

        def done() -> bool:
            return (
                redis_client.zcard(f"{PREFIX}shadow:pending") == 0
                and redis_client.zcard(f"{PREFIX}outcome:pending") == 0
            )

        wait_for(done, 90, "every rejection and approved campaign settled")
    finally:
        results = [stop_worker(w) for w in workers]
    for code, err in results:
        assert code == 0 and "drained and stopped" in err and "Traceback" not in err, err[-2000:]
    records = audit(redis_client)
    shadows = [(r["campaign_id"], r["metadata"]["date"]) for r in of_type(records, SHADOW_OUTCOME)]
    assert len(shadows) == len(set(shadows)) == 8 * 2 * 2
    finals = [r["campaign_id"] for r in of_type(records, SHADOW_OUTCOME) if r["metadata"]["final"]]
    assert sorted(finals) == sorted(f"{c}-{k}" for k in range(8) for c in ("rej-meta", "rej-tiktok"))
    outcomes = [r["campaign_id"] for r in of_type(records, CAMPAIGN_OUTCOME)]
    assert sorted(outcomes) == sorted(f"{c}-{k}" for k in range(8) for c in ("live-meta", "live-tiktok"))
    assert all(
        r["metadata"]["profitable"] is (r["campaign_id"].startswith("rej-meta"))
        for r in of_type(records, SHADOW_OUTCOME)
        if r["metadata"]["final"]
    )
    assert verify_redis(redis_client, f"{PREFIX}audit").ok
    assert any(g["name"] == "synctwin-shadow" for g in redis_client.xinfo_groups(f"{PREFIX}bids"))


@pytest.mark.redis
def test_review_and_kpis_read_the_workers_records(
    redis_server: Any, redis_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(redis_client, world(redis_client))
    assert main(["shadow", "--redis", redis_server.url, "--once", "--quiet"]) == 0
    assert "4 SHADOW_OUTCOME, 4 CAMPAIGN_OUTCOME recorded" in capsys.readouterr().out
    assert main(["review", "--redis", redis_server.url, "--since", "2000-01-01", "--json"]) == 0
    rows = {r["campaign_id"]: r for r in json.loads(capsys.readouterr().out)["rejections"]}
    assert rows["rej-meta"]["shadow_outcome"]["net_profit_uplift"] == 13_000
    assert rows["rej-tiktok"]["shadow_outcome"]["profitable"] is False
    assert main(["kpis", "--redis", redis_server.url, "--json"]) == 0
    k = json.loads(capsys.readouterr().out)
    assert k["false_positive_rate"]["value"] == 0.25 and k["false_negative_rate"]["value"] == 0.5


def test_synctwin_runs_council_includes_shadow_mode_with_the_same_outcomes(fake: Any) -> None:
    """`synctwin run`'s worker (every agent) records the shadow outcomes `synctwin shadow` records
    over the same stream: shadow mode is one of the Council's agents, not a second worker."""
    alone, council = "alone:", "council:"
    for prefix in (alone, council):
        publish(fake, world(fake, prefix), prefix)
    run_once(shadow_worker(fake, prefix=alone, block_ms=None, grace_s=0))
    worker = redis_council(fake, get_settings(), prefix=council, block_ms=None, grace_s=0)
    assert worker.shadow is not None and worker.book is not None and worker.council.flow is not None
    worker.run(lambda: False, once=True)
    assert worker.shadow.stats.applied == 4 * 50
    assert worker.stats.dead == 50  # the stranger's events (no plan): dead letters, judged by no agent

    def shadows(prefix: str) -> list[tuple[str, str, dict[str, Any]]]:
        return sorted(
            (r["campaign_id"], r["metadata"]["date"], r["metadata"])
            for r in of_type(audit(fake, prefix), SHADOW_OUTCOME)
        )

    assert len(shadows(council)) == 4 and shadows(council) == shadows(alone)
    outcomes = sorted(r["campaign_id"] for r in of_type(audit(fake, council), CAMPAIGN_OUTCOME))
    assert outcomes == ["live-ctl", "live-meta", "live-paused", "live-tiktok"]
    assert fake.zcard(f"{council}shadow:pending") == 0 and fake.zcard(f"{council}outcome:pending") == 0
