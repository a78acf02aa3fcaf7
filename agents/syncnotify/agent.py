"""SyncNotify as a SimPy agent: alert messages fan out to the configured sinks."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from agents.base import Agent
from agents.syncnotify.alerts import SyncNotify
from synctwin.kernel.messages import AlertMessage


class SyncNotifyAgent(Agent):
    name = "syncnotify"

    def __init__(self, env: simpy.Environment, notify: SyncNotify) -> None:
        self.notify = notify
        super().__init__(env)

    def handle(self, message: Any) -> Generator[Any, Any, None]:
        if isinstance(message, AlertMessage):
            self.notify.notify(message.severity, message.title, message.message, message.details)
        yield from ()
