"""`synctwin backtest`: the shipped historical campaigns, the confusion matrix and bad input."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from agents.synctwin.gate.gatekeeper import SimulationGatekeeper
from agents.synctwin.gate.stats import wilson_interval
from agents.syncvalue.baseline import compute_baseline
from harness.evaluation.backtest import (
    BacktestCase,
    BacktestReport,
    BacktestRow,
    builtin_historical_dir,
    case_seed,
    load_cases,
    run_backtest,
)
from synctwin.kernel.config import Settings
from synctwin.kernel.errors import InvalidInput

HISTORICAL = builtin_historical_dir()
BUDGET_BOUND = "04_meta_lookalike_budget_cut"
GENZ = "02_tiktok_genz_streetwear_launch"


@pytest.fixture(scope="module")
def cases() -> list[BacktestCase]:
    return load_cases(HISTORICAL)


@pytest.fixture(scope="module")
def gatekeeper() -> SimulationGatekeeper:
    return SimulationGatekeeper(settings=Settings())


@pytest.fixture(scope="module")
def curve_report(cases: list[BacktestCase], gatekeeper: SimulationGatekeeper) -> BacktestReport:
    return run_backtest(cases, gatekeeper, seed=0, paths=10_000)  # the default model


@pytest.fixture(scope="module")
def funnel_report(cases: list[BacktestCase], gatekeeper: SimulationGatekeeper) -> BacktestReport:
    return run_backtest(cases, gatekeeper, seed=0, paths=10_000, model="funnel")


@pytest.fixture(scope="module")
def seed_report(cases: list[BacktestCase], gatekeeper: SimulationGatekeeper) -> BacktestReport:
    return run_backtest(cases, gatekeeper, seed=0, paths=10_000, model="seed")


# --- the shipped data --------------------------------------------------------------------------


def test_shipped_cases_load_five_and_five(cases: list[BacktestCase]) -> None:
    assert len(cases) == 10
    assert [c.name[:2] for c in cases] == [f"{i:02d}" for i in range(1, 11)]
    assert sum(c.profitable for c in cases) == 5
    assert {c.strategy.platform for c in cases} == {"meta", "tiktok", "google"}
    assert any(c.strategy.new_audience for c in cases)
    assert len({c.strategy.duration_days for c in cases}) > 1
    assert min(c.strategy.gross_margin for c in cases) < 0.2
    for c in cases:
        assert len(c.history) == 90
        launch = c.strategy.launch_ts
        assert launch is not None
        gap = (launch // 86400) - c.history.dates[-1].astype(int)
        assert 1 <= gap <= 7, c.name  # the history ends a few days before the campaign


def test_realized_outcome_follows_the_definition(cases: list[BacktestCase]) -> None:
    """net_profit_uplift = (R_new - R_base) * gm - (S_new - S_base), baseline from the history."""
    for c in cases:
        b = compute_baseline(c.history)
        d, gm = c.strategy.duration_days, c.strategy.gross_margin
        expected = (c.outcome.revenue - b.daily_revenue * d) * gm - (c.outcome.spend - b.daily_spend * d)
        assert c.outcome.net_profit_uplift == pytest.approx(expected, abs=0.011), c.name


def test_genz_case_is_the_seeds_story(cases: list[BacktestCase]) -> None:
    genz = next(c for c in cases if c.name == GENZ)
    assert genz.strategy.platform == "tiktok"
    assert -8_000 < genz.outcome.net_profit_uplift < -6_000
    assert genz.outcome.spend == pytest.approx(15_000, rel=0.05)


def test_curve_gate_approves_no_loser_and_misses_one_new_audience_winner(curve_report: BacktestReport) -> None:
    """The default model on histories whose truth has diminishing returns and budget steps. The one
    miss is the new-audience case (realized +$14.9k, projected about +$26k), rejected just under the
    threshold: its approval used to lean on widening the daily noise's spread, count noise included,
    which raised the projected mean by ~9% (docs/gate.md, "Where the gap comes from")."""
    r = curve_report
    assert r.model == "curve"
    assert (r.tp, r.fp, r.fn, r.tn) == (4, 0, 1, 5)
    assert r.fp_rate == 0 and r.accuracy == 0.9
    (miss,) = [row for row in r.rows if row.verdict == "FN"]
    assert miss.name == "07_tiktok_skincare_new_audience" and 0.8 < miss.confidence < r.threshold
    for row in r.rows:  # decided outside the confidence's 95% interval: not on Monte Carlo noise
        lo, hi = wilson_interval(round(row.confidence * r.paths), r.paths)
        assert not lo <= r.threshold <= hi, row
    # instructive, not all trivially 0 or 1
    assert sum(0.1 <= row.confidence <= 0.9 for row in r.rows) >= 2
    assert sum(0.85 < row.confidence <= 0.97 for row in r.rows) >= 2


def test_curve_projects_the_outcomes_closer_than_the_funnel(
    curve_report: BacktestReport, funnel_report: BacktestReport
) -> None:
    """Revenue proportional to spend overstates scale-ups: the curve's median misses by less."""

    def error(r: BacktestReport) -> float:
        return sum(abs(row.projected_uplift - row.realized_uplift) for row in r.rows)

    assert error(curve_report) < 0.8 * error(funnel_report)


