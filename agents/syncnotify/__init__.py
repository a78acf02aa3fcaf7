"""SyncNotify: alerts for people, fanned out to log, file, Redis stream or memory sinks."""

from .alerts import Alert, Episode, Severity, SyncNotify
from .sinks import AlertSink, JsonlSink, LogSink, MemorySink, RedisStreamSink

__all__ = [
    "Alert",
    "AlertSink",
    "Episode",
    "JsonlSink",
    "LogSink",
    "MemorySink",
    "RedisStreamSink",
    "Severity",
    "SyncNotify",
]
