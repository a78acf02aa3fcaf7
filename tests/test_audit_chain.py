"""SyncShield: the hash chain, its tamper detection, every store, concurrency and `audit verify`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import itertools
import json
import math
import multiprocessing as mp
import re
import socket
import threading
from pathlib import Path
from typing import Any

import fakeredis
import numpy as np
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from agents.syncshield import (
    GENESIS_HASH,
    InMemoryAuditStore,
    JsonlAuditStore,
    Malformed,
    RedisAuditStore,
    SyncShield,
    canonical_json,
    make_record,
    to_jsonable,
    verify_chain,
    verify_file,
    verify_redis,
)
from agents.syncshield.cli_verify import run_verify
from synctwin.kernel.errors import InvalidInput

PROBLEM_RE = re.compile(r"^record (\d+) \(seq (\d+|unknown)\): \S.*")


def build_chain(n: int, start_ts: float = 1_700_000_000.0) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for i in range(n):
        records.append(
            make_record(
                records[-1] if records else None,
                "CAMPAIGN_APPROVED",
                ts=start_ts + i,
                client_id=f"client-{i % 3}",
                campaign_id=f"cmp-{i}",
                metadata={"i": i, "confidence_score": 0.9},
            )
        )
    return records


def roundtrip(records: list[Any]) -> list[Any]:
    return [json.loads(json.dumps(r)) for r in records]


def assert_bad_at(report: Any, position: int, *fragments: str) -> None:
    assert not report.ok
    assert report.first_bad == position, report.problem
    assert report.checked == position - 1
    assert report.problem is not None and PROBLEM_RE.match(report.problem), report.problem
    assert report.problem.startswith(f"record {position} ")
    for fragment in fragments:
        assert fragment in report.problem, report.problem


# ------------------------------------------------------------------------------- the chain
def test_chain_links_each_record_to_the_previous_and_verifies() -> None:
    records = build_chain(5)
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert records[0]["prev_hash"] == GENESIS_HASH
    for prev, rec in itertools.pairwise(records):
        assert rec["prev_hash"] == prev["hash"]
    report = verify_chain(roundtrip(records))
    assert report.ok and report.checked == 5 and report.first_bad is None and report.problem is None
    assert report.head_hash == records[-1]["hash"] and report.head_seq == 5


def test_hash_is_sha256_of_canonical_json_without_hash() -> None:
    rec = make_record(
        None,
        "CAMPAIGN_REJECTED",
        ts=12.5,
        client_id="acme",
        reason="SYNCTWIN_NEGATIVE_FORECAST",
        metadata={"b": 1, "a": "é"},
    )
    assert set(rec) == {
        "seq",
        "ts",
        "event_type",
        "client_id",
        "campaign_id",
        "reason",
        "metadata",
        "prev_hash",
        "hash",
    }
    body = {k: v for k, v in rec.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert '"a":"é"' in text  # ensure_ascii=False: hashed as UTF-8, not \u escapes
    assert rec["hash"] == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert rec["ts"] == 12.5 and isinstance(rec["ts"], float)


def test_empty_log_is_intact_with_the_genesis_head() -> None:
    report = verify_chain([])
    assert report.ok and report.checked == 0 and report.head_hash == GENESIS_HASH and report.head_seq == 0


class Color(enum.Enum):
    RED = "red"


class Point(BaseModel):
    x: float
    when: dt.date


@dataclasses.dataclass
class Pair:
    a: int
    b: tuple[int, int]


def test_to_jsonable_makes_any_metadata_loggable() -> None:
    meta = {
        "np_float": np.float64(0.25),
        "np_int": np.int32(7),
        "np_bool": np.bool_(True),
        "array": np.array([[1.5, np.nan], [np.inf, 2.0]]),
        "tuple": (1, 2),
        "set": {3, 1, 2},
        "nan": math.nan,
        "neg_inf": -math.inf,
        "model": Point(x=1.5, when=dt.date(2024, 1, 2)),
        "when": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "enum": Color.RED,
        "pair": Pair(1, (2, 3)),
        7: "int key",
        "nested": [{"deep": np.float32(0.5)}],
    }
    out = to_jsonable(meta)
    assert out["np_float"] == 0.25 and type(out["np_float"]) is float
    assert out["np_int"] == 7 and type(out["np_int"]) is int
    assert out["np_bool"] is True
    assert out["array"] == [[1.5, None], [None, 2.0]]
    assert out["tuple"] == [1, 2] and out["set"] == [1, 2, 3]
    assert out["nan"] is None and out["neg_inf"] is None
    assert out["model"] == {"x": 1.5, "when": "2024-01-02"}
    assert out["when"] == "2024-01-02T03:04:05+00:00"
    assert out["enum"] == "red" and out["pair"] == {"a": 1, "b": [2, 3]}
    assert out["7"] == "int key" and out["nested"] == [{"deep": 0.5}]
    canonical_json(out)  # strict JSON: would raise on NaN or a numpy value
    rec = make_record(None, "CHAOS_TEST_COMPLETED", ts=1.0, metadata=meta)
    assert verify_chain(roundtrip([rec])).ok


def test_make_record_refuses_what_cannot_be_an_audit_event() -> None:
    with pytest.raises(InvalidInput) as err:
        make_record(None, "  ", ts=1.0)
    assert err.value.field == "event_type"
    with pytest.raises(InvalidInput) as err:
        make_record(None, "X", ts=math.nan)
    assert err.value.field == "ts"
    with pytest.raises(InvalidInput) as err:
        make_record(None, "X", ts=1.0, metadata=[1, 2])
    assert err.value.field == "metadata"


def _edit_field(rec: dict[str, Any], field: str) -> dict[str, Any]:
    """A copy of `rec` with `field` changed to a different value of a plausible type."""
    out = dict(rec)
    value = out[field]
    if field == "seq":
        out[field] = value + 1
    elif field == "ts":
        out[field] = value + 1.0
    elif field in ("hash", "prev_hash"):
        out[field] = ("1" if value[0] == "0" else "0") + value[1:]
    elif field == "metadata":
        out[field] = (
            {k: v for k, v in value.items() if k != "tampered"} if "tampered" in value else {**value, "tampered": True}
        )
    elif field == "event_type":
        out[field] = value + "X"
    else:
        out[field] = "X" if value is None else None
    return out


def test_an_edited_field_is_the_first_bad_record() -> None:
    records = roundtrip(build_chain(6))
    records[2]["metadata"]["confidence_score"] = 0.99
    assert_bad_at(verify_chain(records), 3, "(seq 3)", "edited")


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link() -> None:
    records = roundtrip(build_chain(6))
    forged = make_record(records[1], "CAMPAIGN_APPROVED", ts=records[2]["ts"], metadata={"forged": True})
    records[2] = forged  # valid on its own, but record 4 still points at the original
    assert_bad_at(verify_chain(records), 4, "(seq 4)", "prev_hash")


def test_a_removed_middle_record_is_reported_as_missing() -> None:
    records = roundtrip(build_chain(6))
    del records[2]
    assert_bad_at(verify_chain(records), 3, "(seq 4)", "seq 3 is missing")


def test_two_swapped_records_are_out_of_order() -> None:
    records = roundtrip(build_chain(6))
    records[1], records[3] = records[3], records[1]
    assert_bad_at(verify_chain(records), 2, "(seq 4)", "missing")
    records = roundtrip(build_chain(6))
    records[4], records[3] = records[3], records[4]
    assert_bad_at(verify_chain(records), 4, "(seq 5)")


def test_a_duplicated_record_is_detected() -> None:
    records = roundtrip(build_chain(4))
    records.insert(2, dict(records[1]))
    assert_bad_at(verify_chain(records), 3, "(seq 2)", "out of order or duplicated")


@pytest.mark.parametrize(
    ("garbage", "fragment"),
    [
        ("not a record", "not a record"),
        (None, "not a record"),
        (Malformed("line 4 is not valid JSON (Expecting value at column 1)"), "not valid JSON"),
        ({"seq": 4}, "missing key(s): ts, event_type"),
        ({"junk": True}, "missing key(s)"),
    ],
)
def test_garbage_is_a_tampered_record_not_a_crash(garbage: Any, fragment: str) -> None:
    records: list[Any] = roundtrip(build_chain(6))
    records[3] = garbage
    report = verify_chain(records)
    assert_bad_at(report, 4, fragment)
    assert report.head_hash == records[2]["hash"] and report.head_seq == 3


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("seq", "3", "seq must be a positive integer"),
        ("seq", True, "seq must be a positive integer"),
        ("ts", "noon", "ts must be a finite number"),
        ("metadata", [1], "metadata must be an object"),
        ("client_id", 5, "client_id must be a string or null"),
        ("hash", "abc", "hash is not a 64-digit"),
        ("extra", 1, "unexpected key(s): extra"),
    ],
)
def test_wrong_types_are_named(field: str, value: Any, fragment: str) -> None:
    records = roundtrip(build_chain(4))
    records[2][field] = value
    assert_bad_at(verify_chain(records), 3, fragment)


def test_a_truncated_tail_verifies_but_the_head_anchor_shows_it() -> None:
    records = build_chain(6)
    anchor = verify_chain(records)
    truncated = verify_chain(records[:4])
    assert truncated.ok  # the documented limit: a shorter chain is still a valid chain
    assert (truncated.head_seq, truncated.head_hash) != (anchor.head_seq, anchor.head_hash)
    assert "truncat" in (verify_chain.__doc__ or "") and "anchor" in (verify_chain.__doc__ or "")


# ---------------------------------------------------------------- properties (hypothesis)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)
events = st.lists(
    st.fixed_dictionaries(
        {
            "event_type": st.sampled_from(["CAMPAIGN_APPROVED", "CAMPAIGN_REJECTED", "AUTO_ROLLBACK_TRIGGERED"])
            | st.text(min_size=1, max_size=12).filter(str.strip),
            "client_id": st.none() | st.text(max_size=10),
            "campaign_id": st.none() | st.text(max_size=10),
            "reason": st.none() | st.text(max_size=10),
            "metadata": st.dictionaries(st.text(max_size=8), json_values, max_size=4),
        }
    ),
    min_size=1,
    max_size=12,
)


def chain_of(evts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    store = InMemoryAuditStore(clock=iter(float(i) for i in range(10**6)).__next__)
    for e in evts:
        store.append(
            e["event_type"],
            client_id=e["client_id"],
            campaign_id=e["campaign_id"],
            reason=e["reason"],
            metadata=e["metadata"],
        )
    return store.records()


@settings(max_examples=150, deadline=None)
@given(evts=events)
def test_property_any_log_verifies_after_a_json_round_trip(evts: list[dict[str, Any]]) -> None:
    records = roundtrip(chain_of(evts))
    report = verify_chain(records)
    assert report.ok and report.checked == len(evts) and report.head_hash == records[-1]["hash"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(evts=events, data=st.data())
def test_property_any_single_edit_removal_or_swap_is_caught_where_it_happened(
    evts: list[dict[str, Any]], data: st.DataObject
) -> None:
    records = roundtrip(chain_of(evts))
    n = len(records)
    kinds = ["edit"] + (["remove", "swap"] if n >= 2 else [])
    kind = data.draw(st.sampled_from(kinds), label="kind")
    if kind == "edit":
        i = data.draw(st.integers(0, n - 1), label="index")
        field = data.draw(st.sampled_from(sorted(records[i])), label="field")
        records[i] = _edit_field(records[i], field)
    elif kind == "remove":
        i = data.draw(st.integers(0, n - 2), label="index")  # removing the last is truncation (see above)
        del records[i]
    else:
        i = data.draw(st.integers(0, n - 2), label="i")
        j = data.draw(st.integers(i + 1, n - 1), label="j")
        records[i], records[j] = records[j], records[i]
    report = verify_chain(records)
    assert not report.ok
    assert report.first_bad is not None and report.first_bad <= i + 1  # at or before the change...
    assert report.first_bad == i + 1  # ...and in fact exactly at it
    assert report.problem is not None and report.problem.startswith(f"record {i + 1} (seq ")


@settings(max_examples=100, deadline=None)
@given(evts=events, data=st.data())
def test_property_truncation_keeps_a_valid_chain_with_another_head(
    evts: list[dict[str, Any]], data: st.DataObject
) -> None:
    records = chain_of(evts)
    keep = data.draw(st.integers(0, len(records) - 1), label="keep")
    full, cut = verify_chain(records), verify_chain(records[:keep])
    assert full.ok and cut.ok and cut.head_hash != full.head_hash and cut.head_seq == keep


# ------------------------------------------------------------------------------ the stores
class Ticker:
    """A deterministic clock: 100.0, 101.0, ..."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now - 1.0


