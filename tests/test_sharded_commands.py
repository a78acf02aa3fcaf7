"""`--shards N` on the commands that write or read a deployment's Redis: `gate --redis`, `feed`,
`audit verify`, `kpis` and `review` put and find each campaign's records in its shard, on one
redis-server and on a 3-master Redis Cluster (tests/conftest.py)."""

from __future__ import annotations

import json
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from synctwin.app.cli import main
from synctwin.infra.shards import campaign_keys, shard_of
from synctwin.kernel.config import get_settings
from synctwin.services.feed import start_feed
from world.clock import make_environment

pytestmark = pytest.mark.redis

N = 4
EXAMPLES = files("scenarios") / "builtin" / "examples"


def _strategies(tmp_path: Path, count: int) -> list[tuple[str, Path]]:
    """Copies of the bundled strategy under ids that fall in different shards."""
    base = json.loads((EXAMPLES / "strategy.json").read_text())
    out, seen, i = [], set(), 0
    while len(out) < count:
        cid = f"shard-test-{i}"
        i += 1
        if shard_of(cid, N) in seen:
            continue
        seen.add(shard_of(cid, N))
        path = tmp_path / f"{cid}.json"
        path.write_text(json.dumps({**base, "campaign_id": cid}))
        out.append((cid, path))
    return out


def _gate_all(url: str, tmp_path: Path, count: int) -> list[str]:
    history = tmp_path / "history.csv"
    history.write_text((EXAMPLES / "history_90d.csv").read_text())
    ids = []
    for cid, path in _strategies(tmp_path, count):
        code = main(["gate", str(path), "--history", str(history), "--redis", url, "--shards", str(N), "--seed", "1"])
        assert code in (0, 1)
        ids.append(cid)
    return ids


def _check_layout(client: Any, ids: list[str]) -> None:
    for cid in ids:
        keys = campaign_keys("synctwin:", cid, N)
        records = [json.loads(f["record"]) for _, f in client.xrange(keys.audit)]
        assert [r["campaign_id"] for r in records] == [cid]  # its shard's chain, and only there
        assert client.exists(keys.campaign(cid, "gate")) or client.exists(keys.campaign(cid, "rejection"))
    assert not client.exists("synctwin:audit")  # nothing under the unsharded names


def test_gate_audit_verify_and_kpis_on_shards(redis_server: Any, redis_client: redis.Redis, tmp_path: Path, capsys):
    ids = _gate_all(redis_server.url, tmp_path, 3)
    capsys.readouterr()
    _check_layout(redis_client, ids)
    assert main(["audit", "verify", "--redis", redis_server.url, "--shards", str(N)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len([line for line in lines if line.startswith("shard ")]) == N
    assert main(["kpis", "--redis", redis_server.url, "--shards", str(N), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rejection_share"]["of"] == 3
    # read with the wrong N, the decisions are not found: N is part of the deployment
    assert main(["kpis", "--redis", redis_server.url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rejection_share"]["of"] == 0


def test_a_tampered_shard_fails_verify(redis_server: Any, redis_client: redis.Redis, tmp_path: Path, capsys):
    ids = _gate_all(redis_server.url, tmp_path, 2)
    key = campaign_keys("synctwin:", ids[1], N).audit
    entry_id, fields = redis_client.xrange(key)[0]
    record = json.loads(fields["record"])
    record["metadata"]["confidence_score"] = 0.99
    redis_client.xdel(key, entry_id)
    redis_client.xadd(key, {**fields, "record": json.dumps(record)})
    capsys.readouterr()
    assert main(["audit", "verify", "--redis", redis_server.url, "--shards", str(N)]) == 1


def test_gate_and_feed_on_a_redis_cluster(redis_cluster: Any, cluster_client: RedisCluster, tmp_path: Path, capsys):
    ids = _gate_all(redis_cluster.url, tmp_path, 3)
    _check_layout(cluster_client, ids)
    capsys.readouterr()
    assert main(["audit", "verify", "--redis", redis_cluster.url, "--shards", str(N)]) == 0
    # one shard per campaign at least on two different nodes: the keys really are spread
    nodes = {cluster_client.keyslot(campaign_keys("synctwin:", c, N).audit) // 5462 for c in ids}
    assert len(nodes) >= 2
    # the feed publishes each campaign's events to its shard's stream, and its plans beside them
    settings = get_settings().model_copy(update={"shards": N})
    env = make_environment()
    feed = start_feed(cluster_client, env, settings, epoch0=time.time() - 7200, seed=0)
    env.run(until=3600)
    for cid in feed.gate_results:
        keys = campaign_keys("synctwin:", cid, N)
        events = cluster_client.xrange(keys.bids)
        assert events and {f["campaign_id"] for _, f in events if f["campaign_id"] == cid} == {cid}
        assert cluster_client.exists(keys.campaign(cid, "projection"))


def test_one_shard_on_a_cluster_is_refused_with_one_line(redis_cluster: Any, tmp_path: Path, capsys) -> None:
    (_cid, path), history = _strategies(tmp_path, 1)[0], tmp_path / "h.csv"
    history.write_text((EXAMPLES / "history_90d.csv").read_text())
    assert main(["gate", str(path), "--history", str(history), "--redis", redis_cluster.url]) == 2
    assert "--shards 2 or more" in capsys.readouterr().err


def test_bad_shards_value_is_exit_2(tmp_path: Path, capsys) -> None:
    (_cid, path), history = _strategies(tmp_path, 1)[0], tmp_path / "h.csv"
    history.write_text((EXAMPLES / "history_90d.csv").read_text())
    assert main(["gate", str(path), "--history", str(history), "--shards", "zero"]) == 2
    assert "--shards" in capsys.readouterr().err
