"""SyncBrain as a SimPy agent: turns launch requests into strategies and lets none deploy
without SyncTwin's approval (the same rule as SyncBrain.generate_strategy, as messages)."""

from __future__ import annotations

import zlib
from collections.abc import Generator
from typing import Any

import simpy

from agents.base import Agent, ask
from agents.syncbrain.brain import REJECTED, audit_summary
from agents.syncbrain.generator import RuleBasedStrategyGenerator, StrategyGenerator
from agents.synctwin.shadow.agent import ShadowWatch
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.messages import AuditEvent, Deploy, GateRequest, LaunchRequest


class SyncBrainAgent(Agent):
    name = "syncbrain"

    def __init__(
        self,
        env: simpy.Environment,
        *,
        synctwin: simpy.Store,
        syncflow: simpy.Store,
        audit: simpy.Store,
        seed: int,
        generator: StrategyGenerator | None = None,
    ) -> None:
        self.synctwin = synctwin
        self.syncflow = syncflow
        self.audit = audit
        self.seed = seed
        self.generator = generator or RuleBasedStrategyGenerator()
        self.decisions: dict[str, Any] = {}  # campaign -> GateResult, or the error that stopped it
        self.shadow: simpy.Store | None = None  # shadow mode's mailbox: rejections are followed there
        super().__init__(env)

    def gate_seed(self, campaign_id: str) -> int:
        """Each campaign's gate gets its own stream, fixed by the run's seed and its id."""
        return (self.seed * 1_000_003 + zlib.crc32(campaign_id.encode())) % (2**63)

    def handle(self, message: Any) -> Generator[Any, Any, None]:
        if not isinstance(message, LaunchRequest):
            return
        try:
            strategy = self.generator.generate(message.client_id, message.params)
            request = GateRequest(strategy, seed=self.gate_seed(strategy.campaign_id))
            result = yield from ask(self.env, self.synctwin, request)
        except InvalidInput as exc:
            cid = str(message.params.get("campaign_id", "?"))
            self.decisions[cid] = exc
            yield self.audit.put(
                AuditEvent("CAMPAIGN_INVALID", message.client_id, cid, "INVALID_INPUT", {"error": str(exc)})
            )
            return
        self.decisions[strategy.campaign_id] = result
        if message.test:  # a drill's test campaign: it needs the gate's plan, not its approval
            event, reason = "TEST_CAMPAIGN_DEPLOYED", "CHAOS_TEST"
        else:
            event, reason = ("CAMPAIGN_APPROVED", None) if result.approved else ("CAMPAIGN_REJECTED", REJECTED)
        summary = audit_summary(result.to_dict())
        yield self.audit.put(AuditEvent(event, strategy.client_id, strategy.campaign_id, reason, summary))
        if message.test or result.approved:
            yield self.syncflow.put(Deploy(strategy, result, test=message.test))
        elif self.shadow is not None:
            yield self.shadow.put(ShadowWatch(strategy, result))
