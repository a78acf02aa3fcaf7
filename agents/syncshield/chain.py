"""The audit log's hash chain: building records and checking them, with no I/O.

Each record carries the SHA-256 of its own canonical JSON (without `hash`) and the hash of the
record before it, so editing, removing, inserting or reordering any record breaks the chain there.
This module only knows dicts, so every store (`backends`) is verified by the same rules.

Anyone who can write the log can recompute a plain chain; two anchors close that gap (docs/audit.md):
- a key: records then carry `"chain": "hmac-sha256"` and `hash` = HMAC-SHA256(key, canonical JSON
  without `hash`), so nobody without the key can forge, rewrite, re-chain or downgrade a record;
- a head (`Head`): the last record's hash and the record count, kept apart, which is what shows a
  truncated tail or an emptied log: no chain can show those on its own."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
import math
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict, cast

import numpy as np

from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.jsonable import canonical_json, to_jsonable, utf8_safe

GENESIS_HASH = "0" * 64
"""`prev_hash` of the first record: a fixed value, so every chain starts the same way."""

RECORD_KEYS = ("seq", "ts", "event_type", "client_id", "campaign_id", "reason", "metadata", "prev_hash", "hash")
OPTIONAL_KEYS: tuple[str, ...] = ("chain",)
"""Keys only some records have: `chain` marks an HMAC-chained record (absent: plain SHA-256)."""
HMAC_SCHEME = "hmac-sha256"
KEY_ENV = "SYNCTWIN_AUDIT_KEY"
_OPTIONAL_STR_KEYS = ("client_id", "campaign_id", "reason")
_HEX = frozenset("0123456789abcdef")


class RecordFields(TypedDict, total=False):
    """What a caller may record about an event beside its type (`make_record`'s keywords)."""

    client_id: str | None
    campaign_id: str | None
    reason: str | None
    metadata: Any


class MissingKey(InvalidInput):
    """An HMAC-chained record met without a key to compute its HMAC."""


def is_hmac(record: Mapping[str, Any]) -> bool:
    """Whether the record says it is HMAC-chained."""
    return record.get("chain") == HMAC_SCHEME


def record_hash(record: Mapping[str, Any], key: bytes | None = None) -> str:
    """The record's hash over its canonical JSON, leaving out its own `hash`: SHA-256 for a plain
    record, HMAC-SHA256 with `key` for one marked `"chain": "hmac-sha256"` (MissingKey without one)."""
    body = canonical_json({k: v for k, v in record.items() if k != "hash"}).encode("utf-8")
    if is_hmac(record):
        if key is None:
            raise MissingKey(f"the record is HMAC-chained: set {KEY_ENV} to compute its hash")
        return hmac.new(key, body, hashlib.sha256).hexdigest()
    return hashlib.sha256(body).hexdigest()


def head_mac(key: bytes, head_hash: str, records: int) -> str:
    """The MAC a head file or Redis head carries when a key is set, so it cannot be rewritten
    (to hide a truncation) by anyone without the key; only replayed from an older copy."""
    return hmac.new(key, f"synctwin-audit-head:{records}:{head_hash}".encode(), hashlib.sha256).hexdigest()


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        value = value.value
    return utf8_safe(value if isinstance(value, str) else str(value))


def make_record(
    prev: Mapping[str, Any] | None,
    event_type: str,
    *,
    ts: float,
    client_id: str | None = None,
    campaign_id: str | None = None,
    reason: str | None = None,
    metadata: Any = None,
    key: bytes | None = None,
) -> dict[str, Any]:
    """The record after `prev` (None for the first), hashed: an HMAC with `key` (marked `"chain":
    "hmac-sha256"`), else a plain SHA-256. `metadata` goes through `to_jsonable`, so the hash checks
    out after any JSON round trip. InvalidInput names the field for an empty event_type, a ts that
    is not finite, or metadata that is not a mapping; MissingKey to chain onto an HMAC record
    without a key. A keyed record may follow plain ones: that is how a log moves to a key."""
    if isinstance(event_type, enum.Enum):
        event_type = event_type.value
    if not isinstance(event_type, str) or not event_type.strip():
        raise InvalidInput(f"must be a non-empty string (got {event_type!r})", field="event_type")
    if isinstance(ts, bool) or not isinstance(ts, int | float | np.number) or not math.isfinite(ts):
        raise InvalidInput(f"must be a finite number of seconds (got {ts!r})", field="ts")
    meta = {} if metadata is None else to_jsonable(metadata)
    if not isinstance(meta, dict):
        raise InvalidInput(f"must be a mapping or a model (got {type(metadata).__name__})", field="metadata")
    if prev is None:
        seq, prev_hash = 1, GENESIS_HASH
    else:
        seq, prev_hash = prev.get("seq"), prev.get("hash")
        if isinstance(seq, bool) or not isinstance(seq, int) or not _is_hex64(prev_hash):
            raise InvalidInput("the previous record has no valid seq and hash to chain on")
        seq += 1
        if key is None and is_hmac(prev):
            raise MissingKey(f"the audit log is HMAC-chained: set {KEY_ENV} to append to it")
    record: dict[str, Any] = {
        "seq": seq,
        "ts": float(ts),
        "event_type": utf8_safe(event_type),
        "client_id": _opt_str(client_id),
        "campaign_id": _opt_str(campaign_id),
        "reason": _opt_str(reason),
        "metadata": meta,
        "prev_hash": prev_hash,
    }
    if key is not None:
        record["chain"] = HMAC_SCHEME
    record["hash"] = record_hash(record, key)
    return record


@dataclasses.dataclass(frozen=True)
class Malformed:
    """Stands in for a stored entry that is not a record (a line that is not JSON...), so
    `verify_chain` reports it as tampered at its position instead of crashing."""

    reason: str
    seq: int | None = None


@dataclasses.dataclass(frozen=True)
class VerifyReport:
    """What `verify_chain` found: `checked` records verified before the first bad one; `head_hash`
    and `head_seq` of the last that did (kept where the writer cannot change them, they show a
    truncated tail later); `hmac_from` the position of the first HMAC-chained record (None: plain);
    `heads` the anchors checked against."""

    ok: bool
    checked: int
    first_bad: int | None = None
    problem: str | None = None
    head_hash: str = GENESIS_HASH
    head_seq: int = 0
    hmac_from: int | None = None
    heads: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Head:
    """A head kept apart from the records: the hash the log must end on and, when known, how many
    records it then holds. `source` names where it was kept, for messages ("--expect-head", a
    head file, a Redis key). A head's hash found earlier in the log means records were appended
    after it; not found, the log was truncated or its history differs."""

    hash: str
    records: int | None
    source: str


def parse_head(text: str, source: str = "--expect-head") -> Head:
    """`HASH` or `HASH:N` (N: the record count `audit verify` prints beside it); InvalidInput otherwise."""
    value, _, count = text.strip().partition(":")
    value = value.lower()
    if not _is_hex64(value):
        raise InvalidInput(f"expected a 64-digit hex hash, optionally with :RECORDS (got {text!r})", field=source)
    if count and (not count.isdigit() or len(count) > 18):
        raise InvalidInput(f"the record count after ':' must be a whole number (got {count!r})", field=source)
    if count and int(count) == 0 and value != GENESIS_HASH:
        raise InvalidInput(
            f"a head of 0 records is the empty log's, {GENESIS_HASH[:8]}... (got {text!r})", field=source
        )
    return Head(value, int(count) if count else None, source)


def _is_hex64(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _shape_problem(rec: Mapping[str, Any]) -> str | None:
    """What is structurally wrong with a record (missing keys, wrong types), or None."""
    missing = [k for k in RECORD_KEYS if k not in rec]
    if missing:
        return f"missing key(s): {', '.join(missing)}"
    extra = sorted(str(k) for k in rec if k not in RECORD_KEYS and k not in OPTIONAL_KEYS)
    if extra:
        return f"unexpected key(s): {', '.join(extra)}"
    if "chain" in rec and rec["chain"] != HMAC_SCHEME:
        return f"chain must be {HMAC_SCHEME!r} when present (got {rec['chain']!r})"
    seq = rec["seq"]
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        return f"seq must be a positive integer (got {seq!r})"
    ts = rec["ts"]
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        return f"ts must be a finite number (got {ts!r})"
    if not isinstance(rec["event_type"], str) or not rec["event_type"]:
        return f"event_type must be a non-empty string (got {rec['event_type']!r})"
    for k in _OPTIONAL_STR_KEYS:
        if rec[k] is not None and not isinstance(rec[k], str):
            return f"{k} must be a string or null (got {rec[k]!r})"
    if not isinstance(rec["metadata"], dict):
        return f"metadata must be an object (got {type(rec['metadata']).__name__})"
    for k in ("prev_hash", "hash"):
        if not _is_hex64(rec[k]):
            return f"{k} is not a 64-digit lowercase hex SHA-256 (got {rec[k]!r})"
    return None


def _hash_problem(rec: Mapping[str, Any], key: bytes | None, hmac_seen: bool) -> str | None:
    """Why the record's hash does not check out under `key`, or None. After an HMAC-chained record
    a plain one is what someone without the key would write; plain ones before the first HMAC record
    (a log that moved to a key) are covered by its HMAC."""
    if is_hmac(rec):
        if key is None:
            return f"HMAC-chained, but no key is set: wrong or missing {KEY_ENV}"
    elif hmac_seen:
        return f"a plain SHA-256 record after HMAC-chained ones: appended or rewritten by someone without {KEY_ENV}"
    try:
        actual = record_hash(rec, key)
    except (TypeError, ValueError) as exc:
        return f"content cannot be serialised canonically ({exc})"
    if actual == rec["hash"]:
        return None
    if is_hmac(rec) and not hmac_seen:
        return (
            f"does not match its HMAC: wrong or missing {KEY_ENV} (or the record was edited or forged without the key)"
        )
    if is_hmac(rec):
        return "content does not match its HMAC (the record was edited, or forged without the key)"
    return "content does not match its hash (the record was edited)"


def _link_problem(rec: Mapping[str, Any], prev_seq: int, prev_hash: str) -> str | None:
    """How `rec` fails to follow the previous record (seq and prev_hash), or None."""
    seq, expected = rec["seq"], prev_seq + 1
    after = f"seq {prev_seq}" if prev_seq else "the start of the log"
    if rec["prev_hash"] != prev_hash:
        if seq > expected:
            gap = f"seq {expected} is" if seq - 1 == expected else f"seqs {expected}..{seq - 1} are"
            return f"comes right after {after}: {gap} missing here (removed or moved)"
        if seq < expected:
            return f"comes after {after}: out of order or duplicated"
        return "prev_hash does not match the hash of the previous record (a record was replaced or inserted)"
    if seq != expected:
        return f"seq {seq} should be {expected}: out of order or renumbered"
    return None


def verify_chain(
    records: Iterable[Mapping[str, Any] | Malformed | Any], *, key: bytes | None = None, heads: Iterable[Head] = ()
) -> VerifyReport:
    """Check a whole log in order and report the first record that breaks the chain (by 1-based
    position and seq): edited, removed, inserted, duplicated or reordered records, and entries that
    are not records. HMAC-chained records are checked with `key` (without it, or with another, the
    first of them fails). A chain alone cannot show a truncated tail or a plain chain recomputed:
    `heads` (anchors kept apart) catch a truncated, extended or rewritten log, `key` forged ones."""
    anchors = tuple(heads)
    at_count: dict[int, str] = {}  # position -> hash, only at the positions the heads name
    found: dict[str, int] = {}  # head hash -> position where the log has it
    wanted_positions = {h.records for h in anchors if h.records}
    wanted_hashes = {h.hash for h in anchors}
    prev_seq, prev_hash, checked = 0, GENESIS_HASH, 0
    hmac_from: int | None = None
    for position, rec in enumerate(records, start=1):
        problem: str | None
        seq_label: Any = "unknown"
        if isinstance(rec, Malformed):
            problem, seq_label = rec.reason, "unknown" if rec.seq is None else rec.seq
        elif not isinstance(rec, Mapping):
            problem = f"not a record (a {type(rec).__name__}, expected an object)"
        else:
            if isinstance(raw_seq := rec.get("seq"), int) and not isinstance(raw_seq, bool):
                seq_label = raw_seq
            problem = (
                _shape_problem(rec)
                or _hash_problem(rec, key, hmac_from is not None)
                or _link_problem(rec, prev_seq, prev_hash)
            )
        if problem is not None:
            where = f"record {position} (seq {seq_label}): {problem}"
            return VerifyReport(
                False, checked, position, where, head_hash=prev_hash, head_seq=prev_seq, hmac_from=hmac_from
            )
        good = cast(Mapping[str, Any], rec)
        prev_seq, prev_hash, checked = good["seq"], good["hash"], checked + 1
        if hmac_from is None and is_hmac(good):
            hmac_from = position
        if position in wanted_positions:
            at_count[position] = prev_hash
        if prev_hash in wanted_hashes:
            found.setdefault(prev_hash, position)
    heads = tuple(h.source for h in anchors)
    report = VerifyReport(True, checked, head_hash=prev_hash, head_seq=prev_seq, hmac_from=hmac_from, heads=heads)
    if key is not None and checked and hmac_from is None:
        problem = (
            f"record 1 (seq 1): no record is HMAC-chained although {KEY_ENV} is set: the log was written without "
            f"the key, or rewritten by someone without it (to check a log that predates the key, unset {KEY_ENV})"
        )
        return dataclasses.replace(report, ok=False, first_bad=1, problem=problem)
    for head in anchors:
        problem = head_problem(head, checked, prev_hash, at_count, found)
        if problem is not None:
            return dataclasses.replace(report, ok=False, first_bad=problem[0], problem=problem[1])
    return report


def head_problem(
    head: Head, count: int, last_hash: str, at_count: Mapping[int, str], found: Mapping[str, int]
) -> tuple[int, str] | None:
    """(first bad position, what differs) between an intact log of `count` records ending on
    `last_hash` and a head kept apart from it, or None when they agree."""
    if head.hash == last_hash and head.records in (None, count):
        return None
    where = f"the head in {head.source}"
    if head.hash == GENESIS_HASH and head.records in (None, 0):
        return 1, f"record 1 and after: {count} record(s) after {where}, which is the empty log"
    if head.hash in found:
        pos = found[head.hash]
        if head.records not in (None, pos):
            return pos, (
                f"record {pos}: has the hash of {where}, which says {head.records} records: a different history"
            )
        return pos + 1, (
            f"record {pos + 1} and after: {count - pos} extra record(s) after {where} "
            f"(record {pos}): appended since it was kept, or forged"
        )
    if head.records is None:
        return count + 1, (
            f"{where} ({head.hash[:12]}...) is not in the log of {count} records: "
            "records were removed from its end (truncated), or its history was rewritten"
        )
    if head.records > count:
        ends = f"the log ends at record {count}" if count else "the log is empty"
        return count + 1, (
            f"record {count + 1}: truncated by {head.records - count} record(s): {ends}, {where} says {head.records}"
        )
    return head.records, (
        f"record {head.records}: a different history: its hash is not the one {where} "
        f"keeps for it ({at_count.get(head.records, '?')[:12]}... vs {head.hash[:12]}...)"
    )
