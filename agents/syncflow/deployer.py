"""Where approved strategies go. Here in memory; the world issue makes SyncFlow run them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from synctwin.kernel.models import Strategy


class UnapprovedDeployment(RuntimeError):
    """A strategy without an APPROVED gate result was handed to the deployer."""


@dataclass
class InMemoryDeployer:
    """Keeps deployed campaigns by id; refuses anything the gate did not approve (no override)."""

    deployed: dict[str, Strategy] = field(default_factory=dict)

    def deploy(self, strategy: Strategy, twin_result: Mapping[str, Any]) -> Strategy:
        if twin_result.get("decision") != "APPROVED":
            raise UnapprovedDeployment(f"campaign {strategy.campaign_id} has no APPROVED gate result")
        self.deployed[strategy.campaign_id] = strategy
        return strategy
