"""`synctwin demo`, the README's first command: every chapter tells its story on embedded defaults."""

from __future__ import annotations

import io
import re

import pytest

from synctwin.app.cli import main


@pytest.fixture(scope="module")
def demo_output() -> str:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["demo"])
    assert code == 0
    return buf.getvalue()


def test_the_gate_blocks_the_losers_and_the_chain_catches_an_edit(demo_output: str) -> None:
    assert "deployed by SyncFlow: 4; blocked before launch: 6" in demo_output
    assert "chain intact" in demo_output
    assert "content does not match its hash (the record was edited)" in demo_output


def test_replay_and_chaos_pass_and_a_broken_guard_is_caught(demo_output: str) -> None:
    assert "FAIL " not in demo_output.split("5. Replay")[1].split("6. Chaos")[0]
    assert re.search(r"4/4 passed in [\d.]+ s", demo_output)
    assert "with MarginGuardian switched off, market_shock FAILS" in demo_output


def test_the_mirror_pauses_the_two_deviating_campaigns_once_each(demo_output: str) -> None:
    assert "feed-runaway PAUSED (SYNCTWIN_DEVIATION_THRESHOLD" in demo_output
    assert "feed-cvr-crash PAUSED (SYNCTWIN_DEVIATION_THRESHOLD" in demo_output
    assert "2 pauses (one each, exactly once)" in demo_output
    assert "still live after 3 days: feed-healthy-1, feed-healthy-2" in demo_output


def test_the_learning_loop_shadows_the_rejection_and_records_live_outcomes(demo_output: str) -> None:
    loop = demo_output.split("8. The learning loop")[1]
    assert "thin-margin-push (12% gross margin): CAMPAIGN_REJECTED" in loop
    loop = " ".join(loop.split())  # undo the wrapping
    m = re.search(r"SHADOW_OUTCOME after (\d+) of 30 days \(provisional: [^;]*; (\d+) market days observed\)", loop)
    assert m and int(m.group(1)) >= 2 and m.group(1) == m.group(2)  # every shadowed day met the live market
    assert loop.count("CAMPAIGN_OUTCOME feed-") == 2 and "PAUSED after" in loop
    assert "rejection share 20% (1/5), false negatives no data (0/0), false positives 0% (0/2)" in " ".join(
        loop.split()
    )


# --- output a person reads: 80 columns, no raw Python, units on every number -------------------

RAW = {
    "a Python dict": re.compile(r"\{'"),
    "None": re.compile(r"\bNone\b"),
    "an exponent": re.compile(r"\de\+\d"),
    "an unrounded float": re.compile(r"\d\.\d{10,}"),
    "a number without thousands separators": re.compile(r"(?<![\w,.$-])\d{5,}(?:\.\d+)?\b"),
    "a plural after 1": re.compile(r"\b1 (records|pauses|alerts|events|commands|rejections|campaigns|days)\b"),
}


def readability_problems(text: str, width: int = 80) -> list[str]:
    """Each line wider than `width` or holding one of the RAW patterns, named."""
    problems = [
        f"line {i} is {len(line)} columns: {line!r}" for i, line in enumerate(text.splitlines(), 1) if len(line) > width
    ]
    for what, pattern in RAW.items():
        problems += [
            f"{what} in line {i}: {line!r}" for i, line in enumerate(text.splitlines(), 1) if pattern.search(line)
        ]
    return problems


@pytest.fixture(scope="module")
def demo_at_80_columns() -> str:
    import contextlib
    import io
    import os

    buf, old = io.StringIO(), os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"
    try:
        with contextlib.redirect_stdout(buf):
            assert main(["demo"]) == 0
    finally:
        os.environ.pop("COLUMNS") if old is None else os.environ.__setitem__("COLUMNS", old)
    return buf.getvalue()


def test_the_demo_reads_well_at_80_columns(demo_at_80_columns: str) -> None:
    assert readability_problems(demo_at_80_columns) == []
    # every name whole, money with its unit, shares as percentages, durations in units
    for name in ("03_google_furniture_search_expansion", "06_google_electronics_low_margin_scale"):
        assert name in demo_at_80_columns
    assert re.search(r"-\$\d{1,3},\d{3}", demo_at_80_columns) and re.search(r"\d\.\d%", demo_at_80_columns)
    assert re.search(r"PAUSED after \d+h", demo_at_80_columns)


def test_the_demo_says_what_is_provisional_and_what_is_assumed(demo_at_80_columns: str) -> None:
    text = " ".join(demo_at_80_columns.split())  # undo the wrapping
    assert "(provisional: kpis count it once the flight is over;" in text
    assert "false negatives no data (0/0)" in text  # the provisional shadow outcome is not counted
    assert "gross margin 100% (default; set gross_margin)" in text
    assert "never paused (live; guards: budget_emergency armed, margin_guardian disabled" in text


def _chapter_gate_at(width: int) -> str:
    import argparse

    from rich.console import Console

    from synctwin.app.commands.demo import _chapter_gate

    out = Console(width=width, record=True, file=io.StringIO(), highlight=False)
    _chapter_gate(out, argparse.Namespace(seed=7, paths=2_000))
    return out.export_text()


def test_the_check_catches_a_broken_formatting_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks above are only worth something if a broken helper fails them."""
    from synctwin.app.commands import demo

    assert readability_problems(_chapter_gate_at(80)) == []
    monkeypatch.setattr(demo, "money", lambda x: repr(x))  # 19355.16, no $ and no separator
    assert any("thousands separators" in p for p in readability_problems(_chapter_gate_at(80)))
    monkeypatch.undo()
    monkeypatch.setattr(demo, "say", lambda out, text, indent=3: out.print(text, soft_wrap=True))
    assert any("columns" in p for p in readability_problems(_chapter_gate_at(80)))


def test_the_formatting_helpers() -> None:
    from synctwin.kernel.formatting import duration, money, number, percent, plural

    assert (money(20266.4), money(-2443.0), money(None)) == ("$20,266", "-$2,443", "-")
    assert (duration(32460.0), duration(4 * 60), duration(315), duration(2 * 86_400 + 3 * 3600 + 59)) == (
        "9h 1m",
        "4m",
        "5m 15s",
        "2d 3h",
    )
    assert (percent(0.8734), percent(0.8734, 1), percent(None)) == ("87%", "87.3%", "no data")
    assert (plural(1, "record"), plural(2, "record"), plural(1_024, "near-miss", "near-misses")) == (
        "1 record",
        "2 records",
        "1,024 near-misses",
    )
    assert number(0.9774499999999999) == "0.977"
