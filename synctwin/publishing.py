"""What a gate decision leaves behind for production, in one place for every caller
(`synctwin gate`, the HTTP service, `synctwin feed`): the audit record of the decision and,
on approval, the plan the live mirror and the nightly drills read from Redis."""

from __future__ import annotations

import json
import time
from typing import Any


def audit_metadata(result: Any) -> dict[str, Any]:
    """What the audit log keeps of a decision: enough to judge and to re-run it (the seed)."""
    d = result.to_dict()
    d.pop("projection", None)
    d.pop("baseline", None)
    return d


def record_decision(result: Any, *, client: Any = None, prefix: str = "synctwin:",
                    audit_log: str | None = None) -> None:
    """Audit CAMPAIGN_APPROVED or CAMPAIGN_REJECTED (SYNCTWIN_NEGATIVE_FORECAST) to a JSONL log
    and/or the Redis audit stream."""
    from agents.syncshield.backends import JsonlAuditStore, RedisAuditStore

    if result.approved:
        event, reason = "CAMPAIGN_APPROVED", None
    else:
        event, reason = "CAMPAIGN_REJECTED", "SYNCTWIN_NEGATIVE_FORECAST"
    stores: list[Any] = []
    if audit_log:
        stores.append(JsonlAuditStore(audit_log))
    if client is not None:
        stores.append(RedisAuditStore(client, key=f"{prefix}audit"))
    meta = audit_metadata(result)
    for store in stores:
        store.append(event, client_id=result.client_id, campaign_id=result.campaign_id, reason=reason, metadata=meta)


def publish_plan(client: Any, prefix: str, strategy: Any, history: Any, result: Any) -> None:
    """An approved campaign's plan: the projection the mirror compares with (launch time now unless
    the strategy gives one), and the strategy and client history the drills clone into the twin."""
    from agents.syncvalue.stores import RedisHistoryStore

    projection = result.projection.model_copy(update={"launch_ts": result.projection.launch_ts or time.time()})
    cid = result.campaign_id
    pipe = client.pipeline()
    pipe.set(f"{prefix}campaign:{cid}:projection", json.dumps(projection.model_dump(mode="json")))
    pipe.set(f"{prefix}campaign:{cid}:strategy", strategy.model_dump_json(exclude_none=True))
    pipe.delete(f"{prefix}campaign:{cid}:mirror")  # a new plan: the mirror starts afresh
    pipe.execute()
    RedisHistoryStore(client, prefix).put(strategy.client_id, history)
