"""What anchors an audit log beyond its own chain: the HMAC key and the head kept beside the log.

Every append writes the new head (last hash, record count; a MAC with a key) beside the log in
the same atomic step: `FILE.head` under the log's flock, or the hash `{stream}:head` in the XADD's
MULTI. It catches accidents and truncation by someone unaware of it; whoever can rewrite the log
can rewrite (with a key, replay) it too: a head kept off the machine (`audit verify
--expect-head`) is what stops a deliberate attacker (docs/audit.md)."""

from __future__ import annotations

import dataclasses
import hmac
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from synctwin.kernel.config import get_settings
from synctwin.kernel.errors import InvalidInput

from .chain import GENESIS_HASH, KEY_ENV, Head, VerifyReport, _is_hex64, head_mac, is_hmac

MIN_KEY_CHARS = 16
HEAD_SUFFIX = ".head"
HEAD_BYTES = 256
"""Size of a head file: its JSON (at most ~190 bytes, with a MAC) padded with spaces, so an
overwrite in place is one small write of the same size."""


class _FromEnv:
    """The default of a store's `hmac_key`: read SYNCTWIN_AUDIT_KEY (see `configured_key`)."""

    def __repr__(self) -> str:
        return "FROM_ENV"


FROM_ENV: Any = _FromEnv()


def configured_key() -> bytes | None:
    """SYNCTWIN_AUDIT_KEY as bytes, or None when unset or empty. The key itself never appears in a
    message; a key shorter than 16 characters is refused (a guessable key protects nothing)."""

    secret = get_settings().audit_key
    value = secret.get_secret_value() if secret is not None else ""
    if not value:
        return None
    if len(value) < MIN_KEY_CHARS:
        raise InvalidInput(
            f"{KEY_ENV} is too short ({len(value)} characters): use at least {MIN_KEY_CHARS}, "
            "e.g. the output of `openssl rand -hex 32`"
        )
    return value.encode("utf-8")


def resolve_key(hmac_key: bytes | str | _FromEnv | None) -> bytes | None:
    """A store's key: FROM_ENV reads the environment, a str is UTF-8 encoded, None means no key."""
    if isinstance(hmac_key, _FromEnv):
        return configured_key()
    if isinstance(hmac_key, str):
        return hmac_key.encode("utf-8") if hmac_key else None
    return hmac_key or None


@dataclasses.dataclass(frozen=True)
class StoredHead:
    """A head as written beside the log: the hash of its last record, how many records it holds,
    and the MAC of both when the writer had a key."""

    hash: str
    records: int
    mac: str | None = None

    @classmethod
    def of(cls, record: Mapping[str, Any], key: bytes | None) -> StoredHead:
        """The head a store writes after appending `record` (its seq is the record count)."""
        seq, digest = int(record["seq"]), str(record["hash"])
        return cls(digest, seq, head_mac(key, digest, seq) if key is not None else None)

    def fields(self) -> dict[str, str]:
        """As stored: the JSON of the head file, the fields of the Redis hash."""
        return {"head": self.hash, "records": str(self.records)} | ({} if self.mac is None else {"mac": self.mac})

    @classmethod
    def parse(cls, fields: Mapping[str, Any], source: str) -> StoredHead:
        """From stored fields; InvalidInput naming `source` when they are not a head."""
        digest, count, mac = fields.get("head"), fields.get("records"), fields.get("mac")
        count_text = str(count) if isinstance(count, int | str) and not isinstance(count, bool) else ""
        if not _is_hex64(digest) or not count_text.isdigit() or (mac is not None and not _is_hex64(mac)):
            raise InvalidInput(
                "not an audit head (expected head: a 64-digit hex hash, records: a count, optionally mac)",
                source=source,
            )
        if int(count_text) == 0:
            raise InvalidInput(
                "an audit head of 0 records: no append writes one (a forged head for an emptied log?)", source=source
            )
        return cls(str(digest), int(count_text), None if mac is None else str(mac))

    def as_head(self, source: str) -> Head:
        return Head(self.hash, self.records, source)

    def mac_problem(self, key: bytes | None, *, keyed_log: bool) -> str | None:
        """Why the head cannot be trusted under `key` (no MAC on a keyed log, a wrong MAC), or None;
        without a key nothing to check; no MAC is fine beside a plain log (one moving to a key)."""
        if key is None:
            return None
        if self.mac is None:
            if not keyed_log:
                return None
            return f"has no MAC although the log is HMAC-chained: written or rewritten without {KEY_ENV}"
        if not hmac.compare_digest(self.mac, head_mac(key, self.hash, self.records)):
            return f"its MAC does not check out: wrong {KEY_ENV}, or the head was rewritten without the key"
        return None


