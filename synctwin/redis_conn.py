"""One way to get a Redis client: a real server for production, fakeredis for the embedded default."""

from __future__ import annotations

from typing import Any

EMBEDDED_URL = "memory://"


def connect(url: str | None = None, **kwargs: Any) -> Any:
    """A decoded-string client for `url`; None or 'memory://' gives an in-process fakeredis.

    Imports are lazy so commands that never touch Redis do not pay for them.
    """
    if url is None or url == EMBEDDED_URL:
        import fakeredis

        return fakeredis.FakeRedis(decode_responses=True, **kwargs)
    import redis

    return redis.Redis.from_url(url, decode_responses=True, **kwargs)


def connect_checked(url: str) -> Any:
    """Connect and PING, so an unreachable server is one clear error instead of a later traceback."""
    from synctwin.errors import InvalidInput

    client = connect(url)
    try:
        client.ping()
    except Exception as exc:  # redis raises several connection error types
        raise InvalidInput(f"cannot reach Redis at {url}: {exc}") from None
    return client


def key(prefix: str, *parts: str) -> str:
    """Join a key under the configured prefix: key('synctwin:', 'campaign', id, 'projection')."""
    return prefix + ":".join(parts)
