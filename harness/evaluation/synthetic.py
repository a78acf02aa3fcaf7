"""A daily history whose response to spend is known, and a gate that knows it: a check of the
backtest itself, which real data cannot give.

Revenue = scale x spend^elasticity x mean-one lognormal daily noise, spend held at a level that
changes every `block` days. `TrueResponseGate` projects from that very law, so a correct
backtest finds its p10-p90 covering ~80% and its PIT uniform, and a model that extrapolates
linearly from the past scores measurably worse when the budget moves."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from agents.synctwin.gate.gatekeeper import SimulationGatekeeper
from agents.synctwin.gate.montecarlo import PathBlock, cumulate_days, run_monte_carlo
from agents.syncvalue.baseline import Baseline
from synctwin.kernel.history import History
from synctwin.kernel.models import GateResult, Strategy


@dataclass(frozen=True, slots=True)
class ResponseLaw:
    """Daily revenue = scale x spend^elasticity x exp(sigma z - sigma^2 / 2)."""

    scale: float = 1600.0
    elasticity: float = 0.4
    sigma: float = 0.12
    aov: float = 80.0
    cpm: float = 9.0
    ctr: float = 0.012

    def mean_revenue(self, spend: np.ndarray | float) -> np.ndarray | float:
        return self.scale * np.power(spend, self.elasticity)


def synthetic_history(
    law: ResponseLaw,
    *,
    days: int,
    seed: int,
    start: str = "2024-01-01",
    block: int = 7,
    base_spend: float = 1000.0,
    spend_sd: float = 0.6,
) -> History:
    """`days` days of history under `law`; spend is constant within blocks of `block` days
    (a budget the buyer set), its level lognormal around `base_spend`."""
    rng = np.random.default_rng(seed)
    levels = base_spend * np.exp(rng.normal(0.0, spend_sd, size=-(-days // block)))
    spend = np.round(np.repeat(levels, block)[:days], 2)
    noise = np.exp(rng.normal(0.0, law.sigma, size=days) - 0.5 * law.sigma**2)
    revenue = np.asarray(law.mean_revenue(spend)) * noise
    conversions = revenue / law.aov
    impressions = spend / law.cpm * 1000.0
    clicks = impressions * law.ctr
    dates = np.datetime64(start, "D") + np.arange(days)
    return History(
        dates=dates,
        spend=spend,
        impressions=np.round(impressions),
        clicks=np.round(clicks),
        conversions=conversions,
        revenue=revenue,
    )


def _true_chunk(
    law: ResponseLaw,
    sigma: float,
    budget: float,
    days: int,
    base_revenue: float,
    base_spend: float,
    gross_margin: float,
    n: int,
    rng: np.random.Generator,
    keep: bool,
) -> PathBlock:
    mean = float(law.mean_revenue(budget))
    daily = mean * np.exp(rng.normal(0.0, sigma, size=(days, n)) - 0.5 * sigma**2)
    total = daily.sum(axis=0)
    uplift = (total - base_revenue) * gross_margin - (budget * days - base_spend)
    if not keep:
        return PathBlock(uplift=uplift)
    spend = np.full((days, n), budget)
    return PathBlock(
        uplift=uplift,
        spend=cumulate_days(spend),
        revenue=cumulate_days(daily.copy()),
        conversions=cumulate_days(daily / law.aov),
    )


class TrueResponseGate(SimulationGatekeeper):
    """The gate with the true response law in place of a fitted model (`sigma_factor` < 1
    makes it overconfident, for tests that the backtest catches that)."""

    def __init__(self, law: ResponseLaw, *, sigma_factor: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.law = law
        self.sigma_factor = sigma_factor

    def evaluate_with_uplift(
        self,
        strategy: Strategy,
        baseline: Baseline,
        *,
        seed: int | None = None,
        paths: int | None = None,
        model: str | None = None,
        **_: Any,
    ) -> tuple[GateResult, np.ndarray]:
        started = time.perf_counter()
        d = strategy.duration_days
        simulate = partial(
            _true_chunk,
            self.law,
            self.law.sigma * self.sigma_factor,
            strategy.daily_budget,
            d,
            baseline.revenue_over(d),
            baseline.spend_over(d),
            strategy.gross_margin,
        )
        seed = 0 if seed is None else seed
        s = self.settings
        outcome = run_monte_carlo(
            simulate,
            seed=seed,
            paths=paths or self.paths,
            max_paths=paths or self.paths,
            chunk_paths=s.chunk_paths,
            threshold=self.threshold,
            projection_paths=s.projection_paths,
            keep_uplift=True,
        )
        result = self._result(
            strategy, baseline, outcome, model="funnel", seed=seed, threshold=self.threshold, started=started
        )
        assert outcome.uplift is not None
        return result, outcome.uplift
