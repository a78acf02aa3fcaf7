"""Hostile and absurd inputs, from the outside: the CLI (synctwin.app.cli.main) and the HTTP service
(FastAPI's TestClient over fakeredis). Each test is one defect of the hardening issue's items 5-7
("files and numbers"): it failed on the code before the fix and names what it guards.

Bad input must get exit 2 (HTTP 422) with one error naming the file, field or line, and leave
nothing behind: no audit record, no published projection, however often it is retried.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest

with warnings.catch_warnings():  # starlette's notice about httpx's successor
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from synctwin.app.cli import main
from synctwin.app.http import create_app
from synctwin.kernel.config import Settings
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.history import load_history

DATA = Path(__file__).parent / "data"
HISTORY = DATA / "history_90d.csv"
HISTORY_TEXT = HISTORY.read_text()
HEADER = "date,spend,impressions,clicks,conversions,revenue\n"
STRATEGY: dict[str, Any] = json.loads((DATA / "strategy.json").read_text())
ROWS = load_history(HISTORY).to_records()
PREFIX = "synctwin:"

SetLimits = Callable[..., None]


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[SetLimits]:
    """Change Limits for one test through their SYNCTWIN_* variables (they are read once per process)."""
    from synctwin.kernel.config import get_limits

    def set_limits(**values: object) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"SYNCTWIN_{name.upper()}", str(value))
        get_limits.cache_clear()

    get_limits.cache_clear()
    yield set_limits
    get_limits.cache_clear()


def gate(capsys: Any, strategy: Path | str, history: Path | str = HISTORY, *extra: str) -> tuple[int, str, str]:
    code = main(
        ["gate", str(strategy), "--history", str(history), "--paths", "1000", "--seed", "1", "--no-suggestions", *extra]
    )
    out, err = capsys.readouterr()
    return code, out, err


def write_strategy(tmp_path: Path, text: str | None = None, **changes: Any) -> Path:
    p = tmp_path / "strategy.json"
    p.write_text(text if text is not None else json.dumps({**STRATEGY, **changes}))
    return p


def raw_field(field: str, raw: str) -> str:
    """The strategy's JSON with one more field written as is (true, a 400-digit number)."""
    return json.dumps(STRATEGY)[:-1] + f', "{field}": {raw}}}'


def invalid(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.fixture
def fake() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(decode_responses=True)


def http(fake: Any) -> TestClient:
    return TestClient(create_app(Settings(), redis_client=fake), raise_server_exceptions=False)


def written(fake: Any) -> list[str]:
    """Every key the service wrote (the audit stream, projections, pending sets)."""
    return sorted(fake.keys("*"))


# --- item 5: absurd finite numbers ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value", "setting"),
    [
        ("aov", 1e39, "SYNCTWIN_MAX_AOV"),
        ("daily_budget", 1e308, "SYNCTWIN_MAX_DAILY_BUDGET"),
        ("cpm", 1e30, "SYNCTWIN_MAX_CPM"),
        ("audience_size", 10**30, "SYNCTWIN_MAX_AUDIENCE_SIZE"),
    ],
)
def test_an_absurd_number_is_refused_naming_field_value_and_limit(
    capsys: Any, tmp_path: Path, field: str, value: float, setting: str
) -> None:
    log = tmp_path / "audit.jsonl"
    code, out, err = gate(capsys, write_strategy(tmp_path, **{field: value}), HISTORY, "--audit-log", str(log))
    invalid(code, err, "strategy.json", f"field '{field}'", "over the limit", setting)
    assert out == "" and not log.exists()  # no decision, no audit record


def test_limits_are_configurable(capsys: Any, tmp_path: Path, limits: SetLimits) -> None:
    strategy = write_strategy(tmp_path, daily_budget=900)
    limits(max_daily_budget=500)
    invalid(*gate(capsys, strategy)[::2], "over the limit of 500 (SYNCTWIN_MAX_DAILY_BUDGET)")
    limits(max_daily_budget=1e9)
    assert gate(capsys, strategy)[0] in (0, 1)


