"""The check behind `synctwin audit verify (FILE | --redis URL) [--expect-head HASH]`: a verdict, the
head to keep, and an exit status."""

from __future__ import annotations

from synctwin.infra.redis_conn import connect, redact, scrub, url_error
from synctwin.kernel.errors import InvalidInput

from .anchors import configured_key
from .backends import verify_file, verify_redis
from .chain import Head, VerifyReport, parse_head


def _verify_redis_url(redis_url: str, key: str, hmac_key: bytes | None, expect: Head | None) -> VerifyReport:
    import redis

    where = redact(redis_url)
    try:
        client = connect(redis_url)
    except ValueError:  # redis-py's verdict on a malformed URL (its text may hold a piece of the password)
        raise url_error(redis_url) from None
    try:
        return verify_redis(client, key, hmac_key=hmac_key, expect=expect)
    except redis.exceptions.AuthenticationError as exc:  # a ConnectionError subclass: test it first
        raise InvalidInput(f"Redis refused the credentials ({scrub(str(exc), redis_url)})", source=where) from None
    except redis.exceptions.ConnectionError as exc:
        raise InvalidInput(f"cannot reach Redis ({scrub(str(exc), redis_url)})", source=where) from None
    finally:
        client.close()


def describe(report: VerifyReport) -> str:
    """What the verdict rests on: the chain's scheme and the heads it was checked against."""
    scheme = (
        "an empty log"
        if not report.checked
        else "plain SHA-256 chain"
        if report.hmac_from is None
        else ("HMAC-SHA256 chain" if report.hmac_from == 1 else f"HMAC-SHA256 chain from record {report.hmac_from}")
    )
    anchors = (
        f"checked against {' and '.join(report.heads)}"
        if report.heads
        else "no head kept to check against: a truncated tail or an emptied log would not show"
    )
    return f"{scheme}; {anchors}"


def run_verify(
    file: str | None, redis_url: str | None, key: str = "synctwin:audit", expect_head: str | None = None
) -> tuple[int, str]:
    """(0, 'intact: N records, head H (...)' + the head line to keep) or (1, 'tampered: record K (seq S): problem'),
    with SYNCTWIN_AUDIT_KEY, the head kept beside the log and `expect_head` (HASH or HASH:N).
    InvalidInput when there is nothing to check: not exactly one source, an unreadable file, an
    unusable or unreachable Redis, a key that is not a stream, a malformed --expect-head."""
    if (file is None) == (redis_url is None):
        raise InvalidInput("give exactly one of FILE or --redis URL")
    expect = parse_head(expect_head) if expect_head is not None else None
    hmac_key = configured_key()
    if file is not None:
        report = verify_file(file, key=hmac_key, expect=expect)
    else:
        report = _verify_redis_url(str(redis_url), key, hmac_key, expect)
    if report.ok:
        return 0, (
            f"intact: {report.checked} records, head {report.head_hash} ({describe(report)})\n"
            f"head {report.head_hash} ({report.checked} records)"
        )
    return 1, f"tampered: {report.problem}"
