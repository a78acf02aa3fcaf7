"""Many keys' commands as one EVAL (synctwin/infra/keyed_writes.py): on a real redis-server, on a
3-master cluster (one shard's keys share a slot), and one by one where there is no scripting."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from synctwin.infra.keyed_writes import KeyedWrites, hget_many, scripting


def _apply(client: object, writes: KeyedWrites, *, transaction: bool) -> None:
    pipe = client.pipeline(transaction=transaction)  # type: ignore[attr-defined]
    writes.queue(pipe)
    pipe.execute()


def _fill(writes: KeyedWrites, prefix: str) -> None:
    for i in range(5):
        writes.add("HSET", f"{prefix}campaign:c{i}:mirror", "rev", i + 1, "spend", f"{i * 1.5}")
    writes.add("ZADD", f"{prefix}campaign:c0:totals", "GT", 3.0, "a", 1.0, "b")
    writes.add("ZADD", f"{prefix}campaign:c0:totals", "GT", 2.0, "a", 5.0, "b")  # GT keeps the maxima


def _check(client: object, prefix: str) -> None:
    revs = hget_many(client, [f"{prefix}campaign:c{i}:mirror" for i in range(6)], "rev", scripted=scripting(client))
    assert [None if r is None else int(r) for r in revs] == [1, 2, 3, 4, 5, None]
    assert client.hget(f"{prefix}campaign:c3:mirror", "spend") in (b"4.5", "4.5")  # type: ignore[attr-defined]
    scores = dict(client.zrange(f"{prefix}campaign:c0:totals", 0, -1, withscores=True))  # type: ignore[attr-defined]
    assert {(k.decode() if isinstance(k, bytes) else k): v for k, v in scores.items()} == {"a": 3.0, "b": 5.0}


def test_one_eval_in_a_transaction_on_a_real_server(redis_client: redis.Redis) -> None:
    assert scripting(redis_client)
    writes = KeyedWrites(scripting(redis_client))
    _fill(writes, "kw:")
    assert len(writes) == 7 and not writes.alone  # all seven go as one script
    before = redis_client.info("commandstats").get("cmdstat_eval", {}).get("calls", 0)
    _apply(redis_client, writes, transaction=True)
    assert redis_client.info("commandstats")["cmdstat_eval"]["calls"] == before + 1
    assert len(writes) == 0  # queued writes are handed over once
    _check(redis_client, "kw:")


def test_the_script_aborts_a_watched_transaction_like_any_write(redis_client: redis.Redis) -> None:
    """Inside WATCH/MULTI the script is one of the transaction's writes: another writer's change
    to a watched key makes EXEC write nothing, the script's writes included."""
    key = "kw:campaign:w:mirror"
    redis_client.hset(key, "rev", 1)
    pipe = redis_client.pipeline(transaction=True)
    pipe.watch(key)
    redis_client.hset(key, "rev", 7)  # another worker
    pipe.multi()
    writes = KeyedWrites(True)
    writes.add("HSET", key, "rev", 2)
    writes.add("HSET", "kw:campaign:w2:mirror", "rev", 2)
    writes.queue(pipe)
    with pytest.raises(redis.exceptions.WatchError):
        pipe.execute()
    assert redis_client.hget(key, "rev") == "7" and not redis_client.exists("kw:campaign:w2:mirror")


def test_without_scripting_the_same_writes_go_one_by_one() -> None:
    client = fakeredis.FakeRedis()
    assert not scripting(client)
    writes = KeyedWrites(scripting(client))
    _fill(writes, "kw:")
    assert len(writes.alone) == 7 and not writes.keys
    _apply(client, writes, transaction=True)
    _check(client, "kw:")


def test_one_shards_keys_in_one_eval_on_a_cluster(cluster_client: object) -> None:
    assert scripting(cluster_client)
    writes = KeyedWrites(True)
    _fill(writes, "synctwin:{s3}:")
    _apply(cluster_client, writes, transaction=False)
    _check(cluster_client, "synctwin:{s3}:")


def test_a_command_too_long_for_lua_goes_on_its_own(redis_client: redis.Redis) -> None:
    writes = KeyedWrites(True)
    args = [x for i in range(4000) for x in (f"f{i}", i)]  # 8,000 arguments: more than unpack returns
    writes.add("HSET", "kw:big", *args)
    writes.add("HSET", "kw:small", "a", 1)
    writes.add("HSET", "kw:small2", "a", 2)
    assert len(writes.alone) == 1 and len(writes.keys) == 2
    _apply(redis_client, writes, transaction=True)
    assert redis_client.hlen("kw:big") == 4000 and redis_client.hget("kw:small2", "a") == "2"


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 6), st.lists(st.tuples(st.sampled_from("abcd"), st.integers(-5, 5)), min_size=1)),
        min_size=1,
        max_size=12,
    )
)
def test_scripted_and_one_by_one_leave_the_same_hashes(
    redis_server: Any, ops: list[tuple[int, list[tuple[str, int]]]]
) -> None:
    """Property: whatever the commands (keys repeated, in any order), one EVAL leaves what the
    same commands one by one leave (both on the real server)."""
    client = redis.Redis.from_url(redis_server.url)
    out = []
    for scripted in (True, False):
        client.delete(*[f"kwp:{scripted}:{k}" for k in range(7)])
        writes = KeyedWrites(scripted)
        for k, fields in ops:
            writes.add("HSET", f"kwp:{scripted}:{k}", *[x for kv in fields for x in kv])
        _apply(client, writes, transaction=True)
        out.append([client.hgetall(f"kwp:{scripted}:{k}") for k in range(7)])
    client.close()
    assert out[0] == out[1]
