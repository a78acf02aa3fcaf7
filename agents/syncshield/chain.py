"""The audit log's hash chain: building records and checking them, with no I/O.

Each record carries the SHA-256 of its own canonical JSON (without `hash`) and the hash of the
record before it, so editing, removing, inserting or reordering any record breaks the chain at
that record. Storage lives in `backends`; this module only knows dicts, which keeps the rules
in one place and lets every store (memory, JSONL, Redis) be verified the same way.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import math
from collections.abc import Iterable, Mapping
from typing import Any, cast

import numpy as np

from synctwin.errors import InvalidInput
from synctwin.jsonable import canonical_json, to_jsonable, utf8_safe

GENESIS_HASH = "0" * 64
"""`prev_hash` of the first record: a fixed value, so every chain starts the same way."""

RECORD_KEYS: tuple[str, ...] = (
    "seq", "ts", "event_type", "client_id", "campaign_id", "reason", "metadata", "prev_hash", "hash",
)
_OPTIONAL_STR_KEYS = ("client_id", "campaign_id", "reason")
_HEX = frozenset("0123456789abcdef")


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 hex of the record's canonical JSON, leaving out its own `hash`."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


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
) -> dict[str, Any]:
    """The record that follows `prev` (None for the first), with its hash filled in.

    `metadata` goes through `to_jsonable`, so the returned record is exactly what a store
    writes and what a reader gets back: its hash checks out after any JSON round trip.
    Raises InvalidInput (a ValueError) naming the field for an empty event_type, a ts that is
    not a finite number, or metadata that is not a mapping.
    """
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
    record["hash"] = record_hash(record)
    return record


@dataclasses.dataclass(frozen=True)
class Malformed:
    """Stands in for a stored entry that could not be read as a record (e.g. a line that is not JSON).

    Stores' verify helpers pass these to `verify_chain`, so a garbage entry is reported as a
    tampered record at its position instead of crashing the check.
    """

    reason: str
    seq: int | None = None


@dataclasses.dataclass(frozen=True)
class VerifyReport:
    """What `verify_chain` found.

    `checked` counts the records that verified before the first bad one (all of them when ok).
    `head_hash` is the hash of the last record that verified (GENESIS_HASH for an empty log)
    and `head_seq` its seq: keep them somewhere the log's writer cannot change (a ticket, another
    system) to detect a truncated tail later, which the chain alone cannot show.
    """

    ok: bool
    checked: int
    first_bad: int | None = None
    problem: str | None = None
    head_hash: str = GENESIS_HASH
    head_seq: int = 0


def _is_hex64(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _shape_problem(rec: Mapping[str, Any]) -> str | None:
    """What is structurally wrong with a record (missing keys, wrong types), or None."""
    missing = [k for k in RECORD_KEYS if k not in rec]
    if missing:
        return f"missing key(s): {', '.join(missing)}"
    extra = sorted(str(k) for k in rec if k not in RECORD_KEYS)
    if extra:
        return f"unexpected key(s): {', '.join(extra)}"
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


def verify_chain(records: Iterable[Mapping[str, Any] | Malformed | Any]) -> VerifyReport:
    """Check a whole log in order and report the first record that breaks the chain.

    Detects an edited record (its content no longer matches its hash), a removed record (seq gap
    and prev_hash mismatch), inserted, duplicated or reordered records, and entries that are not
    records at all (missing keys, wrong types, garbage). The problem names the record by its
    1-based position in the log and its seq.

    Limit: removing records from the END of the log leaves a shorter chain that is still valid;
    no chain can show that on its own. Compare `head_hash`/`head_seq` with a value kept
    elsewhere (an external anchor) to detect a truncated tail.
    """
    prev_seq, prev_hash, checked = 0, GENESIS_HASH, 0
    for position, rec in enumerate(records, start=1):
        problem: str | None
        seq_label: Any = "unknown"
        if isinstance(rec, Malformed):
            problem = rec.reason
            if rec.seq is not None:
                seq_label = rec.seq
        elif not isinstance(rec, Mapping):
            problem = f"not a record (a {type(rec).__name__}, expected an object)"
        else:
            raw_seq = rec.get("seq")
            if isinstance(raw_seq, int) and not isinstance(raw_seq, bool):
                seq_label = raw_seq
            problem = _shape_problem(rec)
            if problem is None:
                try:
                    actual = record_hash(rec)
                except (TypeError, ValueError) as exc:
                    problem = f"content cannot be serialised canonically ({exc})"
                else:
                    if actual != rec["hash"]:
                        problem = "content does not match its hash (the record was edited)"
            if problem is None:
                problem = _link_problem(rec, prev_seq, prev_hash)
        if problem is not None:
            return VerifyReport(
                ok=False,
                checked=checked,
                first_bad=position,
                problem=f"record {position} (seq {seq_label}): {problem}",
                head_hash=prev_hash,
                head_seq=prev_seq,
            )
        good = cast(Mapping[str, Any], rec)
        prev_seq, prev_hash, checked = good["seq"], good["hash"], checked + 1
    return VerifyReport(ok=True, checked=checked, head_hash=prev_hash, head_seq=prev_seq)
