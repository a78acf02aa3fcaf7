"""The gatekeeper and `synctwin gate`: decisions, contracts, bad input, determinism."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from agents.synctwin.gate.gatekeeper import SimulationGatekeeper, funnel_params
from agents.syncvalue import InMemoryHistoryStore, SyncValue, compute_baseline
from synctwin.app.cli import main
from synctwin.kernel.config import Settings
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.history import load_history
from synctwin.kernel.models import Strategy

DATA = Path(__file__).parent / "data"
STRATEGY = DATA / "strategy.json"
HISTORY = DATA / "history_90d.csv"


@pytest.fixture(scope="module")
def baseline():
    return compute_baseline(load_history(HISTORY))


def strategy(**kw) -> Strategy:
    base = {"audience_size": 160_000, "cvr": 0.02, "daily_budget": 900, "campaign_id": "c1", "client_id": "k1"}
    return Strategy.model_validate(base | kw)


def test_result_has_the_seed_keys_and_ours(baseline) -> None:
    r = SimulationGatekeeper().evaluate(strategy(), baseline, seed=1).to_dict()
    for k in (
        "confidence_score",
        "risk_profile",
        "projected_net_profit_uplift",
        "simulation_details",
        "decision",
        "threshold",
        "confidence_interval",
        "expected_uplift",
        "model",
        "seed",
        "elapsed_ms",
        "projection",
    ):
        assert k in r
    sd = r["simulation_details"]
    assert sd["p10_uplift"] <= r["projected_net_profit_uplift"] <= sd["p90_uplift"]
    assert sd["median_uplift"] == r["projected_net_profit_uplift"]
    assert r["confidence_interval"][0] <= r["confidence_score"] <= r["confidence_interval"][1]
    assert len(r["projection"]["points"]) == 31 and r["projection"]["points"][0]["t_hours"] == 0
    assert r["threshold"] == 0.85 and r["model"] == "curve" and r["seed"] == 1


def test_projected_uplift_is_the_median_of_all_paths_not_of_positives(baseline) -> None:
    r = SimulationGatekeeper().evaluate(strategy(daily_budget=1500), baseline, seed=2)
    sd = r.simulation_details
    assert sd.median_positive_uplift is not None and sd.median_positive_uplift > sd.median_uplift


def test_decision_follows_the_threshold(baseline) -> None:
    s = strategy()
    r = SimulationGatekeeper(threshold=0.5).evaluate(s, baseline, seed=1)
    assert r.decision == ("APPROVED" if r.confidence_score > 0.5 else "REJECTED")
    strict = SimulationGatekeeper(threshold=0.99).evaluate(s, baseline, seed=1)
    assert strict.decision == "REJECTED" and strict.confidence_score <= 0.99


def test_clear_winner_and_clear_loser(baseline) -> None:
    win = SimulationGatekeeper().evaluate(strategy(daily_budget=1100, cvr=0.03), baseline, seed=1)
    lose = SimulationGatekeeper().evaluate(strategy(daily_budget=3000, cvr=0.01), baseline, seed=1)
    assert win.decision == "APPROVED" and win.confidence_score > 0.95 and win.risk_profile == "LOW"
    assert lose.decision == "REJECTED" and lose.confidence_score < 0.05 and lose.risk_profile == "CRITICAL"
    assert lose.projected_net_profit_uplift < 0


def test_budget_that_cannot_buy_the_demand_is_rejected_by_the_funnel_only(baseline) -> None:
    """The seed's formula assumes audience x cvr conversions whatever the budget buys."""
    s = strategy(daily_budget=300, cvr=0.04)
    funnel = SimulationGatekeeper().evaluate(s, baseline, seed=1)
    seed = SimulationGatekeeper(model="seed").evaluate(s, baseline, seed=1)
    assert seed.decision == "APPROVED" and funnel.decision == "REJECTED"


