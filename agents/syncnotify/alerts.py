"""SyncNotify's alert model and the dispatcher that fans one alert out to every sink, isolating
sink failures: one broken channel (a Redis outage, a full disk) must not silence the others.

One alert per episode, not per evaluation: an alert whose `details` name a `campaign_id` opens an
episode keyed by (campaign, kind: the title before its colon). Repeats are counted into it, not
sent, until the condition clears: `resolve()`, or no repeat for `reopen_after` seconds (flapping
every few hours is one episode; deviating again after two quiet days is a new one). A repeat of
higher severity is sent; a new `details["episode"]` (a source that knows its episodes) is a new
episode at once. Time is the event's (`details["event_ts"]`, else the clock), so a replay and the
live worker dedupe the same alerts."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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


_RANK = {"INFO": 0, "WARNING": 1, "CRITICAL": 2}
REOPEN_AFTER_S = 2 * 86_400.0  # two days without a repeat: the condition had cleared


@dataclass(slots=True)
class Episode:
    """One condition of one campaign, from its first alert (the one sent) to its last repeat."""

    campaign_id: str
    kind: str
    severity: Severity
    alert: Alert  # the alert that opened it (or raised its severity): the one the sinks got
    opened: float
    last: float
    count: int = 1  # evaluations that alerted, the first included


class SyncNotify:
    """Send each alert to every sink; a failing sink is logged and counted, never raised. `clock`
    stamps alerts (a simulation's virtual `now`); `dedupe=False` sends every alert; `keep_history`
    keeps every episode (a replay's report shows their counts), not only the open ones."""

    def __init__(
        self,
        sinks: Iterable[AlertSink] = (),
        clock: Callable[[], float] = time.time,
        *,
        dedupe: bool = True,
        reopen_after: float = REOPEN_AFTER_S,
        keep_history: bool = False,
    ) -> None:
        self.sinks: list[AlertSink] = list(sinks)
        self.clock = clock
        self.failures = 0  # sink failures since start: a health metric
        self.last_error: Exception | None = None
        self.dedupe = dedupe
        self.reopen_after = reopen_after
        self.episodes: dict[tuple[str, str], Episode] = {}  # open, by (campaign, kind)
        self.history: list[Episode] | None = [] if keep_history else None
        self.suppressed = 0  # repeats counted into an open episode instead of sent

    def resolve(self, campaign_id: str, kind: str) -> Episode | None:
        """The condition cleared: close its episode (the next alert of that kind is sent)."""
        return self.episodes.pop((campaign_id, kind), None)

    def count(self, alert: Alert) -> int:
        """How many evaluations the episode this alert opened counted (1 when not deduped)."""
        episodes = self.history if self.history is not None else self.episodes.values()
        return next((ep.count for ep in episodes if ep.alert is alert), 1)

    def _repeat(self, alert: Alert) -> bool:
        """Count the alert into its open episode (True: do not send it), or open a new one."""
        details = alert.details if isinstance(alert.details, dict) else {}
        campaign = details.get("campaign_id")
        if not self.dedupe or not isinstance(campaign, str):
            return False
        kind = alert.title.split(":", 1)[0].strip()
        if isinstance(details.get("episode"), str):
            kind = f"{kind}#{details['episode']}"
        at = details.get("event_ts")
        at = float(at) if isinstance(at, int | float) and not isinstance(at, bool) else alert.ts
        ep = self.episodes.get((campaign, kind))
        if ep is not None and at - ep.last <= self.reopen_after:
            ep.count, ep.last = ep.count + 1, max(ep.last, at)
            if _RANK[alert.severity] <= _RANK[ep.severity]:
                self.suppressed += 1
                return True
            ep.severity, ep.alert = alert.severity, alert  # a severity rise: same episode, sent
            return False
        new = Episode(campaign, kind, alert.severity, alert, at, at)
        self.episodes[(campaign, kind)] = new
        if self.history is not None:
            self.history.append(new)
        return False

    def notify(self, severity: Severity, title: str, message: str, details: Any = None) -> Alert:
        """Build the alert (InvalidInput if it is malformed) and deliver it to every sink, unless
        it repeats an open episode (then it is counted there and returned, not sent)."""
        try:
            alert = Alert(severity=severity, title=title, message=message, details=details, ts=self.clock())
        except ValidationError as exc:
            field, reason = describe_validation_error(exc)
            raise InvalidInput(reason, field=field) from None
        if self._repeat(alert):
            return alert
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
        """The seed's `await syncnotify.alert(...)`, inline: sinks are quick writes or a round trip."""
        return self.notify(severity, title, message, details)
