"""A stream batch parsed column-wise gives each entry exactly what `parse_raw_event` gives it, and
the Council's batch screen refuses exactly the events `check` refuses one by one."""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agents.council.build import ControlPort, Ports, build_council, plan_from_parts
from agents.syncnotify.sinks import MemorySink
from agents.syncshield.backends import InMemoryAuditStore
from agents.synctwin.mirror.deviation import EVENT_FIELDS, InvalidEvent, parse_raw_event
from agents.synctwin.mirror.event_limits import bounds_for, check
from agents.synctwin.mirror.stream_events import DELETED, _floats, parse_entries
from synctwin.kernel.config import Settings
from synctwin.kernel.messages import LiveEvents
from world.clock import make_environment

KEYS = [b"event_id", b"campaign_id", b"ts", *(k.encode() for k in EVENT_FIELDS)]
NUMBER = st.one_of(
    st.floats(min_value=0, max_value=1e6).map(lambda x: repr(x).encode()),
    st.sampled_from([b"-1", b"nan", b"inf", b"1e400", b"x", b"", b" 2 ", b"1_0", b"\xff", b"0", b"-0.0"]),
)
TEXT = st.sampled_from([b"e1", b"c-1", b"", b"\xff\xfe", "é".encode()])


@st.composite
def entry(draw: Any) -> Any:
    values = [draw(TEXT), draw(TEXT), *(draw(NUMBER) for _ in range(6))]
    flat = [x for kv in zip(KEYS, values, strict=True) for x in kv]
    shape = draw(st.sampled_from(["flat", "flat", "flat", "dict", "reordered", "extra", "missing", "deleted"]))
    if shape == "dict":
        return dict(zip(KEYS, values, strict=True))
    if shape == "reordered":
        return flat[2:4] + flat[:2] + flat[4:]
    if shape == "extra":
        return [*flat, b"note", b"hi"]
    if shape == "missing":
        return flat[:-2]
    return None if shape == "deleted" else flat


def one_by_one(f: Any) -> Any:
    if not f:
        return DELETED
    try:
        return parse_raw_event(f if isinstance(f, dict) else dict(zip(f[0::2], f[1::2], strict=True)))
    except InvalidEvent as exc:
        return str(exc)


@settings(max_examples=300, deadline=None)
@given(st.lists(entry(), max_size=12))
def test_a_batch_parses_as_its_entries_do_one_by_one(entries: list[Any]) -> None:
    ok, events, bad = parse_entries(entries)
    expected = [one_by_one(f) for f in entries]
    assert ok == [k for k, e in enumerate(expected) if not isinstance(e, str)]
    assert bad == [(k, e) for k, e in enumerate(expected) if isinstance(e, str)]
    assert events.rows() == [e for e in expected if not isinstance(e, str)]
    assert events.values.shape == (len(ok), 5) and events.values.dtype == np.float64


def test_the_fast_path_keeps_numbers_bit_for_bit() -> None:
    values = [b"e", b"c", b"1796000000.123456789", b"0.1", b"3", b"2", b"1", b"12345.678901234567"]
    f = [x for kv in zip(KEYS, values, strict=True) for x in kv]
    ok, events, bad = parse_entries([f, f])
    assert ok == [0, 1] and not bad
    assert events.rows()[0] == parse_raw_event(dict(zip(KEYS, values, strict=True)))
    assert isinstance(events.ts[0], float)


def _council() -> Any:
    env = make_environment(initial_time=1_000.0)
    council = build_council(env, Settings(), Ports(ControlPort(), InMemoryAuditStore(), [MemorySink()]))
    points = [
        {
            "t_hours": h,
            **{
                f"{m}_p{q}": v * h * k
                for m, v in (("spend", 10.0), ("revenue", 30.0), ("conversions", 1.0))
                for q, k in ((10, 0.8), (50, 1.0), (90, 1.2))
            },
        }
        for h in (0.0, 24.0, 48.0)
    ]
    for cid, with_curve in (("a", True), ("b", False)):
        projection = {"campaign_id": cid, "launch_ts": 1_000.0, "horizon_days": 2, "points": points}
        strategy = {
            "campaign_id": cid,
            "client_id": "c",
            "platform": "meta",
            "daily_budget": 240.0,
            "duration_days": 2,
            "launch_ts": 1_000.0,
            "audience_size": 1_000_000,
            "cvr": 0.02,
        }
        plan = plan_from_parts(cid, strategy, projection if with_curve else None, None, source="test")
        council.adopt([(plan, False)], at=1_000.0)
    return council


