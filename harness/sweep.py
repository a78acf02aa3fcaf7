"""One scenario over many seeds, and over its grid of market parameters when it gives one
(`sweep: {grid: {meta.cpm: [...]}}`): each expectation's pass rate with a 95% interval, the
seeds and points that failed it, so a guard that passes a drill by luck, or at the scenario's
own market only, is found.

Each (grid point, seed) run is one task of an executor (in-process, process pool or Ray) that
sends back only its verdicts; results are merged in input order (point, then seed), so the
report is the same on any executor."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from agents.synctwin.gate.stats import wilson_interval
from harness.runner import run_scenario
from scenarios.schema import PlatformMarket, Scenario, split_grid_key
from synctwin.infra.executors import Executor, InProcessExecutor
from synctwin.kernel.errors import InvalidInput

WORST_SEEDS = 10  # failing seeds listed per expectation
WORST_POINTS = 10  # grid points listed as the worst
_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_seed_range(text: str) -> range:
    """`A-B` (inclusive) or `N`; an empty, reversed or negative range is invalid input."""
    m = _RANGE.match(text or "")
    if not m:
        raise InvalidInput(
            f"bad seed range {text!r}: expected A-B (e.g. 1-1000) or one seed N, with non-negative integers",
            field="seeds",
        )
    a = int(m.group(1))
    b = int(m.group(2)) if m.group(2) is not None else a
    if b < a:
        raise InvalidInput(f"seed range {text!r} is reversed (empty): write {b}-{a}", field="seeds")
    return range(a, b + 1)


@dataclass(frozen=True, slots=True)
class SeedRun:
    """What one seed's run sends back: each expectation's verdict and message, in order."""

    seed: int
    results: tuple[tuple[str, bool, str], ...]
    wall_s: float

    @property
    def passed(self) -> bool:
        return all(ok for _, ok, _ in self.results)


def run_seed(task: tuple[Scenario, int]) -> SeedRun:
    """One scenario run (a top-level function, so a process pool or Ray worker can run it)."""
    scenario, seed = task
    started = time.perf_counter()
    trace = run_scenario(scenario, seed)
    return SeedRun(
        seed=seed,
        results=tuple((e.expectation, e.passed, e.message) for e in trace.expectations),
        wall_s=time.perf_counter() - started,
    )


def scenario_at(scenario: Scenario, params: Mapping[str, float]) -> Scenario:
    """The scenario at one grid point: its world's markets with `params` ({"meta.cpm": 7.5, ...})
    applied, and no grid of its own (so a run of it is a plain replay). Pure: `scenario` is not
    changed; a market the world does not name starts from its default, as in WorldSpec."""
    platforms = dict(scenario.world.platforms)
    updates: dict[str, dict[str, float]] = {}
    for key, value in params.items():
        platform, name = split_grid_key(key)
        if platform not in platforms or name not in PlatformMarket.model_fields:
            raise InvalidInput(f"not a PLATFORM.FIELD of the world's markets: {key!r}", field=f"sweep.grid.{key}")
        updates.setdefault(platform, {})[name] = value
    for platform, update in updates.items():
        try:
            platforms[platform] = PlatformMarket.model_validate({**platforms[platform].model_dump(), **update})
        except ValidationError as exc:
            err = exc.errors()[0]
            raise InvalidInput(
                f"{err['msg']} (got {err['input']!r})", field=f"sweep.grid.{platform}.{err['loc'][0]}"
            ) from None
    world = scenario.world.model_copy(update={"platforms": platforms})
    return scenario.model_copy(update={"world": world, "sweep": None})


@dataclass(slots=True)
class ExpectationStats:
    """One expectation across the seeds (and, in a gridded sweep's overall figures, the points)."""

    expectation: str
    runs: int = 0
    passes: int = 0
    failures: list[tuple[int, str]] = field(default_factory=list)  # (seed, message), in run order
    points: list[int] | None = None  # gridded overall figures: the grid point of each failure, in step with `failures`

    @property
    def pass_rate(self) -> float:
        return self.passes / self.runs if self.runs else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.passes, self.runs)

    def to_dict(self, worst: int = WORST_SEEDS) -> dict[str, Any]:
        lo, hi = self.interval
        d: dict[str, Any] = {
            "expectation": self.expectation,
            "runs": self.runs,
            "passes": self.passes,
            "failures": self.runs - self.passes,
            "pass_rate": self.pass_rate,
            "interval95": [lo, hi],
        }
        if self.points is not None:
            d["failing_points"] = sorted(set(self.points))
            d["worst_seeds"] = [
                {"point": p, "seed": s, "message": m}
                for p, (s, m) in zip(self.points[:worst], self.failures[:worst], strict=True)
            ]
        else:
            d["worst_seeds"] = [{"seed": s, "message": m} for s, m in self.failures[:worst]]
        return d


