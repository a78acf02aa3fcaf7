"""Where a campaign's events and keys live when the bid stream is split into N shards.

The routing is a pure function any producer can compute in any language (docs/scale-out.md):
shard = CRC32 (zlib's IEEE polynomial) of the campaign id's UTF-8 bytes, as written, mod N.
Shard k keeps every key under one prefix: the configured one when N = 1 (today's names), else
`{prefix}{s<k>}:`, whose Redis Cluster hash tag puts a shard's keys in one slot, so its MULTI/EXEC
and Lua scripts never meet CROSSSLOT (hence a cluster needs N >= 2). N is fixed per deployment."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from synctwin.kernel.errors import InvalidInput

__all__ = [
    "FORMULA",
    "MAX_SHARDS",
    "ShardKeys",
    "all_shards",
    "campaign_keys",
    "check_cluster",
    "check_shards",
    "control_streams",
    "shard_keys",
    "shard_of",
    "shard_prefix",
    "stream_for",
]

FORMULA = "CRC32(UTF-8 campaign_id) mod N"
MAX_SHARDS = 16_384
"""Redis Cluster has 16,384 slots; more shards than slots could not each have their own."""


def check_shards(value: object, *, source: str = "--shards") -> int:
    """N as an int in 1..MAX_SHARDS, or one InvalidInput naming where it came from.

    Accepts an int or the text of one ("4"), as a flag or an environment variable gives it.
    """
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        shown = value[:40] if isinstance(value, str) else value
        raise InvalidInput(f"must be a whole number of shards from 1 to {MAX_SHARDS} (got {shown!r})", source=source)
    if not 1 <= value <= MAX_SHARDS:
        raise InvalidInput(f"must be from 1 to {MAX_SHARDS} (got {value})", source=source)
    return value


def shard_of(campaign_id: str, shards: int) -> int:
    """The shard of a campaign: CRC32 of its UTF-8 id, mod N (module docstring: portable)."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    return zlib.crc32(campaign_id.encode("utf-8")) % shards


def shard_prefix(prefix: str, shard: int, shards: int) -> str:
    """The key prefix of shard `shard` of `shards`: the prefix itself when N = 1, else
    `{prefix}{s<k>}:` (one hash tag per shard)."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not in 0..{shards - 1}")
    if shards == 1:
        return prefix
    if "{" in prefix or "}" in prefix:
        # Redis hashes the first {...} of a key: braces in the prefix would hide the shard's tag
        raise InvalidInput(
            f"a key prefix with '{{' or '}}' cannot be sharded (got {prefix!r}): the shard's hash tag must be "
            "the first braces of every key",
            source="SYNCTWIN_KEY_PREFIX",
        )
    return f"{prefix}{{s{shard}}}:"


@dataclass(frozen=True, slots=True)
class ShardKeys:
    """The keys of one shard. `prefix` is what a worker takes as its key prefix; the properties
    name the streams every shard has, `campaign` a campaign's keys, `key` anything else."""

    prefix: str
    shard: int
    shards: int

    def key(self, *parts: str) -> str:
        """Any key of this shard: key('consumer', group, name) -> '{prefix}consumer:group:name'."""
        return self.prefix + ":".join(parts)

    @property
    def bids(self) -> str:
        return self.prefix + "bids"

    @property
    def dead(self) -> str:
        return self.prefix + "bids:dead"

    @property
    def control(self) -> str:
        return self.prefix + "control"

    @property
    def alerts(self) -> str:
        return self.prefix + "alerts"

    @property
    def audit(self) -> str:
        return self.prefix + "audit"

    @property
    def lease(self) -> str:
        """The shard's lease (synctwin.infra.leases): who reads this shard now, and its generation."""
        return self.prefix + "lease"

    @property
    def lease_generation(self) -> str:
        """The shard's lease counter: +1 at every acquisition, the fencing token's number."""
        return self.prefix + "lease:generation"

    def campaign(self, campaign_id: str, what: str) -> str:
        """A campaign key: campaign('c1', 'projection') -> '{prefix}campaign:c1:projection'.
        The campaign must belong to this shard, or its keys would be where no worker looks."""
        if shard_of(campaign_id, self.shards) != self.shard:
            raise ValueError(
                f"campaign {campaign_id!r} is in shard {shard_of(campaign_id, self.shards)}, not {self.shard}"
            )
        return f"{self.prefix}campaign:{campaign_id}:{what}"


def shard_keys(prefix: str, shard: int, shards: int) -> ShardKeys:
    """The keys of shard `shard` of `shards` under the configured prefix."""
    return ShardKeys(shard_prefix(prefix, shard, shards), shard, shards)


def all_shards(prefix: str, shards: int) -> list[ShardKeys]:
    """Every shard's keys, shard 0 first."""
    return [shard_keys(prefix, k, shards) for k in range(shards)]


def campaign_keys(prefix: str, campaign_id: str, shards: int) -> ShardKeys:
    """The keys of a campaign's shard (where the gate publishes its plan, a producer its events)."""
    return shard_keys(prefix, shard_of(campaign_id, shards), shards)


def stream_for(prefix: str, campaign_id: str, shards: int) -> str:
    """The bid stream a producer XADDs a campaign's events to."""
    return campaign_keys(prefix, campaign_id, shards).bids


def control_streams(prefix: str, shards: int) -> list[str]:
    """The control streams SyncFlow's consumers (the platforms' side) read, shard 0 first."""
    return [k.control for k in all_shards(prefix, shards)]


def check_cluster(shards: int, *, cluster: bool) -> None:
    """Refuse N = 1 on a Redis Cluster: without a hash tag one shard's keys spread over many slots,
    and the first MULTI/EXEC or Lua script over them fails with CROSSSLOT."""
    if cluster and shards < 2:
        raise InvalidInput(
            "this Redis is a cluster: give --shards 2 or more (or SYNCTWIN_SHARDS), so each shard's keys "
            "share one hash tag and one slot (docs/scale-out.md)"
        )
