"""SyncValue as a SimPy agent: answers baseline requests from its history store."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from agents.base import Agent, answer
from agents.syncvalue.service import SyncValue
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.messages import BaselineRequest


class SyncValueAgent(Agent):
    name = "syncvalue"

    def __init__(self, env: simpy.Environment, service: SyncValue) -> None:
        self.service = service
        super().__init__(env)

    def handle(self, message: Any) -> Generator[Any, Any, None]:
        if isinstance(message, BaselineRequest):
            try:
                m = message
                answer(m, self.service.baseline(m.client_id, m.lookback_days, gross_margin=m.gross_margin))
            except InvalidInput as exc:
                answer(message, exc)
        yield from ()