def test_funnel_gate_gets_all_ten_right(funnel_report: BacktestReport) -> None:
    r = funnel_report
    assert (r.tp, r.fp, r.fn, r.tn) == (5, 0, 0, 5)
    assert r.fn_rate == 0 and r.fp_rate == 0 and r.accuracy == 1
    for row in r.rows:  # decided with room to spare, not on Monte Carlo noise
        assert abs(row.confidence - r.threshold) > 0.05, row


def test_seed_model_approves_the_budget_bound_loser(funnel_report: BacktestReport, seed_report: BacktestReport) -> None:
    """The seed's formula counts audience x cvr conversions whatever the budget buys."""
    funnel = {row.name: row for row in funnel_report.rows}
    seed = {row.name: row for row in seed_report.rows}
    assert seed[BUDGET_BOUND].decision == "APPROVED" and not seed[BUDGET_BOUND].profitable
    assert seed[BUDGET_BOUND].verdict == "FP"
    assert funnel[BUDGET_BOUND].decision == "REJECTED"
    assert seed[BUDGET_BOUND].projected_uplift > 100_000 > 0 > funnel[BUDGET_BOUND].projected_uplift
    # on this set the seed's model misses no profit but lets two losers through
    assert (seed_report.tp, seed_report.fp, seed_report.fn, seed_report.tn) == (5, 2, 0, 3)
    assert {row.name for row in seed_report.rows if row.verdict == "FP"} == {
        BUDGET_BOUND,
        "08_meta_outdoor_cold_audience",
    }
    assert seed_report.fp_rate == pytest.approx(0.4)


def test_backtest_is_reproducible(
    cases: list[BacktestCase], gatekeeper: SimulationGatekeeper, funnel_report: BacktestReport
) -> None:
    again = run_backtest(list(reversed(cases)), gatekeeper, seed=0, paths=10_000, model="funnel")
    by_name = {row.name: row for row in again.rows}
    for row in funnel_report.rows:  # a case's result does not depend on its position
        assert by_name[row.name] == row
    assert case_seed(0, "a") == case_seed(0, "a") != case_seed(1, "a")


def test_report_to_dict_is_json(funnel_report: BacktestReport) -> None:
    d = json.loads(json.dumps(funnel_report.to_dict()))
    assert d["confusion"] == {"TP": 5, "FP": 0, "FN": 0, "TN": 5}
    assert len(d["cases"]) == 10 and d["model"] == "funnel" and d["threshold"] == 0.85
    assert {
        "name",
        "decision",
        "confidence",
        "projected_uplift",
        "realized_uplift",
        "profitable",
        "verdict",
        "seed",
    } <= set(d["cases"][0])
    assert d["money"]["approved_losses"] == 0 and d["money"]["avoided_losses"] > 0


