"""`synctwin feed --redis URL`: a synthetic live bid stream, so production mode can be tried locally.

It gates a few campaigns (healthy ones and ones that will go wrong), publishes their projections,
strategies and histories as `synctwin gate --redis` would, then runs the simulated platforms on a
wall clock (compressed by --speed) and XADDs every campaign's cumulative totals to the bid stream.
PAUSE commands the mirror writes to the control stream are obeyed: the campaign stops spending."""

from __future__ import annotations

import argparse
import time

from synctwin.app.commands._worker import stop_on_signals
from synctwin.infra.redis_conn import (
    add_redis_argument,
    add_shards_argument,
    connect_deployment,
    redact,
    required_redis_url,
    with_shards,
)
from synctwin.kernel.config import get_settings
from synctwin.kernel.durations import parse_duration
from synctwin.kernel.errors import InvalidInput

N_CAMPAIGNS = 4  # world.redis_feed.FEED_CAMPAIGNS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__.split("\n\n")[1].replace("\n", " ")
    add_redis_argument(p, "e.g. redis://127.0.0.1:6379/0 (default SYNCTWIN_REDIS_URL)")
    add_shards_argument(p)
    p.add_argument(
        "--speed",
        type=float,
        default=3600.0,
        metavar="X",
        help="virtual seconds per wall second (default 3600: an hour a second; 1 = real time)",
    )
    p.add_argument("--duration", default="3d", metavar="D", help="virtual time to publish (default 3d)")
    p.add_argument(
        "--campaigns",
        type=int,
        default=N_CAMPAIGNS,
        metavar="N",
        help=f"how many of the built-in feed campaigns (1-{N_CAMPAIGNS}, default all: two healthy, "
        "one whose conversion rate crashes on day 2, one whose spend runs away)",
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument("--tick", default="5m", metavar="T", help="virtual time between events per campaign (default 5m)")


def run(args: argparse.Namespace) -> int:
    from synctwin.services.feed import start_feed
    from world.clock import make_environment
    from world.redis_feed import FEED_CAMPAIGNS

    try:
        duration, tick = parse_duration(args.duration), parse_duration(args.tick)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    if not 1 <= args.campaigns <= len(FEED_CAMPAIGNS) or args.speed <= 0 or tick <= 0 or args.seed < 0:
        raise InvalidInput(f"--campaigns must be 1-{len(FEED_CAMPAIGNS)}, --speed and --tick positive, --seed >= 0")
    settings = with_shards(get_settings(), args.shards)
    url = required_redis_url(args.redis)
    client = connect_deployment(url, settings.shards)
    env = make_environment(realtime=True, factor=1.0 / args.speed)
    # virtual time runs --speed times faster than the wall clock: start it in the past so that it catches
    # up with the wall clock at the end, and no event is dated ahead of the workers' clocks (which
    # dead-letter events more than SYNCTWIN_MAX_CLOCK_SKEW_S ahead)
    epoch0 = time.time() - duration * (1.0 - 1.0 / args.speed)
    feed = start_feed(client, env, settings, epoch0=epoch0, tick=tick, campaigns=args.campaigns, seed=args.seed)
    for cid, result in feed.gate_results.items():
        print(
            f"{cid}: gate {result.decision} (confidence {result.confidence_score:.3f}); "
            + ("projection published" if result.approved else "no projection: the guards still judge it")
            + "; launched",
            flush=True,
        )
    feed.on_pause = lambda cid, fields, t: print(
        f"t={t / 3600:6.1f}h  {cid} PAUSED ({fields.get('reason')})", flush=True
    )
    with stop_on_signals() as stop:
        print(
            f"publishing to {settings.key_prefix}bids"
            + (
                f" ({settings.shards} shard streams: synctwin shard --shards {settings.shards} ID)"
                if settings.shards > 1
                else ""
            )
            + f" at {args.speed:g}x real time for {args.duration}; "
            f"start `synctwin run --redis {redact(url)}` to watch the Council act"
            + (" (with the real password, or SYNCTWIN_REDIS_URL set)" if redact(url) != url else ""),
            flush=True,
        )
        while env.now < duration and not stop():
            env.run(until=min(env.now + 3600.0, duration))
            print(f"t={env.now / 3600:6.1f}h  {feed.published:,} events published", flush=True)
    return 0
