"""SyncBrain's hook: no strategy launches without SyncTwin's approval, and both outcomes are audited."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.syncbrain import CampaignRejectedError, RuleBasedStrategyGenerator, SyncBrain
from agents.syncflow import InMemoryDeployer, UnapprovedDeployment
from agents.syncshield.backends import InMemoryAuditStore
from agents.syncshield.service import SyncShield
from agents.synctwin.gate.gatekeeper import SimulationGatekeeper
from agents.syncvalue import InMemoryHistoryStore, SyncValue
from synctwin.kernel.config import Settings
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.history import load_history

HISTORY = Path(__file__).parent / "data" / "history_90d.csv"
GOOD = {"audience_size": 160_000, "expected_cvr": 0.03, "monthly_budget": 33_000}
BAD = {"audience_size": 160_000, "expected_cvr": 0.01, "daily_budget": 3_000, "platform": "tiktok"}


class SeededGate(SimulationGatekeeper):
    """The gate at a fixed random seed: SyncBrain asks without one (a fresh seed each time), and a
    test that compares two decisions must not compare two draws."""

    async def simulate_strategy(self, strategy, client_id=None, lookback_days=90, *, seed=None):  # type: ignore[override]
        return await super().simulate_strategy(strategy, client_id, lookback_days, seed=7 if seed is None else seed)


def council(threshold: float | None = None):
    store = InMemoryHistoryStore({"acme": load_history(HISTORY)})
    gate = SeededGate(SyncValue(store), threshold=threshold)
    shield = SyncShield(InMemoryAuditStore())
    deployer = InMemoryDeployer()
    return SyncBrain(gate, shield, deployer), shield, deployer


async def test_approved_strategy_is_audited_and_deployed() -> None:
    brain, shield, deployer = council()
    out = await brain.generate_strategy("acme", GOOD)
    assert out["twin_validation"]["decision"] == "APPROVED"
    assert out["strategy"]["daily_budget"] == 1100.0
    assert list(deployer.deployed) == [out["strategy"]["campaign_id"]]
    [rec] = shield.records()
    assert rec["event_type"] == "CAMPAIGN_APPROVED" and rec["client_id"] == "acme"
    assert rec["metadata"]["confidence_score"] == out["twin_validation"]["confidence_score"]
    assert "projection" not in rec["metadata"]


async def test_rejected_strategy_raises_is_audited_and_not_deployed() -> None:
    brain, shield, deployer = council()
    with pytest.raises(CampaignRejectedError) as err:
        await brain.generate_strategy("acme", BAD)
    msg = str(err.value)
    assert "ConfidenceScore: " in msg and "Projected Net Profit: $-" in msg
    assert err.value.twin_result["decision"] == "REJECTED"
    assert deployer.deployed == {}
    [rec] = shield.records()
    assert rec["event_type"] == "CAMPAIGN_REJECTED" and rec["reason"] == "SYNCTWIN_NEGATIVE_FORECAST"
    assert shield.verify().ok


async def test_threshold_is_configuration_not_an_override() -> None:
    """The same request is rejected when the configured threshold is above its confidence."""
    brain, _, _ = council()
    approved = await brain.generate_strategy("acme", GOOD)
    conf = approved["twin_validation"]["confidence_score"]
    strict, _shield, deployer = council(threshold=min(0.999, conf + 0.001))
    with pytest.raises(CampaignRejectedError):
        await strict.generate_strategy("acme", GOOD)
    assert deployer.deployed == {}


def test_deployer_refuses_what_the_gate_did_not_approve() -> None:
    s = RuleBasedStrategyGenerator().generate("acme", GOOD)
    with pytest.raises(UnapprovedDeployment):
        InMemoryDeployer().deploy(s, {"decision": "REJECTED"})
    with pytest.raises(UnapprovedDeployment):
        InMemoryDeployer().deploy(s, {})


def test_rule_based_generator_is_deterministic_and_documented() -> None:
    g = RuleBasedStrategyGenerator()
    a = g.generate("acme", {"audience_size": 50_000, "platform": "tiktok", "monthly_budget": 9_000})
    assert a == g.generate("acme", {"audience_size": 50_000, "platform": "tiktok", "monthly_budget": 9_000})
    assert a.cvr == 0.012 and a.daily_budget == 300.0 and a.campaign_id == "acme-tiktok-50000"
    with pytest.raises(InvalidInput, match="daily_budget or monthly_budget"):
        g.generate("acme", {"audience_size": 1})
    with pytest.raises(InvalidInput, match="daily_budget"):
        g.generate("acme", {"audience_size": 1, "daily_budget": -5})


async def test_unknown_client_is_a_clear_error() -> None:
    brain, shield, _ = council()
    with pytest.raises(InvalidInput, match="no history for client 'nobody'"):
        await brain.generate_strategy("nobody", GOOD)
    assert shield.records() == []


def test_settings_default_threshold() -> None:
    assert Settings().threshold == 0.85
