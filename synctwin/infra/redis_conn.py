"""One way to get a Redis client: a real server for production, fakeredis for the embedded default."""

from __future__ import annotations

import functools
from typing import Any

from synctwin.infra.shards import check_cluster, check_shards
from synctwin.kernel.config import get_settings
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.redact import redact, scrub
from synctwin.kernel.redact import redact_logs as redact_logs  # the commands' (a re-export)

EMBEDDED_URL = "memory://"


def connect(url: str | None = None, **kwargs: Any) -> Any:
    """A decoded-string client for `url`; None or 'memory://' gives an in-process fakeredis. Imports
    are lazy so commands that never touch Redis do not pay for them."""
    if url is None or url == EMBEDDED_URL:
        import fakeredis

        return fakeredis.FakeRedis(decode_responses=True, **kwargs)
    import redis

    client = redis.Redis.from_url(url, decode_responses=True, **kwargs)
    pool = client.connection_pool  # no connection made yet: each one the pool makes packs a pipeline at once
    pool.connection_class = _one_pass(pool.connection_class)
    if not is_cluster_node(client):
        return client
    client.close()
    from redis.cluster import RedisCluster

    # a node of a Redis Cluster: the cluster client learns the slot map from it and routes each key
    return RedisCluster.from_url(url, decode_responses=True, **kwargs)


class _OnePass:
    """A pipeline packed by hiredis in one pass and written in one piece (redis-py checks every
    argument in Python, then writes pieces of ~6 kB, a sendall and a server wakeup each): a worker's
    commit (~5,000 arguments, 70 kB) 1.9 -> 1.25 ms. What hiredis refuses (a bool, None) is packed
    by redis-py, which raises its usual DataError."""

    _pack: Any = None  # hiredis.pack_command

    def pack_commands(self, commands: Any) -> list[bytes]:
        try:
            return [b"".join([self._pack(_named(args)) for args in commands])]
        except TypeError:
            return super().pack_commands(commands)  # type: ignore[misc]


def _named(args: Any) -> tuple[Any, ...]:
    """A command's arguments with a name of several words ("CLIENT SETNAME") split, as redis-py does."""
    head = args[0]
    if (isinstance(head, str) and " " in head) or (isinstance(head, bytes) and b" " in head):
        return (*head.split(), *args[1:])
    return args if type(args) is tuple else tuple(args)


@functools.cache
def _one_pass(connection_class: type) -> type:
    """`connection_class` (TCP, TLS or a Unix socket, as the URL says) packing a pipeline in one
    pass, where redis-py packs with hiredis too (it is installed with it: `redis[hiredis]`)."""
    from redis.utils import HIREDIS_AVAILABLE

    if not HIREDIS_AVAILABLE:
        return connection_class
    import hiredis

    return type(connection_class.__name__, (_OnePass, connection_class), {"_pack": staticmethod(hiredis.pack_command)})


def is_cluster_node(client: Any) -> bool:
    """Whether the server says `cluster_enabled:1` (INFO cluster). A server that cannot be reached or
    refuses INFO is taken as a plain one: `connect_checked`'s PING reports the first, and the second
    cannot be asked anyway."""
    import redis

    try:
        return bool(client.info("cluster").get("cluster_enabled"))
    except redis.exceptions.RedisError:
        return False


def is_cluster(client: Any) -> bool:
    """Whether `client` is a Redis Cluster client (keys of one MULTI/EXEC or script must share a slot)."""
    from redis.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def url_error(url: str) -> InvalidInput:
    """The InvalidInput for a URL redis-py cannot use. Its own message is left out: for a password
    with an unescaped '#', '/' or '?' it names a piece of the password as the 'port'."""
    return InvalidInput(
        "not a usable Redis URL (write redis://[user:password@]host[:port][/db], rediss://... or "
        "unix://...; percent-encode '@', ':', '/', '?' and '#' in a password)",
        source=redact(url),
    )


def connect_checked(url: str) -> Any:
    """Connect and PING, so an unreachable server is one clear error instead of a later traceback;
    the URL's password is masked in every message (redis-py's own text too), never reaching a log."""
    try:
        client = connect(url)
    except ValueError:
        raise url_error(url) from None
    try:
        client.ping()
    except Exception as exc:  # redis raises several connection error types
        getattr(client, "close", lambda: None)()
        import redis

        if isinstance(exc, redis.exceptions.AuthenticationError):
            raise InvalidInput(f"Redis at {redact(url)} refused the credentials: {scrub(str(exc), url)}") from None
        raise InvalidInput(f"cannot reach Redis at {redact(url)}: {scrub(str(exc), url)}") from None
    return client


BARE_FLAG = ""
"""The value of `--redis` given without a URL: use SYNCTWIN_REDIS_URL."""

ENV_HELP = (
    "; a bare --redis, or none where Redis is the only source, reads SYNCTWIN_REDIS_URL, which keeps "
    "a password out of the command line (and `ps`)"
)


def add_redis_argument(p: Any, help_text: str) -> None:
    """`--redis [URL]` as every command takes it: a bare flag means SYNCTWIN_REDIS_URL (see `redis_url_arg`)."""
    p.add_argument("--redis", nargs="?", const=BARE_FLAG, metavar="URL", help=help_text + ENV_HELP)


def add_shards_argument(p: Any) -> None:
    """`--shards N` as every Redis command takes it: producers, workers and readers must agree on N."""
    p.add_argument(
        "--shards",
        metavar="N",
        help="bid stream shards (default SYNCTWIN_SHARDS, 1): a campaign's keys and events live in shard "
        "CRC32(id) mod N; every producer, worker and reader of one deployment uses the same N "
        "(docs/scale-out.md)",
    )


def connect_deployment(url: str, shards: int) -> Any:
    """`connect_checked`, and on a Redis Cluster the check that N >= 2 (one hash tag per shard)."""
    client = connect_checked(url)
    check_cluster(shards, cluster=is_cluster(client))
    return client


def with_shards(settings: Any, value: str | None) -> Any:
    """The settings with `--shards` applied (None: SYNCTWIN_SHARDS); InvalidInput naming `--shards`."""
    return settings if value is None else settings.model_copy(update={"shards": check_shards(value)})


def redis_url_arg(value: str | None, *, default_to_env: bool) -> str | None:
    """The Redis URL a command uses: `--redis URL`; else SYNCTWIN_REDIS_URL for a bare `--redis`, or
    when the flag is absent and Redis is what the command runs on (`default_to_env`); else None. (A
    command line is visible to every user (`ps`); the environment only to the process's owner.)"""
    env = get_settings().redis_url
    if value == BARE_FLAG:
        if not env:
            raise InvalidInput("--redis without a URL reads SYNCTWIN_REDIS_URL, which is not set")
        return env
    if value is None:
        return env if default_to_env and env else None
    return value


def required_redis_url(value: str | None) -> str:
    """`redis_url_arg` for commands that cannot run without Redis: one clear error when there is none."""
    url = redis_url_arg(value, default_to_env=True)
    if not url:
        raise InvalidInput("give --redis URL, or set SYNCTWIN_REDIS_URL (which keeps a password out of `ps`)")
    return url
