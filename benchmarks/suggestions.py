"""Suggestions for a rejected 10k-path strategy: wall time (goal <= 1 s) and that each is approved.

Run: python benchmarks/suggestions.py  (prints one line per run, then the median)
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from agents.synctwin.gate.gatekeeper import SimulationGatekeeper
from agents.synctwin.gate.suggestions import suggest
from agents.syncvalue.baseline import compute_baseline
from synctwin.kernel.history import load_history
from synctwin.kernel.models import Strategy

HISTORY = Path(__file__).resolve().parents[1] / "scenarios" / "builtin" / "histories" / "volt-threads-tiktok.csv"


def main(runs: int = 5) -> None:
    strategy = Strategy(platform="tiktok", audience_size=300_000, cvr=0.004, daily_budget=700, gross_margin=0.6)
    baseline = compute_baseline(
        load_history(HISTORY),
        lookback_days=90,
        min_days=14,
        gross_margin=0.6,
        default_monthly_churn=0.25,
        source=str(HISTORY),
    )
    gate = SimulationGatekeeper()
    times = []
    for seed in range(runs):
        result = gate.evaluate(strategy, baseline, seed=seed, paths=10_000)
        t0 = time.perf_counter()
        found = suggest(strategy, baseline, gate, result)
        times.append(time.perf_counter() - t0)
        ok = all(
            gate.evaluate(strategy.model_copy(update=s.changes), baseline, seed=seed, paths=10_000).approved
            for s in found
        )
        print(
            f"seed {seed}: gate {result.elapsed_ms:.0f} ms (confidence {result.confidence_score}), "
            f"{len(found)} suggestions in {times[-1] * 1000:.0f} ms, all approved on resubmission: {ok}"
        )
    print(f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms (goal <= 1000 ms)")


if __name__ == "__main__":
    main()