@dataclass(slots=True)
class _Tally:
    """Runs' verdicts added up: for a whole sweep, or for one grid point."""

    expectations: list[ExpectationStats] = field(default_factory=list)
    failing: list[tuple[int, int, int]] = field(default_factory=list)  # (point, seed, failed expectations)
    runs: int = 0

    def add(self, res: SeedRun, point: int, *, note_points: bool = False) -> None:
        self.runs += 1
        failed = 0
        for i, (name, ok, message) in enumerate(res.results):
            if i == len(self.expectations):
                self.expectations.append(ExpectationStats(expectation=name, points=[] if note_points else None))
            st = self.expectations[i]
            st.runs += 1
            if ok:
                st.passes += 1
            else:
                failed += 1
                st.failures.append((res.seed, message))
                if st.points is not None:
                    st.points.append(point)
        if failed:
            self.failing.append((point, res.seed, failed))

    def worst_first(self) -> list[tuple[int, int, int]]:
        """Failing runs, most failed expectations first, then in run order."""
        return sorted(self.failing, key=lambda r: (-r[2], r[0], r[1]))


@dataclass(slots=True)
class PointStats:
    """One grid point across the seeds: its parameters and its expectations' figures."""

    index: int
    params: dict[str, float]
    runs: int
    expectations: list[ExpectationStats]
    failing_seeds: list[tuple[int, int]]  # (seed, failed expectations), most failures first

    @property
    def runs_passed(self) -> int:
        return self.runs - len(self.failing_seeds)

    @property
    def passed(self) -> bool:
        return not self.failing_seeds

    @property
    def failed_checks(self) -> int:
        """(run, expectation) pairs that failed: breaks ties between points with as many failing runs."""
        return sum(n for _, n in self.failing_seeds)

    def summary(self) -> dict[str, Any]:
        lo, hi = wilson_interval(self.runs_passed, self.runs)
        return {
            "point": self.index,
            "params": dict(self.params),
            "runs": self.runs,
            "runs_passed": self.runs_passed,
            "pass_rate": self.runs_passed / self.runs if self.runs else 0.0,
            "interval95": [lo, hi],
            "failed_expectations": [e.expectation for e in self.expectations if e.passes < e.runs],
        }

    def to_dict(self, worst: int = WORST_SEEDS) -> dict[str, Any]:
        return {
            "point": self.index,
            "params": dict(self.params),
            "runs": self.runs,
            "passed": self.passed,
            "runs_passed": self.runs_passed,
            "expectations": [e.to_dict(worst) for e in self.expectations],
            "worst_seeds": [{"seed": s, "failed": n} for s, n in self.failing_seeds[:worst]],
        }