SIZE = st.one_of(
    st.floats(min_value=0, max_value=100),
    st.floats(min_value=0, max_value=1e5),
    st.floats(min_value=1e5, max_value=1e17),
)
TS = st.one_of(
    st.floats(min_value=1_000, max_value=200_000), st.floats(min_value=0, max_value=2_000), st.floats(0, 6e5)
)


@st.composite
def row(draw: Any) -> tuple[Any, ...]:
    spend, impressions, clicks, conversions, revenue = (draw(SIZE) for _ in range(5))
    if draw(st.booleans()):  # mostly a funnel, as real events are: the size bounds decide then
        impressions, clicks, conversions = sorted((impressions, clicks, conversions), reverse=True)
    return draw(st.sampled_from(["a", "b"])), draw(TS), spend, impressions, clicks, conversions, revenue


@settings(max_examples=200, deadline=None)
@given(
    st.lists(row(), max_size=15),
    st.sampled_from([math.inf, 50_000.0]),
)
@example([("a", 2_000.0, 10.0, 1e5, 1e5, 5e4, 10.0)], math.inf)  # conversions alone above the plan
def test_the_batch_screen_refuses_what_check_refuses(rows: list[Any], now: float) -> None:
    council = _council()
    events = LiveEvents.of([(f"e{k}", cid, ts, tuple(v)) for k, (cid, ts, *v) in enumerate(rows)])
    kept, bad = council.screen(events, now)
    expected = []
    for cid, ts, *v in rows:
        launch, end, curve, floors = council._flights[cid]
        expected.append(check(bounds_for(launch, end, curve, now, council.limits, floors), ts, tuple(v)))
    assert bad == [(k, why) for k, why in enumerate(expected) if why is not None]
    assert kept == [k for k, why in enumerate(expected) if why is None]


ODD = ["-0", "0", "-0.0", "1e400", "-1e400", "1e-400", " 1 ", "\t2", "1,2", '"1"', "true", "null", "[1]"]
ODD += ["+1", ".5", "5.", "NaN", "Infinity", "1_0", "0x10", "00", "01", "-", "", "1e", "1E5", "١", "1\n"]
VALUE = st.one_of(
    st.floats().map(repr),
    st.tuples(st.floats(allow_nan=False, allow_infinity=False), st.integers(1, 20)).map(lambda p: f"{p[0]:.{p[1]}g}"),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(ODD),
    st.text(alphabet="0123456789.eE+-, ", max_size=8),
).map(lambda s: s.encode())


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


@settings(max_examples=500, deadline=None)
@given(st.lists(VALUE, min_size=1, max_size=20))
def test_a_column_of_numbers_reads_as_float_reads_each(col: list[bytes]) -> None:
    """orjson reads a column of JSON numbers in one call: the very doubles float() gives (bit for
    bit, the sign of zero included), and whatever is not a JSON number goes to float() itself."""
    try:
        expected = [_bits(float(v)) for v in col]
    except ValueError:
        with pytest.raises(ValueError):
            _floats(tuple(col))
        return
    assert [_bits(x) for x in _floats(tuple(col))] == expected


def _exact(rows: list[Any]) -> list[tuple[Any, ...]]:
    return [(e[0], e[1], *(_bits(x) for x in (e[2], *e[3]))) for e in rows]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=3), st.text(max_size=3), st.floats(), st.tuples(*[st.floats()] * 5))))
def test_live_events_hold_their_rows_as_they_came(rows: list[Any]) -> None:
    events = LiveEvents.of(rows)
    assert len(events) == len(rows) and _exact(events.rows()) == _exact(rows)
    keep = list(range(0, len(rows), 2))
    assert _exact(events.take(keep).rows()) == _exact([rows[k] for k in keep])
