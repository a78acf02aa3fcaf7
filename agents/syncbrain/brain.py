"""SyncBrain's hook: every strategy passes SyncTwin's gate (its threshold, not SyncBrain's) before
it can be deployed. No override: a rejection raises, is audited, and nothing is deployed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from agents.syncbrain.generator import RuleBasedStrategyGenerator, StrategyGenerator
from synctwin.kernel.models import Strategy

REJECTED = "SYNCTWIN_NEGATIVE_FORECAST"  # the audit reason of a rejection


class CampaignRejectedError(Exception):
    """The gate rejected the strategy; `twin_result` says why."""

    def __init__(self, twin_result: Mapping[str, Any]) -> None:
        self.twin_result = dict(twin_result)
        super().__init__(
            "SyncTwin simulation rejected this campaign. "
            f"ConfidenceScore: {twin_result['confidence_score']}, "
            f"Projected Net Profit: ${twin_result['projected_net_profit_uplift']:,.2f}"
        )

    @property
    def suggestions(self) -> list[dict[str, Any]]:
        """Resubmission advice from the gate (changes that were approved), if it gave any."""
        return list(self.twin_result.get("suggestions") or [])


class Gate(Protocol):
    async def simulate_strategy(
        self, strategy: Strategy, client_id: str | None = None, lookback_days: int = 90
    ) -> dict[str, Any]: ...


class AuditLog(Protocol):
    async def log_audit_event(
        self,
        event_type: str,
        client_id: str | None = None,
        reason: str | None = None,
        metadata: Any = None,
        campaign_id: str | None = None,
    ) -> Any: ...


class Deployer(Protocol):
    def deploy(self, strategy: Strategy, twin_result: Mapping[str, Any]) -> Any: ...


def audit_summary(twin_result: Mapping[str, Any]) -> dict[str, Any]:
    """The gate result without its bulky projection and baseline."""
    return {k: v for k, v in twin_result.items() if k not in ("projection", "baseline")}


class SyncBrain:
    def __init__(
        self, synctwin: Gate, syncshield: AuditLog, deployer: Deployer, generator: StrategyGenerator | None = None
    ) -> None:
        self.synctwin = synctwin
        self.syncshield = syncshield
        self.deployer = deployer
        self.generator = generator or RuleBasedStrategyGenerator()

    async def generate_strategy(self, client_id: str, campaign_params: Mapping[str, Any]) -> dict[str, Any]:
        """Generate, gate, audit, deploy: the seed's Digital Handshake."""
        strategy = self.generator.generate(client_id, campaign_params)
        twin_result = await self.synctwin.simulate_strategy(strategy=strategy, client_id=client_id)
        approved = twin_result["decision"] == "APPROVED"
        await self.syncshield.log_audit_event(
            event_type="CAMPAIGN_APPROVED" if approved else "CAMPAIGN_REJECTED",
            client_id=client_id,
            campaign_id=strategy.campaign_id,
            reason=None if approved else REJECTED,
            metadata=audit_summary(twin_result),
        )
        if not approved:
            raise CampaignRejectedError(twin_result)
        self.deployer.deploy(strategy, twin_result)
        return {"strategy": strategy.model_dump(mode="json"), "twin_validation": twin_result}