@dataclass(slots=True)
class SweepReport:
    """The sweep's result. `wall_s` and `executor` describe the run, not the result.

    Without a grid (`grid_keys` empty) every run is point 0 and the report is a plain seed sweep."""

    scenario: str
    seeds: range
    expectations: list[ExpectationStats]  # over every run (every point and seed)
    failing_runs: list[tuple[int, int, int]]  # (point, seed, failed expectations), most failures first
    task_s: float  # summed wall time of the runs
    wall_s: float = 0.0
    executor: str = "in-process"
    grid_keys: tuple[str, ...] = ()
    points: list[PointStats] = field(default_factory=list)  # one per grid point, in grid order

    @property
    def gridded(self) -> bool:
        return bool(self.grid_keys)

    @property
    def failing_seeds(self) -> list[tuple[int, int]]:
        """(seed, failed expectations) of each failing run, most failures first (a seed appears once
        per grid point it failed at)."""
        return [(s, n) for _, s, n in self.failing_runs]

    @property
    def runs(self) -> int:
        return len(self.seeds) * max(1, len(self.points))

    @property
    def passed(self) -> bool:
        return not self.failing_runs

    def worst_points(self, limit: int = WORST_POINTS) -> list[PointStats]:
        """Points with a failing run: fewest runs passed first, then most failed checks, then grid order."""
        bad = [p for p in self.points if not p.passed]
        return sorted(bad, key=lambda p: (p.runs_passed, -p.failed_checks, p.index))[:limit]

    def to_dict(self, worst: int = WORST_SEEDS) -> dict[str, Any]:
        d: dict[str, Any] = {
            "scenario": self.scenario,
            "seeds": [self.seeds.start, self.seeds.stop - 1],
            "runs": self.runs,
            "passed": self.passed,
            "runs_passed": self.runs - len(self.failing_runs),
            "expectations": [e.to_dict(worst) for e in self.expectations],
        }
        d["worst_seeds"] = [
            ({"point": p} if self.gridded else {}) | {"seed": s, "failed": n} for p, s, n in self.failing_runs[:worst]
        ]
        if self.gridded:
            d["grid"] = {
                "keys": list(self.grid_keys),
                "size": len(self.points),
                "points": [p.to_dict(worst) for p in self.points],
                "worst_points": [p.summary() for p in self.worst_points()],
            }
        return d | {"executor": self.executor, "wall_s": round(self.wall_s, 3), "task_s": round(self.task_s, 3)}


def sweep_size(scenario: Scenario, seeds: Sequence[int] | range, *, grid: bool = True) -> int:
    """How many runs `run_sweep` makes: grid points x seeds (for a progress bar's total)."""
    points = scenario.sweep.size if grid and scenario.sweep is not None else 1
    return points * len(seeds)


def run_sweep(
    scenario: Scenario,
    seeds: Sequence[int] | range,
    *,
    executor: Executor | None = None,
    progress: Callable[[int], None] | None = None,
    grid: bool = True,
) -> SweepReport:
    """Run `scenario` once per seed, at every point of its grid unless `grid` is False (then its
    own market only), on `executor` (default: this process), and tally it."""
    seeds = seeds if isinstance(seeds, range) else range(seeds[0], seeds[-1] + 1)
    if len(seeds) == 0:
        raise InvalidInput("the seed range is empty", field="seeds")
    spec = scenario.sweep if grid else None
    params = spec.points() if spec is not None else [{}]
    at_points = [scenario_at(scenario, p) for p in params]
    run = executor or InProcessExecutor()
    started = time.perf_counter()
    tasks = ((sc, seed) for sc in at_points for seed in seeds)
    overall = _Tally()
    per_point = [_Tally() for _ in at_points]
    task_s = 0.0
    for done, res in enumerate(run.imap(run_seed, tasks), 1):
        point = (done - 1) // len(seeds)
        task_s += res.wall_s
        overall.add(res, point, note_points=spec is not None)
        per_point[point].add(res, point)
        if progress is not None:
            progress(done)
    points = [
        PointStats(i, p, t.runs, t.expectations, failing_seeds=[(s, n) for _, s, n in t.worst_first()])
        for i, (p, t) in enumerate(zip(params, per_point, strict=True))
        if spec is not None
    ]
    return SweepReport(
        scenario=scenario.name,
        seeds=seeds,
        expectations=overall.expectations,
        failing_runs=overall.worst_first(),
        task_s=task_s,
        wall_s=time.perf_counter() - started,
        executor=run.describe(),
        grid_keys=tuple(spec.grid) if spec is not None else (),
        points=points,
    )
