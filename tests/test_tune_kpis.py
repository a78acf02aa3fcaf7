"""`synctwin tune` (threshold from FN/FP and calibration) and `synctwin kpis` (the seed's metrics)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from agents.syncshield.backends import JsonlAuditStore
from harness.evaluation.tuning import (
    Evidence,
    live_evidence,
    pick_threshold,
    rates_at,
    reliability,
    shadow_evidence,
    tune,
)
from synctwin.app.cli import main
from synctwin.app.commands.kpis import kpis
from synctwin.infra import metrics
from synctwin.kernel.config import get_settings


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SYNCTWIN_THRESHOLD", raising=False)
    monkeypatch.setenv("SYNCTWIN_CONFIG_FILE", str(tmp_path / "synctwin.env"))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_rates_reliability_and_the_seeds_rule() -> None:
    ev = [Evidence(f"p{i}", c, True, "backtest") for i, c in enumerate((0.99, 0.95, 0.9, 0.8, 0.7))]
    ev += [Evidence(f"n{i}", c, False, "shadow") for i, c in enumerate((0.1, 0.3, 0.6, 0.75, 0.82))]
    r = rates_at(ev, 0.85)
    assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (3, 0, 2, 5) and r["fn_rate"] == 0.4 and r["fp_rate"] == 0.0
    curve = [rates_at(ev, t / 100) for t in range(50, 100)]
    chosen, _ = pick_threshold(curve, 0.85)
    assert chosen == 0.69  # FN 0% needs <0.70; of those, 0.69 approves the fewest losers (0.75, 0.82)
    assert rates_at(ev, chosen)["fn_rate"] == 0.0 and rates_at(ev, chosen)["fp"] == 2
    bins = {(b["low"], b["high"]): b for b in reliability(ev)}
    assert bins[(0.8, 0.85)]["n"] == 2 and bins[(0.8, 0.85)]["profitable_share"] == 0.5  # 0.80 won, 0.82 lost
    assert bins[(0.95, 1.0)]["profitable_share"] == 1.0
    # ties keep the current threshold: no change the evidence does not ask for
    clean = [Evidence("a", 0.99, True, "backtest"), Evidence("b", 0.1, False, "backtest")]
    assert tune(clean, 0.85)["threshold"] == 0.85


def test_shadow_evidence_takes_the_latest_outcome_per_campaign() -> None:
    recs = [
        {
            "event_type": "SHADOW_OUTCOME",
            "campaign_id": "c",
            "metadata": {"confidence_score": 0.6, "profitable": False},
        },
        {"event_type": "SHADOW_OUTCOME", "campaign_id": "c", "metadata": {"confidence_score": 0.6, "profitable": True}},
        {"event_type": "CAMPAIGN_REJECTED", "campaign_id": "d", "metadata": {"confidence_score": 0.5}},
    ]
    assert shadow_evidence(recs) == [Evidence("c", 0.6, True, "shadow")]


def test_live_evidence_takes_the_latest_final_outcome_per_campaign() -> None:
    recs = [
        {
            "event_type": "CAMPAIGN_OUTCOME",
            "campaign_id": "a",
            "metadata": {"confidence_score": 0.9, "profitable": True, "final": True},
        },
        {
            "event_type": "CAMPAIGN_OUTCOME",
            "campaign_id": "a",
            "metadata": {"confidence_score": 0.9, "profitable": False, "final": True},
        },
        {
            "event_type": "CAMPAIGN_OUTCOME",
            "campaign_id": "b",
            "metadata": {"confidence_score": 0.95, "profitable": False, "final": False},
        },
        {"event_type": "SHADOW_OUTCOME", "campaign_id": "c", "metadata": {"confidence_score": 0.5, "profitable": True}},
    ]
    assert live_evidence(recs) == [Evidence("a", 0.9, False, "live")]


def test_tune_takes_live_outcomes_as_evidence_of_false_positives(workdir: Path, capsys) -> None:
    log = workdir / "audit.jsonl"
    store = JsonlAuditStore(log)
    for i in range(4):  # approved at 0.9 and lost money: false positives unless the threshold rises above 0.9
        store.append(
            "CAMPAIGN_OUTCOME",
            campaign_id=f"l{i}",
            reason="FLIGHT_ENDED",
            metadata={
                "decision": "APPROVED",
                "confidence_score": 0.9,
                "profitable": False,
                "net_profit_uplift": -100.0,
                "final": True,
            },
        )
    assert main(["tune", "--audit-log", str(log), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["evidence"]["live"] == 4 and out["evidence"]["total"] == 14
    assert out["current"]["fp"] == 4 and out["current"]["fp_rate"] == pytest.approx(4 / 9)  # of 5 + 4 losers
    assert main(["tune", "--audit-log", str(log)]) == 0
    assert "4 live outcomes" in capsys.readouterr().out


def test_tune_apply_writes_the_config_and_audits(workdir: Path, capsys) -> None:
    log = workdir / "audit.jsonl"
    store = JsonlAuditStore(log)
    for i in range(3):  # profitable shadow outcomes at 0.80: FN at 0.85 unless the threshold drops below 0.80
        store.append("SHADOW_OUTCOME", campaign_id=f"s{i}", metadata={"confidence_score": 0.8, "profitable": True})
    assert main(["tune", "--audit-log", str(log), "--json", "--apply", "--report", "t.html"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["evidence"] == {"total": 13, "backtest": 10, "shadow": 3, "live": 0, "profitable": 8}
    # 3 shadows + the built-in backtest's near miss (the new-audience winner at ~0.84), of 8 profitable
    assert out["current"]["fn_rate"] == pytest.approx(4 / 8) and out["threshold"] < 0.8
    assert out["recommended"]["fn_rate"] <= 0.05
    assert (workdir / "synctwin.env").read_text() == f"SYNCTWIN_THRESHOLD={out['threshold']}\n"
    assert get_settings().threshold == out["threshold"]
    changed = [r for r in JsonlAuditStore(log).records() if r["event_type"] == "THRESHOLD_CHANGED"]
    assert changed[0]["metadata"]["from"] == 0.85 and changed[0]["metadata"]["to"] == out["threshold"]
    assert changed[0]["metadata"]["before"]["fn_rate"] == pytest.approx(4 / 8)
    assert main(["audit", "verify", str(log)]) == 0
    html = (workdir / "t.html").read_text()
    assert "<svg" in html and "Reliability" in html


def test_tune_human_output_and_bad_input(workdir: Path, capsys) -> None:
    assert main(["tune"]) == 0
    out = capsys.readouterr().out
    assert "recommended threshold" in out and "reliability" in out
    assert main(["tune", "--audit-log", str(workdir / "nope.jsonl")]) == 2
    assert "no such audit log" in capsys.readouterr().err


def _log(path: Path) -> Path:
    s = JsonlAuditStore(path, clock=lambda: 1_700_000_000.0)
    for i in range(8):
        s.append("CAMPAIGN_APPROVED", campaign_id=f"a{i}")
        s.append("CAMPAIGN_LAUNCHED", campaign_id=f"a{i}")
    s.append("CAMPAIGN_OUTCOME", campaign_id="a0", metadata={"net_profit_uplift": -50.0})
    s.append("CAMPAIGN_OUTCOME", campaign_id="a1", metadata={"net_profit_uplift": 900.0})
    s.append("CAMPAIGN_PAUSED", campaign_id="a2", reason="MARGIN_GUARDIAN")
    s.append("AUTO_ROLLBACK_TRIGGERED", campaign_id="a2")
    for i in range(2):
        s.append("CAMPAIGN_REJECTED", campaign_id=f"r{i}")
    s.append("SHADOW_OUTCOME", campaign_id="r0", metadata={"profitable": False, "net_profit_uplift": -10.0})
    s.append("SHADOW_OUTCOME", campaign_id="r0", metadata={"profitable": True, "net_profit_uplift": 10.0})
    s.append("CHAOS_TEST_COMPLETED", metadata={"total_tests": 4, "passed": 4, "failed": 0})
    s.append("CHAOS_TEST_COMPLETED", metadata={"total_tests": 4, "passed": 3, "failed": 1})
    return path


def test_kpis_from_the_audit_log(tmp_path: Path, capsys) -> None:
    log = _log(tmp_path / "a.jsonl")
    k = kpis(JsonlAuditStore(log).records())
    assert (k["rejection_share"]["count"], k["rejection_share"]["of"]) == (2, 10)
    assert k["rejection_share"]["value"] == 0.2 and k["rejection_share"]["met"] is True
    assert k["false_negative_rate"]["value"] == 1.0 and k["false_negative_rate"]["met"] is False  # latest wins
    assert k["false_positive_rate"]["value"] == 0.5 and k["false_positive_rate"]["of"] == 2
    assert k["auto_rollback_share"]["value"] == 1 / 8 and k["auto_rollback_share"]["count"] == 1
    assert k["chaos_pass_rate"]["value"] == 7 / 8 and k["chaos_pass_rate"]["met"] is False
    later = kpis(JsonlAuditStore(log).records(), dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    assert later["records"] == 0 and later["rejection_share"]["value"] is None
    assert main(["kpis", "--audit-log", str(log), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["chaos_pass_rate"]["count"] == 7
    assert metrics.sample("synctwin_kpi_value", {"kpi": "rejection_share"}) == 0.2
    assert metrics.sample("synctwin_kpi_goal_met", {"kpi": "chaos_pass_rate"}) == 0.0
    assert main(["kpis", "--audit-log", str(log)]) == 0
    assert "rejection share" in capsys.readouterr().out


@pytest.mark.parametrize("args", [["--since", "2025-13-45"], ["--since", "yesterday"], []])
def test_kpis_bad_input_exits_2(tmp_path: Path, capsys, args) -> None:
    log = _log(tmp_path / "a.jsonl")
    argv = ["kpis", *args] + (["--audit-log", str(log)] if args else ["--audit-log", str(tmp_path / "none")])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("not a date" in err or "no such audit log" in err)


def test_false_positives_count_final_outcomes_of_approvals_older_than_the_window(tmp_path: Path) -> None:
    """A 30-day flight's outcome arrives a month after its approval: the window holds the outcome."""
    t = {"now": 1_700_000_000.0}
    s = JsonlAuditStore(tmp_path / "a.jsonl", clock=lambda: t["now"])
    s.append("CAMPAIGN_APPROVED", campaign_id="old")
    t["now"] += 30 * 86_400
    s.append(
        "CAMPAIGN_OUTCOME",
        campaign_id="old",
        reason="FLIGHT_ENDED",
        metadata={"net_profit_uplift": -5.0, "final": True},
    )
    s.append(
        "CAMPAIGN_OUTCOME",
        campaign_id="feed",
        reason="PAUSED",  # no approval record, but says it was one
        metadata={"net_profit_uplift": 12.0, "final": True, "decision": "APPROVED"},
    )
    s.append(
        "CAMPAIGN_OUTCOME",
        campaign_id="half",
        metadata={"net_profit_uplift": -9.0, "final": False, "decision": "APPROVED"},
    )  # not over: not counted
    s.append("CAMPAIGN_OUTCOME", campaign_id="stranger", metadata={"net_profit_uplift": -9.0})  # never approved
    since = dt.datetime.fromtimestamp(t["now"] - 86_400, dt.UTC)
    fp = kpis(s.records(), since)["false_positive_rate"]
    assert (fp["count"], fp["of"], fp["value"]) == (1, 2, 0.5)


def test_false_negatives_wait_for_the_final_shadow_outcome(tmp_path: Path) -> None:
    """A flight shadowed for 2 of 30 days can still flip sign: it is not a verdict until its last day."""
    s = JsonlAuditStore(tmp_path / "a.jsonl", clock=lambda: 1_700_000_000.0)
    s.append("CAMPAIGN_REJECTED", campaign_id="r0")
    s.append("SHADOW_OUTCOME", campaign_id="r0", metadata={"profitable": True, "final": False, "days": 2})
    k = kpis(JsonlAuditStore(tmp_path / "a.jsonl").records())["false_negative_rate"]
    assert (k["count"], k["of"], k["value"]) == (0, 0, None)
    s.append("SHADOW_OUTCOME", campaign_id="r0", metadata={"profitable": True, "final": True, "days": 30})
    k = kpis(JsonlAuditStore(tmp_path / "a.jsonl").records())["false_negative_rate"]
    assert (k["count"], k["of"], k["value"]) == (1, 1, 1.0)
