"""Client histories drawn from a platform's market, for scenarios that do not ship a CSV."""

from __future__ import annotations

import datetime as dt

import numpy as np

from scenarios.schema import GeneratedHistory, PlatformMarket
from synctwin.kernel.history import History

WEEKDAY = np.array([1.0, 1.02, 1.03, 1.0, 0.97, 0.95, 1.03])  # Monday first


def generate_history(market: PlatformMarket, spec: GeneratedHistory, rng: np.random.Generator, end: dt.date) -> History:
    """`spec.days` days ending the day before `end`: spend in budget steps (every 14-21 days, mean
    one, so the gate's response curve can learn that the world's rates do not depend on spend) with
    weekday and daily noise, Poisson clicks and conversions, gamma-distributed revenue. The CPM's
    random walk runs backwards from the market's level at `end`, so the history ends at the price
    the world charges at launch, not a random ~20% away from it."""
    n = spec.days
    dates = np.arange(np.datetime64(end) - n, np.datetime64(end), dtype="datetime64[D]")
    weekday = WEEKDAY[(dates.astype(np.int64) + 3) % 7]  # 1970-01-01 was a Thursday
    f = spec.rate_factors
    spend = spec.daily_spend * weekday * np.exp(rng.normal(0, 0.08, n)) * _budget_steps(rng, n, spec.budget_steps)
    steps = rng.normal(0, market.cpm_drift_sd, n)
    walk = np.cumsum(steps[::-1])[::-1] - steps  # day k: minus the drift of the days after it (0 on the last)
    cpm = market.cpm * f.get("cpm", 1.0) * np.exp(-walk + rng.normal(0, 0.05, n))
    impressions = np.round(spend / cpm * 1000.0)
    clicks = rng.poisson(impressions * market.ctr * f.get("ctr", 1.0)).astype(np.float64)
    conversions = rng.poisson(clicks * market.cvr * f.get("cvr", 1.0)).astype(np.float64)
    aov = market.aov * f.get("aov", 1.0)
    cv2 = market.aov_cv**2
    revenue = np.where(conversions > 0, rng.gamma(np.maximum(conversions, 1) / cv2, aov * cv2), 0.0)
    return History(
        dates=dates,
        spend=np.round(spend, 2),
        impressions=impressions,
        clicks=clicks,
        conversions=conversions,
        revenue=np.round(revenue, 2),
    )


def _budget_steps(rng: np.random.Generator, n: int, sd: float) -> np.ndarray:
    """Piecewise-constant budget levels, each 14-21 days, log-normal with log-sd `sd`, mean one."""
    if sd <= 0:
        return np.ones(n)
    levels = np.empty(n)
    i = 0
    while i < n:
        run = int(rng.integers(14, 22))
        levels[i : i + run] = np.exp(rng.normal(0.0, sd))
        i += run
    return levels / levels.mean()
