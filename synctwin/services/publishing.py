"""What a gate decision leaves behind for production, the same for every caller (`gate`, the HTTP
service, `feed`): its audit record and, in Redis, on approval the plan the mirror and the drills
read (`campaign:{id}:gate`, `outcome:pending`), on rejection what shadow mode follows
(`campaign:{id}:rejection`, `shadow:pending`); docs/production-and-redis-keys.md has their fields."""

from __future__ import annotations

import json
import time
from typing import Any

from agents.syncshield.backends import JsonlAuditStore, RedisAuditStore
from agents.synctwin.gate.outcomes import BASELINE_KEYS, GateFacts
from agents.syncvalue.stores import RedisHistoryStore
from synctwin.kernel.models import ensure_finite


def audit_metadata(result: Any, strategy: Any = None, launch_ts: float | None = None) -> dict[str, Any]:
    """What the audit log keeps of a decision: enough to judge and to re-run it (the seed). With
    the strategy, also what shadow mode re-simulates from the log alone (`synctwin shadow
    --market`): the strategy's fields, the baseline's rates and daily averages, the launch time."""
    d = result.to_dict()
    d.pop("projection", None)
    baseline = d.pop("baseline", None) or {}
    if strategy is not None:
        d["strategy"] = strategy.model_dump(mode="json", exclude_none=True)
        d["baseline"] = {k: baseline[k] for k in BASELINE_KEYS if k in baseline}
        d["launch_ts"] = launch_ts if launch_ts is not None else (strategy.launch_ts or time.time())
    return d


def record_decision(
    result: Any, *, client: Any = None, prefix: str = "synctwin:", audit_log: str | None = None, strategy: Any = None
) -> None:
    """Audit CAMPAIGN_APPROVED or CAMPAIGN_REJECTED (SYNCTWIN_NEGATIVE_FORECAST) to a JSONL log
    and/or the Redis audit stream. Given the strategy, a rejection also reaches production: it is
    stored for shadow mode (`campaign:{id}:rejection`), in the same transaction as its audit record
    on Redis, so the log never names a rejection that shadow mode does not follow."""
    ensure_finite(result, strategy)  # an overflowed simulation is no decision: nothing is audited
    if result.approved:
        event, reason = "CAMPAIGN_APPROVED", None
    else:
        event, reason = "CAMPAIGN_REJECTED", "SYNCTWIN_NEGATIVE_FORECAST"
    launch_ts = (strategy.launch_ts or time.time()) if strategy is not None else None
    fields = {
        "client_id": result.client_id,
        "campaign_id": result.campaign_id,
        "reason": reason,
        "metadata": audit_metadata(result, strategy, launch_ts),
    }
    if audit_log:
        JsonlAuditStore(audit_log).append(event, **fields)
    if client is None:
        return
    store = RedisAuditStore(client, key=f"{prefix}audit")
    if strategy is None or result.approved:
        store.append(event, **fields)
        return
    from redis.exceptions import WatchError

    for _attempt in range(1000):
        with client.pipeline(transaction=True) as pipe:
            try:
                rec, _fields = store.prepare(pipe, event, **fields)
                pipe.multi()
                store.queue(pipe, rec)
                _queue_rejection(pipe, prefix, strategy, result, float(launch_ts or 0.0))
                pipe.execute()
                return
            except WatchError:
                continue
    raise RuntimeError(f"could not append to {store.key}: too many concurrent writers")


def rejection_document(strategy: Any, result: Any, launch_ts: float) -> dict[str, Any]:
    """What the shadow worker reads of a rejection (`campaign:{id}:rejection`)."""
    return {
        "campaign_id": result.campaign_id,
        "client_id": result.client_id,
        "platform": strategy.platform,
        "strategy": strategy.model_dump(mode="json", exclude_none=True),
        **GateFacts.of(result).to_dict(),
        "launch_ts": launch_ts,
        "decided_ts": time.time(),
    }


def _queue_rejection(pipe: Any, prefix: str, strategy: Any, result: Any, launch_ts: float) -> None:
    cid = result.campaign_id
    pipe.set(f"{prefix}campaign:{cid}:rejection", json.dumps(rejection_document(strategy, result, launch_ts)))
    pipe.delete(f"{prefix}campaign:{cid}:shadow")  # a new rejection is followed afresh
    pipe.zadd(f"{prefix}shadow:pending", {cid: launch_ts})


def publish_plan(
    client: Any, prefix: str, strategy: Any, history: Any, result: Any, *, history_prefix: str | None = None
) -> None:
    """An approved campaign's plan: the projection the mirror compares with (launch time now unless
    the strategy gives one), and the strategy and client history the drills clone into the twin.
    `prefix` is the campaign's shard's; the history is the client's, under `history_prefix` (the
    deployment's prefix: a client's campaigns may live in several shards)."""
    ensure_finite(result, strategy)  # a projection with Infinity in it is not JSON: never published
    projection = result.projection.model_copy(update={"launch_ts": result.projection.launch_ts or time.time()})
    cid = result.campaign_id
    launch = float(projection.launch_ts or 0.0)
    gate = {
        "decision": result.decision,
        **GateFacts.of(result).to_dict(),
        "launch_ts": launch,
        "decided_ts": time.time(),
    }
    pipe = client.pipeline()
    pipe.set(f"{prefix}campaign:{cid}:projection", json.dumps(projection.model_dump(mode="json")))
    pipe.set(f"{prefix}campaign:{cid}:strategy", strategy.model_dump_json(exclude_none=True))
    pipe.delete(f"{prefix}campaign:{cid}:mirror")  # a new plan: the mirror starts afresh
    pipe.delete(f"{prefix}campaign:{cid}:paused")  # and `synctwin run` may pause the new launch
    # and its realized outcome too (the shadow worker writes one CAMPAIGN_OUTCOME per launch), and
    # SyncFlow's guard states: the new launch's guards start afresh
    pipe.set(f"{prefix}campaign:{cid}:gate", json.dumps(gate))
    pipe.hdel(f"{prefix}guards", cid)
    for what in ("totals", "outcome"):  # one key per DELETE: a cluster pipeline takes no multi-key one
        pipe.delete(f"{prefix}campaign:{cid}:{what}")
    pipe.zadd(f"{prefix}outcome:pending", {cid: launch})
    pipe.execute()
    RedisHistoryStore(client, history_prefix or prefix).put(strategy.client_id, history)