def test_new_audience_widens_the_uncertainty(baseline) -> None:
    settings = Settings()
    known = funnel_params(strategy(), baseline, settings)
    new = funnel_params(strategy(new_audience=True), baseline, settings)
    assert new.param_cpd_sigma == pytest.approx(2 * known.param_cpd_sigma)
    a = SimulationGatekeeper().evaluate(strategy(), baseline, seed=1)
    b = SimulationGatekeeper().evaluate(strategy(new_audience=True), baseline, seed=1)
    assert (b.simulation_details.p90_uplift - b.simulation_details.p10_uplift) > (
        a.simulation_details.p90_uplift - a.simulation_details.p10_uplift
    )


def test_adaptive_rounds_are_reported(baseline) -> None:
    s = strategy()
    first = SimulationGatekeeper().evaluate(s, baseline, seed=1, paths=1_000, max_paths=1_000)
    # put the threshold right on the confidence: the gate must draw more before deciding
    r = SimulationGatekeeper(threshold=first.confidence_score).evaluate(
        s, baseline, seed=1, paths=1_000, max_paths=32_000
    )
    sd = r.simulation_details
    assert sd.adaptive_rounds >= 1 and sd.total_simulations > sd.initial_simulations == 1_000


def test_same_seed_same_result(baseline) -> None:
    g = SimulationGatekeeper()
    a, b = g.evaluate(strategy(), baseline, seed=9).to_dict(), g.evaluate(strategy(), baseline, seed=9).to_dict()
    a.pop("elapsed_ms"), b.pop("elapsed_ms")
    assert a == b


def test_missing_rates_give_a_clear_error() -> None:
    h = load_history(HISTORY)
    zero = type(h)(h.dates, h.spend, h.impressions * 0, h.clicks * 0, h.conversions * 0, h.revenue * 0)
    b = compute_baseline(zero)
    with pytest.raises(InvalidInput, match="cannot estimate the CPM"):
        SimulationGatekeeper().evaluate(strategy(), b, seed=1, model="funnel")
    with pytest.raises(InvalidInput, match="cannot estimate the order value"):  # the curve needs only the AOV
        SimulationGatekeeper().evaluate(strategy(), b, seed=1)
    assert SimulationGatekeeper().evaluate(strategy(aov=60), b, seed=1).confidence_score == 0  # nothing converts
    assert (
        SimulationGatekeeper().evaluate(strategy(cpm=6, ctr=0.02, aov=60), b, seed=1, model="funnel") is not None
        if not math.isnan(b.cvr_click)
        else True
    )


async def test_seed_interface_simulate_strategy(baseline) -> None:
    store = InMemoryHistoryStore({"k1": load_history(HISTORY)})
    gate = SimulationGatekeeper(SyncValue(store))
    r = await gate.simulate_strategy(
        strategy={"audience_size": 160_000, "cvr": 0.03, "daily_budget": 1100}, client_id="k1", lookback_days=90, seed=4
    )
    assert r["decision"] == "APPROVED" and r["client_id"] == "k1"
    assert isinstance(r, dict) and r["simulation_details"]["total_simulations"] >= 10_000
    with pytest.raises(InvalidInput, match="no history for client"):
        await gate.simulate_strategy(strategy={"audience_size": 1, "cvr": 0.1, "daily_budget": 1}, client_id="x")


def test_threshold_from_environment(monkeypatch: pytest.MonkeyPatch, baseline) -> None:
    monkeypatch.setenv("SYNCTWIN_THRESHOLD", "0.99")
    assert SimulationGatekeeper(settings=Settings()).threshold == 0.99
    monkeypatch.setenv("SYNCTWIN_THRESHOLD", "1.5")
    with pytest.raises(ValueError, match="threshold"):
        Settings()


# --- the command line -------------------------------------------------------------------------


