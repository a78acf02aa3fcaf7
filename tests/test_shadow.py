"""Shadow mode: rejected campaigns are followed and their would-be outcome audited."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import simpy
from shared_scenarios import SHOCK

from agents.syncshield.chain import canonical_json
from agents.synctwin.gate.gatekeeper import SimulationGatekeeper
from agents.synctwin.gate.outcomes import CAMPAIGN_OUTCOME, net_profit_uplift
from agents.synctwin.shadow.agent import (
    SHADOW_OUTCOME,
    MarketDay,
    Rejection,
    ShadowAgent,
    ShadowWatch,
    flight_days,
    load_market,
    rejections_from_audit,
    shadow_outcomes_from_market,
    simulate_day,
)
from agents.syncvalue.baseline import compute_baseline
from harness.runner import run_scenario
from scenarios.loader import load_scenario, scenario_from_dict
from synctwin.app.cli import main
from synctwin.app.commands.review import review
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.history import load_history
from synctwin.kernel.messages import BidBatch
from synctwin.kernel.models import Strategy
from synctwin.services.publishing import audit_metadata

HISTORY = Path(__file__).resolve().parents[1] / "scenarios" / "builtin" / "histories" / "volt-threads-tiktok.csv"
STRATEGY = Strategy(
    platform="tiktok",
    audience_size=400_000,
    cvr=0.004,
    daily_budget=500,
    gross_margin=0.52,
    new_audience=True,
    campaign_id="genz",
    client_id="volt",
    duration_days=3,
)


def _rejected():
    b = compute_baseline(
        load_history(HISTORY), lookback_days=90, min_days=14, gross_margin=0.52, default_monthly_churn=0.25, source="h"
    )
    result = SimulationGatekeeper().evaluate(STRATEGY, b, seed=1, paths=2_000)
    assert not result.approved
    return result


def test_tiktok_genz_replay_audits_a_shadow_outcome_that_review_shows() -> None:
    trace = run_scenario(load_scenario("tiktok_genz"), seed=0)
    assert trace.passed
    shadows = [r for r in trace.audit if r["event_type"] == SHADOW_OUTCOME]
    assert len(shadows) == 1
    rec = shadows[0]
    meta = rec["metadata"]
    assert rec["campaign_id"] == "volt-genz-launch" and rec["client_id"] == "volt-threads"
    assert meta["days"] == pytest.approx(23 / 24, abs=1e-3)  # rejected at 1h, the run ends at midnight
    assert meta["final"] is False and meta["market_days_observed"] == 0  # no live TikTok campaign to learn from
    assert meta["spend"] == pytest.approx(500 * 23 / 24, abs=0.01)
    assert meta["profitable"] == (meta["net_profit_uplift"] > 0)
    rows = review(trace.audit, dt.datetime(1970, 1, 1, tzinfo=dt.UTC))["rejections"]
    assert rows[0]["shadow_outcome"]["net_profit_uplift"] == meta["net_profit_uplift"]


def test_agent_uses_the_observed_market_of_the_same_platform() -> None:
    """Two live campaigns: one on TikTok (its rates are the market), one on Meta (ignored)."""
    env = simpy.Environment()
    bids, audit = simpy.Store(env), simpy.Store(env)
    agent = ShadowAgent(env, bids=bids, audit=audit, platform_of={"tk": "tiktok", "mt": "meta"})
    result = _rejected()
    # per hour: TikTok spends 10 for 2000 impressions (CPM 5), 20 clicks (CTR 1%), 1 conversion (5%), AOV 80
    per_hour = {"tk": np.array([10.0, 2000, 20, 1, 80]), "mt": np.array([1.0, 10, 10, 10, 1])}

    def world():
        for hour in range(1, 3 * 24 + 1):
            yield env.timeout(3600)
            cols = np.array([per_hour["tk"] * hour, per_hour["mt"] * hour]).T
            bids.put(BidBatch(env.now, env.now, ("tk", "mt"), *cols))

    env.process(world())
    agent.mailbox.put(ShadowWatch(STRATEGY, result))
    env.run(until=3 * 86_400 + 1)
    records = list(audit.items)
    assert [r.event_type for r in records] == [SHADOW_OUTCOME] * 3
    last = records[-1].metadata
    assert last["final"] and last["days"] == 3 and last["market_days_observed"] == 3
    spend, _conv, rev = simulate_day(STRATEGY, MarketDay(cpm=5.0, ctr=0.01, cvr=0.05, aov=80.0))
    assert last["spend"] == pytest.approx(3 * spend) and last["revenue"] == pytest.approx(3 * rev, rel=1e-6)
    daily_rev, daily_spend = result.baseline["daily_revenue"], result.baseline["daily_spend"]
    expected = (3 * rev - 3 * daily_rev) * 0.52 - (3 * spend - 3 * daily_spend)
    assert last["net_profit_uplift"] == pytest.approx(expected, abs=0.02)
    assert agent.outcomes["genz"] == last


def _market(tmp_path: Path, days: list[str], extra: str = "") -> Path:
    path = tmp_path / "market.csv"
    path.write_text("date,platform,cpm,ctr,cvr,aov\n" + "".join(f"{d},tiktok,5,0.01,0.05,80\n" for d in days) + extra)
    return path


def test_market_file_outcomes_and_bad_files(tmp_path: Path) -> None:
    result = _rejected()
    start = dt.date(2025, 3, 1)
    good = _market(tmp_path, ["2025-03-01", "2025-03-02", "2025-03-03"])
    [rec] = shadow_outcomes_from_market([Rejection(STRATEGY, result, start)], good)
    assert rec["event_type"] == SHADOW_OUTCOME and rec["campaign_id"] == "genz"
    assert rec["metadata"]["final"] and rec["metadata"]["market_days_observed"] == 3
    assert rec["metadata"]["spend"] == 1500.0
    with pytest.raises(InvalidInput, match="2025-03-02"):  # a gap inside the file
        load_market(_market(tmp_path, ["2025-03-01", "2025-03-03"]))
    with pytest.raises(InvalidInput, match="2025-03-03"):  # the flight runs past the file
        shadow_outcomes_from_market(
            [Rejection(STRATEGY, result, start)], _market(tmp_path, ["2025-03-01", "2025-03-02"])
        )
    with pytest.raises(InvalidInput, match=r"line 3.*date"):
        load_market(_market(tmp_path, ["2025-03-01", "2025-13-01"]))
    with pytest.raises(InvalidInput, match="cpm"):
        load_market(_market(tmp_path, ["2025-03-01"], extra="2025-03-02,tiktok,-1,0.01,0.05,80\n"))
    with pytest.raises(InvalidInput, match="no such market file"):
        load_market(tmp_path / "missing.csv")


def _outcomes_scenario() -> dict:
    """The thin-margin shock (paused by MarginGuardian at ~7 h) beside a one-day flight that ends."""
    d = copy.deepcopy(SHOCK)
    d["name"], d["duration"] = "outcomes", "1d2h"
    d["campaigns"].append(
        {
            "id": "short",
            "client": "kettle",
            "launch_at": "0s",
            "strategy": {
                "platform": "meta",
                "audience_size": 8_000_000,
                "cvr": 0.025,
                "daily_budget": 12_000,
                "gross_margin": 0.35,
                "duration_days": 1,
            },
        }
    )
    d["expectations"].append({"expect": "gate", "campaign": "short", "decision": "APPROVED"})
    return d


def test_a_replay_audits_one_campaign_outcome_per_approved_campaign_that_kpis_and_tune_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = run_scenario(scenario_from_dict(_outcomes_scenario()), seed=0)
    assert trace.passed, [e.message for e in trace.expectations if not e.passed]
    outcomes = {r["campaign_id"]: r for r in trace.audit if r["event_type"] == CAMPAIGN_OUTCOME}
    assert sum(r["event_type"] == CAMPAIGN_OUTCOME for r in trace.audit) == 2
    thin, short = outcomes["thin"], outcomes["short"]
    c = trace.campaigns["thin"]
    assert thin["reason"] == "PAUSED" and thin["metadata"]["pause_reason"] == "MARGIN_GUARDIAN"
    assert thin["metadata"]["days"] == pytest.approx((c.paused_at - c.launched_at) / 86_400, abs=1e-4)
    assert thin["metadata"]["spend"] == pytest.approx(c.final["spend"], abs=0.01)  # nothing spent after the pause
    assert thin["ts"] - trace.epoch0 >= c.paused_at  # once the platform has the pause
    assert short["reason"] == "FLIGHT_ENDED" and short["metadata"]["days"] == 1 and short["metadata"]["final"]
    s = trace.campaigns["short"]
    assert 86_400 <= short["ts"] - trace.epoch0 - s.launched_at <= 86_400 + 120  # the first tick past the flight
    assert short["metadata"]["spend"] < s.final["spend"]  # the world kept delivering after the flight
    for r, camp in ((thin, c), (short, s)):
        m = r["metadata"]
        expected = net_profit_uplift(
            m["revenue"],
            m["spend"],
            m["days"],
            {"daily_revenue": camp.baseline_daily_revenue, "daily_spend": camp.baseline_daily_spend},
            0.35,
        )
        # the record's days are rounded to 1e-4: the baseline over them moves by up to 5e-5 days' worth
        days_slack = 5e-5 * (camp.baseline_daily_revenue * 0.35 + camp.baseline_daily_spend)
        assert m["net_profit_uplift"] == pytest.approx(expected, abs=0.05 + days_slack)
        assert m["profitable"] == (m["net_profit_uplift"] > 0) and m["confidence_score"] == camp.confidence
    log = tmp_path / "replay-audit.jsonl"
    log.write_text("".join(canonical_json(r) + "\n" for r in trace.audit))
    assert main(["audit", "verify", str(log)]) == 0
    capsys.readouterr()
    assert main(["kpis", "--audit-log", str(log), "--json"]) == 0
    fp = json.loads(capsys.readouterr().out)["false_positive_rate"]
    losers = sum(not r["metadata"]["profitable"] for r in outcomes.values())
    assert fp["of"] == 2 and fp["count"] == losers and fp["value"] == losers / 2
    monkeypatch.setenv("SYNCTWIN_CONFIG_FILE", str(tmp_path / "synctwin.env"))
    assert main(["tune", "--audit-log", str(log), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["evidence"]["live"] == 2


def test_shadow_rejections_come_back_from_an_audit_log(tmp_path: Path) -> None:
    result = _rejected()
    recs = [
        {
            "seq": 1,
            "ts": 1_740_787_200.0,
            "event_type": "CAMPAIGN_REJECTED",
            "campaign_id": "genz",
            "client_id": "volt",
            "metadata": {
                **audit_metadata(result),
                "strategy": STRATEGY.model_dump(mode="json"),
                "launch_ts": 1_740_787_200.0,
            },
        }
    ]
    with pytest.raises(InvalidInput, match="baseline"):  # the baseline a shadow needs is missing
        rejections_from_audit(recs)
    recs[0]["metadata"]["baseline"] = {k: result.baseline[k] for k in ("daily_revenue", "daily_spend")}
    [rej], none = rejections_from_audit(recs)
    assert none == [] and rej.start == dt.date(2025, 3, 1) and rej.strategy == STRATEGY
    assert rej.result.confidence_score == result.confidence_score
    final = {"seq": 2, "event_type": SHADOW_OUTCOME, "campaign_id": "genz", "metadata": {"final": True}}
    assert rejections_from_audit([*recs, final]) == ([], [])  # already shadowed to the end
    assert rejections_from_audit([*recs, final, recs[0]])[0] != []  # rejected again later: followed again
    recs[0]["metadata"]["strategy"]["cvr"] = 2
    with pytest.raises(InvalidInput, match=r"seq 1.*cvr"):
        rejections_from_audit(recs, source="a.jsonl")


def test_flight_days_split_a_flight_into_utc_days() -> None:
    day = 86_400.0
    assert flight_days(10 * day, 2) == [(10, 1.0), (11, 1.0)]
    assert flight_days(10 * day + 18 * 3600, 1) == [(10, 0.25), (11, 0.75)]


def test_the_readme_market_file_example_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """README's "try it": a thin-margin rejection shadowed on an October market file."""
    repo = Path(__file__).resolve().parent.parent
    examples = repo / "scenarios" / "examples" / "shadow"
    log = str(tmp_path / "audit.jsonl")
    assert (
        main(
            [
                "gate",
                str(examples / "strategy_thin_margin.json"),
                "--history",
                str(repo / "tests" / "data" / "history_90d.csv"),
                "--seed",
                "1",
                "--audit-log",
                log,
            ]
        )
        == 1
    )
    assert main(["shadow", "--market", str(examples / "market_meta_oct2026.csv"), "--audit-log", log]) == 0
    assert "1 SHADOW_OUTCOME appended" in capsys.readouterr().out
    assert main(["shadow", "--market", str(examples / "market_meta_oct2026.csv"), "--audit-log", log]) == 0
    assert "0 SHADOW_OUTCOME appended" in capsys.readouterr().out  # idempotent: already shadowed to the end
    assert main(["kpis", "--audit-log", log, "--json"]) == 0
    fn = json.loads(capsys.readouterr().out)["false_negative_rate"]
    assert (fn["count"], fn["of"]) == (1, 1)  # it would have made money: a false negative
    assert main(["audit", "verify", log]) == 0
