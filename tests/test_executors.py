"""The executors (in-process, process pool, Ray) give the same results bit for bit; `synctwin sweep`.

One 2-process pool and one local Ray cluster (tests/conftest.py) serve the whole session:
starting them is the slow part. The Ray tests are skipped when the optional extra is missing.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

import agents.synctwin.gate.montecarlo as mc
from agents.synctwin.gate.gatekeeper import SimulationGatekeeper
from agents.synctwin.gate.stats import wilson_interval
from agents.syncvalue.baseline import compute_baseline
from harness.evaluation.backtest import builtin_historical_dir, load_cases, run_backtest
from harness.sweep import ExpectationStats, parse_seed_range, run_sweep
from scenarios.loader import builtin_files, load_scenario, scenario_from_dict
from synctwin.app.cli import main
from synctwin.infra.executors import (
    Executor,
    InProcessExecutor,
    ProcessPoolExecutor,
    ThreadExecutor,
    make_executor,
)
from synctwin.kernel.config import Settings
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.history import load_history
from synctwin.kernel.models import Strategy

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def threads() -> Iterator[ThreadExecutor]:
    with ThreadExecutor(2) as ex:
        yield ex


@pytest.fixture(params=["pool", "ray", "threads"])
def executor(request: pytest.FixtureRequest) -> Executor:
    return request.getfixturevalue({"pool": "pool", "ray": "ray_cluster", "threads": "threads"}[request.param])


def _strategy(**kw: Any) -> Strategy:
    base = {"audience_size": 160_000, "cvr": 0.02, "daily_budget": 900, "campaign_id": "c1", "client_id": "k1"}
    return Strategy.model_validate(base | kw)


def _gate(executor: Executor | None, **kw: Any) -> dict[str, Any]:
    gk = SimulationGatekeeper(settings=Settings(chunk_paths=1_000))
    baseline = compute_baseline(load_history(DATA / "history_90d.csv"))
    d = gk.evaluate(_strategy(), baseline, seed=11, executor=executor, **kw).to_dict()
    d.pop("elapsed_ms")
    return d


# --- the gate ----------------------------------------------------------------------------------


def test_gate_same_result_on_every_executor(executor: Executor) -> None:
    # 20 chunks of 1,000 paths, plus adaptive rounds when the interval straddles the threshold
    here = _gate(None, paths=20_000, max_paths=80_000)
    assert _gate(executor, paths=20_000, max_paths=80_000) == here


def test_gate_adaptive_rounds_same_on_every_executor(executor: Executor) -> None:
    kw = {"paths": 2_000, "max_paths": 64_000, "threshold": 0.84}
    here = _gate(None, **kw)
    assert _gate(executor, **kw) == here


def test_sketched_gate_same_on_every_executor(executor: Executor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mc, "EXACT_PATHS", 5_000)  # decided in the driver: workers follow the task's flag
    here = _gate(None, paths=30_000)
    assert _gate(executor, paths=30_000) == here


def test_sketch_quantiles_are_within_their_rank_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    def outcome(exact_limit: int) -> mc.MonteCarloOutcome:
        monkeypatch.setattr(mc, "EXACT_PATHS", exact_limit)
        params = mc.SeedModelParams(
            days=30, demand=3_000, daily_budget=900, aov=80, base_revenue=150_000, base_spend=20_000
        )
        from functools import partial

        from agents.synctwin.gate.gatekeeper import _chunk

        return mc.run_monte_carlo(
            partial(_chunk, mc.simulate_seed_model, params),
            seed=5,
            paths=400_000,
            max_paths=400_000,
            chunk_paths=50_000,
            threshold=0.5,
            projection_paths=100,
            keep_uplift=True,
        )

    exact, sketched = outcome(10**9), outcome(1_000)
    assert (exact.quantile_method, sketched.quantile_method) == ("exact", "sketch")
    assert sketched.positive == exact.positive and sketched.mean == pytest.approx(exact.mean, rel=1e-12)
    u = np.sort(exact.uplift)
    bound = len(u) / (mc.SKETCH_POINTS - 1) + 1
    for q, got in zip(mc.QUANTILES, sketched.quantiles, strict=True):
        rank = np.searchsorted(u, got)
        assert abs(rank - q * (len(u) - 1)) <= bound
    assert sketched.quantiles == pytest.approx(exact.quantiles, rel=1e-3)


def test_warm_up_reaches_every_worker_and_imports(executor: Executor) -> None:
    assert executor.warm_up("harness.runner") == executor.workers == 2
    with pytest.raises(ModuleNotFoundError):
        executor.warm_up("no_such_module_anywhere")


def test_in_process_default_is_unchanged() -> None:
    assert _gate(None, paths=20_000) == _gate(InProcessExecutor(), paths=20_000)


# --- backtest and sweep --------------------------------------------------------------------------


def test_backtest_same_report_on_every_executor(executor: Executor) -> None:
    cases = load_cases(builtin_historical_dir())
    gk = SimulationGatekeeper(settings=Settings())
    here = run_backtest(cases, gk, seed=3, paths=2_000).to_dict()
    assert run_backtest(cases, gk, seed=3, paths=2_000, executor=executor).to_dict() == here


def _result(report: Any) -> dict[str, Any]:
    d = report.to_dict()
    for k in ("executor", "wall_s", "task_s"):
        d.pop(k)
    return d


def test_sweep_same_report_on_every_executor(executor: Executor) -> None:
    scenario = load_scenario("tiktok_genz")
    here = run_sweep(scenario, range(0, 6))
    there = run_sweep(scenario, range(0, 6), executor=executor)
    assert _result(there) == _result(here)
    assert here.passed and here.runs == 6


def _flaky_genz() -> Any:
    """tiktok_genz with a confidence window so narrow that some seeds miss it."""
    path = builtin_files()["tiktok_genz"]
    data = yaml.safe_load(path.read_text())
    data["gate_paths"] = 1_000
    data["expectations"][0]["confidence_between"] = [0.6, 0.63]
    return scenario_from_dict(data, source=str(path), base_dir=path.parent)


def test_sweep_pass_rates_intervals_and_worst_seeds() -> None:
    report = run_sweep(_flaky_genz(), range(1, 31))
    gate, launched = report.expectations
    assert launched.passes == launched.runs == 30
    assert 0 < gate.passes < 30 and not report.passed
    assert gate.interval == wilson_interval(gate.passes, 30)
    lo, hi = gate.interval
    assert lo < gate.pass_rate < hi
    d = report.to_dict()
    worst = d["expectations"][0]["worst_seeds"]
    assert worst and all("confidence" in w["message"] for w in worst)
    assert [w["seed"] for w in worst] == sorted(w["seed"] for w in worst)
    assert {s for s, _ in report.failing_seeds} == {s for s, _ in gate.failures}


def test_expectation_stats_interval() -> None:
    st = ExpectationStats("x", runs=100, passes=95)
    assert st.pass_rate == 0.95
    lo, hi = st.interval
    assert 0.88 < lo < 0.95 < hi < 0.98


def test_cli_sweep_exit_codes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["sweep", "tiktok_genz", "--seeds", "1-3", "--json"]) == 0
    assert '"pass_rate": 1.0' in capsys.readouterr().out
    flaky = tmp_path / "flaky.yaml"
    source = builtin_files()["tiktok_genz"]
    data = yaml.safe_load(source.read_text())
    data["expectations"][0]["confidence_between"] = [0.6, 0.61]
    history = data["clients"][0]["history"]
    history["csv"] = str(source.parent / history["csv"])
    flaky.write_text(yaml.safe_dump(data))
    assert main(["sweep", str(flaky), "--seeds", "1-8"]) == 1
    assert "failed seeds" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--seeds", "5-1"], "reversed"),
        (["--seeds", ""], "bad seed range"),
        (["--seeds", "a-b"], "bad seed range"),
        (["--seeds", "-3"], "bad seed range"),
        (["--seeds", "1-2", "--workers", "0"], "at least 1"),
        (["--seeds", "1-2", "--ray", "nohost"], "bad Ray address"),
        (["--seeds", "1-2", "--ray", "127.0.0.1:1"], "cannot reach"),
        (["--seeds", "1-2", "--ray", "ray://127.0.0.1:1"], "cannot reach"),
    ],
)
def test_cli_sweep_bad_input_exits_2(capsys: pytest.CaptureFixture[str], args: list[str], needle: str) -> None:
    if "--ray" in args and importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed")
    assert main(["sweep", "tiktok_genz", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err


def test_cli_sweep_unknown_scenario_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "no_such_scenario", "--seeds", "1-2"]) == 2
    assert "no such scenario" in capsys.readouterr().err


def test_parse_seed_range() -> None:
    assert parse_seed_range("1-1000") == range(1, 1001)
    assert parse_seed_range("7") == range(7, 8)
    with pytest.raises(InvalidInput):
        parse_seed_range("3-2")


# --- the factory -------------------------------------------------------------------------------


def test_make_executor_choices() -> None:
    assert isinstance(make_executor(None, None), InProcessExecutor)
    assert isinstance(make_executor(None, 1), InProcessExecutor)
    with make_executor(None, 3) as ex:
        assert isinstance(ex, ProcessPoolExecutor) and ex.workers == 3
    with pytest.raises(InvalidInput):
        make_executor(None, 0)
    with pytest.raises(InvalidInput, match="ADDRESS"):
        make_executor("auto", 2)


def test_ray_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(InvalidInput, match=r"install synctwin\[ray\]"):
        make_executor(True, None)


def test_executors_keep_input_order(pool: ProcessPoolExecutor) -> None:
    items = list(range(50))
    assert pool.map(abs, [-i for i in items]) == items
    assert InProcessExecutor().map(abs, [-i for i in items]) == items


def test_a_refused_join_by_address_explains_token_authentication(monkeypatch: pytest.MonkeyPatch) -> None:
    from synctwin.infra.executors import _auth_hint

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    assert "RAY_AUTH_MODE=token" in _auth_hint("10.0.0.5:6379")
    assert _auth_hint("auto") == "" and _auth_hint(None) == ""  # auto finds the local token itself
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert _auth_hint("10.0.0.5:6379") == ""  # already told: the hint would mislead
