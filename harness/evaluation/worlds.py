"""Synthetic ad accounts with a known truth, to score the gate (benchmarks/gate_calibration.py).

Independent of the gate by design (it imports nothing of it): an account's truth is

    conversions_t ~ Poisson(k * spend_t^b * weekday_t * fatigue(spend_t) * trend_t * exp(u_t)),

u an AR(1) day-level shock, b the elasticity (0.3-0.9), fatigue a further fall of it above a spend
level, capped during the campaign by the audience's real demand; orders are log-normal, summed one
by one. The history (90-180 days) has budget steps; the strategy multiplies the recent spend by
0.3x-3x and the next days are drawn from the same truth, so the realized uplift is known."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np

from synctwin.kernel.history import History

LOOKBACK_DAYS = 90
DAYS = 30


@dataclass(frozen=True, slots=True)
class WorldSpec:
    """A family of accounts: ranges the accounts' truths are drawn from."""

    name: str
    b: tuple[float, float] = (0.3, 0.9)
    season_amp: tuple[float, float] = (0.0, 0.15)  # log amplitude of the weekly cycle
    fatigue_share: float = 0.0  # share of accounts with creative fatigue
    fatigue_drop: tuple[float, float] = (0.2, 0.5)  # elasticity lost above the fatigue level
    noise_sd: tuple[float, float] = (0.05, 0.15)  # day-level log shock (AR(1), phi below)
    phi: float = 0.5
    order_sigma: tuple[float, float] = (0.6, 1.0)  # log-sd of one order's value
    trend: tuple[float, float] = (0.0, 0.0)  # log change of the level per 90 days
    binding_share: float = 0.15  # share of strategies whose demand binds
    multiplier: tuple[float, float] = (0.3, 3.0)
    history_days: tuple[int, int] = (90, 180)
    step_sd: float = 0.35  # log-sd of a budget step
    daily_spend_sd: float = 0.15  # day-to-day log-sd of spend around the current budget


WORLDS: tuple[WorldSpec, ...] = (
    WorldSpec("steady", b=(0.5, 0.9), season_amp=(0.0, 0.10), noise_sd=(0.05, 0.10), order_sigma=(0.6, 0.8)),
    WorldSpec(
        "saturating",
        b=(0.3, 0.6),
        season_amp=(0.05, 0.15),
        fatigue_share=0.6,
        noise_sd=(0.08, 0.15),
        order_sigma=(0.8, 1.1),
    ),
    WorldSpec(
        "noisy", b=(0.3, 0.9), season_amp=(0.10, 0.25), noise_sd=(0.15, 0.25), order_sigma=(1.0, 1.3), binding_share=0.3
    ),
    WorldSpec(
        "drifting", b=(0.4, 0.8), season_amp=(0.0, 0.15), fatigue_share=0.4, trend=(-0.15, 0.15), noise_sd=(0.08, 0.15)
    ),
)
# scored only at the end, never used to choose the gate's settings
HELD_OUT = WorldSpec(
    "held-out",
    b=(0.3, 0.9),
    season_amp=(0.0, 0.20),
    fatigue_share=0.3,
    noise_sd=(0.05, 0.20),
    order_sigma=(0.6, 1.2),
    trend=(-0.10, 0.10),
    binding_share=0.2,
    step_sd=0.3,
    daily_spend_sd=0.12,
)


@dataclass(frozen=True, slots=True)
class Account:
    """One account: its history, a strategy (Strategy fields) and what that strategy realized."""

    world: str
    index: int
    b: float
    history: History
    strategy: dict[str, object]
    realized_spend: float
    realized_revenue: float
    realized_uplift: float


@dataclass(frozen=True, slots=True)
class _Truth:
    k: float
    b: float
    season: np.ndarray  # (7,) Monday..Sunday multipliers
    fatigue_level: float
    fatigue_drop: float
    noise_sd: float
    phi: float
    order_mu: float
    order_sigma: float
    trend_per_day: float

    def rate(self, spend: np.ndarray, weekday: np.ndarray, day: np.ndarray, shock: np.ndarray) -> np.ndarray:
        mu = self.k * spend**self.b * self.season[weekday] * np.exp(self.trend_per_day * day + shock)
        over = np.maximum(spend / self.fatigue_level, 1.0)
        return mu * over ** (-self.fatigue_drop)


def _ar1(rng: np.random.Generator, n: int, sd: float, phi: float, start: float = 0.0) -> np.ndarray:
    out = np.empty(n)
    prev = start
    innov = rng.normal(0.0, sd * math.sqrt(1 - phi * phi), n)
    for i in range(n):
        prev = phi * prev + innov[i]
        out[i] = prev
    return out


