"""`synctwin feed`'s use case: gate the feed's campaigns as `gate --redis` would, launch the
approved ones in the simulated world and start publishing their totals to the bid stream."""

from __future__ import annotations

from typing import Any

import simpy

from agents.syncshield.backends import RedisAuditStore
from synctwin.infra.shards import campaign_keys
from synctwin.kernel.config import Settings
from synctwin.services.gate import GateRequest, decide
from world.redis_feed import FEED_CAMPAIGNS, Feed, feed_campaign, feed_world, launch


def start_feed(
    client: Any,
    env: simpy.Environment,
    settings: Settings,
    *,
    epoch0: float,
    tick: float = 300.0,
    campaigns: int = len(FEED_CAMPAIGNS),
    seed: int = 0,
) -> Feed:
    """Gate each feed campaign (the one gate use case: audit record, plan published on approval),
    launch it, audit CAMPAIGN_LAUNCHED (the feed is the launcher, so `kpis` can count auto-rollbacks
    among launches), then publish every tick."""
    prefix = settings.key_prefix
    feed = feed_world(
        client, env, prefix, epoch0=epoch0, tick=tick, campaigns=campaigns, seed=seed, shards=settings.shards
    )
    for i in range(campaigns):
        strategy, history = feed_campaign(feed, i, epoch0=epoch0, seed=seed)
        audit = RedisAuditStore(client, key=campaign_keys(prefix, strategy.campaign_id, settings.shards).audit)
        request = GateRequest(strategy, history, seed=seed + i, suggestions=False)
        result = decide(request, settings, client=client).result
        feed.gate_results[strategy.campaign_id] = result
        launch(feed, strategy)
        audit.append(
            "CAMPAIGN_LAUNCHED",
            client_id=strategy.client_id,
            campaign_id=strategy.campaign_id,
            metadata={"decision": result.decision, "daily_budget": strategy.daily_budget, "launch_ts": epoch0},
        )
    feed.world.observe(feed.publish)
    return feed
