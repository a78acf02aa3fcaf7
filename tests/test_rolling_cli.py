"""`synctwin backtest --history FILE --rolling`: output, JSON, report and every refusal."""

from __future__ import annotations

import io
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.evaluation.synthetic import ResponseLaw, synthetic_history
from synctwin.app.cli import main
from synctwin.app.commands.rolling_backtest import print_rolling, short, spark

FAST = ["--horizon", "7", "--step", "7", "--lookback", "28", "--paths", "1000"]


@pytest.fixture(scope="module")
def history_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rolling") / "account.csv"
    path.write_text(synthetic_history(ResponseLaw(), days=28 + 7 * 8, seed=11).to_csv(), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def report_json(history_csv: Path) -> dict:
    buf = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(buf):
        assert main(["backtest", "--history", str(history_csv), "--rolling", *FAST, "--json"]) == 0
    return json.loads(buf.getvalue())


def test_json_is_one_document_with_the_figures(report_json: dict, history_csv: Path) -> None:
    d = report_json
    assert d["source"] == str(history_csv) and d["model"] == "curve"
    assert d["settings"] == {
        "horizon": 7,
        "lookback": 28,
        "step": 7,
        "min_history": 28,
        "gross_margin": 1.0,
        "paths": 1000,
        "seed": 0,
        "demand_headroom": 10.0,
    }
    s = d["summary"]
    assert s["windows"] == 8 == len(d["windows"])
    assert {
        "revenue_coverage_p10_p90",
        "revenue_below_p50",
        "uplift_coverage_p10_p90",
        "uplift_below_p50",
        "crps",
        "pit",
        "brier",
    } <= set(s)
    assert set(s["revenue_coverage_p10_p90"]) == {"value", "interval", "n", "method"}
    assert "distance_from_half" in s["revenue_below_p50"]
    assert len(s["pit"]["counts"]) == 10 and sum(s["pit"]["counts"]) == 8
    assert {"score", "reliability", "resolution", "uncertainty", "table", "interval"} <= set(s["brier"])
    w = d["windows"][0]
    assert {
        "origin",
        "budget",
        "baseline_daily_spend",
        "realized_revenue",
        "revenue_p10",
        "revenue_p50",
        "revenue_p90",
        "realized_uplift",
        "uplift_p50",
        "pit",
        "revenue_inside_p10_p90",
        "confidence",
        "profitable",
        "seed",
    } <= set(w)


def test_same_seed_same_json_and_the_seed_model_too(
    report_json: dict, history_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backtest", "--history", str(history_csv), "--rolling", *FAST, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == report_json
    assert main(["backtest", "--history", str(history_csv), "--rolling", *FAST, "--model", "seed", "--json"]) == 0
    seed = json.loads(capsys.readouterr().out)
    assert seed["model"] == "seed" and seed["settings"]["demand_headroom"] == 1.0
    assert seed["windows"][0]["revenue_p50"] != report_json["windows"][0]["revenue_p50"]


def test_text_output_fits_80_columns(report_json: dict, history_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rich.console import Console

    buf = io.StringIO()
    print_rolling(report_json, Console(file=buf, width=80, highlight=False, soft_wrap=True))
    text = buf.getvalue()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, [line for line in lines if len(line) > 80]
    assert "…" not in text  # nothing truncated
    assert report_json["windows"][0]["origin"] in text
    for phrase in ("revenue p10-p90 coverage", "revenue below p50", "CRPS", "PIT histogram", "Brier", "$"):
        assert phrase in text
    assert main(["backtest", "--history", str(history_csv), "--rolling", *FAST]) == 0
    assert "8 windows" in capsys.readouterr().out


def test_short_money_and_spark() -> None:
    assert [short(x) for x in (950, 2234.5, -1_250_000, None)] == ["$950", "$2.23k", "-$1.25M", "-"]
    assert spark([0, 4, 8]) == "▁▅█" and spark([0, 0]) == "  "


def test_report_has_the_pit_histogram_and_the_fan(
    history_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rolling.html"
    assert main(["backtest", "--history", str(history_csv), "--rolling", *FAST, "--report", str(out)]) == 0
    assert f"report: {out}" in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")

    class Parse(HTMLParser):
        pass

    Parse().feed(page)
    assert page.count("<svg") == 2 and page.count("<figure>") == 2
    assert "PIT of the realized uplift" in page and "Reliability of the confidence score" in page
    assert "total revenue over the window" in page and "revenue p10-p90 coverage" in page
    assert "http://" not in page and "https://" not in page  # self-contained


def _fails(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_a_history_too_short_names_the_file_and_the_days_needed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    short_csv = tmp_path / "short.csv"
    short_csv.write_text(synthetic_history(ResponseLaw(), days=45, seed=1).to_csv(), encoding="utf-8")
    err = _fails(["backtest", "--history", str(short_csv), "--rolling"], capsys)
    assert str(short_csv) in err and "45 day(s)" in err and "at least 58 days" in err


@pytest.mark.parametrize(
    ("extra", "option"),
    [
        (["--horizon", "0"], "--horizon"),
        (["--horizon", "366"], "--horizon"),
        (["--lookback", "3"], "--lookback"),
        (["--lookback", "20"], "--lookback"),
        (["--step", "0"], "--step"),
        (["--paths", "10"], "--paths"),
        (["--gross-margin", "1.5"], "--gross-margin"),
        (["--min-history", "2"], "--min-history"),
    ],
)
def test_options_out_of_range_name_the_option(
    history_csv: Path, capsys: pytest.CaptureFixture[str], extra: list[str], option: str
) -> None:
    err = _fails(["backtest", "--history", str(history_csv), "--rolling", *extra], capsys)
    assert f"'{option}'" in err


def test_an_unknown_model_is_refused_by_name(history_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """argparse refuses it (exit 2, the choices listed) before anything runs."""
    with pytest.raises(SystemExit) as exc:
        main(["backtest", "--history", str(history_csv), "--rolling", "--model", "bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--model" in err and "bogus" in err and "curve" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["backtest", "--rolling"], "--history"),
        (["backtest", "--history", "x.csv"], "--rolling"),
        (["backtest", "--horizon", "7"], "--horizon"),
        (["backtest", "--report", "x.html"], "--report"),
        (["backtest", "cases_dir", "--history", "x.csv", "--rolling"], "not both"),
        (["backtest", "--history", "/nonexistent/h.csv", "--rolling"], "/nonexistent/h.csv"),
    ],
)
def test_mixed_or_missing_options_are_refused(args: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert needle in _fails(args, capsys)


def test_a_bad_report_path_fails_before_the_work(
    history_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _fails(
        [
            "backtest",
            "--history",
            str(history_csv),
            "--rolling",
            *FAST,
            "--report",
            str(tmp_path / "missing" / "r.html"),
        ],
        capsys,
    )
    assert "--report" in err and "does not exist" in err


def test_an_invalid_history_names_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("date,spend,impressions,clicks,conversions,revenue\n2024-01-01,10,100,5,1,-3\n", encoding="utf-8")
    err = _fails(["backtest", "--history", str(bad), "--rolling"], capsys)
    assert str(bad) in err and "line 2" in err and "revenue" in err


def test_a_process_pool_gives_the_same_report(
    report_json: dict, history_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backtest", "--history", str(history_csv), "--rolling", *FAST, "--workers", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == report_json
