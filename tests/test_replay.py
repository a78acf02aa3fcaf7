"""Scenario replay: determinism, the built-ins, `synctwin replay` exit codes and messages, the
pytest plugin, and expectations that catch a switched-off guard."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from shared_scenarios import SHOCK

from harness.evaluation.backtest import builtin_historical_dir, load_cases
from harness.runner import run_scenario
from scenarios.loader import builtin_files, list_builtins, load_scenario, scenario_from_dict
from synctwin.app.cli import main

DAY = 86_400.0


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def summary(trace: Any) -> dict[str, Any]:
    d = trace.to_dict(series=True)
    d.pop("wall_s")
    return d


# --- determinism --------------------------------------------------------------------------------


def test_one_seed_one_trace_another_seed_another() -> None:
    """Two days of the portfolio (all ten launches, gates, bids, guards): bit for bit per seed."""
    scenario = load_scenario("portfolio_10").model_copy(update={"duration": 2 * DAY})
    a, b, c = (summary(run_scenario(scenario, seed)) for seed in (5, 5, 6))
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert a["campaigns"] != c["campaigns"]
    assert a["audit"]["head_hash"] == b["audit"]["head_hash"] != c["audit"]["head_hash"]
    assert a["bid_events"] > 0 and a["events"] > a["ticks"]


# --- the built-ins ------------------------------------------------------------------------------


def test_replay_list_prints_one_builtin_per_line_name_first(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    assert names == sorted(builtin_files())
    assert {"healthy_launch", "tiktok_genz", "portfolio_10", "historical_10"} <= set(names)
    for line, (name, description) in zip(lines, list_builtins(), strict=True):
        assert line.startswith(name + " ") and description and description in line


def test_the_seeds_tiktok_story(capsys: pytest.CaptureFixture[str]) -> None:
    """Rejected before launch with confidence ~0.62; SyncFlow never sees it; exit 0."""
    assert main(["replay", "tiktok_genz", "--json", "--seed", "3"]) == 0
    d = json.loads(capsys.readouterr().out)
    c = d["campaigns"]["volt-genz-launch"]
    assert d["passed"] and c["decision"] == "REJECTED" and 0.58 <= c["confidence"] <= 0.66
    assert c["status"] == "NOT_LAUNCHED" and c["totals"] == {} and c["bids"] == {}
    # shadow mode follows the rejection (issue 7): what it would have earned by the end of the run
    assert d["audit"]["by_type"] == {"CAMPAIGN_REJECTED": 1, "SHADOW_OUTCOME": 1}


def test_historical_10_decides_as_the_backtest_knows() -> None:
    """The gate approves the historical campaigns that made money, but for the new-audience near miss
    (the backtest's one false negative), and no campaign that lost money."""
    trace = run_scenario(load_scenario("historical_10"), 0)
    assert trace.passed, [e.to_dict() for e in trace.expectations if not e.passed]
    profitable = {case.strategy.campaign_id: case.outcome.profitable for case in load_cases(builtin_historical_dir())}
    assert len(profitable) == 10 and sum(profitable.values()) == 5
    approved = {cid: c.decision == "APPROVED" for cid, c in trace.campaigns.items()}
    assert {cid for cid, ok in approved.items() if ok} == {cid for cid, p in profitable.items() if p} - {
        "tiktok-skincare-new-audience"
    }
    assert all(c.pause_reason is None for c in trace.campaigns.values())


def test_portfolio_10_a_month_at_minute_resolution() -> None:
    """The one 30-day test: nine campaigns untouched and on budget, the thin one paused in time."""
    trace = run_scenario(load_scenario("portfolio_10"), 0)
    assert trace.passed, [e.to_dict() for e in trace.expectations if not e.passed]
    assert trace.ticks == 30 * 1440 and len(trace.campaigns) == 10
    shock = trace.faults["margin-squeeze"]["start"]
    assert set(trace.pauses) == {"copper-thin-margin"}
    reason, at = trace.pauses["copper-thin-margin"]
    assert reason == "MARGIN_GUARDIAN" and 0 < at - shock <= 4 * 3600
    for c in trace.campaigns.values():
        assert c.max_daily_spend_share <= 1.10 and len(c.daily_spend) >= 29


# --- exit codes and messages ------------------------------------------------------------------------


def test_exit_1_when_an_expectation_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(
        tmp_path,
        "calm.yaml",
        """\
        name: calm
        duration: 4h
        clients:
          - id: k
            history: {generate: {platform: google, daily_spend: 400}}
        campaigns:
          - {id: steady, client: k, strategy: {platform: google, audience_size: 400000, cvr: 0.02, daily_budget: 600}}
        expectations:
          - {expect: never_paused, campaign: steady}
          - {expect: paused, campaign: steady, reason: MARGIN_GUARDIAN, within: 1h}
        """,
    )
    assert main(["replay", str(path), "--json"]) == 1
    d = json.loads(capsys.readouterr().out)
    assert [e["passed"] for e in d["expectations"]] == [True, False]
    assert d["expectations"][1]["message"].startswith("never paused")


@pytest.mark.parametrize(
    ("name", "text", "field"),
    [
        ("malformed.yaml", "name: bad\nduration: 1d\nclients: [ {id: x\n", "line 4"),
        ("unknown_field.yaml", "name: bad\nduration: 1d\ncolour: blue\n", "field 'colour'"),
        (
            "unknown_campaign.yaml",
            """\
        name: bad
        duration: 1d
        clients: [{id: k, history: {generate: {platform: meta, daily_spend: 100}}}]
        campaigns: [{id: c, client: k, strategy: {audience_size: 1000, cvr: 0.1, daily_budget: 10}}]
        expectations: [{expect: never_paused, campaign: nobody}]
        """,
            "field 'expectations[0].campaign'",
        ),
        ("negative.yaml", "name: bad\nduration: -5\n", "field 'duration'"),
        ("bad_duration.yaml", "name: bad\nduration: 3 fortnights\n", "field 'duration'"),
        ("bad_tick.yaml", "name: bad\nduration: 1d\nworld: {tick: soon}\n", "field 'world.tick'"),
        (
            "bad_strategy.yaml",
            """\
        name: bad
        duration: 1d
        clients: [{id: k, history: {generate: {platform: meta, daily_spend: 100}}}]
        campaigns: [{id: c, client: k, strategy: {audience_size: 1000, cvr: 1.5, daily_budget: 10}}]
        """,
            "field 'campaigns[0].strategy.cvr'",
        ),
        (
            "late_launch.yaml",
            """\
        name: bad
        duration: 1h
        clients: [{id: k, history: {generate: {platform: meta, daily_spend: 100}}}]
        campaigns: [{id: c, client: k, launch_at: 2h, strategy: {audience_size: 1000, cvr: 0.1, daily_budget: 10}}]
        """,
            "field 'campaigns[0].launch_at'",
        ),
        ("list.yaml", "- just\n- a list\n", "expected a mapping"),
    ],
)
def test_an_invalid_scenario_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, field: str
) -> None:
    path = write(tmp_path, name, text)
    assert main(["replay", str(path), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert str(path) in lines[0] and field in lines[0]


def test_an_unknown_scenario_name_lists_the_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "no_such_scenario"]) == 2
    err = capsys.readouterr().err
    assert "no_such_scenario" in err and "portfolio_10" in err and len(err.strip().splitlines()) == 1


