"""`synctwin feed --redis URL`: a synthetic live bid stream, so production mode can be tried locally.

It gates a few campaigns (healthy ones and ones that will go wrong), publishes their projections,
strategies and histories as `synctwin gate --redis` would, then runs the simulated platforms on a
wall clock (compressed by --speed) and XADDs every campaign's cumulative totals to the bid stream.
PAUSE commands the mirror writes to the control stream are obeyed: the campaign stops spending.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from typing import Any

from synctwin.errors import InvalidInput

# (campaign, fault kind or None, fault time in hours, multiplier)
CAMPAIGNS = (
    ("feed-healthy-1", None, 0.0, 1.0),
    ("feed-healthy-2", None, 0.0, 1.0),
    ("feed-cvr-crash", "cvr_drop", 24.0, 0.6),
    ("feed-runaway", "runaway_spend", 12.0, 10.0),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__.split("\n\n")[1].replace("\n", " ")
    p.add_argument("--redis", required=True, metavar="URL", help="e.g. redis://127.0.0.1:6379/0")
    p.add_argument("--speed", type=float, default=3600.0, metavar="X",
                   help="virtual seconds per wall second (default 3600: an hour a second; 1 = real time)")
    p.add_argument("--duration", default="3d", metavar="D", help="virtual time to publish (default 3d)")
    p.add_argument("--campaigns", type=int, default=len(CAMPAIGNS), metavar="N",
                   help=f"how many of the built-in feed campaigns (1-{len(CAMPAIGNS)}, default all: two healthy, "
                        "one whose conversion rate crashes on day 2, one whose spend runs away)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument("--tick", default="5m", metavar="T", help="virtual time between events per campaign (default 5m)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from agents.synctwin.gatekeeper import SimulationGatekeeper
    from agents.syncvalue.baseline import compute_baseline
    from scenarios.schema import GeneratedHistory, WorldSpec
    from synctwin.config import get_settings
    from synctwin.durations import parse_duration
    from synctwin.models import Strategy
    from synctwin.redis_conn import connect_checked
    from world.clock import make_environment
    from world.history import generate_history
    from world.platforms import CampaignSetup
    from world.world import World

    try:
        duration, tick = parse_duration(args.duration), parse_duration(args.tick)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    if not 1 <= args.campaigns <= len(CAMPAIGNS) or args.speed <= 0 or tick <= 0 or args.seed < 0:
        raise InvalidInput(f"--campaigns must be 1-{len(CAMPAIGNS)}, --speed and --tick positive, --seed >= 0")
    settings = get_settings()
    prefix = settings.key_prefix
    client = connect_checked(args.redis)
    epoch0 = time.time()
    spec = WorldSpec(tick=tick)
    env = make_environment(realtime=True, factor=1.0 / args.speed)
    faults = [{"id": cid, "kind": kind, "at": at * 3600, "campaign": cid, "multiplier": m}
              for cid, kind, at, m in CAMPAIGNS[:args.campaigns] if kind]
    from scenarios.schema import FaultSpec

    world = World(env, spec, np.random.default_rng(args.seed), [FaultSpec(**f) for f in faults], epoch0=epoch0)
    gate = SimulationGatekeeper(settings=settings)
    market = spec.platforms["meta"]
    for i, (cid, _kind, _at, _m) in enumerate(CAMPAIGNS[:args.campaigns]):
        history = generate_history(market, GeneratedHistory(platform="meta", daily_spend=10_000.0),
                                   np.random.default_rng([args.seed, i]), spec.start.date())
        strategy = Strategy(campaign_id=cid, client_id=f"client-{cid}", platform="meta", audience_size=50_000_000,
                            cvr=0.02, daily_budget=20_000.0, duration_days=30, launch_ts=epoch0)
        result = gate.evaluate(strategy, compute_baseline(history), seed=args.seed + i)
        pipe = client.pipeline()
        pipe.set(f"{prefix}campaign:{cid}:projection", json.dumps(result.projection.model_dump(mode="json")))
        pipe.set(f"{prefix}campaign:{cid}:strategy", strategy.model_dump_json(exclude_none=True))
        pipe.set(f"{prefix}client:{strategy.client_id}:history", history.to_csv())
        pipe.delete(f"{prefix}campaign:{cid}:mirror")
        pipe.execute()
        world.platforms.launch(CampaignSetup(cid, "meta", strategy.daily_budget, market.cpm * 1.3,
                                             strategy.audience_size * strategy.cvr / 30, {}))
        print(f"{cid}: gate {result.decision} (confidence {result.confidence_score:.3f}); projection published",
              flush=True)
    last_control = f"{int(epoch0 * 1000)}-0"
    published = {"n": 0}

    def publish(batch: Any) -> None:
        nonlocal last_control
        pipe = client.pipeline(transaction=False)
        for event in batch.events():
            pipe.xadd(f"{prefix}bids", {k: str(v) for k, v in event.items()}, maxlen=1_000_000, approximate=True)
        pipe.execute()
        published["n"] += len(batch.campaign_ids)
        for entry_id, fields in client.xrange(f"{prefix}control", min=f"({last_control}", max="+"):
            last_control = entry_id
            cid = fields.get("campaign_id")
            if fields.get("command") == "PAUSE" and cid in world.platforms.index:
                world.platforms.pause(cid)
                print(f"t={env.now / 3600:6.1f}h  {cid} PAUSED by the mirror ({fields.get('reason')}, deviation "
                      f"{fields.get('deviation')})", flush=True)

    world.observe(publish)
    stop = {"now": False}

    def _stop(*_: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"publishing to {prefix}bids at {args.speed:g}x real time for {args.duration}; "
          f"start `synctwin mirror --redis {args.redis}` to watch it act", flush=True)
    step = 3600.0
    while env.now < duration and not stop["now"]:
        env.run(until=min(env.now + step, duration))
        print(f"t={env.now / 3600:6.1f}h  {published['n']:,} events published", flush=True)
    return 0

