"""A circuit breaker for a platform's API that reads the environment's clock, not the wall's.

CLOSED: calls go through; `failure_threshold` failures in a row OPEN it (no calls: the platform
serves the bids it holds, newer ones stay pending); after `reset_timeout` one probe goes through
(HALF_OPEN): success closes, failure reopens. It takes `now`, so it works in virtual time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    name: str
    from_state: str
    to_state: str
    t: float
    why: str


class CircuitBreaker:
    def __init__(
        self, name: str, now: Callable[[], float], *, failure_threshold: int = 2, reset_timeout: float = 60.0
    ) -> None:
        self.name, self.now, self.failure_threshold, self.reset_timeout = name, now, failure_threshold, reset_timeout
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self.transitions: list[BreakerTransition] = []

    def _move(self, to: BreakerState, why: str) -> None:
        self.transitions.append(BreakerTransition(self.name, self.state.value, to.value, self.now(), why))
        self.state = to

    def allow(self) -> bool:
        """May a call be made now? In OPEN, the first call after the timeout becomes the probe."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN and self.now() - self.opened_at >= self.reset_timeout:
            self._move(BreakerState.HALF_OPEN, f"probing after {self.reset_timeout:g}s open")
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        if self.state is not BreakerState.CLOSED:
            self._move(BreakerState.CLOSED, "a call succeeded")

    def failure(self, error: str) -> None:
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN:
            self.opened_at = self.now()
            self._move(BreakerState.OPEN, f"probe failed: {error}")
        elif self.state is BreakerState.CLOSED and self.failures >= self.failure_threshold:
            self.opened_at = self.now()
            self._move(BreakerState.OPEN, f"{self.failures} failures in a row, last: {error}")
