"""`synctwin sweep` over a grid of market parameters given in the scenario (`sweep: {grid: ...}`).

The grid's expansion and validation, the scenario at one point, the report (per point, overall,
worst points) on every executor (the session's pool and local Ray cluster, tests/conftest.py),
and the command line.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.runner import run_scenario
from harness.sweep import run_sweep, scenario_at, sweep_size
from scenarios.loader import load_scenario, scenario_from_dict
from scenarios.schema import DEFAULT_MARKETS, MAX_GRID_POINTS, PlatformMarket, Scenario
from synctwin.app.cli import main
from synctwin.infra.executors import Executor, ProcessPoolExecutor
from synctwin.kernel.errors import InvalidInput

EXAMPLE = Path(__file__).resolve().parents[1] / "scenarios" / "examples" / "market_shock_grid.yaml"
LEGACY_KEYS = [
    "scenario",
    "seeds",
    "runs",
    "passed",
    "runs_passed",
    "expectations",
    "worst_seeds",
    "executor",
    "wall_s",
    "task_s",
]

try:
    import ray
except ImportError:  # the optional extra
    ray = None


def _gate_grid(grid: dict[str, list[float]] | None = None, **extra: Any) -> dict[str, Any]:
    """A 3-hour launch the gate approves at Meta's default market and rejects at a tenth of its
    conversion rate (confidence ~0.2-0.3 there, against 0.85 asked): a point that must fail."""
    d: dict[str, Any] = {
        "name": "grid_gate",
        "duration": "3h",
        "gate_paths": 1000,
        "clients": [{"id": "acme", "history": {"generate": {"platform": "meta", "daily_spend": 600}}}],
        "campaigns": [
            {
                "id": "acme-spring",
                "client": "acme",
                "launch_at": "1h",
                "strategy": {
                    "platform": "meta",
                    "audience_size": 160000,
                    "cvr": 0.03,
                    "daily_budget": 1100,
                    "gross_margin": 1.0,
                },
            }
        ],
        "expectations": [
            {"expect": "gate", "campaign": "acme-spring", "decision": "APPROVED"},
            {"expect": "never_paused", "campaign": "acme-spring"},
        ],
    }
    if grid is not None:
        d["sweep"] = {"grid": grid}
    return d | extra


GRID = {"meta.cvr": [0.044, 0.004], "meta.aov": [62.0, 70.0]}


def _without_run_facts(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in ("executor", "wall_s", "task_s")}


# --- the grid: expansion and the scenario at a point ---------------------------------------------


def test_grid_order_is_the_product_in_file_order() -> None:
    sc = scenario_from_dict(_gate_grid({"meta.cpm": [5.0, 6.0, 7.5], "meta.cvr": [0.035, 0.044]}))
    assert sc.sweep is not None and sc.sweep.size == 6
    assert sc.sweep.points() == [
        {"meta.cpm": 5.0, "meta.cvr": 0.035},
        {"meta.cpm": 5.0, "meta.cvr": 0.044},
        {"meta.cpm": 6.0, "meta.cvr": 0.035},
        {"meta.cpm": 6.0, "meta.cvr": 0.044},
        {"meta.cpm": 7.5, "meta.cvr": 0.035},
        {"meta.cpm": 7.5, "meta.cvr": 0.044},
    ]
    assert sweep_size(sc, range(1, 11)) == 60 and sweep_size(sc, range(1, 11), grid=False) == 10


_KEYS = [f"{p}.{f}" for p in DEFAULT_MARKETS for f in PlatformMarket.model_fields]
# every PlatformMarket field accepts this range (cpm > 0, ctr/cvr <= 1, overdelivery <= 0.5, ...)
_VALUES = st.lists(st.floats(min_value=0.01, max_value=0.5, allow_nan=False), min_size=1, max_size=4, unique=True)


@settings(max_examples=40, deadline=None)
@given(grid=st.dictionaries(st.sampled_from(_KEYS), _VALUES, min_size=1, max_size=3))
def test_grid_points_apply_every_override(grid: dict[str, list[float]]) -> None:
    sc = Scenario.model_validate(
        {"name": "g", "duration": "1h", "world": {"platforms": {"meta": {"cpm": 5.5}}}, "sweep": {"grid": grid}}
    )
    assert sc.sweep is not None
    points = sc.sweep.points()
    assert len(points) == sc.sweep.size == math.prod(len(v) for v in grid.values())
    assert points == [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]
    before = sc.model_dump()
    for params in points:
        at = scenario_at(sc, params)
        assert at.sweep is None
        for platform, market in at.world.platforms.items():
            expected = sc.world.platforms[platform].model_dump() | {
                k.split(".", 1)[1]: v for k, v in params.items() if k.split(".", 1)[0] == platform
            }
            assert market.model_dump() == expected
        assert at.model_dump(exclude={"world", "sweep"}) == sc.model_dump(exclude={"world", "sweep"})
    assert sc.model_dump() == before  # pure: the base scenario is untouched


def test_grid_over_a_platform_the_world_does_not_name_starts_from_its_default() -> None:
    sc = scenario_from_dict(_gate_grid({"google.cpm": [12.0]}))
    at = scenario_at(sc, sc.sweep.points()[0])  # type: ignore[union-attr]
    assert at.world.platforms["google"] == DEFAULT_MARKETS["google"].model_copy(update={"cpm": 12.0})
    assert at.world.platforms["meta"] == sc.world.platforms["meta"]


def test_scenario_at_rejects_a_bad_point() -> None:
    sc = scenario_from_dict(_gate_grid())
    with pytest.raises(InvalidInput, match=r"sweep\.grid\.meta\.ctr"):
        scenario_at(sc, {"meta.ctr": 2.0})
    with pytest.raises(InvalidInput, match=r"sweep\.grid\.meta\.nope"):
        scenario_at(sc, {"meta.nope": 1.0})


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sweep", "field", "needle"),
    [
        ({"grid": {"mars.cpm": [5.0]}}, "sweep.grid.mars.cpm", "unknown platform 'mars'"),
        ({"grid": {"meta.cmp": [5.0]}}, "sweep.grid.meta.cmp", "unknown market field 'cmp'"),
        ({"grid": {"meta": [5.0]}}, "sweep.grid.meta", "PLATFORM.FIELD"),
        ({"grid": {"meta.cpm": []}}, "sweep.grid.meta.cpm", "empty list"),
        ({"grid": {"meta.cpm": [5, 6.0, 5.0]}}, "sweep.grid.meta.cpm", "duplicate value(s) 5.0"),
        (
            {"grid": {"meta.cpm": [5.0, -1.0]}},
            "sweep.grid.meta.cpm",
            "cpm cannot be -1.0: Input should be greater than 0",
        ),
        ({"grid": {"tiktok.ctr": [1.5]}}, "sweep.grid.tiktok.ctr", "less than or equal to 1"),
        ({"grid": {"meta.overdelivery": [0.6]}}, "sweep.grid.meta.overdelivery", "less than or equal to 0.5"),
        ({"grid": {"meta.cpm": ["5"]}}, "sweep.grid.meta.cpm.0", "valid number"),
        ({"grid": {"meta.cpm": [True]}}, "sweep.grid.meta.cpm.0", "valid number"),
        ({"grid": {"meta.cpm": [float("inf")]}}, "sweep.grid.meta.cpm.0", "finite number"),
        ({"grid": {"meta.cpm": 5.0}}, "sweep.grid.meta.cpm", "valid list"),
        ({"grid": {}}, "sweep.grid", "empty"),
        ({}, "sweep.grid", "missing"),
        ({"grid": {"meta.cpm": [5.0]}, "seeds": "1-5"}, "sweep.seeds", "Extra inputs"),
        (
            {"grid": {"meta.cpm": [float(i) for i in range(1, 41)], "meta.aov": [float(i) for i in range(1, 31)]}},
            "sweep.grid",
            f"1,200 points (40 x 30); at most {MAX_GRID_POINTS:,}",
        ),
    ],
)
def test_bad_grid_names_the_field(sweep: dict[str, Any], field: str, needle: str) -> None:
    data = _gate_grid()
    data["sweep"] = sweep
    with pytest.raises(InvalidInput) as err:
        scenario_from_dict(data, source="grid.yaml")
    assert err.value.field == field
    assert needle in err.value.reason
    assert str(err.value).startswith(f"grid.yaml, field '{field}': ")


def test_a_value_is_checked_against_the_scenarios_own_market() -> None:
    # aov_cv has no upper bound, but a grid value is still the whole market rebuilt: fine at 2.0
    assert scenario_from_dict(_gate_grid({"meta.aov_cv": [2.0], "meta.api_timeout": [0.0]})).sweep is not None
    assert MAX_GRID_POINTS == 1_000
    big = {"meta.cpm": [float(i) for i in range(1, 41)], "meta.aov": [float(i) for i in range(1, 26)]}
    assert scenario_from_dict(_gate_grid(big)).sweep.size == 1_000  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("grid", "field"),
    [
        ({"meta.cpm": [0.0]}, "sweep.grid.meta.cpm"),
        ({"meta.cmp": [5.0]}, "sweep.grid.meta.cmp"),
    ],
)
def test_cli_bad_grid_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], grid: dict[str, list[float]], field: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_gate_grid(grid), sort_keys=False))
    for argv in (["sweep", str(path), "--seeds", "1-2"], ["replay", str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith(f"synctwin {argv[0]}: error: {path}, field '{field}': ")


def test_replay_ignores_the_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gridded = scenario_from_dict(_gate_grid(GRID))
    plain = scenario_from_dict(_gate_grid())
    a, b = run_scenario(gridded, 3).to_dict(), run_scenario(plain, 3).to_dict()
    assert a.pop("wall_s") >= 0 and b.pop("wall_s") >= 0  # the only field that describes the run, not the result
    assert a == b
    path = tmp_path / "gridded.yaml"
    path.write_text(yaml.safe_dump(_gate_grid(GRID), sort_keys=False))
    assert main(["replay", str(path), "--seed", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["passed"] is True


# --- the report -----------------------------------------------------------------------------------


def test_a_failing_point_is_named_with_its_seeds() -> None:
    report = run_sweep(scenario_from_dict(_gate_grid(GRID)), range(1, 5))
    assert report.runs == 16 and not report.passed
    assert [p.passed for p in report.points] == [True, True, False, False]
    d = report.to_dict()
    assert d["runs_passed"] == 8 and d["grid"]["keys"] == ["meta.cvr", "meta.aov"] and d["grid"]["size"] == 4
    gate, never_paused = d["expectations"]
    assert (gate["passes"], gate["runs"], gate["failing_points"]) == (8, 16, [2, 3])
    assert (never_paused["passes"], never_paused["failing_points"]) == (16, [])
    assert [(w["point"], w["seed"]) for w in gate["worst_seeds"]] == [
        (2, 1),
        (2, 2),
        (2, 3),
        (2, 4),
        (3, 1),
        (3, 2),
        (3, 3),
        (3, 4),
    ]
    assert all(w["message"].startswith("got REJECTED") for w in gate["worst_seeds"])
    worst = d["grid"]["worst_points"]
    assert [w["point"] for w in worst] == [2, 3]
    assert worst[0]["params"] == {"meta.cvr": 0.004, "meta.aov": 62.0}
    assert worst[0]["runs_passed"] == 0 and worst[0]["interval95"][0] == 0.0
    assert worst[0]["failed_expectations"] == [gate["expectation"]]
    bad = d["grid"]["points"][2]
    assert bad["params"] == {"meta.cvr": 0.004, "meta.aov": 62.0} and bad["runs_passed"] == 0
    assert [w["seed"] for w in bad["worst_seeds"]] == [1, 2, 3, 4]
    assert bad["expectations"][0]["pass_rate"] == 0.0 and bad["expectations"][1]["pass_rate"] == 1.0
    good = d["grid"]["points"][0]
    assert good["passed"] and good["expectations"][0]["interval95"][1] == 1.0 and good["worst_seeds"] == []
    assert [{"point": p, "seed": s, "failed": n} for p, s, n in report.failing_runs] == d["worst_seeds"][:8]


def test_no_grid_report_is_unchanged() -> None:
    plain = run_sweep(scenario_from_dict(_gate_grid()), range(1, 4)).to_dict()
    assert list(plain) == LEGACY_KEYS
    assert all("failing_points" not in e for e in plain["expectations"])
    # --no-grid on a gridded scenario: the base market's report, exactly
    gridded = scenario_from_dict(_gate_grid(GRID))
    assert _without_run_facts(run_sweep(gridded, range(1, 4), grid=False).to_dict()) == _without_run_facts(plain)
    # a one-point grid at the base market runs the same runs: only the grid's keys are added
    base = scenario_from_dict(_gate_grid({"meta.cvr": [DEFAULT_MARKETS["meta"].cvr]}))
    one = run_sweep(base, range(1, 4)).to_dict()
    assert [{k: v for k, v in e.items() if k != "failing_points"} for e in one["expectations"]] == plain["expectations"]
    assert one["grid"]["points"][0]["expectations"] == plain["expectations"]


def test_legacy_failing_seeds_on_a_seed_sweep() -> None:
    data = _gate_grid()
    data["world"] = {"platforms": {"meta": {"cvr": 0.004}}}
    report = run_sweep(scenario_from_dict(data), range(5, 8))
    assert report.failing_seeds == [(5, 1), (6, 1), (7, 1)] and report.points == []
    assert report.to_dict()["worst_seeds"] == [
        {"seed": 5, "failed": 1},
        {"seed": 6, "failed": 1},
        {"seed": 7, "failed": 1},
    ]


def test_progress_counts_points_times_seeds() -> None:
    seen: list[int] = []
    sc = scenario_from_dict(_gate_grid(GRID))
    run_sweep(sc, range(1, 3), progress=seen.append)
    assert seen == list(range(1, 9)) and sweep_size(sc, range(1, 3)) == 8


def test_gridded_report_same_in_process_and_on_a_pool(pool: ProcessPoolExecutor) -> None:
    sc = scenario_from_dict(_gate_grid(GRID))
    here = run_sweep(sc, range(1, 4)).to_dict()
    there = run_sweep(sc, range(1, 4), executor=pool).to_dict()
    assert there["executor"] == "process pool (2 workers)"
    assert _without_run_facts(there) == _without_run_facts(here)
    assert not here["passed"]  # the failures' lists are compared too


def test_gridded_report_same_on_ray(ray_cluster: Executor) -> None:
    sc = scenario_from_dict(_gate_grid(GRID))
    here = run_sweep(sc, range(1, 3)).to_dict()
    assert _without_run_facts(run_sweep(sc, range(1, 3), executor=ray_cluster).to_dict()) == _without_run_facts(here)


# --- the command line and the example --------------------------------------------------------------


def test_example_scenario_loads_and_replays() -> None:
    sc = load_scenario(EXAMPLE)
    assert sc.sweep is not None and sc.sweep.size == 9
    assert sc.sweep.points()[4] == {"meta.cpm": 6.0, "meta.cvr": 0.044}  # the drill's own (default) market
    assert run_scenario(sc, 0).passed


def test_cli_json_on_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sweep", str(EXAMPLE), "--seeds", "1-2", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert list(d) == [*LEGACY_KEYS[:7], "grid", *LEGACY_KEYS[7:]]
    assert (d["runs"], d["grid"]["size"], len(d["grid"]["points"])) == (18, 9, 9)
    assert d["grid"]["keys"] == ["meta.cpm", "meta.cvr"]
    assert [p["point"] for p in d["grid"]["points"]] == list(range(9))
    for p in d["grid"]["points"]:
        assert list(p) == ["point", "params", "runs", "passed", "runs_passed", "expectations", "worst_seeds"]
        assert list(p["params"]) == ["meta.cpm", "meta.cvr"] and p["runs"] == 2
    # the drill passes at its own market (point 4) and fails where a +50% CPM leaves a margin (cheap CPM)
    assert d["grid"]["points"][4]["passed"]
    assert not d["grid"]["points"][1]["passed"]
    assert 1 in {w["point"] for w in d["grid"]["worst_points"]}
    assert code == (0 if d["passed"] else 1) == 1
    assert d["runs_passed"] == sum(p["runs_passed"] for p in d["grid"]["points"])


def test_cli_table_and_no_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(_gate_grid(GRID), sort_keys=False))
    assert main(["sweep", str(path), "--seeds", "1-2"]) == 1
    out = capsys.readouterr().out
    assert "at 4 grid points (meta.cvr x meta.aov): 4/8 runs passed" in out
    assert "per grid point" in out and "worst grid points" in out
    assert "#2 meta.cvr=0.004, meta.aov=62: 0/2 runs passed" in out
    assert "#2/seed 1: got REJECTED" in out
    assert main(["sweep", str(path), "--seeds", "1-2", "--no-grid", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert list(d) == LEGACY_KEYS and d["runs"] == 2 and d["passed"]
    assert main(["sweep", str(path), "--seeds", "1-2", "--no-grid"]) == 0
    assert "its grid skipped: --no-grid" in capsys.readouterr().out


def test_cli_help_describes_the_grid(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--no-grid" in out and "PLATFORM.FIELD" in out and "at most 1,000 points" in out
