"""The simulated platforms as a live bid stream: gate a few campaigns, publish their plans, and
XADD every campaign's cumulative totals to `{prefix}bids` each tick. PAUSE commands on
`{prefix}control` are obeyed, so the mirror's decisions show in the stream.

The environment decides the clock: a RealtimeEnvironment for `synctwin feed` (production mode
on a laptop), a virtual one for the demo and tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from agents.synctwin.gatekeeper import SimulationGatekeeper
from agents.syncvalue.baseline import compute_baseline
from scenarios.schema import FaultSpec, GeneratedHistory, WorldSpec
from synctwin.config import Settings
from synctwin.models import Strategy
from synctwin.publishing import publish_plan, record_decision
from world.history import generate_history
from world.platforms import CampaignSetup
from world.world import World

# (campaign, fault kind or None, fault time in hours, multiplier)
FEED_CAMPAIGNS: tuple[tuple[str, str | None, float, float], ...] = (
    ("feed-healthy-1", None, 0.0, 1.0),
    ("feed-healthy-2", None, 0.0, 1.0),
    ("feed-cvr-crash", "cvr_drop", 24.0, 0.6),
    ("feed-runaway", "runaway_spend", 12.0, 10.0),
)


@dataclass
class Feed:
    world: World
    client: Any
    prefix: str
    published: int = 0
    paused: dict[str, float] = field(default_factory=dict)  # campaign -> env time the feed obeyed the pause
    gate_results: dict[str, Any] = field(default_factory=dict)
    on_pause: Callable[[str, dict[str, str], float], None] = lambda *_: None
    _last_control: str = "0-0"

    def publish(self, batch: Any) -> None:
        pipe = self.client.pipeline(transaction=False)
        for event in batch.events():
            pipe.xadd(f"{self.prefix}bids", {k: str(v) for k, v in event.items()}, maxlen=1_000_000, approximate=True)
        pipe.execute()
        self.published += len(batch.campaign_ids)
        for entry_id, fields in self.client.xrange(f"{self.prefix}control", min=f"({self._last_control}", max="+"):
            self._last_control = entry_id
            cid = fields.get("campaign_id")
            if fields.get("command") == "PAUSE" and cid in self.world.platforms.index and cid not in self.paused:
                self.world.platforms.pause(cid)
                self.paused[cid] = self.world.env.now
                self.on_pause(cid, fields, self.world.env.now)


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
    """Gate and publish the feed's campaigns, launch them in a world on `env`, start publishing."""
    prefix = settings.key_prefix
    chosen = FEED_CAMPAIGNS[:campaigns]
    faults = [
        FaultSpec(id=cid, kind=kind, at=at * 3600, campaign=cid, multiplier=m) for cid, kind, at, m in chosen if kind
    ]
    spec = WorldSpec(tick=tick)
    world = World(env, spec, np.random.default_rng(seed), faults, epoch0=epoch0)
    feed = Feed(world, client, prefix)
    # obey only the PAUSE commands given to this run: an earlier run's (same campaign ids, still in
    # the control stream) would otherwise pause the new campaigns at their first tick
    if client.exists(f"{prefix}control"):
        feed._last_control = client.xinfo_stream(f"{prefix}control")["last-generated-id"]
    gate = SimulationGatekeeper(settings=settings)
    market = spec.platforms["meta"]
    for i, (cid, _kind, _at, _m) in enumerate(chosen):
        history = generate_history(
            market,
            GeneratedHistory(platform="meta", daily_spend=10_000.0),
            np.random.default_rng([seed, i]),
            spec.start.date(),
        )
        strategy = Strategy(
            campaign_id=cid,
            client_id=f"client-{cid}",
            platform="meta",
            audience_size=50_000_000,
            cvr=0.02,
            daily_budget=20_000.0,
            duration_days=30,
            launch_ts=epoch0,
        )
        result = gate.evaluate(strategy, compute_baseline(history), seed=seed + i)
        feed.gate_results[cid] = result
        record_decision(result, client=client, prefix=prefix, strategy=strategy)  # as `gate --redis` does
        publish_plan(client, prefix, strategy, history, result)
        world.platforms.launch(
            CampaignSetup(
                cid,
                "meta",
                strategy.daily_budget,
                market.cpm * 1.3,
                strategy.audience_size * strategy.cvr / strategy.duration_days,
                {},
            )
        )
    world.observe(feed.publish)
    return feed
