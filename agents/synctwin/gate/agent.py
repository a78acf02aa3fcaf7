"""SyncTwin as a SimPy agent: the pre-launch gate behind a mailbox. It asks SyncValue for the
baseline (a message, not a call) and answers with the GateResult, instantly in virtual time."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from agents.base import Agent, answer, ask
from agents.synctwin.gate.gatekeeper import SimulationGatekeeper
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.messages import BaselineRequest, GateRequest


class SyncTwinAgent(Agent):
    name = "synctwin"

    def __init__(
        self,
        env: simpy.Environment,
        gatekeeper: SimulationGatekeeper,
        syncvalue: simpy.Store,
        *,
        paths: int | None = None,
    ) -> None:
        self.gatekeeper = gatekeeper
        self.syncvalue = syncvalue
        self.paths = paths
        super().__init__(env)

    def handle(self, message: Any) -> Generator[Any, Any, None]:
        if not isinstance(message, GateRequest):
            return
        s = message.strategy
        try:
            request = BaselineRequest(s.client_id, None, gross_margin=s.gross_margin)
            baseline = yield from ask(self.env, self.syncvalue, request)
            answer(message, self.gatekeeper.evaluate(s, baseline, seed=message.seed, paths=self.paths))
        except InvalidInput as exc:
            answer(message, exc)
