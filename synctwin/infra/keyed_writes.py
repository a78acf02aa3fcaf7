"""Many keys' commands as one: a Lua script runs each queued (command, key, args) in turn.

Why: every batch the Council writes a hash per campaign (its mirror state) and reads a field of
each: as separate commands that is one reply per campaign for redis-py to parse (and, inside a
MULTI, one QUEUED reply more), about a third of a batch's time. A script is one command and one
reply, and inside the batch's MULTI its writes commit with the rest of the transaction as before.
The keys of one call must share a cluster slot (a shard's keys do: they share its hash tag).
Where the server runs no scripts (fakeredis without Lua, a server with scripting disabled) the
same commands go one by one: `scripting(client)` tells which, once per worker.
"""

from __future__ import annotations

from typing import Any

import redis

# ARGV: for each key in turn, the command's name, its argument count, its arguments
_APPLY = """
local p = 1
for i = 1, #KEYS do
  local n = tonumber(ARGV[p + 1])
  redis.call(ARGV[p], KEYS[i], unpack(ARGV, p + 2, p + 1 + n))
  p = p + 2 + n
end
return #KEYS
"""
_HGET = """
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HGET', KEYS[i], ARGV[1]) end
return out
"""
_MAX_ARGS = 7000  # Lua's unpack returns at most about 8,000 values: a larger command goes on its own


def scripting(client: Any) -> bool:
    """Whether the server runs Lua scripts (EVAL)."""
    try:
        return client.eval("return 1", 0) == 1
    except redis.exceptions.ResponseError:
        return False


class KeyedWrites:
    """Commands on many keys, queued and then sent as one EVAL (or one by one without scripting)."""

    __slots__ = ("alone", "argv", "keys", "scripted")

    def __init__(self, scripted: bool) -> None:
        self.scripted = scripted
        self.keys: list[str] = []
        self.argv: list[Any] = []
        self.alone: list[tuple[Any, ...]] = []

    def add(self, command: str, key: str, *args: Any) -> None:
        if not self.scripted or len(args) > _MAX_ARGS:
            self.alone.append((command, key, *args))
            return
        self.keys.append(key)
        self.argv += (command, len(args), *args)

    def __len__(self) -> int:
        return len(self.keys) + len(self.alone)

    def queue(self, pipe: Any) -> None:
        """Onto `pipe` (a pipeline, in or out of MULTI); the queue is emptied."""
        if len(self.keys) == 1:  # one command: no script needed
            n = int(self.argv[1])
            pipe.execute_command(self.argv[0], self.keys[0], *self.argv[2 : 2 + n])
        elif self.keys:
            pipe.execute_command("EVAL", _APPLY, len(self.keys), *self.keys, *self.argv)
        for command in self.alone:
            pipe.execute_command(*command)
        self.keys, self.argv, self.alone = [], [], []


def hget_many(client: Any, keys: list[str], field: str, *, scripted: bool) -> list[Any]:
    """One field of many hashes, in the keys' order (None where a hash or its field is missing)."""
    if not keys:
        return []
    if scripted:
        return list(client.execute_command("EVAL", _HGET, len(keys), *keys, field))
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.hget(k, field)
    return list(pipe.execute())
