"""Resubmission advice: the smallest change to a rejected strategy that the gate approves.

The seed lets clients "adjust strategy parameters and re-submit" but gives no override, so the
gate says *what* would pass: for each lever (LEVERS) alone, then all together, the value nearest
the submitted one that clears the threshold:
- search: cheap runs (SEARCH_PATHS, the request's seed, so neighbouring values share random
  numbers), a walk outwards, then bisection, with a small margin over the threshold;
- rounding: to values a person would type (two significant figures, whole days);
- confirmation: a gate run at the request's paths and seed; only approved changes are reported,
  so a suggestion re-submitted as it stands is approved."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agents.syncvalue.baseline import Baseline
from synctwin.kernel.models import GateResult, Strategy, Suggestion

LEVERS = ("daily_budget", "audience_size", "duration_days")
SEARCH_PATHS = 2_000
SEARCH_MARGIN = 0.01  # searched values must clear threshold + margin: confirmation then rarely fails
BISECT_STEPS = 7
# multipliers tried outwards from the submitted value, nearest first (both directions)
_GRID = {
    "daily_budget": (0.9, 1.1, 0.8, 1.25, 0.7, 1.5, 0.6, 0.5, 2.0, 0.4, 0.3, 3.0, 0.2, 0.1),
    "audience_size": (1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0),
    "duration_days": (0.8, 1.25, 0.6, 1.5, 0.5, 2.0, 0.35, 3.0, 0.25),
}
_LIMITS = {"daily_budget": (1.0, 1e7), "audience_size": (100.0, 1e10), "duration_days": (1.0, 365.0)}


def human_round(lever: str, value: float, toward: float) -> float | int:
    """A value a person would type, rounded away from `toward` (the submitted value), so the
    rounded change is at least as large as the one the search found."""
    lo, hi = _LIMITS[lever]
    value = min(max(value, lo), hi)
    if lever == "duration_days":
        return (math.ceil(value) if value > toward else math.floor(value)) or 1
    step = 10 ** max(math.floor(math.log10(abs(value))) - 1, 0)  # two significant figures
    rounded = (math.ceil if value > toward else math.floor)(value / step) * step
    rounded = min(max(rounded, lo), hi)
    return int(rounded) if lever == "audience_size" or float(rounded).is_integer() else round(rounded, 2)


@dataclass(frozen=True, slots=True)
class _Probe:
    """The gate at search resolution: confidence of the strategy with `changes` applied."""

    strategy: Strategy
    run: Callable[[Strategy, int], GateResult]
    target: float

    def confidence(self, changes: dict[str, Any]) -> float:
        return self.run(self.strategy.model_copy(update=changes), SEARCH_PATHS).confidence_score

    def passes(self, changes: dict[str, Any]) -> bool:
        return self.confidence(changes) > self.target


def _lever_value(strategy: Strategy, lever: str) -> float:
    return float(getattr(strategy, lever))


def _as_type(lever: str, value: float) -> float | int:
    return round(value) if lever in ("audience_size", "duration_days") else value


def _search_lever(probe: _Probe, lever: str, best: dict[str, float]) -> float | int | None:
    """The value of one lever nearest the submitted one that passes at search resolution; when none
    does, `best[lever]` gets the most confident grid value (a direction for the levers together)."""
    start = _lever_value(probe.strategy, lever)
    lo, hi = _LIMITS[lever]
    last_fail = {True: start, False: start}  # per direction (up?), the nearest failing value
    top = -1.0
    for m in _GRID[lever]:
        value = min(max(start * m, lo), hi)
        if lever == "duration_days" and round(value) == round(start):
            continue
        up = value > start
        conf = probe.confidence({lever: _as_type(lever, value)})
        if conf > top:
            top, best[lever] = conf, value
        if conf > probe.target:
            fail = last_fail[up]
            for _ in range(BISECT_STEPS):  # geometric bisection between fail and pass
                mid = math.sqrt(fail * value)
                if lever == "duration_days" and abs(round(mid) - round(value)) < 1:
                    break
                if probe.passes({lever: _as_type(lever, mid)}):
                    value = mid
                else:
                    fail = mid
            return human_round(lever, value, start)
        last_fail[up] = value
    return None


def _search_together(probe: _Probe, targets: dict[str, float]) -> dict[str, float | int] | None:
    """All levers moved together, each a share t of the way (in log terms) to its target."""
    start = {lever: _lever_value(probe.strategy, lever) for lever in targets}

    def at(t: float) -> dict[str, float | int]:
        return {k: _as_type(k, start[k] * (targets[k] / start[k]) ** t) for k in targets}

    if not probe.passes(at(1.0)):
        return None
    lo_t, hi_t = 0.0, 1.0
    for _ in range(BISECT_STEPS):
        mid = (lo_t + hi_t) / 2
        if probe.passes(at(mid)):
            hi_t = mid
        else:
            lo_t = mid
    return {k: human_round(k, float(v), start[k]) for k, v in at(hi_t).items()}


def suggest(
    strategy: Strategy, baseline: Baseline, gatekeeper: Any, result: GateResult, *, max_paths: int | None = None
) -> list[Suggestion]:
    """Suggestions for a rejected `result` (empty for an approval): each lever alone, then
    together, each confirmed by a gate run with the request's seed, paths and model."""
    if result.approved:
        return []
    paths = result.simulation_details.initial_simulations or result.simulation_details.total_simulations
    model, seed, threshold = result.model, result.seed, result.threshold

    def run(s: Strategy, n: int, cap: int | None) -> GateResult:
        return gatekeeper.evaluate(s, baseline, seed=seed, paths=n, max_paths=cap, model=model, threshold=threshold)

    def confirm(changes: dict[str, Any]) -> GateResult:
        return run(strategy.model_copy(update=changes), paths, max_paths)

    probe = _Probe(strategy, lambda s, n: run(s, n, n), min(threshold + SEARCH_MARGIN, 0.999))
    out: list[Suggestion] = []
    singles: dict[str, float] = {}
    best: dict[str, float] = {}
    for lever in LEVERS:
        value = _search_lever(probe, lever, best)
        if value is None:
            continue
        singles[lever] = float(value)
        checked = _confirmed(confirm, strategy, {lever: value})
        if checked is not None:
            out.append(checked)
    # together: towards each lever's own passing value, or its most promising one when it has none
    targets = {lever: singles.get(lever, best.get(lever)) for lever in LEVERS}
    targets = {k: v for k, v in targets.items() if v is not None and v != _lever_value(strategy, k)}
    if len(targets) >= 2:  # "together" only means something with two levers or more
        together = _search_together(probe, targets)
        checked = _confirmed(confirm, strategy, together) if together is not None else None
        if checked is not None and checked.changes not in [s.changes for s in out]:
            out.append(checked)
    return out


def _confirmed(
    confirm: Callable[[dict[str, Any]], GateResult], strategy: Strategy, changes: dict[str, Any]
) -> Suggestion | None:
    """Confirm at full resolution; when the rounded value falls just short, push each lever one
    more human step away from the submitted value (three times) before giving up."""
    for _ in range(4):
        checked = confirm(changes)
        if checked.approved:
            return Suggestion(changes=dict(changes), confidence_score=checked.confidence_score)
        nxt = {}
        for lever, value in changes.items():
            start = _lever_value(strategy, lever)
            factor = 1.05 if value > start else 1 / 1.05
            nxt[lever] = human_round(
                lever, float(value) * factor + (1 if lever == "duration_days" and value > start else 0), start
            )
        changes = nxt
    return None