def test_an_overflowed_simulation_is_no_decision_and_is_never_audited(
    capsys: Any, tmp_path: Path, limits: SetLimits
) -> None:
    """With the limit raised past what float32 bands hold, the Monte Carlo overflows: refused."""
    limits(max_aov=1e300)
    log = tmp_path / "audit.jsonl"
    code, out, err = gate(capsys, write_strategy(tmp_path, aov=1e39), HISTORY, "--audit-log", str(log), "--json")
    invalid(code, err, "strategy.json", "field 'aov'", "overflowed", "aov=1e+39")
    assert out == "" and not log.exists()


def test_http_absurd_number_is_a_422_before_anything_is_audited_even_on_retry(fake: Any) -> None:
    with http(fake) as c:
        for _attempt in range(2):
            r = c.post("/v1/simulate", json={"strategy": {**STRATEGY, "aov": 1e39}, "history": ROWS, "paths": 1000})
            assert r.status_code == 422, r.text
            (error,) = r.json()["detail"]
            assert error["loc"] == ["body", "strategy", "aov"] and "SYNCTWIN_MAX_AOV" in error["msg"]
        assert written(fake) == []


def test_http_overflow_is_a_422_naming_the_field_and_audits_nothing(fake: Any, limits: SetLimits) -> None:
    limits(max_daily_budget=1e308)
    with http(fake) as c:
        for _attempt in range(2):
            r = c.post(
                "/v1/simulate",
                json={"strategy": {**STRATEGY, "daily_budget": 1e308}, "history": ROWS, "paths": 1000, "seed": 1},
            )
            assert r.status_code == 422, r.text
            (error,) = r.json()["detail"]
            assert error["loc"] == ["body", "strategy", "daily_budget"] and "overflowed" in error["msg"]
        assert written(fake) == []


def test_publishing_refuses_a_non_finite_result(tmp_path: Path, fake: Any) -> None:
    """The last line of defence: whoever calls record_decision / publish_plan with an infinite
    figure gets InvalidInput and nothing is written."""
    from agents.synctwin.gate.gatekeeper import SimulationGatekeeper
    from agents.syncvalue.baseline import compute_baseline
    from synctwin.kernel.strategy_io import strategy_from_dict
    from synctwin.services.publishing import publish_plan, record_decision

    strategy = strategy_from_dict(STRATEGY)
    history = load_history(HISTORY)
    result = SimulationGatekeeper(settings=Settings()).evaluate(strategy, compute_baseline(history), seed=1, paths=1000)
    broken = result.model_copy(update={"expected_uplift": float("inf")})
    log = tmp_path / "audit.jsonl"
    with pytest.raises(InvalidInput, match="expected_uplift"):
        record_decision(broken, client=fake, audit_log=str(log), strategy=strategy)
    with pytest.raises(InvalidInput, match="expected_uplift"):
        publish_plan(fake, PREFIX, strategy, history, broken)
    assert not log.exists() and written(fake) == []


# --- item 6: hostile files ------------------------------------------------------------------------------
def test_a_200k_deep_json_array_names_the_file(capsys: Any, tmp_path: Path) -> None:
    p = write_strategy(tmp_path, "[" * 200_000 + "]" * 200_000)
    invalid(*gate(capsys, p)[::2], str(p), "nested deeper than 32 levels")


def test_a_deep_extra_field_is_refused_before_it_reaches_the_audit_log(capsys: Any, tmp_path: Path, fake: Any) -> None:
    notes = "[" * 40 + "]" * 40
    invalid(*gate(capsys, write_strategy(tmp_path, raw_field("notes", notes)))[::2], "nested deeper")
    with http(fake) as c:  # the HTTP body's JSON skips the file reader: the model itself bounds it
        r = c.post("/v1/simulate", json={"strategy": {**STRATEGY, "notes": json.loads(notes)}, "history": ROWS})
        assert r.status_code == 422 and "nested deeper" in r.text
    assert written(fake) == []


@pytest.mark.parametrize("digits", [400, 5000])
def test_a_huge_integer_names_the_file(capsys: Any, tmp_path: Path, digits: int) -> None:
    p = write_strategy(tmp_path, raw_field("audience_size", "1" * digits))
    invalid(*gate(capsys, p)[::2], str(p), f"an integer of {digits} digits")


