"""What every Council agent is: a SimPy process with a mailbox.

An agent never calls another's methods: it puts messages in mailboxes and, for a request, waits
on the reply event the message carries. Its environment decides if time is virtual or the wall's.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from synctwin.kernel.messages import Request


class Agent:
    """Subclasses implement `handle(message)` (a generator) or override `run()`."""

    name = "agent"

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.mailbox: simpy.Store = simpy.Store(env)
        self.process = env.process(self.run())

    def run(self) -> Generator[Any, Any, None]:
        while True:
            message = yield self.mailbox.get()
            yield from self.handle(message)

    def handle(self, message: Any) -> Generator[Any, Any, None]:
        raise NotImplementedError
        yield  # pragma: no cover


def ask(env: simpy.Environment, mailbox: simpy.Store, message: Request) -> Generator[Any, Any, Any]:
    """`result = yield from ask(env, box, Req(...))`; an exception as the answer is raised here."""
    message.reply = env.event()
    yield mailbox.put(message)
    answer = yield message.reply
    if isinstance(answer, BaseException):
        raise answer
    return answer


def answer(message: Request, value: Any) -> None:
    """Reply to a request (a value or an exception to raise in the asker)."""
    if message.reply is not None and not message.reply.triggered:
        message.reply.succeed(value)
