"""Shard routing and key names (synctwin/infra/shards.py): pure properties, checked with Hypothesis.

The cluster slot of a key is computed with redis-py's own `key_slot` (CRC16 of the hash tag), so
"all keys of a shard are in one slot" is checked against the function Redis Cluster uses.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from synctwin.infra.shards import (
    MAX_SHARDS,
    ShardKeys,
    all_shards,
    campaign_keys,
    check_cluster,
    check_shards,
    control_streams,
    shard_keys,
    shard_of,
    shard_prefix,
    stream_for,
)
from synctwin.kernel.config import Settings
from synctwin.kernel.errors import InvalidInput

ids = st.text(min_size=1, max_size=40)  # any unicode, braces and colons included
counts = st.integers(min_value=1, max_value=MAX_SHARDS)
prefixes = st.sampled_from(["synctwin:", "acme:", "t1:synctwin:", "x"])


def crc32_reference(data: bytes) -> int:
    """CRC-32/ISO-HDLC bit by bit (reflected polynomial 0xEDB88320), written from the definition:
    what any language's CRC32 computes, independent of zlib."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def slot(key: str) -> int:
    return key_slot(key.encode("utf-8"))


def shard_key_names(keys: ShardKeys) -> list[str]:
    return [
        keys.bids,
        keys.dead,
        keys.control,
        keys.alerts,
        keys.audit,
        keys.audit + ":head",
        keys.lease,
        keys.lease_generation,
        keys.key("consumer", "synctwin-mirror", "w1"),
        keys.key("consumers", "synctwin-mirror"),
        keys.key("shadow", "pending"),
    ]


def test_the_documented_check_value() -> None:
    # CRC32("123456789") = 0xCBF43926 is the standard check value every CRC32 implementation quotes
    assert crc32_reference(b"123456789") == 0xCBF43926
    assert shard_of("123456789", MAX_SHARDS) == 0xCBF43926 % MAX_SHARDS
    assert shard_of("123456789", 7) == 0xCBF43926 % 7


@given(ids, counts)
def test_every_id_maps_to_one_of_n_shards_as_any_crc32_would(campaign_id: str, n: int) -> None:
    k = shard_of(campaign_id, n)
    assert 0 <= k < n
    assert k == shard_of(campaign_id, n)  # deterministic
    assert k == crc32_reference(campaign_id.encode("utf-8")) % n


def test_ids_spread_evenly_over_shards() -> None:
    n, total = 4, 20_000
    seen = [0] * n
    for i in range(total):
        seen[shard_of(f"campaign-{i}", n)] += 1
    # each share within 2 percentage points of 25% (binomial sd is 0.3 points)
    assert all(abs(c / total - 1 / n) < 0.02 for c in seen), seen


@given(prefixes, ids)
def test_one_shard_gives_todays_key_names(prefix: str, campaign_id: str) -> None:
    keys = shard_keys(prefix, 0, 1)
    assert keys.prefix == prefix
    assert (keys.bids, keys.dead, keys.control, keys.alerts, keys.audit) == (
        f"{prefix}bids",
        f"{prefix}bids:dead",
        f"{prefix}control",
        f"{prefix}alerts",
        f"{prefix}audit",
    )
    assert keys.campaign(campaign_id, "projection") == f"{prefix}campaign:{campaign_id}:projection"
    assert stream_for(prefix, campaign_id, 1) == f"{prefix}bids"
    assert control_streams(prefix, 1) == [f"{prefix}control"]


@settings(max_examples=200)
@given(prefixes, st.integers(min_value=2, max_value=64), st.lists(ids, min_size=1, max_size=20))
def test_all_keys_of_a_shard_are_in_one_cluster_slot(prefix: str, n: int, campaign_ids: list[str]) -> None:
    for cid in campaign_ids:
        keys = campaign_keys(prefix, cid, n)
        expected = slot(f"s{keys.shard}")  # only the hash tag's content is hashed
        names = [*shard_key_names(keys), *(keys.campaign(cid, w) for w in ("projection", "strategy", "paused"))]
        assert {slot(name) for name in names} == {expected}, names
        assert keys.prefix == f"{prefix}{{s{keys.shard}}}:"


@given(prefixes, st.integers(min_value=2, max_value=64))
def test_shards_have_distinct_keys(prefix: str, n: int) -> None:
    every = all_shards(prefix, n)
    assert [k.shard for k in every] == list(range(n))
    assert len({k.bids for k in every}) == n
    assert len(set(control_streams(prefix, n))) == n


def test_a_campaign_key_of_another_shard_is_refused() -> None:
    n = 4
    other = next(f"c{i}" for i in range(100) if shard_of(f"c{i}", n) != 0)
    with pytest.raises(ValueError, match="not 0"):
        shard_keys("synctwin:", 0, n).campaign(other, "projection")
    home = campaign_keys("synctwin:", other, n)
    assert home.campaign(other, "projection").endswith(f":campaign:{other}:projection")


def test_a_prefix_with_braces_is_refused_when_sharded() -> None:
    with pytest.raises(InvalidInput, match="SYNCTWIN_KEY_PREFIX"):
        shard_prefix("acme{eu}:", 1, 4)
    assert shard_prefix("acme{eu}:", 0, 1) == "acme{eu}:"  # unsharded: today's names, whatever they are


def test_without_the_brace_guard_every_shard_would_share_one_slot() -> None:
    # what the guard prevents: Redis hashes the FIRST {...}, so the prefix's tag hides the shard's
    names = [f"acme{{eu}}:{{s{k}}}:bids" for k in range(4)]
    assert len({slot(n) for n in names}) == 1
    assert len({slot(shard_keys("acme:", k, 4).bids) for k in range(4)}) > 1


@pytest.mark.parametrize("bad", [0, -1, "0", "-3", "two", "1.5", "", True, 2.0, MAX_SHARDS + 1, None])
def test_bad_shard_counts_are_one_clear_error(bad: object) -> None:
    with pytest.raises(InvalidInput, match="--shards"):
        check_shards(bad)


@pytest.mark.parametrize(("good", "n"), [(1, 1), ("4", 4), (" 16 ", 16), (MAX_SHARDS, MAX_SHARDS)])
def test_good_shard_counts(good: object, n: int) -> None:
    assert check_shards(good) == n


def test_a_cluster_needs_tagged_keys() -> None:
    with pytest.raises(InvalidInput, match="cluster"):
        check_cluster(1, cluster=True)
    check_cluster(1, cluster=False)
    check_cluster(2, cluster=True)
    # why: untagged names of one shard spread over slots
    untagged = shard_key_names(shard_keys("synctwin:", 0, 1))
    assert len({slot(n) for n in untagged}) > 1


def test_the_setting_defaults_to_one_and_refuses_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    from synctwin.kernel.config import _load

    monkeypatch.delenv("SYNCTWIN_SHARDS", raising=False)
    assert Settings().shards == 1
    monkeypatch.setenv("SYNCTWIN_SHARDS", "4")
    assert _load(Settings).shards == 4
    monkeypatch.setenv("SYNCTWIN_SHARDS", "0")
    with pytest.raises(InvalidInput, match="SYNCTWIN_SHARDS"):
        _load(Settings)