def test_dev_zero_fails_fast_naming_the_file(capsys: Any, tmp_path: Path) -> None:
    invalid(*gate(capsys, "/dev/zero")[::2], "/dev/zero", "larger than 1 MB (SYNCTWIN_MAX_STRATEGY_BYTES)")
    invalid(*gate(capsys, write_strategy(tmp_path), "/dev/zero")[::2], "/dev/zero", "line 1", "a line longer")
    invalid(main(["replay", "/dev/zero"]), capsys.readouterr().err, "/dev/zero", "SYNCTWIN_MAX_SCENARIO_BYTES")


def test_a_huge_history_reports_a_duplicate_on_line_3_at_once(capsys: Any, tmp_path: Path) -> None:
    """Fed through a pipe, a 200,000-row history with a duplicate date on line 3 is refused after
    reading little more than the pipe's buffer: the rest is never read (the old parser read it all)."""
    import datetime as dt
    import os
    import threading

    d0 = dt.date(1900, 1, 1)
    rows = [f"{d0 + dt.timedelta(days=i)},600,90000,1800,70,4400\n" for i in range(200_000)]
    rows.insert(1, rows[0])
    data = (HEADER + "".join(rows)).encode()
    fifo = tmp_path / "history.csv"
    os.mkfifo(fifo)
    sent = [0]

    def feed() -> None:
        try:
            with open(fifo, "wb", buffering=0) as f:
                for i in range(0, len(data), 4096):
                    sent[0] += f.write(data[i : i + 4096])
        except BrokenPipeError:  # the reader stopped: what we want
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    invalid(
        *gate(capsys, write_strategy(tmp_path), fifo)[::2],
        str(fifo),
        "line 3",
        "duplicate date 1900-01-01 (also on line 2)",
    )
    writer.join(30)
    assert not writer.is_alive() and sent[0] < len(data) // 10, (sent[0], len(data))


def test_the_history_is_read_line_by_line() -> None:
    """The first bad row stops the read: nothing past it is pulled from the file."""
    import io

    from synctwin.kernel.files import capped_lines
    from synctwin.kernel.history import _parse_lines

    pulled = []
    text = HEADER + "2026-01-01,1,1,1,1,1\n" * 2 + "2026-01-03,1,1,1,1,1\n" * 10_000
    source = capped_lines(io.BytesIO(text.encode()), "h.csv", max_bytes=2**30, setting="X")

    def lines() -> Iterator[str]:
        for line in source:
            pulled.append(line)
            yield line

    with pytest.raises(InvalidInput, match=r"line 3.*duplicate date"):
        _parse_lines(lines(), "h.csv")
    assert len(pulled) == 3


def test_history_rows_and_bytes_are_bounded(capsys: Any, tmp_path: Path, limits: SetLimits) -> None:
    strategy = write_strategy(tmp_path)
    limits(max_history_rows=60)
    invalid(*gate(capsys, strategy)[::2], "line 62", "more than 60 rows (SYNCTWIN_MAX_HISTORY_ROWS)")
    limits(max_history_rows=7320, max_history_bytes=2048)
    invalid(*gate(capsys, strategy)[::2], "history_90d.csv", "larger than 2,048 bytes (SYNCTWIN_MAX_HISTORY_BYTES)")


def test_history_day_figures_are_bounded(capsys: Any, tmp_path: Path) -> None:
    p = tmp_path / "history.csv"
    p.write_text(HISTORY_TEXT.replace("\n2026-07-02,664.24", "\n2026-07-02,1e300", 1))
    invalid(*gate(capsys, write_strategy(tmp_path), p)[::2], "line 3", "field 'spend'", "SYNCTWIN_MAX_HISTORY_SPEND")