def test_the_command_line_process_exit_codes(tmp_path: Path) -> None:
    """Through the installed console script, as scripts and CI use it."""
    exe = shutil.which("synctwin") or str(Path(sys.executable).with_name("synctwin"))
    ok = subprocess.run([exe, "replay", "--list"], capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and ok.stdout.split()[0] == sorted(builtin_files())[0]
    bad = subprocess.run(
        [exe, "replay", str(write(tmp_path, "x.yaml", "name: x\nduration: 1d\nfaults: 7\n"))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "field 'faults'" in bad.stderr and "Traceback" not in bad.stderr


# --- the pytest plugin and a disabled guard ------------------------------------------------------------


def test_the_synctwin_replay_fixture(synctwin_replay: Any) -> None:
    trace = synctwin_replay(scenario_from_dict(SHOCK), seed=0)
    assert trace.passed, [e.to_dict() for e in trace.expectations]
    reason, at = trace.pauses["thin"]
    assert reason == "MARGIN_GUARDIAN" and 4 * 3600 < at <= 8 * 3600
    assert synctwin_replay("tiktok_genz").campaigns["volt-genz-launch"].decision == "REJECTED"


def test_a_scenario_with_margin_guardian_disabled_fails_its_expectation(tmp_path: Path, synctwin_replay: Any) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(json.dumps({**SHOCK, "disabled_guards": ["margin_guardian"]}), encoding="utf-8")  # JSON is YAML
    trace = synctwin_replay(path, seed=0)
    gate, paused = trace.expectations
    assert gate.passed and not paused.passed and not trace.passed
    assert trace.campaigns["thin"].guards["margin_guardian"] == "DISABLED"
    assert trace.campaigns["thin"].pause_reason != "MARGIN_GUARDIAN"
    # and from the command line: exit 1
    assert main(["replay", str(path), "--json"]) == 1


def test_the_plugin_reaches_a_users_own_test_suite(tmp_path: Path) -> None:
    """Registered through the pytest11 entry point: a suite with no conftest gets the fixture."""
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent("""\
        def test_mine(synctwin_replay):
            trace = synctwin_replay("tiktok_genz", seed=1)
            assert trace.passed
            assert trace.campaigns["volt-genz-launch"].launched_at is None
        """),
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout


def test_replay_appends_its_audit_records_to_a_chained_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agents.syncshield.backends import JsonlAuditStore

    log = tmp_path / "audit.jsonl"
    JsonlAuditStore(log).append("THRESHOLD_CHANGED", metadata={"from": 0.85, "to": 0.8})  # a log with a history
    assert main(["replay", "portfolio_10", "--audit-log", str(log), "--json"]) == 0
    capsys.readouterr()
    added = [json.loads(x) for x in log.read_text().splitlines()][1:]
    kinds = [r["event_type"] for r in added]
    assert kinds.count("CAMPAIGN_APPROVED") == 10 and "CAMPAIGN_LAUNCHED" in kinds and "CAMPAIGN_OUTCOME" in kinds
    assert all(r["ts"] < 1_800_000_000 for r in added)  # virtual times (January 2026), not the wall clock
    assert main(["audit", "verify", str(log)]) == 0  # the file's chain continued, not a second chain
    capsys.readouterr()
    assert main(["kpis", "--audit-log", str(log), "--json"]) == 0
    fp = json.loads(capsys.readouterr().out)["false_positive_rate"]
    assert fp["of"] >= 1 and fp["value"] is not None