def gate_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["gate", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_gate_json_exit_codes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = gate_cli(capsys, STRATEGY, "--history", HISTORY, "--seed", "3", "--json")
    d = json.loads(out)
    assert code == (0 if d["decision"] == "APPROVED" else 1)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"audience_size": 160000, "cvr": 0.03, "daily_budget": 1100}))
    assert gate_cli(capsys, good, "--history", HISTORY, "--seed", "3", "--json")[0] == 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"audience_size": 160000, "cvr": 0.01, "daily_budget": 3000}))
    code, out, _ = gate_cli(capsys, bad, "--history", HISTORY, "--seed", "3", "--json")
    assert code == 1 and json.loads(out)["decision"] == "REJECTED"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([DATA / "strategy_bad_budget.json", "--history", HISTORY], "daily_budget"),
        ([STRATEGY, "--history", DATA / "history_bad_nan.csv"], "line 6"),
        (["missing.json", "--history", HISTORY], "no such file"),
        ([STRATEGY], "--history"),
        ([STRATEGY, "--history", HISTORY, "--paths", "-5"], "--paths"),
        ([STRATEGY, "--history", HISTORY, "--paths", "50"], "too few"),
        ([STRATEGY, "--history", HISTORY, "--threshold", "1.2"], "threshold"),
        ([STRATEGY, "--history", HISTORY, "--seed", "-1"], "seed"),
    ],
)
def test_cli_gate_invalid_input_exits_2_with_one_line(capsys, args, needle) -> None:
    code, out, err = gate_cli(capsys, *args, "--json")
    assert code == 2 and out == ""
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_gate_human_output(capsys) -> None:
    code, out, _ = gate_cli(capsys, STRATEGY, "--history", HISTORY, "--seed", "3")
    assert code in (0, 1)
    assert "confidence" in out and "risk profile" in out and ("APPROVED" in out or "REJECTED" in out)


def test_cli_gate_audit_log_and_verify(capsys, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    gate_cli(capsys, STRATEGY, "--history", HISTORY, "--seed", "1", "--audit-log", log)
    gate_cli(capsys, STRATEGY, "--history", HISTORY, "--seed", "2", "--audit-log", log)
    records = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(records) == 2
    assert {r["event_type"] for r in records} <= {"CAMPAIGN_APPROVED", "CAMPAIGN_REJECTED"}
    assert all(r["reason"] == "SYNCTWIN_NEGATIVE_FORECAST" for r in records if r["event_type"] == "CAMPAIGN_REJECTED")
    assert main(["audit", "verify", str(log)]) == 0
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[1], lines[0]]) + "\n")
    assert main(["audit", "verify", str(log)]) == 1
    assert "record 1" in capsys.readouterr().out


def test_cli_gate_redis_writes_projection_only_when_approved(capsys, tmp_path: Path, monkeypatch) -> None:
    import fakeredis

    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    monkeypatch.setattr("synctwin.infra.redis_conn.connect", lambda url, **kw: client)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"audience_size": 160000, "cvr": 0.03, "daily_budget": 1100, "campaign_id": "g1"}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"audience_size": 160000, "cvr": 0.01, "daily_budget": 3000, "campaign_id": "b1"}))
    assert gate_cli(capsys, good, "--history", HISTORY, "--seed", "1", "--redis", "redis://x")[0] == 0
    assert gate_cli(capsys, bad, "--history", HISTORY, "--seed", "1", "--redis", "redis://x")[0] == 1
    proj = json.loads(client.get("synctwin:campaign:g1:projection"))
    assert proj["campaign_id"] == "g1" and proj["launch_ts"] > 0 and len(proj["points"]) == 31
    assert client.get("synctwin:campaign:b1:projection") is None
    events = [f["event_type"] for _, f in client.xrange("synctwin:audit")]
    assert events == ["CAMPAIGN_APPROVED", "CAMPAIGN_REJECTED"]


def test_a_misspelt_gate_option_is_refused_not_ignored(baseline) -> None:
    gate = SimulationGatekeeper()
    with pytest.raises(TypeError, match="sed"):
        gate.evaluate(strategy(), baseline, sed=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="path"):
        gate.evaluate_with_uplift(strategy(), baseline, seed=1, path=500)  # type: ignore[call-arg]