def scenario(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "scenario.yaml"
    p.write_text(text)
    return p


BASE = """name: hostile
duration: {duration}
world: {{tick: {tick}}}
gate_paths: {gate_paths}
clients:
  - id: acme
    history: {{generate: {{platform: meta, daily_spend: 600}}}}
campaigns:
  - {{id: c1, client: acme, strategy: {{audience_size: 160000, cvr: 0.03, daily_budget: 1100}}}}
faults:
  - {{id: shock, kind: cpm_shock, at: 2h, platform: meta, multiplier: {multiplier}}}
"""


def base(**changes: object) -> str:
    return BASE.format(**{"duration": "12h", "tick": "5m", "gate_paths": 1000, "multiplier": 1.5, **changes})


def replay(capsys: Any, path: Path) -> tuple[int, str]:
    code = main(["replay", str(path)])
    return code, capsys.readouterr().err


def test_the_base_scenario_is_valid(capsys: Any, tmp_path: Path) -> None:
    """The hostile scenarios below differ from this one in one value each."""
    assert replay(capsys, scenario(tmp_path, base()))[0] == 0


def test_a_billion_laughs_is_refused_before_it_is_expanded(capsys: Any, tmp_path: Path) -> None:
    lines = ["name: laughs", "duration: 1h", 'lol0: &lol0 "lol"']
    lines += [f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * 10)}]" for i in range(1, 10)]
    p = scenario(tmp_path, "\n".join([*lines, "description: *lol9", ""]))
    invalid(*replay(capsys, p), str(p), "more than 100,000 values once its aliases are expanded")


def test_yaml_aliases_are_counted_and_self_containing_ones_refused(
    capsys: Any, tmp_path: Path, limits: SetLimits
) -> None:
    shared = base().replace("strategy: {audience_size", "strategy: &s {audience_size") + "  # c2 shares c1's strategy\n"
    shared = shared.replace("faults:", "  - {id: c2, client: acme, strategy: *s}\nfaults:")
    assert replay(capsys, scenario(tmp_path, shared))[0] == 0  # a fair use of an anchor
    invalid(
        *replay(capsys, scenario(tmp_path, "name: r\nduration: 1h\ndescription: &a [*a]\n")),
        "line 3",
        "an alias that contains itself",
    )
    limits(max_yaml_aliases=0)
    invalid(*replay(capsys, scenario(tmp_path, shared)), "line 10", "more than 0 aliases (SYNCTWIN_MAX_YAML_ALIASES)")


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        ({"duration": ".inf"}, ("field 'duration'", "a duration must be finite")),
        ({"duration": "100000000d"}, ("field 'duration'", "over the limit of 400d (SYNCTWIN_MAX_SCENARIO_DURATION)")),
        ({"duration": "9" * 400 + "s"}, ("field 'duration'", "not a duration")),
        ({"tick": "0.000001"}, ("field 'world.tick'", "under the limit of 1s (SYNCTWIN_MIN_TICK)")),
        ({"duration": "400d", "tick": "1s"}, ("field 'world.tick'", "SYNCTWIN_MAX_SCENARIO_TICKS")),
        ({"gate_paths": 10**12}, ("field 'gate_paths'", "over the limit of 1,000,000 (SYNCTWIN_MAX_GATE_PATHS)")),
        ({"multiplier": ".inf"}, ("field 'faults.0.multiplier'", "finite")),
        ({"multiplier": 1e6}, ("field 'faults.0.multiplier'", "SYNCTWIN_MAX_FAULT_MULTIPLIER")),
    ],
)
def test_scenario_durations_paths_and_multipliers_are_bounded(
    capsys: Any, tmp_path: Path, change: dict[str, Any], needles: tuple[str, ...]
) -> None:
    p = scenario(tmp_path, base(**change))
    invalid(*replay(capsys, p), str(p), *needles)


def test_scenario_markets_and_strategies_are_bounded(capsys: Any, tmp_path: Path) -> None:
    p = scenario(tmp_path, base().replace("{tick: 5m}", "{tick: 5m, platforms: {meta: {cpm: .inf}}}"))
    invalid(*replay(capsys, p), "field 'world.platforms.meta.cpm'", "finite")
    p = scenario(tmp_path, base().replace("daily_budget: 1100", "daily_budget: 1.0e+308"))
    invalid(*replay(capsys, p), "campaigns[0].strategy.daily_budget", "SYNCTWIN_MAX_DAILY_BUDGET")


