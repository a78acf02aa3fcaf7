"""SyncValue: the client's historical baseline (revenue, spend, funnel rates, churn, LTV)."""

from agents.syncvalue.baseline import Baseline, compute_baseline

__all__ = ["Baseline", "compute_baseline"]
