"""SyncShield as a SimPy agent: audit events arrive as messages and are appended in order."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from agents.base import Agent
from agents.syncshield.service import SyncShield
from synctwin.kernel.messages import AuditEvent


class SyncShieldAgent(Agent):
    name = "syncshield"

    def __init__(self, env: simpy.Environment, shield: SyncShield) -> None:
        self.shield = shield
        super().__init__(env)

    def handle(self, message: Any) -> Generator[Any, Any, None]:
        if isinstance(message, AuditEvent):
            self.shield.log(
                message.event_type,
                client_id=message.client_id,
                campaign_id=message.campaign_id,
                reason=message.reason,
                metadata=message.metadata,
            )
        yield from ()