def _fill(store: Any, n: int = 5) -> list[dict[str, Any]]:
    return [
        store.append(
            "CAMPAIGN_APPROVED" if i % 2 else "CAMPAIGN_REJECTED",
            client_id="acme",
            campaign_id=f"c{i}",
            reason=None if i % 2 else "SYNCTWIN_NEGATIVE_FORECAST",
            metadata={"i": i, "score": np.float64(i / 10)},
        )
        for i in range(n)
    ]


def test_memory_store_round_trips_with_the_injected_clock() -> None:
    store = InMemoryAuditStore(clock=Ticker())
    appended = _fill(store)
    assert store.records() == appended
    assert [r["ts"] for r in appended] == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert appended[1]["metadata"] == {"i": 1, "score": 0.1}
    assert store.verify().ok and verify_chain(store.records()).checked == 5
    store.records()[0]["event_type"] = "EDITED"  # a copy: the stored log is untouched
    assert store.records()[0]["event_type"] == "CAMPAIGN_REJECTED"


def test_jsonl_store_round_trips_one_canonical_line_per_record(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "log.jsonl"
    store = JsonlAuditStore(path, clock=Ticker())
    appended = _fill(store)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == appended == store.records()
    assert lines == [canonical_json(r) for r in appended]
    report = verify_file(path)
    assert report.ok and report.checked == 5 and report.head_hash == appended[-1]["hash"]
    # a new store (a new process, say) continues the same chain
    more = JsonlAuditStore(path).append("CHAOS_TEST_COMPLETED", metadata={"passed": 4})
    assert more["seq"] == 6 and more["prev_hash"] == appended[-1]["hash"]
    assert verify_file(path).checked == 6


def test_two_jsonl_stores_alternating_on_one_file_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    a, b = JsonlAuditStore(path), JsonlAuditStore(path)
    for i in range(10):
        (a if i % 2 else b).append("E", metadata={"i": i})
    assert [r["seq"] for r in a.records()] == list(range(1, 11))
    assert verify_file(path).ok


def test_jsonl_garbage_or_edited_lines_are_tampered_records(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    _fill(JsonlAuditStore(path), 5)
    lines = path.read_text(encoding="utf-8").splitlines()
    original = list(lines)
    lines[3] = "{this is not json"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert_bad_at(verify_file(path), 4, "(seq unknown)", "line 4 is not valid JSON")
    lines = list(original)
    lines[1] = lines[1].replace('"client_id":"acme"', '"client_id":"evil"')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert_bad_at(verify_file(path), 2, "(seq 2)", "edited")
    path.write_bytes(b"\xff\xfe\n" + "\n".join(original).encode())
    assert_bad_at(verify_file(path), 1, "not UTF-8")


def test_jsonl_append_to_a_malformed_file_names_file_and_line_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    store = JsonlAuditStore(path)
    _fill(store, 3)
    damaged = path.read_bytes() + b'{"seq": 4, "oops"\n'
    path.write_bytes(damaged)
    with pytest.raises(InvalidInput) as err:
        store.append("CAMPAIGN_APPROVED")
    assert err.value.source == str(path) and err.value.line == 4
    assert str(path) in str(err.value) and "line 4" in str(err.value)
    with pytest.raises(InvalidInput) as err:
        JsonlAuditStore(path).append("CAMPAIGN_APPROVED")  # a fresh store reads it all
    assert err.value.line == 4
    assert path.read_bytes() == damaged
    with pytest.raises(InvalidInput) as err:
        store.records()
    assert err.value.line == 4


def test_jsonl_a_final_line_without_newline_is_continued_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    _fill(JsonlAuditStore(path), 2)
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    rec = JsonlAuditStore(path).append("AFTER")
    assert rec["seq"] == 3
    assert len(path.read_text().splitlines()) == 3 and verify_file(path).ok


def test_jsonl_a_failed_append_does_not_forget_the_missing_newline(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    store = JsonlAuditStore(path)
    _fill(store, 2)
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    with pytest.raises(InvalidInput):
        store.append("")  # refused after reading the unterminated line
    assert store.append("OK")["seq"] == 3
    assert verify_file(path).ok and len(path.read_text().splitlines()) == 3


def test_jsonl_a_file_rewritten_in_place_is_reread_and_the_bad_line_named(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    store = JsonlAuditStore(path)
    _fill(store, 3)
    lines = path.read_text().splitlines()
    lines[1] = "garbage"
    lines.append(lines[2] + " " * 50)  # longer than before, so only a re-read finds the damage
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidInput) as err:
        store.append("X")
    assert err.value.line == 2


def test_verify_file_refuses_what_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such audit log file"):
        verify_file(tmp_path / "missing.jsonl")
    with pytest.raises(InvalidInput, match="directory"):
        verify_file(tmp_path)
    assert JsonlAuditStore(tmp_path / "missing.jsonl").records() == []


def _append_worker(path: str, writer: str, n: int, go: Any) -> None:
    go.wait(timeout=30)
    store = JsonlAuditStore(path)
    for i in range(n):
        store.append("BID_BATCH", client_id=writer, metadata={"i": i})


def test_two_processes_appending_to_one_jsonl_file_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    procs = [ctx.Process(target=_append_worker, args=(str(path), w, 200, go)) for w in ("p1", "p2")]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    report = verify_file(path)
    assert report.ok, report.problem
    assert report.checked == 400
    records = JsonlAuditStore(path).records()
    assert [r["seq"] for r in records] == list(range(1, 401))
    for writer in ("p1", "p2"):
        mine = [r["metadata"]["i"] for r in records if r["client_id"] == writer]
        assert mine == list(range(200))  # each writer's events all there, in its own order


def test_redis_store_round_trips_on_fakeredis() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    store = RedisAuditStore(client, clock=Ticker())
    appended = _fill(store)
    assert store.records() == appended
    entries = client.xrange("synctwin:audit")
    assert len(entries) == 5
    _, fields = entries[2]
    assert set(fields) == {"seq", "event_type", "hash", "prev_hash", "record"}
    assert fields["seq"] == "3" and fields["hash"] == appended[2]["hash"]
    assert fields["record"] == canonical_json(appended[2])
    assert verify_redis(client, "synctwin:audit").ok and store.verify().checked == 5


def test_redis_store_works_with_a_bytes_client_and_a_custom_key() -> None:
    client = fakeredis.FakeRedis()  # decode_responses=False: fields come back as bytes
    store = RedisAuditStore(client, key="tenant:audit")
    appended = _fill(store, 3)
    assert store.records() == appended and verify_redis(client, "tenant:audit").checked == 3


def test_redis_store_retries_when_another_writer_wins_the_race() -> None:
    server = fakeredis.FakeServer()
    mine = fakeredis.FakeRedis(server=server, decode_responses=True)
    other = RedisAuditStore(fakeredis.FakeRedis(server=server, decode_responses=True))
    calls = {"n": 0}

    def racing_clock() -> float:
        """Called between WATCH+read and EXEC: the first time, the other writer appends."""
        calls["n"] += 1
        if calls["n"] == 1:
            other.append("OTHER_WRITER")
        return float(calls["n"])

    store = RedisAuditStore(mine, clock=racing_clock)
    rec = store.append("MINE")
    assert store.retries == 1
    assert rec["seq"] == 2 and rec["prev_hash"] == store.records()[0]["hash"]
    assert [r["event_type"] for r in store.records()] == ["OTHER_WRITER", "MINE"]
    assert verify_redis(mine, "synctwin:audit").ok


def _rewrite_stream(client: Any, key: str, entries: list[dict[str, str]]) -> None:
    client.delete(key)
    for fields in entries:
        client.xadd(key, fields)


def test_verify_redis_catches_removed_garbage_and_disagreeing_entries() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    _fill(RedisAuditStore(client), 5)
    key = "synctwin:audit"
    original = [fields for _, fields in client.xrange(key)]
    ids = [eid for eid, _ in client.xrange(key)]
    client.xdel(key, ids[1])
    assert_bad_at(verify_redis(client, key), 2, "(seq 3)", "missing")

    garbage = [dict(f) for f in original]
    garbage[2]["record"] = "not json"
    _rewrite_stream(client, key, garbage)
    assert_bad_at(verify_redis(client, key), 3, "not valid JSON")

    disagree = [dict(f) for f in original]
    disagree[3]["event_type"] = "CAMPAIGN_APPROVED_EDITED"
    _rewrite_stream(client, key, disagree)
    assert_bad_at(verify_redis(client, key), 4, "(seq 4)", "field 'event_type'")

    edited = [dict(f) for f in original]
    body = json.loads(edited[0]["record"])
    body["client_id"] = "evil"
    edited[0]["record"] = canonical_json(body)
    _rewrite_stream(client, key, edited)
    assert_bad_at(verify_redis(client, key), 1, "edited")


def test_verify_redis_on_a_missing_or_wrong_key() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    assert verify_redis(client, "nothing:here").ok and verify_redis(client, "nothing:here").checked == 0
    client.set("a:string", "x")
    with pytest.raises(InvalidInput, match="not a stream"):
        verify_redis(client, "a:string")


def test_redis_store_refuses_to_chain_onto_a_garbage_head() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    _fill(RedisAuditStore(client), 2)
    client.xadd("synctwin:audit", {"record": "garbage"})
    with pytest.raises(InvalidInput, match="head of the audit stream"):
        RedisAuditStore(client).append("X")
    assert client.xlen("synctwin:audit") == 3
    with pytest.raises(InvalidInput, match="not valid JSON"):
        RedisAuditStore(client).records()


@pytest.mark.redis
def test_redis_store_round_trips_on_a_real_server(redis_client: redis.Redis) -> None:
    store = RedisAuditStore(redis_client, clock=Ticker())
    appended = _fill(store, 20)
    assert store.records() == appended
    assert redis_client.xlen("synctwin:audit") == 20
    report = verify_redis(redis_client, "synctwin:audit")
    assert report.ok and report.checked == 20 and report.head_hash == appended[-1]["hash"]


@pytest.mark.redis
def test_verify_redis_pages_through_long_streams(redis_client: redis.Redis) -> None:
    store = RedisAuditStore(redis_client)
    for i in range(2500):  # more than one XRANGE batch of 1000
        store.append("E", metadata={"i": i})
    report = verify_redis(redis_client, "synctwin:audit")
    assert report.ok and report.checked == 2500 and report.head_seq == 2500


@pytest.mark.redis
def test_two_threads_with_their_own_clients_keep_one_chain_on_real_redis(
    redis_server: Any, redis_client: redis.Redis
) -> None:
    barrier = threading.Barrier(2)
    stores = [RedisAuditStore(redis.Redis.from_url(redis_server.url, decode_responses=True)) for _ in range(2)]
    errors: list[BaseException] = []

    def work(store: RedisAuditStore, name: str) -> None:
        try:
            barrier.wait(timeout=10)
            for i in range(200):
                store.append("BID_BATCH", client_id=name, metadata={"i": i})
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s, f"t{k}")) for k, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    report = verify_redis(redis_client, "synctwin:audit")
    assert report.ok, report.problem
    assert report.checked == 400
    records = RedisAuditStore(redis_client).records()
    assert [r["seq"] for r in records] == list(range(1, 401))
    for name in ("t0", "t1"):
        assert [r["metadata"]["i"] for r in records if r["client_id"] == name] == list(range(200))
    for s in stores:
        s.client.close()


# ------------------------------------------------------------------------------ the service
async def test_syncshield_takes_the_seeds_call_shape() -> None:
    shield = SyncShield(InMemoryAuditStore(clock=Ticker()))
    twin_result = {
        "confidence_score": np.float64(0.62),
        "risk_profile": "HIGH",
        "projected_net_profit_uplift": -1250.5,
        "simulation_details": {"p10_uplift": np.nan},
    }
    rejected = await shield.log_audit_event(
        event_type="CAMPAIGN_REJECTED", client_id="acme", reason="SYNCTWIN_NEGATIVE_FORECAST", metadata=twin_result
    )
    approved = await shield.log_audit_event(
        event_type="AUTO_ROLLBACK_TRIGGERED", campaign_id="c-7", metadata={"deviation": 0.21}
    )
    logged = shield.log("CHAOS_TEST_COMPLETED", metadata={"passed": 4})
    assert rejected["reason"] == "SYNCTWIN_NEGATIVE_FORECAST" and rejected["client_id"] == "acme"
    assert rejected["metadata"]["confidence_score"] == 0.62
    assert rejected["metadata"]["simulation_details"]["p10_uplift"] is None
    assert approved["campaign_id"] == "c-7" and approved["seq"] == 2 and logged["seq"] == 3
    assert shield.verify().ok and len(shield.records()) == 3


def test_syncshield_refuses_unknown_fields_and_defaults_to_memory() -> None:
    shield = SyncShield()
    assert isinstance(shield.store, InMemoryAuditStore)
    with pytest.raises(InvalidInput, match="unknown audit field"):
        shield.log("X", cliend_id="typo")
    assert shield.records() == []


def test_syncshield_verify_reports_tampering_in_its_file(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    shield = SyncShield(JsonlAuditStore(path))
    for i in range(3):
        shield.log("E", metadata={"i": i})
    path.write_text(path.read_text().replace('"i":1', '"i":9'))
    report = shield.verify()
    assert not report.ok and report.first_bad == 2


# --------------------------------------------------------------------------- audit verify
def test_run_verify_on_files(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    appended = _fill(JsonlAuditStore(path), 3)
    code, text = run_verify(str(path), None, "synctwin:audit")
    assert code == 0 and text.startswith(f"intact: 3 records, head {appended[-1]['hash']} (plain SHA-256 chain; ")
    assert text.endswith(f"\nhead {appended[-1]['hash']} (3 records)")
    path.write_text(path.read_text().replace('"c1"', '"c9"'))
    code, message = run_verify(str(path), None, "synctwin:audit")
    assert code == 1
    assert message.startswith("tampered: record 2 (seq 2): ") and "edited" in message
    with pytest.raises(InvalidInput, match="no such audit log file"):
        run_verify(str(tmp_path / "nope.jsonl"), None, "synctwin:audit")
    with pytest.raises(InvalidInput, match="exactly one"):
        run_verify(None, None, "synctwin:audit")
    with pytest.raises(InvalidInput, match="exactly one"):
        run_verify(str(path), "memory://", "synctwin:audit")


def test_run_verify_on_the_embedded_store_is_an_empty_intact_log() -> None:
    code, text = run_verify(None, "memory://", "synctwin:audit")
    assert code == 0 and text.startswith(f"intact: 0 records, head {GENESIS_HASH}")
    assert text.endswith(f"\nhead {GENESIS_HASH} (0 records)")


@pytest.mark.redis
def test_run_verify_on_a_real_server(redis_server: Any, redis_client: redis.Redis) -> None:
    appended = _fill(RedisAuditStore(redis_client, key="k:audit"), 4)
    code, text = run_verify(None, redis_server.url, "k:audit")
    assert code == 0 and text.startswith(f"intact: 4 records, head {appended[-1]['hash']} (")
    assert "checked against Redis key k:audit:head" in text
    ids = [eid for eid, _ in redis_client.xrange("k:audit")]
    redis_client.xdel("k:audit", ids[2])
    code, message = run_verify(None, redis_server.url, "k:audit")
    assert code == 1 and message.startswith("tampered: record 3 (seq 4): ")


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_verify_on_an_unreachable_server_hides_the_password() -> None:
    with pytest.raises(InvalidInput) as err:
        run_verify(None, f"redis://:s3cret@127.0.0.1:{_closed_port()}/0", "synctwin:audit")
    assert "cannot reach Redis" in str(err.value) and "s3cret" not in str(err.value)
    assert "***" in str(err.value)
