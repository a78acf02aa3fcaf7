"""The simulated platforms as a live bid stream: XADD every launched campaign's cumulative totals
to `{prefix}bids` each tick and obey the PAUSE commands on `{prefix}control`, so the Council's
decisions show in the stream. Gating the campaigns is the caller's (synctwin/services/feed.py):
the world knows no agent.

The environment decides the clock: a RealtimeEnvironment for `synctwin feed` (production mode
on a laptop), a virtual one for the demo and tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from scenarios.schema import FaultSpec, GeneratedHistory, WorldSpec
from synctwin.infra.shards import control_streams, stream_for
from synctwin.kernel.history import History
from synctwin.kernel.models import Strategy
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
    shards: int = 1  # each campaign's events go to its shard's stream (synctwin/infra/shards.py)
    _last_control: dict[str, str] = field(default_factory=dict)  # control stream -> last entry read

    def publish(self, batch: Any) -> None:
        pipe = self.client.pipeline(transaction=False)
        for event in batch.events():
            stream = stream_for(self.prefix, str(event["campaign_id"]), self.shards)
            pipe.xadd(stream, {k: str(v) for k, v in event.items()}, maxlen=1_000_000, approximate=True)
        pipe.execute()
        self.published += len(batch.campaign_ids)
        for control in control_streams(self.prefix, self.shards):
            last = self._last_control.get(control, "0-0")
            for entry_id, fields in self.client.xrange(control, min=f"({last}", max="+"):
                self._last_control[control] = entry_id
                cid = fields.get("campaign_id")
                if fields.get("command") == "PAUSE" and cid in self.world.platforms.index and cid not in self.paused:
                    self.world.platforms.pause(cid)
                    self.paused[cid] = self.world.env.now
                    self.on_pause(cid, fields, self.world.env.now)


def feed_world(
    client: Any,
    env: simpy.Environment,
    prefix: str,
    *,
    epoch0: float,
    tick: float = 300.0,
    campaigns: int = len(FEED_CAMPAIGNS),
    seed: int = 0,
    shards: int = 1,
) -> Feed:
    """The world the feed publishes, with its campaigns' faults scheduled and none launched yet."""
    chosen = FEED_CAMPAIGNS[:campaigns]
    faults = [
        FaultSpec(id=cid, kind=kind, at=at * 3600, campaign=cid, multiplier=m) for cid, kind, at, m in chosen if kind
    ]
    world = World(env, WorldSpec(tick=tick), np.random.default_rng(seed), faults, epoch0=epoch0)
    feed = Feed(world, client, prefix, shards=shards)
    # obey only the PAUSE commands given to this run: an earlier run's (same campaign ids, still in
    # the control stream) would otherwise pause the new campaigns at their first tick
    for control in control_streams(prefix, shards):
        if client.exists(control):
            feed._last_control[control] = client.xinfo_stream(control)["last-generated-id"]
    return feed


def feed_campaign(feed: Feed, i: int, *, epoch0: float, seed: int = 0) -> tuple[Strategy, History]:
    """The i-th feed campaign's strategy (launched at epoch0) and its client's 90-day history."""
    cid = FEED_CAMPAIGNS[i][0]
    spec = feed.world.spec
    history = generate_history(
        spec.platforms["meta"],
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
    return strategy, history


def launch(feed: Feed, strategy: Strategy) -> None:
    """Launch a campaign on the feed's simulated platform (bid above the market's CPM)."""
    market = feed.world.spec.platforms[strategy.platform]
    feed.world.platforms.launch(
        CampaignSetup(
            strategy.campaign_id,
            strategy.platform,
            strategy.daily_budget,
            market.cpm * 1.3,
            strategy.audience_size * strategy.cvr / strategy.duration_days,
            {},
        )
    )
