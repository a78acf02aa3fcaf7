"""The gate as one use case: history -> baseline -> simulate -> advice -> audit -> publish.

Every caller (`gate`, `POST /v1/simulate`, `feed`, `demo`) builds a GateRequest and calls `decide`,
so options, advice, audit records and Redis writes are the same whichever way a campaign is gated."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.synctwin.gate.gatekeeper import ProgressCallback, SimulationGatekeeper
from agents.syncvalue.baseline import Baseline, compute_baseline
from synctwin.infra.executors import Executor
from synctwin.infra.shards import campaign_keys
from synctwin.kernel.config import Settings
from synctwin.kernel.history import History
from synctwin.kernel.models import GateResult, Strategy
from synctwin.services.publishing import publish_plan, record_decision


@dataclass(frozen=True)
class GateRequest:
    """A strategy to gate against a client's history, with the caller's choices (None: settings)."""

    strategy: Strategy
    history: History
    source: str = "history"  # how errors about the history name it (a file, "history_csv", ...)
    model: str | None = None
    threshold: float | None = None
    seed: int | None = None
    paths: int | None = None
    max_paths: int | None = None
    lookback_days: int | None = None
    suggestions: bool = True  # on a rejection, search the smallest change the gate approves
    keep_uplift: bool = False  # keep every path's uplift (the report's histogram)
    calibration_z: np.ndarray | None = None  # extra residuals from realized outcomes
    calibration_set: str | None = None


@dataclass(frozen=True)
class GateDecision:
    result: GateResult
    baseline: Baseline
    uplift: np.ndarray | None = None  # with keep_uplift


def decide(
    request: GateRequest,
    settings: Settings,
    *,
    client: Any = None,
    audit_log: str | None = None,
    executor: Executor | None = None,
    progress: ProgressCallback | None = None,
) -> GateDecision:
    """Decide, then leave the records production reads: the audit record (JSONL `audit_log` and/or
    the Redis audit stream) and, with a Redis `client`, the plan of an approval or the rejection
    shadow mode follows. Raises InvalidInput before anything is written."""
    started = time.perf_counter()
    strategy = request.strategy
    baseline = compute_baseline(
        request.history,
        lookback_days=request.lookback_days or settings.lookback_days,
        min_days=settings.min_history_days,
        gross_margin=strategy.gross_margin,
        default_monthly_churn=settings.default_monthly_churn,
        source=request.source,
    )
    gatekeeper = SimulationGatekeeper(
        settings=settings,
        model=request.model,
        threshold=request.threshold,
        calibration_z=request.calibration_z,
        calibration_set=request.calibration_set,
    )
    kwargs: dict[str, Any] = {
        "seed": request.seed,
        "paths": request.paths,
        "max_paths": request.max_paths,
        "progress": progress,
        "executor": executor,
    }
    uplift = None
    if request.keep_uplift:
        result, uplift = gatekeeper.evaluate_with_uplift(strategy, baseline, **kwargs)
    else:
        result = gatekeeper.evaluate(strategy, baseline, **kwargs)
    if request.suggestions:
        result = gatekeeper.with_suggestions(result, strategy, baseline, max_paths=request.max_paths)
    result = result.model_copy(update={"elapsed_ms": round((time.perf_counter() - started) * 1000.0, 3)})
    # the campaign's records live in its shard (one Redis Cluster slot), beside its bid stream
    prefix = campaign_keys(settings.key_prefix, strategy.campaign_id, settings.shards).prefix
    record_decision(result, client=client, prefix=prefix, audit_log=audit_log, strategy=strategy)
    if client is not None and result.approved:
        publish_plan(client, prefix, strategy, request.history, result, history_prefix=settings.key_prefix)
    return GateDecision(result, baseline, uplift)
