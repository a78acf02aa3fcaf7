"""A batch of raw stream entries parsed column-wise into LiveEvents, with `parse_raw_event`'s result.

An entry as publishers write it (the stream's eight fields in their documented order, as a flat
reply list) takes the fast path: the batch's numbers are converted column by column and checked
with numpy at once. Any other entry (fields in another order, extra or missing ones, a parsed
reply's dict) and any row the vector checks refuse goes through `parse_raw_event` itself, so
every event gets the one parser's verdict and reason; the fast path only skips work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from agents.synctwin.mirror.deviation import _RAW_KEYS, InvalidEvent, Parsed, parse_raw_event
from synctwin.kernel.messages import LiveEvents

DELETED = "the entry was deleted from the stream before it was processed"
_KEYS = list(_RAW_KEYS)  # the fields in the order DESIGN.md lists them (and publishers write them)


def parse_entries(fields: Sequence[Any]) -> tuple[list[int], LiveEvents, list[tuple[int, str]]]:
    """Each entry's fields (a raw reply's flat [name, value, ...] list, or a dict of bytes; empty:
    deleted): the indices that parsed, their events in order, and (index, why) for the others."""
    heads = [f[0::2] if type(f) is list else None for f in fields]
    if heads.count(_KEYS) == len(heads):  # the common case: every entry as publishers write it
        fast: Sequence[int] = range(len(heads))
        rows, slow = [f[1::2] for f in fields], {}
    else:
        fast = [k for k, h in enumerate(heads) if h == _KEYS]
        rows = [fields[k][1::2] for k in fast]
        slow = {k: _one(f) for k, (f, h) in enumerate(zip(fields, heads, strict=True)) if h != _KEYS}
    converted = _convert(rows)
    if converted is None:  # a value is not a number, or a text not UTF-8: every row by the one parser
        converted, refused = LiveEvents.of([]), range(len(rows))
    else:
        converted, refused = converted
    if not slow and not refused:
        return list(fast), converted, []
    refused = set(refused)
    kept = [j for j in range(len(fast)) if j not in refused]
    events: dict[int, Parsed | str] = dict(zip([fast[j] for j in kept], converted.take(kept).rows(), strict=True))
    events |= slow | {fast[j]: _one(fields[fast[j]]) for j in refused}
    ok = sorted(k for k, got in events.items() if not isinstance(got, str))
    bad = sorted((k, got) for k, got in events.items() if isinstance(got, str))
    return ok, LiveEvents.of([events[k] for k in ok]), bad  # type: ignore[misc]


def _one(f: Any) -> Parsed | str:
    """One entry by `parse_raw_event`: its event, or why not."""
    if not f:
        return DELETED
    try:
        return parse_raw_event(f if isinstance(f, dict) else dict(zip(f[0::2], f[1::2], strict=True)))
    except InvalidEvent as exc:
        return str(exc)
    except Exception as exc:  # whatever else one entry raises must not fail the batch
        return f"cannot parse the event ({type(exc).__name__}: {exc})"


def _floats(col: tuple[bytes, ...]) -> list[float]:
    """`float()` of each value (as parse_raw_event reads it): a column of JSON numbers is read by
    orjson in one call, a correctly rounded parser as float() is (the same doubles, about seven
    times faster on the 17-digit values floats print as); any other column by float() itself."""
    try:
        got = orjson.loads(b"[" + b",".join(col) + b"]")
    except orjson.JSONDecodeError:
        return list(map(float, col))
    kinds = set(map(type, got))
    if len(got) != len(col) or not kinds <= {float, int}:  # a comma, a string, true, null... inside a value
        return list(map(float, col))
    if int in kinds:  # an integer's float() from its text: exact, and "-0" keeps its sign
        return [float(raw) if type(x) is int else x for x, raw in zip(got, col, strict=True)]
    return got


def _convert(rows: list[list[bytes]]) -> tuple[LiveEvents, list[int]] | None:
    """The rows as LiveEvents, and those `_checked`'s conditions refuse (checked with numpy at once);
    None: a value is not a number, or a text not UTF-8."""
    if not rows:
        return LiveEvents.of([]), []
    try:
        cols = list(zip(*rows, strict=True))
        ids, cids = (tuple(map(bytes.decode, c)) for c in cols[:2])
        n, ts = len(ids), tuple(_floats(cols[2]))
        values = np.empty((n, len(cols) - 3))
        for j, c in enumerate(cols[3:]):
            values[:, j] = np.fromiter(_floats(c), np.float64, n)  # not np.array: it inspects every element
    except Exception:  # not a number, not UTF-8, or whatever else: the one parser words it, row by row
        return None
    at = np.fromiter(ts, np.float64, n)
    with np.errstate(invalid="ignore"):
        ok = (at > 0) & np.isfinite(at) & np.isfinite(values).all(axis=1) & (values >= 0).all(axis=1)
    bad = np.flatnonzero(~ok).tolist()
    if "" in ids or "" in cids:
        bad = sorted({*bad, *(j for j in range(n) if not ids[j] or not cids[j])})
    return LiveEvents(ids, cids, ts, values), bad