def append_problem(stored: StoredHead | None, prev: Mapping[str, Any] | None, key: bytes | None) -> str | None:
    """Why a store must not append after `prev` given the head kept beside the log, or None: a head
    AHEAD of the log (records removed), of its length on another hash (rewritten) or with a bad MAC;
    appending would hide that. A head BEHIND is tolerated (a writer died between record and head)."""
    if stored is None:
        return None
    count = int(prev["seq"]) if prev is not None else 0
    last = str(prev["hash"]) if prev is not None else GENESIS_HASH
    if stored.records > count:
        return (
            f"the log holds {count} records but its head says {stored.records}: records were removed; "
            "refusing to append (run `synctwin audit verify`)"
        )
    if stored.records == count and stored.hash != last:
        return "the log's last record is not the head kept beside it: the log was rewritten; refusing to append"
    problem = stored.mac_problem(key, keyed_log=prev is not None and is_hmac(prev))
    return f"the head {problem}; refusing to append" if problem else None


def check_beside(report: VerifyReport, stored: StoredHead | None, where: str, key: bytes | None) -> VerifyReport:
    """`report`, failed when a key is set and the head beside an HMAC-chained log is missing or its
    MAC absent or wrong: a truncation would hide behind a head rewritten without the key."""
    if not report.ok or key is None:
        return report
    keyed = report.hmac_from is not None
    if stored is None:
        problem = f"{where} is missing, though an HMAC-chained log always has one: deleted?" if keyed else None
    else:
        problem = stored.mac_problem(key, keyed_log=keyed)
        problem = f"{where} {problem}" if problem else None
    if problem is None:
        return report
    return dataclasses.replace(report, ok=False, first_bad=report.checked + 1, problem=problem)


# ------------------------------------------------------------------------------------ head files
def head_path(log: str | os.PathLike[str]) -> Path:
    """Where a JSONL log's head lives: beside it, FILE.head."""
    return Path(str(log) + HEAD_SUFFIX)


def read_head_file(log: str | os.PathLike[str]) -> StoredHead | None:
    """The head beside a JSONL log, None when there is none; InvalidInput when it is not a head."""
    path = head_path(log)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InvalidInput(f"cannot read ({exc.strerror})", source=str(path)) from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput("not valid JSON", source=str(path)) from None
    if not isinstance(doc, dict):
        raise InvalidInput("not a JSON object", source=str(path))
    return StoredHead.parse(doc, str(path))


def write_head_file(log: str | os.PathLike[str], head: StoredHead, *, fsync: bool = False) -> None:
    """Overwrite FILE.head in place with a fixed-size document (padded to HEAD_BYTES), under the
    log's exclusive flock (readers take it shared). One pwrite, not a renamed temporary file: on
    ext4 a rename over a file flushes its data first, ~1.6 ms an append (20x slower)."""
    doc: dict[str, Any] = {**head.fields(), "records": head.records}
    data = json.dumps(doc, sort_keys=True).encode("utf-8").ljust(HEAD_BYTES - 1) + b"\n"
    fd = os.open(head_path(log), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))  # a longer file (an older format, someone's edit) leaves no tail
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def head_key(stream_key: str) -> str:
    """Where a Redis audit stream's head lives: `{stream}:head` (`{prefix}audit:head`)."""
    return f"{stream_key}:head"
