"""The check behind `synctwin audit verify (FILE | --redis URL)`: one line and an exit status."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from synctwin.errors import InvalidInput
from synctwin.redis_conn import connect

from .backends import verify_file, verify_redis
from .chain import VerifyReport


def _safe_url(url: str) -> str:
    """The URL without its password, so messages never print credentials."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _verify_redis_url(redis_url: str, key: str) -> VerifyReport:
    import redis

    where = _safe_url(redis_url)
    try:
        client = connect(redis_url)
    except ValueError as exc:  # redis-py's verdict on a malformed URL
        raise InvalidInput(f"not a usable Redis URL ({exc})", source=where) from None
    try:
        return verify_redis(client, key)
    except redis.exceptions.AuthenticationError as exc:  # a ConnectionError subclass: test it first
        raise InvalidInput(f"Redis refused the credentials ({exc})", source=where) from None
    except redis.exceptions.ConnectionError as exc:
        raise InvalidInput(f"cannot reach Redis ({exc})", source=where) from None
    finally:
        close = getattr(client, "close", None)
        if callable(close):
            close()


def run_verify(file: str | None, redis_url: str | None, key: str = "synctwin:audit") -> tuple[int, str]:
    """(0, 'intact: N records, head H') or (1, 'tampered: record K (seq S): problem').

    Raises InvalidInput when there is nothing to check: neither or both sources given, a missing
    or unreadable file, an unusable Redis URL or an unreachable server, a key that is not a stream.
    An intact log can still have lost its tail; compare the printed head with a kept anchor.
    """
    if (file is None) == (redis_url is None):
        raise InvalidInput("give exactly one of FILE or --redis URL")
    report = verify_file(file) if file is not None else _verify_redis_url(str(redis_url), key)
    if report.ok:
        return 0, f"intact: {report.checked} records, head {report.head_hash}"
    return 1, f"tampered: {report.problem}"
