"""Resubmission advice: every suggestion, re-submitted as it stands, is approved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.syncbrain.brain import CampaignRejectedError
from agents.synctwin.gate.gatekeeper import SimulationGatekeeper
from agents.synctwin.gate.suggestions import LEVERS, human_round, suggest
from agents.syncvalue.baseline import Baseline, compute_baseline
from agents.syncvalue.service import SyncValue
from agents.syncvalue.stores import InMemoryHistoryStore
from synctwin.app.cli import main
from synctwin.kernel.history import load_history
from synctwin.kernel.models import Strategy

HISTORY = Path(__file__).resolve().parents[1] / "scenarios" / "builtin" / "histories" / "volt-threads-tiktok.csv"
# rejected at ~0.76; budget, audience and duration can each fix it
FIXABLE = {
    "platform": "tiktok",
    "audience_size": 300_000,
    "cvr": 0.004,
    "daily_budget": 700,
    "gross_margin": 0.6,
    "client_id": "volt",
    "campaign_id": "volt-fixable",
}


def _baseline(margin: float = 0.6) -> Baseline:
    return compute_baseline(
        load_history(HISTORY),
        lookback_days=90,
        min_days=14,
        gross_margin=margin,
        default_monthly_churn=0.25,
        source=str(HISTORY),
    )


def test_every_suggestion_resubmitted_is_approved() -> None:
    gate, baseline, strategy = SimulationGatekeeper(), _baseline(), Strategy(**FIXABLE)
    result = gate.evaluate(strategy, baseline, seed=7, paths=10_000)
    assert not result.approved
    suggestions = suggest(strategy, baseline, gate, result)
    assert len(suggestions) >= 3
    singles = [s for s in suggestions if len(s.changes) == 1]
    assert {next(iter(s.changes)) for s in singles} == set(LEVERS)
    assert any(len(s.changes) > 1 for s in suggestions)  # the levers together
    for s in suggestions:
        assert set(s.changes) <= set(LEVERS)
        again = gate.evaluate(strategy.model_copy(update=s.changes), baseline, seed=7, paths=10_000)
        assert again.approved and again.confidence_score == s.confidence_score > result.threshold


def test_together_moves_each_lever_less_than_alone() -> None:
    gate, baseline, strategy = SimulationGatekeeper(), _baseline(), Strategy(**FIXABLE)
    result = gate.evaluate(strategy, baseline, seed=7, paths=10_000)
    suggestions = suggest(strategy, baseline, gate, result)
    alone = {k: v for s in suggestions if len(s.changes) == 1 for k, v in s.changes.items()}
    together = next(s.changes for s in suggestions if len(s.changes) > 1)
    for lever, value in together.items():
        start = getattr(strategy, lever)
        assert abs(value - start) <= abs(alone[lever] - start)


def test_an_approval_gets_no_suggestions_and_a_hopeless_case_gets_none() -> None:
    gate = SimulationGatekeeper()
    ok = Strategy(**{**FIXABLE, "daily_budget": 500, "audience_size": 400_000})
    result = gate.evaluate(ok, _baseline(), seed=7, paths=10_000)
    assert result.approved and suggest(ok, _baseline(), gate, result) == []
    # the seed's Gen-Z launch at a 52% margin on a new audience: no single lever fixes it; say so
    genz = Strategy(
        platform="tiktok", audience_size=400_000, cvr=0.004, daily_budget=500, gross_margin=0.52, new_audience=True
    )
    b = _baseline(0.52)
    rejected = gate.evaluate(genz, b, seed=7, paths=10_000)
    for s in suggest(genz, b, gate, rejected):
        assert gate.evaluate(genz.model_copy(update=s.changes), b, seed=7, paths=10_000).approved


@pytest.mark.parametrize(
    ("lever", "value", "start", "expected"),
    [
        ("daily_budget", 612.3, 700, 610),
        ("daily_budget", 1234.0, 700, 1300),
        ("audience_size", 321_456, 300_000, 330_000),
        ("duration_days", 25.3, 30, 25),
        ("duration_days", 31.2, 30, 32),
    ],
)
def test_human_round_moves_away_from_the_submitted_value(lever, value, start, expected) -> None:
    assert human_round(lever, value, start) == expected


def test_gate_cli_adds_suggestions_to_a_rejection(capsys, tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(FIXABLE))
    assert main(["gate", str(path), "--history", str(HISTORY), "--seed", "7", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["decision"] == "REJECTED" and out["suggestions"]
    first = out["suggestions"][0]
    path.write_text(json.dumps({**FIXABLE, **first["changes"]}))
    assert main(["gate", str(path), "--history", str(HISTORY), "--seed", "7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["confidence_score"] == first["confidence_score"]
    path.write_text(json.dumps(FIXABLE))
    assert main(["gate", str(path), "--history", str(HISTORY), "--seed", "7", "--json", "--no-suggestions"]) == 1
    assert json.loads(capsys.readouterr().out)["suggestions"] == []
    assert main(["gate", str(path), "--history", str(HISTORY), "--seed", "7"]) == 1
    assert "suggestions (re-submit" in capsys.readouterr().out


async def test_syncbrain_rejection_carries_the_suggestions() -> None:
    value = SyncValue(InMemoryHistoryStore({"volt": load_history(HISTORY)}))
    gate = SimulationGatekeeper(value)
    result = await gate.simulate_strategy(FIXABLE, seed=7)
    assert result["decision"] == "REJECTED" and result["suggestions"]
    err = CampaignRejectedError(result)
    assert err.suggestions == result["suggestions"]
