"""`synctwin demo`, the README's first command: every chapter tells its story on embedded defaults."""

from __future__ import annotations

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
    m = re.search(r"SHADOW_OUTCOME after (\d+) of 30 days \((\d+) market days observed\)", loop)
    assert m and int(m.group(1)) >= 2 and m.group(1) == m.group(2)  # every shadowed day met the live market
    assert loop.count("CAMPAIGN_OUTCOME feed-") == 2 and "PAUSED after" in loop
    assert "rejection share 20% (1/5), false negatives 0% (0/1), false positives 0% (0/2)" in loop