def _orders(rng: np.random.Generator, conversions: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    """Each day's revenue: the sum of its orders' log-normal values."""
    c = conversions.astype(np.int64)
    total = int(c.sum())
    if total == 0:
        return np.zeros(c.shape[0])
    values = rng.lognormal(mu, sigma, total)
    ends = np.cumsum(c)
    csum = np.concatenate([[0.0], np.cumsum(values)])
    return csum[ends] - csum[ends - c]


def _u(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(*lo_hi))


def make_account(spec: WorldSpec, index: int, seed: int, *, future: int = 0) -> Account:
    """Account `index` of world `spec`, deterministic in (seed, index). The realized campaign is drawn
    from its own stream `future` (0: the one scored), so other futures of the same account can be drawn."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    n_hist = int(rng.integers(spec.history_days[0], spec.history_days[1] + 1))
    b = _u(rng, spec.b)
    amp = _u(rng, spec.season_amp)
    phase = rng.uniform(0, 2 * math.pi)
    season = np.exp(amp * np.sin(2 * math.pi * np.arange(7) / 7 + phase))
    season /= season.mean()
    s0 = math.exp(rng.uniform(math.log(200), math.log(5000)))
    aov = math.exp(rng.uniform(math.log(25), math.log(250)))
    order_sigma = _u(rng, spec.order_sigma)
    roas0 = math.exp(rng.uniform(math.log(1.3), math.log(6.0)))  # revenue / spend at s0
    k = roas0 * s0 / aov / s0**b
    # history spend: budget steps every 10-40 days, day-to-day variation around them
    steps = np.empty(n_hist)
    i, level = 0, s0
    while i < n_hist:
        run = int(rng.integers(10, 41))
        steps[i : i + run] = level
        level = s0 * math.exp(rng.normal(0.0, spec.step_sd))
        i += run
    hist_spend = steps * np.exp(rng.normal(0.0, spec.daily_spend_sd, n_hist))
    fat_on = rng.random() < spec.fatigue_share
    fatigue_level = float(hist_spend.max() * rng.uniform(1.1, 2.0)) if fat_on else math.inf
    truth = _Truth(
        k=k,
        b=b,
        season=season,
        fatigue_level=fatigue_level,
        fatigue_drop=_u(rng, spec.fatigue_drop) if fat_on else 0.0,
        noise_sd=_u(rng, spec.noise_sd),
        phi=spec.phi,
        order_mu=math.log(aov) - 0.5 * order_sigma**2,
        order_sigma=order_sigma,
        trend_per_day=_u(rng, spec.trend) / 90.0,
    )
    start = dt.date(2026, 1, 5) + dt.timedelta(days=int(rng.integers(0, 7)))
    dates = np.datetime64(start, "D") + np.arange(n_hist + DAYS).astype("timedelta64[D]")
    weekday = ((dates.astype(np.int64) + 3) % 7).astype(np.intp)
    day = np.arange(n_hist + DAYS, dtype=np.float64)
    shock = np.zeros(n_hist + DAYS)
    shock[:n_hist] = _ar1(rng, n_hist, truth.noise_sd, truth.phi)
    h = slice(0, n_hist)
    conv_h = rng.poisson(truth.rate(hist_spend, weekday[h], day[h], shock[h])).astype(np.float64)
    rev_h = _orders(rng, conv_h, truth.order_mu, order_sigma)
    cpm = math.exp(rng.uniform(math.log(5), math.log(30)))
    impressions = np.round(hist_spend / cpm * 1000.0 * np.exp(rng.normal(0, 0.05, n_hist)))
    clicks = np.minimum(
        np.maximum(np.round(impressions * 0.015 * np.exp(rng.normal(0, 0.05, n_hist))), conv_h), impressions
    )
    history = History(dates[h], np.round(hist_spend, 2), impressions, clicks, conv_h, np.round(rev_h, 2))
    # the strategy
    recent = float(hist_spend[-14:].mean())
    mult = math.exp(rng.uniform(math.log(spec.multiplier[0]), math.log(spec.multiplier[1])))
    budget = round(recent * mult, 2)
    f = slice(n_hist, n_hist + DAYS)
    expected = float(truth.rate(np.full(DAYS, budget), weekday[f], day[f], np.zeros(DAYS)).sum())
    binding = rng.random() < spec.binding_share
    demand = expected * (rng.uniform(0.5, 1.0) if binding else rng.uniform(1.5, 5.0))
    audience = int(rng.integers(200_000, 5_000_000))
    cvr = min(demand / audience, 1.0)
    margin = round(float(rng.uniform(0.3, 0.8)), 3)
    strategy = {
        "campaign_id": f"{spec.name}-{index}",
        "client_id": f"{spec.name}-{index}",
        "audience_size": audience,
        "cvr": cvr,
        "daily_budget": budget,
        "duration_days": DAYS,
        "gross_margin": margin,
    }
    # the realized campaign: delivery noise, the same truth (the day shock continues its AR(1)), demand
    # capped day by day
    frng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, 1 + future)))
    shock[f] = _ar1(frng, DAYS, truth.noise_sd, truth.phi, start=float(shock[n_hist - 1]))
    spend_f = budget * np.minimum(np.exp(frng.normal(-0.5 * 0.05**2, 0.05, DAYS)), 1.2)
    true_demand = audience * cvr * math.exp(frng.normal(0.0, 0.10))
    conv_f = np.minimum(frng.poisson(truth.rate(spend_f, weekday[f], day[f], shock[f])), true_demand / DAYS)
    conv_f = np.floor(conv_f)
    rev_f = _orders(frng, conv_f, truth.order_mu, order_sigma)
    window = slice(max(0, n_hist - LOOKBACK_DAYS), n_hist)
    base_rev = float(rev_h[window].mean()) * DAYS
    base_spend = float(np.round(hist_spend, 2)[window].mean()) * DAYS
    s_new, r_new = float(spend_f.sum()), float(rev_f.sum())
    uplift = (r_new - base_rev) * margin - (s_new - base_spend)
    return Account(spec.name, index, b, history, strategy, s_new, r_new, uplift)


def oracle_uplifts(spec: WorldSpec, index: int, seed: int, futures: int = 200) -> np.ndarray:
    """`futures` independent realized uplifts of the account's campaign (streams 1..futures, never the
    scored stream 0): what a forecaster who knows the truth (and the last day shock) would simulate.
    The share above 0 is its confidence; its Brier score is the floor any gate can reach on these
    worlds (the outcome's own noise)."""
    return np.array([make_account(spec, index, seed, future=k).realized_uplift for k in range(1, futures + 1)])
