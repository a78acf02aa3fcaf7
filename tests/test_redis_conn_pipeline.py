"""`connect()`'s connections pack a pipeline with hiredis in one pass and write it in one piece:
the same bytes redis-py would send, the same errors, against a real redis-server."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from synctwin.infra.redis_conn import connect

pytestmark = pytest.mark.redis

COMMANDS: list[tuple[Any, ...]] = [
    ("HSET", "campaign:c1:mirror", "spend", "12.5", "events", 3),
    ("ZADD", "market:meta:2026-01-01", "GT", 1.25, "c1|1.0|spend", 1e-300, "c1|1.0|clicks"),
    ("CLIENT SETNAME", "worker-1"),  # a command name of two words is split, as redis-py splits it
    (b"SET", b"raw\xff", memoryview(b"view")),
    ("XACK", "bids", "g", *[f"{i}-0" for i in range(1, 3000)]),  # far more than redis-py's 6 kB pieces
]


def test_a_pipeline_is_packed_as_redis_py_packs_it(redis_server: Any) -> None:
    ours = connect(redis_server.url).connection_pool.make_connection()
    theirs = redis.Connection()
    packed = ours.pack_commands(COMMANDS)
    assert len(packed) == 1  # one buffer
    assert packed[0] == b"".join(bytes(c) for c in theirs.pack_commands(COMMANDS))
    with pytest.raises(redis.exceptions.DataError):  # what hiredis refuses: redis-py's own error
        ours.pack_commands([("SET", "k", True)])


def test_a_pipeline_goes_out_in_one_write_and_its_replies_are_redis_pys(
    redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = connect(redis_server.url)
    plain = redis.Redis.from_url(redis_server.url, decode_responses=True)
    pieces: dict[str, list[int]] = {"ours": [], "redis-py": []}
    send = redis.connection.AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        if not isinstance(command, str | bytes):
            pieces["redis-py" if type(self) is redis.Connection else "ours"].append(len(command))
        send(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    replies = []
    for name, c in (("ours:", client), ("theirs:", plain)):
        pipe = c.pipeline(transaction=True)
        for i in range(300):
            pipe.hset(f"{name}h{i}", mapping={"spend": repr(i * 1.5), "status": "OK", "n": i})
        pipe.zadd(f"{name}z", {f"m{i}": i / 3 for i in range(500)}, gt=True)
        pipe.hgetall(f"{name}h7")
        replies.append(pipe.execute())
    assert replies[0] == replies[1]
    assert pieces["ours"] and set(pieces["ours"]) == {1}  # one write of the whole transaction
    assert max(pieces["redis-py"]) > 1  # redis-py alone writes it in 6 kB pieces, a sendall each
    assert client.hgetall("ours:h299") == plain.hgetall("theirs:h299") == {"spend": "448.5", "status": "OK", "n": "299"}
    assert client.zrange("ours:z", 0, -1, withscores=True) == plain.zrange("theirs:z", 0, -1, withscores=True)
