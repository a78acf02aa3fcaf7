"""The public-data tooling under benchmarks/: the export's converter and the dev / held-out split."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from synctwin.kernel.history import history_from_records

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HEADER = (
    "month,day,campaign_number,user_engagement,banner,placement,displays,cost,clicks,revenue,"
    "post_click_conversions,post_click_sales_amount"
)
ROWS = [
    "April,2,camp 1,Low,468 x 60,mno,1000,10.5,20,3.1,2,150.0",
    "April,2,camp 1,High,300 x 250,abc,500,4.5,10,1.0,1,50.0",
    "April,1,camp 1,Low,468 x 60,mno,800,8,16,2,1,90",
    "May,1,camp 2,Low,800 x 250,mno,100,1,1,0.1,0,0",
]


def test_converter_sums_a_campaigns_rows_per_day_into_the_history_contract(tmp_path: Path) -> None:
    conv = _load("convert_display_ads")
    export = tmp_path / "export.csv"
    export.write_text("\n".join([HEADER, *ROWS]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert conv.main([str(export), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["camp_1.csv", "camp_2.csv"]
    text = (out / "camp_1.csv").read_text(encoding="utf-8").splitlines()
    assert text[0] == "date,spend,impressions,clicks,conversions,revenue"
    # April 1 first; April 2 is the sum of its two rows; sales (not the export's `revenue`) are the revenue
    assert text[1] == "2020-04-01,8,800,16,1,90"
    assert text[2] == "2020-04-02,15,1500,30,3,200"
    import csv

    with (out / "camp_1.csv").open(newline="") as f:
        h = history_from_records(list(csv.DictReader(f)), source="camp_1.csv", first_line=2)
    assert len(h) == 2 and h.revenue.sum() == 290


def test_converter_refuses_a_wrong_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conv = _load("convert_display_ads")
    bad = tmp_path / "bad.csv"
    bad.write_text("month,day,campaign_number\nApril,1,camp 1\n", encoding="utf-8")
    assert conv.main([str(bad), str(tmp_path / "o")]) == 2
    assert "missing column(s)" in capsys.readouterr().err
    worse = tmp_path / "worse.csv"
    worse.write_text("\n".join([HEADER, ROWS[0].replace("April", "Aprile")]) + "\n", encoding="utf-8")
    assert conv.main([str(worse), str(tmp_path / "o")]) == 2
    assert "line 2" in capsys.readouterr().err


def test_dev_and_held_out_windows_never_share_a_day() -> None:
    bench = _load("rolling_backtest")
    from agents.synctwin.gate.gatekeeper import SimulationGatekeeper
    from harness.evaluation.rolling import RollingConfig, run_rolling_backtest
    from harness.evaluation.synthetic import ResponseLaw, synthetic_history

    h = synthetic_history(ResponseLaw(), days=91, seed=3, start="2020-04-01")
    cut = bench.cut_date(h)
    assert str(cut) == "2020-06-01"  # the first day of the last third of April-June
    r = run_rolling_backtest(
        h, SimulationGatekeeper(model="seed"), RollingConfig(horizon=7, step=3, lookback=90, min_history=14, paths=500)
    )
    parts = bench.split(r.windows, cut)
    assert parts["dev"] and parts["held-out"]
    assert max(np.datetime64(w.end) for w in parts["dev"]) < cut
    assert min(np.datetime64(w.origin) for w in parts["held-out"]) >= cut
    straddling = len(r.windows) - len(parts["dev"]) - len(parts["held-out"])
    assert straddling == 2  # origins May 27 and May 30 see days on both sides: in neither part
