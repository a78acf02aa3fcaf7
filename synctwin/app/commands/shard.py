"""`synctwin shard --shards N CAMPAIGN_ID...` / `synctwin shard --shards N --control`: where a campaign's
bid events go, and where the PAUSE commands come out, so producers and consumers in any language
can route (the formula is in synctwin/infra/shards.py and docs/scale-out.md)."""

from __future__ import annotations

import argparse
import re

from synctwin.infra.shards import check_shards, control_streams, stream_for
from synctwin.kernel.config import get_settings
from synctwin.kernel.errors import InvalidInput


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Print `CAMPAIGN_ID STREAM_KEY` per campaign: the bid stream a producer XADDs its events to. "
        "With --control, print the control stream keys (one per shard, shard 0 first), where the PAUSE "
        "commands are written. A campaign's shard is CRC32(UTF-8 campaign_id) mod N; shard k's keys carry "
        "the hash tag {s<k>} when N > 1 (one Redis Cluster slot), and are today's names when N = 1."
    )
    p.add_argument("campaign_ids", nargs="*", metavar="CAMPAIGN_ID", help="campaign ids, as in the strategy")
    p.add_argument(
        "--shards",
        metavar="N",
        help="number of shards, 1 to 16384 (default SYNCTWIN_SHARDS, 1); the same N as the workers'",
    )
    p.add_argument("--control", action="store_true", help="print the control stream keys instead")


def run(args: argparse.Namespace) -> int:
    from synctwin.kernel.models import Strategy

    settings = get_settings()
    shards = settings.shards if args.shards is None else check_shards(args.shards)
    prefix = settings.key_prefix
    if args.control == bool(args.campaign_ids):
        raise InvalidInput("give CAMPAIGN_ID... or --control (one of them)")
    if args.control:
        keys = control_streams(prefix, shards)
        print("\n".join(keys))
        return 0
    field = Strategy.model_fields["campaign_id"]
    pattern = next(m.pattern for m in field.metadata if getattr(m, "pattern", None))
    for cid in args.campaign_ids:
        if not re.fullmatch(pattern, cid) or len(cid) > 200:
            raise InvalidInput(
                f"not a campaign id: {cid[:60]!r} (1-200 of letters, digits, '_', '.', ':', '-', as a strategy's)",
                field="CAMPAIGN_ID",
            )
    print("\n".join(f"{cid} {stream_for(prefix, cid, shards)}" for cid in args.campaign_ids))
    return 0
