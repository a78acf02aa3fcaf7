"""The check behind `synctwin audit verify (FILE | --redis URL)`: one line and an exit status."""

from __future__ import annotations

from synctwin.errors import InvalidInput
from synctwin.redis_conn import connect, redact, scrub, url_error

from .backends import verify_file, verify_redis
from .chain import VerifyReport


def _verify_redis_url(redis_url: str, key: str) -> VerifyReport:
    import redis

    where = redact(redis_url)
    try:
        client = connect(redis_url)
    except ValueError:  # redis-py's verdict on a malformed URL (its text may hold a piece of the password)
        raise url_error(redis_url) from None
    try:
        return verify_redis(client, key)
    except redis.exceptions.AuthenticationError as exc:  # a ConnectionError subclass: test it first
        raise InvalidInput(f"Redis refused the credentials ({scrub(str(exc), redis_url)})", source=where) from None
    except redis.exceptions.ConnectionError as exc:
        raise InvalidInput(f"cannot reach Redis ({scrub(str(exc), redis_url)})", source=where) from None
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