# --- item 7: smaller -----------------------------------------------------------------------------------
def test_a_csv_with_a_byte_order_mark_is_read(capsys: Any, tmp_path: Path, fake: Any) -> None:
    p = tmp_path / "history.csv"
    p.write_bytes(b"\xef\xbb\xbf" + HISTORY.read_bytes())
    code, out, err = gate(capsys, DATA / "strategy.json", p, "--json")
    plain = gate(capsys, DATA / "strategy.json", HISTORY, "--json")
    assert (
        code in (0, 1) and err == "" and json.loads(out)["confidence_score"] == json.loads(plain[1])["confidence_score"]
    )
    with http(fake) as c:
        r = c.post(
            "/v1/simulate",
            json={"strategy": STRATEGY, "history_csv": "\ufeff" + HISTORY_TEXT, "paths": 1000, "seed": 1},
        )
        assert r.status_code == 200, r.text


def test_true_is_not_a_budget(capsys: Any, tmp_path: Path, fake: Any) -> None:
    invalid(
        *gate(capsys, write_strategy(tmp_path, raw_field("daily_budget", "true")))[::2],
        "field 'daily_budget'",
        "a number is expected, not a boolean",
    )
    with http(fake) as c:
        r = c.post("/v1/simulate", json={"strategy": {**STRATEGY, "daily_budget": True}, "history": ROWS})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "strategy", "daily_budget"]
        rows = [{**ROWS[0], "spend": True}, *ROWS[1:]]
        r = c.post("/v1/simulate", json={"strategy": STRATEGY, "history": rows})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "history", 0, "spend"]
    assert written(fake) == []


def test_conversions_above_clicks_are_refused_naming_the_line(capsys: Any, tmp_path: Path) -> None:
    p = tmp_path / "history.csv"
    p.write_text(HISTORY_TEXT.replace("\n2026-07-02,664.24,119153,2275,96,", "\n2026-07-02,664.24,119153,2275,3000,"))
    invalid(
        *gate(capsys, write_strategy(tmp_path), p)[::2], str(p), "line 3", "conversions (3000) exceed clicks (2275)"
    )


def test_duplicate_yaml_keys_are_refused_naming_key_and_lines(capsys: Any, tmp_path: Path) -> None:
    p = scenario(tmp_path, base() + "duration: 1h\n")
    invalid(*replay(capsys, p), str(p), "line 12", "duplicate key 'duration' (also on line 2)")
    nested = base().replace("{tick: 5m}", "{tick: 5m, tick: 1m}")
    invalid(*replay(capsys, scenario(tmp_path, nested)), "line 3", "duplicate key 'tick'")


def test_the_zero_impressions_error_names_the_history(capsys: Any, tmp_path: Path, fake: Any) -> None:
    p = tmp_path / "history.csv"
    p.write_text(HEADER + "".join(f"2026-01-{d:02d},600,0,0,0,4400\n" for d in range(1, 31)))
    # the funnel model needs the CPM; the curve model (the default) needs only the order value: both name the file
    invalid(
        *gate(capsys, write_strategy(tmp_path), p, "--model", "funnel")[::2],
        f"{p}: cannot estimate the CPM from the history",
    )
    invalid(*gate(capsys, write_strategy(tmp_path), p)[::2], f"{p}: cannot estimate the order value")
    with http(fake) as c:
        rows = load_history(p).to_records()
        r = c.post("/v1/simulate", json={"strategy": STRATEGY, "history": rows})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "history"]
    assert written(fake) == []


# --- settings: a bad SYNCTWIN_* value is one line naming the variable, never a traceback ------------------
@pytest.mark.parametrize(
    ("var", "value", "named"),
    [
        ("SYNCTWIN_THRESHOLD", "5", "SYNCTWIN_THRESHOLD"),
        ("SYNCTWIN_PATHS", "abc", "SYNCTWIN_PATHS"),
        ("SYNCTWIN_MAX_DAILY_BUDGET", "-1", "SYNCTWIN_MAX_DAILY_BUDGET"),
    ],
)
def test_bad_setting_is_exit_2_naming_the_variable(monkeypatch, capsys, var, value, named):
    from synctwin.kernel.config import get_limits, get_settings

    monkeypatch.setenv(var, value)
    get_settings.cache_clear()
    get_limits.cache_clear()
    try:
        rc = main(["gate", str(DATA / "strategy.json"), "--history", str(HISTORY), "--paths", "1000"])
    finally:
        monkeypatch.delenv(var)
        get_settings.cache_clear()
        get_limits.cache_clear()
    err = capsys.readouterr().err
    assert rc == 2
    assert named in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
