"""History and strategy parsers: clear errors naming file, line and field; property tests."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.history import History, load_history, parse_history_csv
from synctwin.kernel.strategy_io import load_strategy, strategy_from_dict

DATA = Path(__file__).parent / "data"
HEADER = "date,spend,impressions,clicks,conversions,revenue\n"


def csv_rows(n: int, start: str = "2026-01-01") -> str:
    d0 = np.datetime64(start)
    return "".join(f"{d0 + i},100,20000,400,20,1200\n" for i in range(n))


def test_parses_the_shared_example() -> None:
    h = load_history(DATA / "history_90d.csv")
    assert len(h) == 90
    assert h.dates[0] < h.dates[-1]
    assert h.spend.dtype == np.float64 and np.all(h.spend > 0)


def test_nan_in_history_names_line_and_field() -> None:
    with pytest.raises(InvalidInput) as err:
        load_history(DATA / "history_bad_nan.csv")
    assert err.value.line == 6 and err.value.field == "spend"
    assert "history_bad_nan.csv" in str(err.value) and "line 6" in str(err.value)


@pytest.mark.parametrize(
    ("row", "field", "needle"),
    [
        ("2026-01-05,-1,20000,400,20,1200", "spend", "greater than or equal"),
        ("2026-01-05,abc,20000,400,20,1200", "spend", "number"),
        ("2026-13-05,100,20000,400,20,1200", "date", "date"),
        ("2026-01-05,100,200,400,20,1200", None, "clicks (400) exceed impressions"),
        ("2026-01-05,100,20000,400,20,inf", "revenue", "finite"),
        ("2026-01-05,100,20000,400,20,", "revenue", "missing"),
    ],
)
def test_bad_row_is_named(row: str, field: str | None, needle: str) -> None:
    text = HEADER + csv_rows(4) + row + "\n" + csv_rows(3, "2026-02-01")
    with pytest.raises(InvalidInput) as err:
        parse_history_csv(text, source="h.csv")
    assert err.value.line == 6
    assert err.value.field == field
    assert needle in str(err.value)


def test_short_row_is_named() -> None:
    with pytest.raises(InvalidInput, match=r"line 3.*expected 6 values"):
        parse_history_csv(HEADER + csv_rows(1) + "2026-03-01,1,2\n", source="h.csv")


def test_duplicate_dates_are_refused_and_name_both_lines() -> None:
    text = HEADER + csv_rows(3) + csv_rows(1)  # 2026-01-01 twice
    with pytest.raises(InvalidInput, match=r"duplicate date 2026-01-01 \(also on line 2\)") as err:
        parse_history_csv(text)
    assert err.value.line == 5


def test_missing_column_and_empty_file() -> None:
    with pytest.raises(InvalidInput, match=r"missing column.*revenue"):
        parse_history_csv("date,spend,impressions,clicks,conversions\n2026-01-01,1,1,1,1\n")
    with pytest.raises(InvalidInput, match="empty"):
        parse_history_csv("")
    with pytest.raises(InvalidInput, match="no rows"):
        parse_history_csv(HEADER)
    with pytest.raises(InvalidInput, match="unknown column"):
        parse_history_csv(HEADER.strip() + ",colour\n2026-01-01,1,1,1,1,1,red\n")


def test_out_of_order_rows_are_sorted() -> None:
    text = HEADER + "2026-01-03,3,30,3,3,3\n2026-01-01,1,10,1,1,1\n2026-01-02,2,20,2,2,2\n"
    h = parse_history_csv(text)
    assert [str(d) for d in h.dates] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert h.spend.tolist() == [1, 2, 3]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such file"):
        load_history(tmp_path / "nope.csv")
    with pytest.raises(InvalidInput, match="no such file"):
        load_strategy(tmp_path / "nope.json")


def test_strategy_bad_budget_names_the_field() -> None:
    with pytest.raises(InvalidInput) as err:
        load_strategy(DATA / "strategy_bad_budget.json")
    assert err.value.field == "daily_budget"
    assert "greater than 0" in str(err.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"audience_size": 1000, "cvr": 0.02', "malformed JSON"),
        ('{"audience_size": 1000, "cvr": NaN, "daily_budget": 5}', "NaN is not a number"),
        ('{"audience_size": 1000, "cvr": 0.02}', "daily_budget"),
        ('{"audience_size": 1000, "cvr": 1.5, "daily_budget": 5}', "cvr"),
        ('{"audience_size": 1000, "cvr": 0.02, "daily_budget": 5, "platform": "myspace"}', "platform"),
        ("[1, 2]", "expected a JSON object"),
        ('{"audience_size": "many", "cvr": 0.02, "daily_budget": 5}', "audience_size"),
    ],
)
def test_bad_strategy_json(tmp_path: Path, text: str, needle: str) -> None:
    p = tmp_path / "s.json"
    p.write_text(text)
    with pytest.raises(InvalidInput, match=needle) as err:
        load_strategy(p)
    assert str(p) in str(err.value)


def test_strategy_defaults_and_extra_fields_kept() -> None:
    s = strategy_from_dict({"audience_size": 10, "cvr": 0.1, "daily_budget": 5, "creatives": ["a"]})
    assert s.duration_days == 30 and s.platform == "meta" and s.gross_margin == 1.0
    assert s.model_extra == {"creatives": ["a"]}


# --- property tests -------------------------------------------------------------------------

day_rows = st.lists(
    st.tuples(
        st.floats(0, 1e6, allow_nan=False),
        st.integers(0, 10**7),
        st.floats(0, 1),
        st.floats(0, 1),
        st.floats(0, 1e7, allow_nan=False),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(rows=day_rows, shuffle_seed=st.integers(0, 1000))
def test_csv_round_trip(rows: list[tuple[float, int, float, float, float]], shuffle_seed: int) -> None:
    """Any valid history survives to_csv -> parse unchanged, in any row order."""
    d0 = np.datetime64("2025-01-01")
    lines = []
    for i, (spend, imp, ctr, cvr, rev) in enumerate(rows):
        clicks = math.floor(imp * ctr)
        conv = math.floor(clicks * cvr)
        lines.append(f"{d0 + i},{spend!r},{imp},{clicks},{conv},{rev!r}\n")
    np.random.default_rng(shuffle_seed).shuffle(lines)
    h = parse_history_csv(HEADER + "".join(lines))
    assert len(h) == len(rows)
    assert np.all(np.diff(h.dates.astype(np.int64)) > 0)
    again = parse_history_csv(h.to_csv())
    for name in ("spend", "impressions", "clicks", "conversions", "revenue"):
        np.testing.assert_allclose(getattr(again, name), getattr(h, name), rtol=1e-9)
    assert isinstance(again, History)


@settings(max_examples=80, deadline=None)
@given(junk=st.text(max_size=200))
def test_parser_never_crashes_on_junk(junk: str) -> None:
    """Arbitrary text is either a history or an InvalidInput, never another exception."""
    with contextlib.suppress(InvalidInput):
        parse_history_csv(HEADER + junk)


@settings(max_examples=80, deadline=None)
@given(
    data=st.dictionaries(
        st.sampled_from(["audience_size", "cvr", "daily_budget", "duration_days", "platform", "gross_margin"]),
        st.one_of(st.integers(-10, 10**6), st.floats(allow_nan=True), st.text(max_size=5), st.none()),
    )
)
def test_strategy_validation_never_crashes(data: dict) -> None:
    try:
        s = strategy_from_dict(data)
    except InvalidInput as exc:
        assert exc.field or "object" in str(exc)
    else:
        assert s.daily_budget > 0 and 0 < s.cvr <= 1 and s.audience_size > 0
        assert math.isfinite(s.daily_budget)


def test_strategy_json_dump(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"audience_size": 5000, "cvr": 0.02, "daily_budget": 100, "campaign_id": "c-1"}))
    assert load_strategy(p).campaign_id == "c-1"


# --- any bytes: a parsed result or InvalidInput, never another exception ----------------------------------
CSV_TOKENS = st.sampled_from(
    [
        HEADER,
        "date,spend,impressions,clicks,conversions,revenue,returning_customers\n",
        "2026-01-01,",
        "2026-01-02,",
        "2026-02-30,",
        "100,20000,400,20,1200\n",
        "1,1,1,1,1,1\n",
        ",",
        "\n",
        "\r\n",
        '"',
        "\ufeff",
        "\0",
        "1e308",
        "1e400",
        "true",
        "-1",
        "nan",
        "inf",
        "9" * 40,
        " ",
        "x",
        "\xe9",
        "date",
        "spend",
    ]
)
JSON_TOKENS = st.sampled_from(
    [
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        '"audience_size"',
        '"cvr"',
        '"daily_budget"',
        '"aov"',
        '"cpm"',
        '"launch_ts"',
        '"duration_days"',
        '"x"',
        "true",
        "false",
        "null",
        "NaN",
        "Infinity",
        "-Infinity",
        "1",
        "0.02",
        "900",
        "-5",
        "1e39",
        "1e308",
        "1e400",
        "1" * 400,
        "1" * 5000,
        '"\\ud800"',
        "\ufeff",
        " ",
        "\n",
        '"',
        "\\",
    ]
)


def _bytes(tokens: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    """Raw bytes, or text assembled from tokens that reach deeper into the parser."""
    return st.one_of(st.binary(max_size=300), st.lists(tokens, max_size=60).map(lambda t: "".join(t).encode()))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("parsers")


@settings(max_examples=300, deadline=None)
@given(data=_bytes(CSV_TOKENS))
def test_any_bytes_are_a_history_or_invalid_input(scratch: Path, data: bytes) -> None:
    p = scratch / "history.csv"
    p.write_bytes(data)
    try:
        h = load_history(p)
    except InvalidInput as exc:
        assert str(p) in str(exc)
    else:
        assert len(h) >= 1 and np.all(np.isfinite(h.spend)) and np.all(h.conversions <= h.clicks)
        assert np.all(h.clicks <= h.impressions) and np.all(np.diff(h.dates.astype(np.int64)) > 0)


@settings(max_examples=300, deadline=None)
@given(data=_bytes(JSON_TOKENS))
def test_any_bytes_are_a_strategy_or_invalid_input(scratch: Path, data: bytes) -> None:
    p = scratch / "strategy.json"
    p.write_bytes(data)
    try:
        s = load_strategy(p)
    except InvalidInput as exc:
        assert str(p) in str(exc)
    else:
        assert 0 < s.daily_budget <= 1e8 and 0 < s.audience_size <= 10**10


numbers = st.one_of(
    st.booleans(), st.integers(), st.integers(-(10**500), 10**500), st.floats(), st.none(), st.text(max_size=4)
)


@settings(max_examples=300, deadline=None)
@given(
    changes=st.dictionaries(
        st.sampled_from(
            ["audience_size", "cvr", "daily_budget", "duration_days", "cpm", "ctr", "aov", "gross_margin", "launch_ts"]
        ),
        numbers,
        max_size=4,
    )
)
def test_any_numbers_are_a_bounded_strategy_or_invalid_input(changes: dict) -> None:
    """Whatever the values (booleans, 500-digit integers, inf), a strategy is bounded or refused."""
    base = {"audience_size": 160_000, "cvr": 0.02, "daily_budget": 900}
    try:
        s = strategy_from_dict({**base, **changes})
    except InvalidInput as exc:
        assert exc.field in changes
    else:
        for name in ("daily_budget", "aov", "cpm", "cvr", "ctr", "gross_margin", "launch_ts"):
            v = getattr(s, name)
            assert v is None or (math.isfinite(v) and not isinstance(v, bool))
        assert s.daily_budget <= 1e8 and (s.aov or 0) <= 1e6 and s.audience_size <= 10**10
        assert not any(isinstance(changes.get(k), bool) for k in changes)


YAML_TOKENS = st.sampled_from(
    [
        "name: x\n",
        "duration: 1h\n",
        "duration: ",
        "world: ",
        "{tick: 5m}",
        "tick: ",
        "gate_paths: ",
        "1e12",
        ".inf",
        ".nan",
        "-5",
        "100000000d",
        "0.000001",
        "2026-02-30",
        "9" * 5000,
        "&a ",
        "*a",
        "[",
        "]",
        "{",
        "}",
        ": ",
        ", ",
        "- ",
        "\n",
        "  ",
        "? ",
        "!!python/object:os.system ",
        "!!binary ",
        "<<: ",
        "'",
        '"',
        "\t",
        "\0",
        "\ufeff",
        "clients: [{id: c, history: {generate: {daily_spend: 600}}}]\n",
        "faults: [{kind: cpm_shock, at: 1h, ",
        "platform: meta, multiplier: ",
        "campaigns: [{id: k, client: c, strategy: {audience_size: 1000, cvr: 0.1, ",
        "daily_budget: ",
        "true",
        "}}]\n",
    ]
)


@settings(max_examples=300, deadline=None)
@given(data=_bytes(YAML_TOKENS))
def test_any_bytes_are_a_scenario_or_invalid_input(scratch: Path, data: bytes) -> None:
    from scenarios.loader import load_scenario

    p = scratch / "scenario.yaml"
    p.write_bytes(data)
    try:
        s = load_scenario(p)
    except InvalidInput as exc:
        assert str(p) in str(exc)
    else:
        assert math.isfinite(s.duration) and s.duration <= 400 * 86_400 and s.world.tick >= 1