def test_cli_backtest_prints_the_confusion_matrix(capsys) -> None:
    from synctwin.app.cli import main

    assert main(["backtest", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["confusion"] == {"TP": 4, "FP": 0, "FN": 1, "TN": 5} and d["fn_rate"] == 0.2
    assert main(["backtest"]) == 0
    text = capsys.readouterr().out
    assert GENZ in text and "false negatives" in text and "approved" in text
    assert main(["backtest", "/nonexistent/dir"]) == 2


# --- confusion counts on a hand-made set ----------------------------------------------------------


def history_csv(days: int = 90, spend: float = 100.0, roas: float = 3.0, aov: float = 50.0) -> str:
    """A flat history: `spend` a day at CPM 10, CTR 1%, and `roas` (conversions per click follows)."""
    lines = ["date,spend,impressions,clicks,conversions,revenue"]
    conversions = spend * roas / aov
    for i in range(days):
        day = (dt.date(2025, 1, 1) + dt.timedelta(days=i)).isoformat()
        lines.append(f"{day},{spend},{spend * 100:.0f},{spend:.0f},{conversions:g},{conversions * aov:g}")
    return "\n".join(lines) + "\n"


def write_case(
    folder: Path,
    stem: str,
    *,
    realized: float,
    roas: float = 10.0,
    budget: float = 200.0,
    margin: float = 1.0,
    changes: dict[str, Any] | None = None,
) -> Path:
    """A case file `stem`.json whose history doubles at `budget` (ROAS `roas`), with top-level `changes`."""
    (folder / "h").mkdir(parents=True, exist_ok=True)
    (folder / "h" / f"{stem}.csv").write_text(history_csv(roas=roas), encoding="utf-8")
    doc: dict[str, Any] = {
        "name": stem,
        "description": "hand-made",
        "strategy": {"audience_size": 1_000_000, "cvr": 0.01, "daily_budget": budget, "gross_margin": margin},
        "history": f"h/{stem}.csv",
        "outcome": {"revenue": 1000.0, "spend": 1000.0, "net_profit_uplift": realized},
    }
    doc.update(changes or {})
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_confusion_counts_on_known_answers(tmp_path: Path, gatekeeper: SimulationGatekeeper) -> None:
    # ROAS 10 at margin 1: doubling the budget surely earns (approved: on a flat history the curve is the
    # prior's, and even a steep saturation pays for the extra spend); ROAS 0.5: surely loses (rejected)
    write_case(tmp_path, "a_tp", realized=500.0, roas=10.0)
    write_case(tmp_path, "b_fp", realized=-500.0, roas=10.0)
    write_case(tmp_path, "c_fp", realized=-1.0, roas=10.0)
    write_case(tmp_path, "d_fn", realized=800.0, roas=0.5)
    write_case(tmp_path, "e_tn", realized=-800.0, roas=0.5)
    write_case(tmp_path, "f_tn", realized=0.0, roas=0.5)  # zero uplift is not profitable
    report = run_backtest(load_cases(tmp_path), gatekeeper, seed=7, paths=2_000)
    assert [r.verdict for r in report.rows] == ["TP", "FP", "FP", "FN", "TN", "TN"]
    assert (report.tp, report.fp, report.fn, report.tn) == (1, 2, 1, 2)
    assert (report.profitable, report.unprofitable, report.approved, report.rejected) == (2, 4, 3, 3)
    assert report.fn_rate == pytest.approx(1 / 2)
    assert report.fp_rate == pytest.approx(2 / 4)
    assert report.fp_share_of_approved == pytest.approx(2 / 3)
    assert report.rejection_share == pytest.approx(3 / 6)
    assert report.accuracy == pytest.approx(3 / 6)
    assert report.money() == {
        "captured_profit": 500.0,
        "approved_losses": -501.0,
        "missed_profit": 800.0,
        "avoided_losses": 800.0,
    }


def test_rates_are_none_without_a_denominator(tmp_path: Path, gatekeeper: SimulationGatekeeper) -> None:
    path = write_case(tmp_path, "only", realized=100.0)
    report = run_backtest(load_cases(path), gatekeeper, seed=1, paths=1_000)
    assert report.total == 1 and report.fp_rate is None and report.fn_rate == 0
    empty = BacktestReport(rows=(), model="funnel", threshold=0.85, paths=100, seed=0)
    assert empty.accuracy is None and empty.to_dict()["fn_rate"] is None
    row = BacktestRow("x", "APPROVED", 0.9, 1.0, -1.0, False, "FP", 0)
    assert BacktestReport(rows=(row,), model="seed", threshold=0.85, paths=100, seed=0).fp_share_of_approved == 1


def test_single_file_and_copy_of_a_shipped_case(tmp_path: Path) -> None:
    src = HISTORICAL / f"{GENZ}.json"
    shutil.copytree(HISTORICAL / "histories", tmp_path / "histories")
    shutil.copy(src, tmp_path / src.name)
    (case,) = load_cases(tmp_path / src.name)
    assert case.name == GENZ and case.history_path.parent == tmp_path / "histories"


# --- bad input ---------------------------------------------------------------------------------


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x",\n "strategy": {,}\n}', encoding="utf-8")
    with pytest.raises(InvalidInput) as err:
        load_cases(tmp_path)
    assert err.value.source == str(bad) and err.value.line == 2
    assert "bad.json" in str(err.value) and "malformed JSON" in str(err.value)


def test_missing_strategy_names_the_field(tmp_path: Path) -> None:
    path = write_case(tmp_path, "nostrat", realized=1.0)
    doc = json.loads(path.read_text())
    del doc["strategy"]
    path.write_text(json.dumps(doc))
    with pytest.raises(InvalidInput) as err:
        load_cases(path)
    assert err.value.field == "strategy" and "nostrat.json" in str(err.value)


def test_missing_history_file_names_the_field(tmp_path: Path) -> None:
    path = write_case(tmp_path, "nohist", realized=1.0, changes={"history": "h/gone.csv"})
    with pytest.raises(InvalidInput) as err:
        load_cases(path)
    assert err.value.field == "history" and "gone.csv" in str(err.value) and "nohist.json" in str(err.value)


def test_negative_budget_names_the_strategy_field(tmp_path: Path) -> None:
    path = write_case(tmp_path, "negbudget", realized=1.0, budget=-5.0)
    with pytest.raises(InvalidInput) as err:
        load_cases(path)
    assert err.value.field == "strategy.daily_budget"
    assert "negbudget.json" in str(err.value) and "-5" in str(err.value)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"outcome": {"revenue": 1.0, "spend": 1.0}}, "outcome.net_profit_uplift"),
        ({"outcome": {"revenue": -1.0, "spend": 1.0, "net_profit_uplift": 0}}, "outcome.revenue"),
        ({"outcome": {"revenue": 1.0, "spend": "lots", "net_profit_uplift": 0}}, "outcome.spend"),
        ({"outcome": {"revenue": 1.0, "spend": 1.0, "net_profit_uplift": True}}, "outcome.net_profit_uplift"),
        ({"outcome": [1, 2]}, "outcome"),
        ({"name": ""}, "name"),
        ({"history": 3}, "history"),
        ({"strategy": {"audience_size": 1000, "cvr": 0.01}}, "strategy.daily_budget"),
        ({"strategy": "big"}, "strategy"),
        ({"stratgey": {}}, "stratgey"),
        ({"strategy": {"audience_size": 10, "cvr": 0.1, "daily_budget": 5, "launch_ts": 1735689600}}, "history"),
    ],
)
def test_bad_values_name_the_field(tmp_path: Path, change: dict[str, Any], field: str) -> None:
    path = write_case(tmp_path, "bad", realized=1.0, changes=change)
    with pytest.raises(InvalidInput) as err:
        load_cases(path)
    assert err.value.field == field and err.value.source == str(path)


def test_empty_or_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no backtest case files"):
        load_cases(tmp_path)
    with pytest.raises(InvalidInput, match="no such file"):
        load_cases(tmp_path / "nowhere")


def test_duplicate_names_in_a_directory(tmp_path: Path) -> None:
    write_case(tmp_path, "one", realized=1.0)
    write_case(tmp_path, "two", realized=1.0, changes={"name": "one"})
    with pytest.raises(InvalidInput) as err:
        load_cases(tmp_path)
    assert err.value.field == "name" and "duplicate" in str(err.value)


def test_bad_history_csv_names_the_csv(tmp_path: Path) -> None:
    path = write_case(tmp_path, "badcsv", realized=1.0)
    csv_path = tmp_path / "h" / "badcsv.csv"
    csv_path.write_text(csv_path.read_text().replace(",100.0,", ",NaN,", 1))
    with pytest.raises(InvalidInput) as err:
        load_cases(path)
    assert err.value.source == str(csv_path) and err.value.line == 2 and err.value.field == "spend"
