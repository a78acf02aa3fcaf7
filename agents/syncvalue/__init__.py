"""SyncValue: the client's historical baseline (revenue, spend, funnel rates, churn, LTV)."""

from agents.syncvalue.baseline import Baseline, compute_baseline
from agents.syncvalue.service import SyncValue
from agents.syncvalue.stores import (
    CsvHistoryStore,
    HistoryStore,
    InMemoryHistoryStore,
    RedisHistoryStore,
    UnknownClient,
)

__all__ = [
    "Baseline",
    "CsvHistoryStore",
    "HistoryStore",
    "InMemoryHistoryStore",
    "RedisHistoryStore",
    "SyncValue",
    "UnknownClient",
    "compute_baseline",
]
