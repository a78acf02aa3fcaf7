"""SyncNotify's alert model and the dispatcher that fans one alert out to every sink.

An alert is the Council telling people something; losing it to one broken channel (a Redis
outage, a full disk) must not silence the others, so the dispatcher isolates sink failures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from synctwin.kernel.errors import InvalidInput, describe_validation_error
from synctwin.kernel.jsonable import to_jsonable

if TYPE_CHECKING:
    from .sinks import AlertSink

Severity = Literal["INFO", "WARNING", "CRITICAL"]
logger = logging.getLogger("synctwin.syncnotify")


class Alert(BaseModel):
    """One alert as every sink receives it; `details` is plain JSON so any sink can store it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    severity: Severity
    title: str = Field(min_length=1)
    message: str
    details: dict[str, Any] | list[Any] = Field(default_factory=dict)
    ts: float = Field(allow_inf_nan=False, description="epoch seconds (virtual time in simulations)")

    @field_validator("title")
    @classmethod
    def _title_has_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("title must not be blank")
        return value

    @field_validator("details", mode="before")
    @classmethod
    def _detailsto_jsonable(cls, value: Any) -> Any:
        plain = {} if value is None else to_jsonable(value)
        if not isinstance(plain, dict | list):
            raise ValueError(f"details must be an object or a list, not {type(value).__name__}")
        return plain


class SyncNotify:
    """Send each alert to every sink; a failing sink is logged and counted, never raised.

    `clock` stamps alerts, so a simulation passes its virtual `now` and a replay is reproducible.
    """

    def __init__(self, sinks: Iterable[AlertSink] = (), clock: Callable[[], float] = time.time) -> None:
        self.sinks: list[AlertSink] = list(sinks)
        self.clock = clock
        self.failures = 0  # sink failures since start: a health metric
        self.last_error: Exception | None = None

    def notify(self, severity: Severity, title: str, message: str, details: Any = None) -> Alert:
        """Build the alert (InvalidInput if it is malformed) and deliver it to every sink."""
        try:
            alert = Alert(severity=severity, title=title, message=message, details=details, ts=self.clock())
        except ValidationError as exc:
            field, reason = describe_validation_error(exc)
            raise InvalidInput(reason, field=field) from None
        for sink in self.sinks:
            try:
                sink.send(alert)
            except Exception as exc:  # any sink bug or outage: the other sinks still get the alert
                self.failures += 1
                self.last_error = exc
                logger.error(
                    "alert sink %s failed for %r: %s: %s", type(sink).__name__, alert.title, type(exc).__name__, exc
                )
        return alert

    async def alert(self, severity: Severity, title: str, message: str, details: Any = None) -> Alert:
        """The seed's `await syncnotify.alert(severity=..., title=..., message=..., details=...)`.

        Runs inline: sinks are quick local writes or one Redis round trip.
        """
        return self.notify(severity, title, message, details)
