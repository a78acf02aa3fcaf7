"""Production campaigns, cloned from Redis into drill templates: the twin runs their strategy on
a market tuned to their client's history, and nothing live is touched."""

from __future__ import annotations

import json
import logging
from typing import Any

from agents.syncvalue.baseline import compute_baseline
from agents.syncvalue.stores import RedisHistoryStore
from harness.chaos import CampaignTemplate
from scenarios.schema import DEFAULT_MARKETS
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.strategy_io import strategy_from_dict

log = logging.getLogger("synctwin.chaos")


def production_templates(client: Any, prefix: str = "synctwin:") -> list[CampaignTemplate]:
    """One template per `{prefix}campaign:{id}:strategy` whose client history is stored too.

    A campaign that cannot be cloned (bad JSON, no history) is skipped with a warning: one bad
    record must not stop the nightly drills of the others."""
    templates = []
    start, end = f"{prefix}campaign:", ":strategy"
    for key in sorted(client.scan_iter(match=f"{start}*{end}")):
        cid = key[len(start) : -len(end)]
        try:
            strategy = strategy_from_dict(json.loads(client.get(key) or "null"), source=key)
            history = RedisHistoryStore(client, prefix).get(strategy.client_id)
            baseline = compute_baseline(history)
        except (InvalidInput, json.JSONDecodeError) as exc:
            log.warning("cannot clone campaign %s into the twin: %s", cid, exc)
            continue
        market = DEFAULT_MARKETS[strategy.platform]
        truth = {
            "cpm": baseline.cpm / market.cpm,
            "ctr": baseline.ctr / market.ctr,
            "cvr": baseline.cvr_click / market.cvr,
            "aov": baseline.avg_order_value / market.aov,
        }
        data = strategy.model_dump(exclude_none=True, exclude={"campaign_id", "client_id", "launch_ts"})
        templates.append(
            CampaignTemplate(
                name=cid,
                client_id=strategy.client_id,
                strategy=data,
                loaded_history=history,
                truth={k: round(v, 6) for k, v in truth.items() if v == v and v > 0},
            )
        )
    return templates
