"""Where alerts go. Each sink does one thing; SyncNotify fans out and isolates their failures."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .alerts import Alert


@runtime_checkable
class AlertSink(Protocol):
    """The one method every alert channel implements."""

    def send(self, alert: Alert) -> None:
        """Deliver the alert or raise; SyncNotify handles the raising."""
        ...


_LEVELS = {"INFO": logging.INFO, "WARNING": logging.WARNING, "CRITICAL": logging.CRITICAL}


class LogSink:
    """Standard logging, at the level matching the severity, so alerts show up in service logs."""

    def __init__(self, logger: logging.Logger | str = "synctwin.alerts") -> None:
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger

    def send(self, alert: Alert) -> None:
        """Log `title: message`; the whole alert rides along as `extra={'alert': ...}`."""
        extra = {"alert": alert.model_dump(mode="json")}
        self.logger.log(_LEVELS[alert.severity], "%s: %s", alert.title, alert.message, extra=extra)


class JsonlSink:
    """One JSON object per line, each a single write() on an O_APPEND descriptor under an exclusive
    flock, so processes sharing the file never interleave lines; the directory is created if missing."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def send(self, alert: Alert) -> None:
        """Append `alert` as one line."""
        data = (alert.model_dump_json() + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)


class RedisStreamSink:
    """XADD to a stream (`synctwin:alerts`), trimmed to about `maxlen` entries (MAXLEN ~: Redis drops
    whole macro-nodes, far cheaper than an exact length)."""

    def __init__(self, client: Any, key: str = "synctwin:alerts", maxlen: int | None = 100_000) -> None:
        self.client = client
        self.key = key
        self.maxlen = maxlen

    def send(self, alert: Alert) -> None:
        """One XADD with severity, title, message, details (a JSON string) and ts."""
        fields = {
            "severity": alert.severity,
            "title": alert.title,
            "message": alert.message,
            "details": json.dumps(alert.details, separators=(",", ":"), ensure_ascii=False),
            "ts": repr(alert.ts),
        }
        self.client.xadd(self.key, fields, maxlen=self.maxlen, approximate=True)


class MemorySink:
    """Keeps every alert in `alerts`: for tests and the demo's summary."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []
        self._lock = threading.Lock()

    def send(self, alert: Alert) -> None:
        """Remember the alert."""
        with self._lock:
            self.alerts.append(alert)

    def clear(self) -> None:
        """Forget every alert kept so far."""
        with self._lock:
            self.alerts.clear()
