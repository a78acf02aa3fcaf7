"""The chaos drills: each passes with its guard on, fails with its guard off; alerts and audit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.syncnotify import MemorySink, SyncNotify
from agents.syncshield import InMemoryAuditStore, SyncShield
from harness.chaos import DRILLS, report, run_drill, run_drills
from synctwin.app.cli import main
from synctwin.kernel.errors import InvalidInput


@pytest.fixture(scope="module")
def all_on():
    return run_drills(seed=0)


def test_every_drill_passes_with_the_guards_on(all_on) -> None:
    assert [r.drill.name for r in all_on.results] == list(DRILLS)
    for r in all_on.results:
        assert r.passed, (r.drill.name, r.row())
        assert r.journal["status"] == "completed" and not r.journal["deviated"]
        assert r.journal["steady_states"]["before"]["steady_state_met"]
        assert r.journal["steady_states"]["after"]["steady_state_met"]


@pytest.mark.parametrize(
    ("drill", "reason", "deadline_h"),
    [
        ("market_shock", "MARGIN_GUARDIAN", 4),
        ("conversion_drop", "AUTO_ROLLBACK", 4),
        ("budget_burn", "BUDGET_EMERGENCY", 2),
    ],
)
def test_the_guard_fires_in_time(all_on, drill: str, reason: str, deadline_h: float) -> None:
    r = next(x for x in all_on.results if x.drill.name == drill)
    c = next(iter(r.trace.campaigns.values()))
    fault_at = r.trace.faults["fault"]["start"]
    assert c.pause_reason == reason
    assert 0 <= c.paused_at - fault_at <= deadline_h * 3600
    assert c.pause_acked_at if hasattr(c, "pause_acked_at") else True


def test_budget_burn_never_spends_over_110_percent(all_on) -> None:
    r = next(x for x in all_on.results if x.drill.name == "budget_burn")
    c = next(iter(r.trace.campaigns.values()))
    assert c.max_daily_spend_share <= 1.10


def test_api_outage_serves_cached_bids_and_loses_none(all_on) -> None:
    r = next(x for x in all_on.results if x.drill.name == "api_outage")
    c = next(iter(r.trace.campaigns.values()))
    b = c.bids
    assert b["lost"] == 0 and b["cached_intervals"] > 0
    assert b["decided"] == b["delivered"] + b["superseded"] + b["lost"] + b["pending"]
    outage_end = r.trace.faults["fault"]["end"]
    assert any(0 <= t - outage_end <= 300 for t in r.trace.recoveries["meta"])
    kinds = [(e["kind"], e.get("to")) for e in r.trace.timeline if e["kind"] == "breaker_transition"]
    assert ("breaker_transition", "OPEN") in kinds and kinds[-1] == ("breaker_transition", "CLOSED")


@pytest.mark.parametrize(
    ("guard", "drill"),
    [
        ("margin_guardian", "market_shock"),
        ("auto_rollback", "conversion_drop"),
        ("budget_emergency", "budget_burn"),
        ("api_circuit_breaker", "api_outage"),
    ],
)
def test_a_drill_fails_when_its_guard_is_broken(guard: str, drill: str) -> None:
    broken = run_drill(DRILLS[drill], seed=0, disabled_guards=(guard,))
    assert not broken.passed
    assert broken.row()["verdict"] == "FAIL" and broken.row()["failures"]
    assert broken.journal["status"] == "failed" and broken.journal["disabled_guards"] == [guard]


def test_disabling_one_guard_leaves_the_other_drills_passing() -> None:
    run = run_drills(["market_shock", "budget_burn"], seed=0, disabled_guards=("auto_rollback",))
    assert all(r.passed for r in run.results)


def test_failed_run_alerts_critical_and_every_run_is_audited() -> None:
    shield, sink = SyncShield(InMemoryAuditStore()), MemorySink()
    notify = SyncNotify([sink])
    report(run_drills(["budget_burn"], seed=0), shield, notify)
    assert sink.alerts == []
    report(run_drills(["budget_burn"], seed=0, disabled_guards=("budget_emergency",)), shield, notify)
    [alert] = sink.alerts
    assert alert.severity == "CRITICAL" and alert.title == "Chaos Tests Failed"
    assert alert.message.startswith("1/1 chaos tests failed (budget_burn)")
    records = shield.records()
    assert [r["event_type"] for r in records] == ["CHAOS_TEST_COMPLETED"] * 2
    assert records[0]["metadata"]["passed"] == 1 and records[1]["metadata"]["failed"] == 1
    assert records[1]["metadata"]["results"][0]["verdict"] == "FAIL"
    assert shield.verify().ok


def test_same_seed_same_journal() -> None:
    a = run_drills(["conversion_drop"], seed=3).summary()
    b = run_drills(["conversion_drop"], seed=3).summary()
    assert a == b


def test_unknown_drill() -> None:
    with pytest.raises(InvalidInput, match="unknown drill"):
        run_drills(["earthquake"])


# --- the command line ---------------------------------------------------------------------------


def test_cli_chaos_json_and_exit_codes(capsys, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    assert main(["chaos", "--json", "--audit-log", str(log)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["status"] == "passed" and d["passed"] == 4 and len(d["journals"]) == 4
    assert {"drill", "fault", "expected", "happened", "when", "verdict"} <= set(d["results"][0])
    assert (
        main(["chaos", "--disable-guard", "margin_guardian", "--drill", "market_shock", "--audit-log", str(log)]) == 1
    )
    out = capsys.readouterr().out
    assert "FAIL" in out and "market_shock" in out
    events = [json.loads(x)["event_type"] for x in log.read_text().splitlines()]
    assert events == ["CHAOS_TEST_COMPLETED", "CHAOS_TEST_COMPLETED"]
    assert main(["audit", "verify", str(log)]) == 0


def test_cli_chaos_help_names_the_guards(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["chaos", "--help"])
    text = capsys.readouterr().out
    for guard in ("margin_guardian", "budget_emergency", "auto_rollback", "api_circuit_breaker"):
        assert guard in text


@pytest.mark.parametrize(
    "args", [["--drill", "earthquake"], ["--disable-guard", "seatbelt"], ["--schedule", "not a cron"], ["--seed", "-1"]]
)
def test_cli_chaos_bad_input_exits_2(capsys, args: list[str]) -> None:
    code = main(["chaos", *args]) if args[0] != "--disable-guard" else _exit_code(["chaos", *args])
    assert code == 2
    err = capsys.readouterr().err
    assert err.strip() and "Traceback" not in err


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own choice errors
        return int(exc.code)


# --- the schedule -------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def test_schedule_fires_at_cron_times_and_never_overlaps() -> None:
    from synctwin.infra.scheduling import run_on_schedule

    clock = FakeClock(1_767_225_600.0 - 30)  # 30 s before a midnight UTC
    started: list[float] = []

    def job() -> None:
        started.append(clock.t)
        clock.t += 3 * 86_400 if len(started) == 2 else 60  # the second run overruns three nights

    runs = run_on_schedule("0 0 * * *", job, stop=lambda: len(started) >= 3, now=clock.now, sleep=clock.sleep)
    assert runs == 3
    assert [t % 86_400 for t in started] == [0, 0, 0]
    assert started[1] - started[0] == 86_400
    assert started[2] - started[1] == 4 * 86_400  # missed fire times were skipped, not queued


def test_schedule_stops_and_rejects_bad_cron() -> None:
    from synctwin.infra.scheduling import run_on_schedule

    assert run_on_schedule("* * * * *", lambda: None, stop=lambda: True) == 0
    with pytest.raises(InvalidInput, match="not a cron expression"):
        run_on_schedule("every night", lambda: None, stop=lambda: True)


def test_chaos_clones_production_campaigns_from_redis(capsys, monkeypatch, tmp_path: Path) -> None:
    """A campaign approved with --redis is drilled too, in its own twin; nothing live changes."""
    import fakeredis

    client = fakeredis.FakeRedis(decode_responses=True)
    monkeypatch.setattr("synctwin.infra.redis_conn.connect", lambda url, **kw: client)
    strategy = tmp_path / "s.json"
    strategy.write_text(
        json.dumps(
            {"campaign_id": "live-1", "client_id": "acme", "audience_size": 160000, "cvr": 0.03, "daily_budget": 1100}
        )
    )
    history = Path(__file__).parent / "data" / "history_90d.csv"
    assert main(["gate", str(strategy), "--history", str(history), "--seed", "1", "--redis", "redis://x"]) == 0
    capsys.readouterr()
    before = {k: client.get(k) for k in client.keys("synctwin:campaign:*") if client.type(k) == "string"}
    code = main(["chaos", "--redis", "redis://x", "--json", "--drill", "budget_burn"])
    d = json.loads(capsys.readouterr().out)
    assert [r["template"] for r in d["results"]] == ["builtin", "live-1"]
    assert d["results"][1]["verdict"] == "PASS" and code == 0
    assert {k: client.get(k) for k in before} == before
    assert [f["event_type"] for _, f in client.xrange("synctwin:audit")][-1] == "CHAOS_TEST_COMPLETED"


def test_cli_chaos_records_prometheus_metrics(capsys) -> None:
    from synctwin.infra import metrics

    before = metrics.sample("synctwin_chaos_drills_total", {"drill": "budget_burn", "verdict": "PASS"}) or 0.0
    assert main(["chaos", "--drill", "budget_burn", "--json"]) == 0
    capsys.readouterr()
    after = metrics.sample("synctwin_chaos_drills_total", {"drill": "budget_burn", "verdict": "PASS"})
    assert after == before + 1
    assert metrics.sample("synctwin_chaos_last_run_passed", {"runner": "chaos"}) == 1


# --- the market shock sized to a campaign ------------------------------------------------------


def _wide_margin_template():
    import dataclasses

    from harness.chaos import BUILTIN_TEMPLATE

    return dataclasses.replace(
        BUILTIN_TEMPLATE, name="wide-margin", strategy={**BUILTIN_TEMPLATE.strategy, "gross_margin": 0.25}
    )


def test_the_builtin_shock_stays_plus_50_percent() -> None:
    from harness.chaos import BUILTIN_TEMPLATE, break_even_cpm_multiplier, sized_to

    assert 1.15 < break_even_cpm_multiplier(BUILTIN_TEMPLATE) < 1.3
    assert sized_to(DRILLS["market_shock"], BUILTIN_TEMPLATE) is DRILLS["market_shock"]
    assert sized_to(DRILLS["conversion_drop"], _wide_margin_template()) is DRILLS["conversion_drop"]


def test_a_wide_margin_clone_gets_a_shock_past_its_break_even_and_the_guard_fires() -> None:
    from harness.chaos import break_even_cpm_multiplier, sized_to

    wide = _wide_margin_template()
    be = break_even_cpm_multiplier(wide)
    assert be > 2.0  # x1.5 would leave it profitable
    shock = sized_to(DRILLS["market_shock"], wide).fault["multiplier"]
    assert shock == pytest.approx(min(1.4 * be, 3.0), abs=0.01) and shock > be
    result = run_drill(DRILLS["market_shock"], wide, seed=1)
    assert result.passed, result.row()
    assert result.row()["happened"] == "paused: MARGIN_GUARDIAN"
    assert f"x{shock:g}" in result.row()["fault"]


def test_the_sized_shock_still_fails_when_margin_guardian_is_broken() -> None:
    result = run_drill(DRILLS["market_shock"], _wide_margin_template(), seed=1, disabled_guards=("margin_guardian",))
    assert not result.passed
    assert result.row()["verdict"] == "FAIL"


def test_no_sizing_for_a_campaign_that_never_breaks_even() -> None:
    import dataclasses

    from harness.chaos import BUILTIN_TEMPLATE, break_even_cpm_multiplier, sized_to

    losing = dataclasses.replace(BUILTIN_TEMPLATE, strategy={**BUILTIN_TEMPLATE.strategy, "gross_margin": 0.05})
    assert break_even_cpm_multiplier(losing) is None
    assert sized_to(DRILLS["market_shock"], losing) is DRILLS["market_shock"]


def test_the_metrics_know_every_built_in_drill() -> None:
    """Their series exist at 0 from the start (increase() counts a scheduled run's first PASS) only
    for the drills metrics.py lists: the list must follow DRILLS."""
    from harness.chaos import DRILLS
    from synctwin.infra import metrics

    assert set(metrics.CHAOS_DRILL_NAMES) == set(DRILLS)
    assert metrics.sample("synctwin_chaos_drills_total", {"drill": "budget_burn", "verdict": "PASS"}) is not None
