"""A shard's keys on a local 3-master Redis Cluster (tests/conftest.py `redis_cluster`): the consumer
group, the commit's WATCH/MULTI/EXEC and Lua scripts over one shard's keys meet no CROSSSLOT;
`connect()` on any node gives the cluster client."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from agents.syncshield.backends import RedisAuditStore
from synctwin.infra.redis_conn import connect, connect_checked, is_cluster
from synctwin.infra.shards import all_shards, campaign_keys, shard_keys, shard_of, stream_for

pytestmark = pytest.mark.redis

N = 4
GROUP = "synctwin-mirror"


def campaigns_per_shard(n: int) -> dict[int, str]:
    """One campaign id of each shard."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < n:
        found.setdefault(shard_of(f"c{i}", n), f"c{i}")
        i += 1
    return found


def test_any_node_url_gives_the_cluster_client(redis_cluster: Any, redis_server: Any) -> None:
    for port in redis_cluster.ports:
        client = connect_checked(f"redis://127.0.0.1:{port}/0")
        try:
            assert isinstance(client, RedisCluster) and is_cluster(client)
            # a key that lives on another node than the one named in the URL is served too
            for keys in all_shards("synctwin:", N):
                client.set(keys.key("probe"), "1")
                assert client.get(keys.key("probe")) == "1"
        finally:
            client.close()
    plain = connect(redis_server.url)
    try:
        assert isinstance(plain, redis.Redis) and not is_cluster(plain)
    finally:
        plain.close()


def test_shards_spread_over_the_nodes(cluster_client: RedisCluster) -> None:
    nodes = {cluster_client.get_node_from_key(k.bids).name for k in all_shards("synctwin:", N)}
    assert len(nodes) >= 2  # s0..s3 hash to slots on all three masters (docs/scale-out.md)


def test_a_shards_consumer_group_commit_and_scripts_work_on_the_cluster(cluster_client: RedisCluster) -> None:
    client = cluster_client
    for shard, cid in campaigns_per_shard(N).items():
        keys = campaign_keys("synctwin:", cid, N)
        assert keys.shard == shard and stream_for("synctwin:", cid, N) == keys.bids
        client.xgroup_create(keys.bids, GROUP, id="0", mkstream=True)
        client.set(keys.campaign(cid, "projection"), "{}")
        event = {"event_id": f"e-{cid}", "campaign_id": cid, "ts": "1", "spend": "10"}
        client.xadd(keys.bids, event)
        client.xadd(keys.bids, {"garbage": "1"})
        [(_, entries)] = client.xreadgroup(GROUP, "w1", {keys.bids: ">"}, count=10)
        assert entries[0][1] == event
        # the commit of a batch, as the Council makes it: WATCH the marker, MULTI, all the shard's streams
        marker = keys.campaign(cid, "paused")
        with client.pipeline(transaction=True) as pipe:
            pipe.watch(marker)
            assert pipe.exists(marker) == 0
            pipe.multi()
            pipe.hset(marker, mapping={"command": "PAUSE", "event_id": event["event_id"]})
            pipe.xadd(keys.control, {"command": "PAUSE", "campaign_id": cid})
            pipe.xadd(keys.alerts, {"severity": "critical", "title": "paused"})
            pipe.xadd(keys.dead, {"reason": "not a bid event"})
            pipe.xack(keys.bids, GROUP, *(e[0] for e in entries))
            pipe.execute()
        assert client.xpending(keys.bids, GROUP)["pending"] == 0
        # a Lua script over the shard's keys (the mirror's compare-and-set shape)
        script = client.register_script(
            "redis.call('HSET', KEYS[1], 'seen', ARGV[1]);"
            "return {redis.call('XLEN', KEYS[2]), redis.call('XLEN', KEYS[3]), redis.call('GET', KEYS[4])}"
        )
        state = keys.campaign(cid, "mirror")
        assert script(keys=[state, keys.control, keys.bids, keys.campaign(cid, "projection")], args=["1"]) == [
            1,
            2,
            "{}",
        ]
        # the audit chain of the shard (WATCH of the stream and its head, MULTI/EXEC)
        audit = RedisAuditStore(client, key=keys.audit, hmac_key=None)
        for i in range(3):
            audit.append("CAMPAIGN_PAUSED", campaign_id=cid, reason=f"r{i}")
        report = audit.verify()
        assert report.ok and report.checked == 3, report


def test_todays_unsharded_names_are_refused_by_the_cluster(cluster_client: RedisCluster) -> None:
    """Why a cluster needs N >= 2 (check_cluster): without the hash tag one script's keys cross slots."""
    keys = shard_keys("synctwin:", 0, 1)
    script = cluster_client.register_script("return redis.call('XLEN', KEYS[1]) + redis.call('XLEN', KEYS[2])")
    with pytest.raises((redis.exceptions.RedisClusterException, redis.ResponseError), match=r"(?i)slot"):
        script(keys=[keys.bids, keys.control])


def reshard_snippet() -> str:
    """The key-moving step of docs/scale-out.md's drain-and-switch, as printed there."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "scale-out.md").read_text()
    return text.split("4. **Move the campaign keys**")[1].split("```python")[1].split("```")[0]


@pytest.mark.parametrize("target", ["server", "cluster"])
def test_the_documented_reshard_moves_every_campaign_key_to_its_new_shard(
    target: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("redis_server" if target == "server" else "redis_cluster").url
    client = request.getfixturevalue("redis_client" if target == "server" else "cluster_client")
    cids = [f"c{i}" for i in range(40)] + ["acme:eu.summer_2025"]
    for cid in cids:
        old = campaign_keys("synctwin:", cid, 2)
        client.set(old.campaign(cid, "projection"), f"p-{cid}")
        client.hset(old.campaign(cid, "paused"), mapping={"command": "PAUSE", "campaign_id": cid})
    snippet = textwrap.dedent(reshard_snippet()).replace("connect(URL)", "connect(url)")
    exec(compile(snippet, "docs/scale-out.md", "exec"), {"url": url})
    for cid in cids:
        new = campaign_keys("synctwin:", cid, 4)
        assert client.get(new.campaign(cid, "projection")) == f"p-{cid}"
        assert client.hgetall(new.campaign(cid, "paused"))["campaign_id"] == cid
        old = campaign_keys("synctwin:", cid, 2)
        if old.prefix != new.prefix:
            assert client.exists(old.campaign(cid, "projection"), old.campaign(cid, "paused")) == 0
