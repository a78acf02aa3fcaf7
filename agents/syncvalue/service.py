"""SyncValue as a service: the seed's `get_baseline(client_id, lookback_days)` over any store."""

from __future__ import annotations

from agents.syncvalue.baseline import Baseline, compute_baseline
from agents.syncvalue.stores import HistoryStore
from synctwin.kernel.config import Settings, get_settings


class SyncValue:
    def __init__(self, store: HistoryStore, settings: Settings | None = None) -> None:
        self.store = store
        self.settings = settings or get_settings()

    def baseline(self, client_id: str, lookback_days: int | None = None, *, gross_margin: float = 1.0) -> Baseline:
        return compute_baseline(
            self.store.get(client_id),
            lookback_days=lookback_days or self.settings.lookback_days,
            min_days=self.settings.min_history_days,
            gross_margin=gross_margin,
            default_monthly_churn=self.settings.default_monthly_churn,
            source=f"history of client {client_id}",
        )

    async def get_baseline(self, client_id: str, lookback_days: int | None = None) -> Baseline:
        """The seed's call shape (`await syncvalue_client.get_baseline(...)`)."""
        return self.baseline(client_id, lookback_days)
