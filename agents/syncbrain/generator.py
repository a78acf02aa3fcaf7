"""Turning a client's campaign request into a strategy, behind a small interface: the rule-based
generator is deterministic, so runs are reproducible; an LLM-backed one can implement it later."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from synctwin.kernel.models import Strategy
from synctwin.kernel.strategy_io import strategy_from_request


class StrategyGenerator(Protocol):
    def generate(self, client_id: str, campaign_params: Mapping[str, Any]) -> Strategy: ...


class RuleBasedStrategyGenerator:
    """Fills a strategy from the request by the rules of synctwin.kernel.strategy_io.strategy_from_request."""

    def generate(self, client_id: str, campaign_params: Mapping[str, Any]) -> Strategy:
        return strategy_from_request(client_id, campaign_params)
