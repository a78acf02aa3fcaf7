"""One scenario over many seeds: each expectation's pass rate with a 95% interval, and the
seeds that failed it, so a guard that passes a drill by luck is found.

Each seed is one task of an executor (in-process, process pool or Ray): a task's result depends
only on (scenario, seed), and results are merged in seed order, so the report is the same on
any executor. A task sends back only its expectations' verdicts, never the trace.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.synctwin.stats import wilson_interval
from scenarios.schema import Scenario
from synctwin.errors import InvalidInput
from synctwin.executors import Executor, InProcessExecutor

WORST_SEEDS = 10  # failing seeds listed per expectation
_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_seed_range(text: str) -> range:
    """`A-B` (inclusive) or `N`; an empty, reversed or negative range is invalid input."""
    m = _RANGE.match(text or "")
    if not m:
        raise InvalidInput(f"bad seed range {text!r}: expected A-B (e.g. 1-1000) or one seed N, "
                           "with non-negative integers", field="seeds")
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
    from harness.runner import run_scenario

    scenario, seed = task
    started = time.perf_counter()
    trace = run_scenario(scenario, seed)
    return SeedRun(seed=seed, results=tuple((e.expectation, e.passed, e.message) for e in trace.expectations),
                   wall_s=time.perf_counter() - started)


@dataclass(slots=True)
class ExpectationStats:
    """One expectation across the seeds."""

    expectation: str
    runs: int = 0
    passes: int = 0
    failures: list[tuple[int, str]] = field(default_factory=list)  # (seed, message), in seed order

    @property
    def pass_rate(self) -> float:
        return self.passes / self.runs if self.runs else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.passes, self.runs)

    def to_dict(self, worst: int = WORST_SEEDS) -> dict[str, Any]:
        lo, hi = self.interval
        return {"expectation": self.expectation, "runs": self.runs, "passes": self.passes,
                "failures": self.runs - self.passes, "pass_rate": self.pass_rate,
                "interval95": [lo, hi],
                "worst_seeds": [{"seed": s, "message": m} for s, m in self.failures[:worst]]}


@dataclass(slots=True)
class SweepReport:
    """The sweep's result. `wall_s` and `executor` describe the run, not the result."""

    scenario: str
    seeds: range
    expectations: list[ExpectationStats]
    failing_seeds: list[tuple[int, int]]  # (seed, failed expectations), most failures first
    task_s: float  # summed wall time of the runs
    wall_s: float = 0.0
    executor: str = "in-process"

    @property
    def runs(self) -> int:
        return len(self.seeds)

    @property
    def passed(self) -> bool:
        return not self.failing_seeds

    def to_dict(self, worst: int = WORST_SEEDS) -> dict[str, Any]:
        return {"scenario": self.scenario, "seeds": [self.seeds.start, self.seeds.stop - 1], "runs": self.runs,
                "passed": self.passed, "runs_passed": self.runs - len(self.failing_seeds),
                "expectations": [e.to_dict(worst) for e in self.expectations],
                "worst_seeds": [{"seed": s, "failed": n} for s, n in self.failing_seeds[:worst]],
                "executor": self.executor, "wall_s": round(self.wall_s, 3), "task_s": round(self.task_s, 3)}


def run_sweep(scenario: Scenario, seeds: Sequence[int] | range, *, executor: Executor | None = None,
              progress: Callable[[int], None] | None = None) -> SweepReport:
    """Run `scenario` once per seed on `executor` (default: this process) and tally it."""
    seeds = seeds if isinstance(seeds, range) else range(seeds[0], seeds[-1] + 1)
    if len(seeds) == 0:
        raise InvalidInput("the seed range is empty", field="seeds")
    run = executor or InProcessExecutor()
    started = time.perf_counter()
    stats: list[ExpectationStats] = []
    failing: list[tuple[int, int]] = []
    task_s = 0.0
    for done, res in enumerate(run.imap(run_seed, [(scenario, s) for s in seeds]), 1):
        task_s += res.wall_s
        failed = 0
        for i, (name, ok, message) in enumerate(res.results):
            if i == len(stats):
                stats.append(ExpectationStats(expectation=name))
            st = stats[i]
            st.runs += 1
            if ok:
                st.passes += 1
            else:
                failed += 1
                st.failures.append((res.seed, message))
        if failed:
            failing.append((res.seed, failed))
        if progress is not None:
            progress(done)
    failing.sort(key=lambda sf: (-sf[1], sf[0]))
    return SweepReport(scenario=scenario.name, seeds=seeds, expectations=stats, failing_seeds=failing,
                       task_s=task_s, wall_s=time.perf_counter() - started, executor=run.describe())
