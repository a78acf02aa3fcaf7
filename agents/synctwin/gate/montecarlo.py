"""The Monte Carlo of the gate: all paths at once as numpy arrays, no per-path Python loop.

Three models share one driver:
- `curve` (the default): day by day, spend (budget x delivery noise) -> conversions through the
  path's draw of the response curve fitted to the history (response_curve.py), capped by daily
  demand (audience x cvr / days) -> revenue (order value);
- `funnel`: the same through the history's conversions per dollar (CPM, CTR, CVR per click), with
  per-path parameter uncertainty and per-day noise: revenue proportional to spend;
- `one-factor` (alias `seed`): the original formula, one N(1, 0.15) factor per path scaling both
  conversions (audience x cvr) and spend (budget x days).

Chunk k of paths draws from SeedSequence(seed, spawn_key=(k,)): memory stays bounded, the result
depends only on the seed, and chunks can be drawn anywhere (process pool, Ray), merged in order."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from agents.synctwin.gate.response_curve import CurveFit, draw_parameters
from agents.synctwin.gate.stats import order_statistics, row_quantiles, wilson_interval
from synctwin.infra.executors import Executor, ThreadExecutor

QUANTILES = (0.10, 0.50, 0.90)
SEED_VARIANCE_SD = 0.15


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelParams:
    """What every model needs: the campaign (`days` days, `demand` = audience_size x cvr expected
    conversions) and the baseline's revenue and spend over those days, which it must beat."""

    days: int
    daily_budget: float
    demand: float
    aov: float
    base_revenue: float
    base_spend: float
    gross_margin: float = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedModelParams(ModelParams):
    """Inputs of the seed's formula."""

    variance_sd: float = SEED_VARIANCE_SD


@dataclass(frozen=True, slots=True, kw_only=True)
class DailyParams(ModelParams):
    """What the day-by-day models add: the spread of demand and of delivery, and its cap."""

    demand_sigma: float = 0.15
    delivery_sigma: float = 0.05
    max_overdelivery: float = 1.2


@dataclass(frozen=True, slots=True, kw_only=True)
class FunnelParams(DailyParams):
    """Inputs of the funnel model. Sigmas are log-sds: `param_*` per path, `daily_*` per day."""

    conversions_per_dollar: float  # 1000 / CPM * CTR * conversions per click
    param_cpd_sigma: float = 0.10
    param_aov_sigma: float = 0.10
    daily_cpd_sigma: float = 0.15
    daily_aov_sigma: float = 0.05


@dataclass(frozen=True, slots=True, kw_only=True)
class CurveParams(DailyParams):
    """Inputs of the curve model. `weekday`/`trend` are the campaign days' covariates (length days);
    `spread` is the calibration's scale of every fitted spread, `extra_sd` the extrapolation's widening."""

    fit: CurveFit
    weekday: tuple[int, ...]
    trend: tuple[float, ...]
    spread: float = 1.0
    extra_sd: float = 0.0
    structural_sigma: float = 0.05
    aov_log_se: float = 0.0


@dataclass(slots=True)
class PathBlock:
    """What one chunk of paths produced. Cumulative arrays are (days, paths) or None."""

    uplift: np.ndarray
    spend: np.ndarray | None = None
    revenue: np.ndarray | None = None
    conversions: np.ndarray | None = None
    linear_days: int | None = None  # set when the arrays hold (1, paths) totals that accrue evenly over the days


def _lognormal_factor(
    rng: np.random.Generator, sigma: float, size: int | tuple[int, ...], dtype: type = np.float64
) -> np.ndarray:
    """Mean-one lognormal factors: exp(N(0, s) - s^2/2)."""
    if sigma <= 0:
        return np.ones(size, dtype=dtype)
    z = rng.standard_normal(size, dtype=dtype)
    z *= sigma
    z -= 0.5 * sigma * sigma
    return np.exp(z, out=z)


def simulate_seed_model(p: SeedModelParams, n: int, rng: np.random.Generator, *, keep_paths: bool = False) -> PathBlock:
    """The seed's per-path loop, vectorized: uplift is linear in one N(1, sd) factor per path."""
    v = rng.normal(1.0, p.variance_sd, n)
    # uplift = (demand*aov*v - R_base)*gm - (budget*days*v - S_base): affine in v, two passes
    slope = p.demand * p.aov * p.gross_margin - p.daily_budget * p.days
    uplift = v * slope
    uplift -= p.base_revenue * p.gross_margin - p.base_spend
    if not keep_paths:
        return PathBlock(uplift=uplift)
    conversions = p.demand * v
    revenue = conversions * p.aov
    spend = p.daily_budget * p.days * v
    # the seed's outcome accrues evenly over the days: keep the totals, scale the bands later
    return PathBlock(uplift, spend[None, :], revenue[None, :], conversions[None, :], linear_days=p.days)


def simulate_funnel_model(p: FunnelParams, n: int, rng: np.random.Generator, *, keep_paths: bool = False) -> PathBlock:
    """Day by day: spend (budget x delivery) -> conversions (capped by daily demand) -> revenue, in
    float32 (days, paths) arrays: half float64's memory traffic, and the projection's per-day
    quantiles read contiguous rows. Totals are summed in float64."""
    d, f32 = p.days, np.float32
    cpd_path = (p.conversions_per_dollar * _lognormal_factor(rng, p.param_cpd_sigma, n)).astype(f32)
    aov_path = (p.aov * _lognormal_factor(rng, p.param_aov_sigma, n)).astype(f32)
    demand_daily = ((p.demand / d) * _lognormal_factor(rng, p.demand_sigma, n)).astype(f32)

    spend = _lognormal_factor(rng, p.delivery_sigma, (d, n), f32)
    np.minimum(spend, f32(p.max_overdelivery), out=spend)
    spend *= f32(p.daily_budget)
    conversions = _lognormal_factor(rng, p.daily_cpd_sigma, (d, n), f32)
    conversions *= cpd_path
    conversions *= spend
    np.minimum(conversions, demand_daily, out=conversions)
    revenue = _lognormal_factor(rng, p.daily_aov_sigma, (d, n), f32)
    revenue *= aov_path
    revenue *= conversions

    return daily_block(p, spend, revenue, conversions, keep_paths)


def simulate_curve_model(p: CurveParams, n: int, rng: np.random.Generator, *, keep_paths: bool = False) -> PathBlock:
    """Day by day through each path's draw of the response curve:
    log rate = a + b (log spend - mean log spend) + dow[weekday] + g trend + level + sigma z,
    conversions = rate + sqrt(rate) e (Poisson noise, normal approximation, >= 0), the level shock
    (structural and extrapolation spread) once per path, z (the day shock, an AR(1)) and e daily;
    capped by demand, times the order value and its daily noise. float32 (days, paths) arrays."""
    d, f32 = p.days, np.float32
    fit = p.fit
    draws = draw_parameters(fit, n, rng, p.spread)
    level_sd = math.hypot(p.spread * p.structural_sigma, p.extra_sd)
    base = draws.a + draws.b * (math.log(p.daily_budget) - fit.log_spend_mean) + level_sd * rng.standard_normal(n)
    aov_path = (p.aov * _lognormal_factor(rng, p.spread * p.aov_log_se, n)).astype(f32)
    demand_daily = ((p.demand / d) * _lognormal_factor(rng, p.demand_sigma, n)).astype(f32)
    # delivery: log spend = log budget + log-normal noise, capped at the platform's overdelivery
    log_del = rng.standard_normal((d, n), dtype=f32)
    sd = f32(p.delivery_sigma)
    log_del *= sd
    log_del -= f32(0.5) * sd * sd
    np.minimum(log_del, f32(math.log(p.max_overdelivery)), out=log_del)
    weekday = np.asarray(p.weekday, dtype=np.intp)
    trend = np.asarray(p.trend, dtype=f32)
    # the per-day linear predictor: (d, n) float32, built in place row-broadcast by row-broadcast
    lin = rng.standard_normal((d, n), dtype=f32)
    if fit.shock_rho > 0:  # the day shock as an AR(1): z_t = rho z_{t-1} + sqrt(1 - rho^2) e_t
        rho, innov = f32(fit.shock_rho), f32(math.sqrt(1.0 - fit.shock_rho * fit.shock_rho))
        for day in range(1, d):
            lin[day] *= innov
            lin[day] += rho * lin[day - 1]
    lin *= draws.sigma.astype(f32)
    b32 = draws.b.astype(f32)
    np.multiply(log_del, b32, out=log_del)  # b x log delivery (undone below for the spend)
    lin += log_del
    lin += np.ascontiguousarray(draws.dow.T, dtype=f32)[weekday]
    lin += base.astype(f32)
    g32 = draws.trend.astype(f32)
    for day in range(d):
        lin[day] += trend[day] * g32
    np.divide(log_del, b32, out=log_del)
    # the day's rate; log(c + 0.5) is nearly unbiased for its log, so the counts' own noise is drawn at the
    # rate's level (Poisson: variance = mean, here its normal approximation, kept >= 0)
    rate = np.exp(lin, out=lin)
    count = rng.standard_normal((d, n), dtype=f32)
    count *= np.sqrt(rate)
    conversions = np.add(count, rate, out=count)
    np.maximum(conversions, f32(0.0), out=conversions)
    np.minimum(conversions, demand_daily, out=conversions)
    spend = np.exp(log_del, out=log_del)
    spend *= f32(p.daily_budget)
    revenue = _lognormal_factor(rng, fit.aov_daily_sd, (d, n), f32)
    revenue *= aov_path
    revenue *= conversions

    return daily_block(p, spend, revenue, conversions, keep_paths)


def daily_block(
    p: DailyParams, spend: np.ndarray, revenue: np.ndarray, conversions: np.ndarray, keep_paths: bool
) -> PathBlock:
    """The day-by-day models' end: net profit uplift from (days, paths) daily arrays (summed in
    float64), with `keep_paths` the arrays made cumulative in place for the projection."""
    total_spend = spend.sum(axis=0, dtype=np.float64)
    total_revenue = revenue.sum(axis=0, dtype=np.float64)
    uplift = (total_revenue - p.base_revenue) * p.gross_margin - (total_spend - p.base_spend)
    if not keep_paths:
        return PathBlock(uplift)
    return PathBlock(uplift, cumulate_days(spend), cumulate_days(revenue), cumulate_days(conversions))


def cumulate_days(daily: np.ndarray) -> np.ndarray:
    """In-place running total over axis 0 of a (days, paths) array: whole-row adds, about 15x faster
    than np.cumsum(axis=0), which walks the array column by column."""
    for day in range(1, daily.shape[0]):
        np.add(daily[day], daily[day - 1], out=daily[day])
    return daily


ChunkSimulator = Callable[[int, np.random.Generator, bool], PathBlock]


def chunk_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of chunk `index`: independent of how many chunks there are."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def chunk_sizes(total: int, chunk: int) -> list[int]:
    full, rest = divmod(total, chunk)
    return [chunk] * full + ([rest] if rest else [])


@dataclass(slots=True)
class MonteCarloOutcome:
    """Merged result of all chunks: the uplift's summary, and quantile bands over time."""

    paths: int
    positive: int
    initial_paths: int
    rounds: int
    mean: float
    quantiles: tuple[float, float, float]  # p10, p50, p90 of the uplift
    median_positive: float | None  # the seed's figure: median of the positive paths only
    bands: dict[str, np.ndarray] = field(default_factory=dict)  # metric -> (days, 3): p10, p50, p90
    uplift: np.ndarray | None = None  # every path's uplift, when asked for (tests, reports)
    quantile_method: str = "exact"  # or "sketch" above EXACT_PATHS (see sketch_quantiles)

    @property
    def confidence(self) -> float:
        return self.positive / self.paths

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.positive, self.paths)


def summarize_uplift(uplift: np.ndarray, positive: int) -> tuple[tuple[float, float, float], float | None, float]:
    """p10/p50/p90, the median of the positive paths (the top `positive` order statistics, so at a
    known rank) and the mean, from one `order_statistics` selection."""
    n = uplift.shape[0]
    pos = np.asarray(QUANTILES) * (n - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)
    ranks = [*lo, *hi]
    if positive:
        first = n - positive  # rank of the smallest positive path
        mid_lo, mid_hi = first + (positive - 1) // 2, first + positive // 2
        ranks += [mid_lo, mid_hi]
    part = order_statistics(uplift, ranks)
    w = pos - lo
    p10, p50, p90 = (float(part[a] * (1 - f) + part[b] * f) for a, b, f in zip(lo, hi, w, strict=True))
    median_positive = float((part[mid_lo] + part[mid_hi]) / 2) if positive else None
    return (p10, p50, p90), median_positive, float(uplift.mean())


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=3, thread_name_prefix="synctwin-bands")


def straddles(interval: tuple[float, float], threshold: float) -> bool:
    return interval[0] <= threshold <= interval[1]


@dataclass(frozen=True, slots=True)
class ChunkTask:
    """One chunk of paths to draw, anywhere: everything it needs travels with it (picklable)."""

    simulate: ChunkSimulator  # a partial of a top-level chunk function over frozen parameters
    seed: int
    index: int  # the chunk's seed stream: SeedSequence(seed, spawn_key=(index,))
    size: int
    keep: int  # how many of its paths return their daily trajectories (the projection)
    sketch: bool  # summarise the uplift instead of returning it (huge draws)
    return_uplift: bool  # return the uplift array anyway (exact mode, or a report's sample)


@dataclass(slots=True)
class ChunkResult:
    """What a chunk sends back: counts, either its uplift or a fixed-size summary of it, and the
    trajectories of the paths it keeps (`kept`, whose own uplift is not used)."""

    size: int
    positive: int
    total: float  # sum of the uplift (the mean of a sketched draw)
    uplift: np.ndarray | None = None
    sketch: np.ndarray | None = None  # SKETCH_POINTS order statistics at evenly spaced ranks
    kept: PathBlock | None = None


EXACT_PATHS = 4_000_000  # up to this many paths (32 MB of uplift) quantiles are exact; above, sketched
SKETCH_POINTS = 2049  # per chunk: rank error of a sketched quantile <= 1/(SKETCH_POINTS-1) of the paths


def draw_chunk(task: ChunkTask) -> ChunkResult:
    """Draw one chunk (a top-level function, so a process pool or Ray can run it)."""
    with np.errstate(over="ignore", invalid="ignore"):  # absurd inputs overflow: the gate refuses the result
        block = task.simulate(task.size, chunk_rng(task.seed, task.index), task.keep > 0)
    uplift = block.uplift
    result = ChunkResult(size=task.size, positive=int(np.count_nonzero(uplift > 0)), total=0.0)
    if task.sketch:
        result.total = float(uplift.sum())
        ranks = np.rint(np.linspace(0, task.size - 1, SKETCH_POINTS)).astype(np.intp)
        result.sketch = np.sort(uplift)[ranks]
    if task.return_uplift or not task.sketch:
        result.uplift = uplift
    if task.keep > 0:
        assert block.spend is not None and block.revenue is not None and block.conversions is not None
        trajectories = (block.spend[:, : task.keep], block.revenue[:, : task.keep], block.conversions[:, : task.keep])
        result.kept = PathBlock(uplift[:0], *trajectories, linear_days=block.linear_days)
    return result


def sketch_quantiles(sketches: list[tuple[int, np.ndarray]], ranks: list[float]) -> list[float]:
    """Order statistics at (0-based, fractional) `ranks` of the union of sketched chunks: each
    sketch's exact order statistics at SKETCH_POINTS even ranks, merged, interpolate the draw's
    quantile function with a rank error below N / (SKETCH_POINTS - 1), about 0.05% of the paths.
    Deterministic: merged in chunk order."""
    values = np.concatenate([s for _, s in sketches])
    weights = np.concatenate([np.full(s.shape[0], n / s.shape[0]) for n, s in sketches])
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    mid = np.cumsum(w) - w / 2 - 0.5  # each point's rank in the whole draw, at its weight's centre
    return [float(x) for x in np.interp(np.asarray(ranks, dtype=np.float64), mid, v)]


def summarize_sketches(
    sketches: list[tuple[int, np.ndarray]], paths: int, positive: int, total: float
) -> tuple[tuple[float, float, float], float | None, float]:
    """`summarize_uplift`'s three figures from chunk sketches (see `sketch_quantiles`)."""
    ranks = [q * (paths - 1) for q in QUANTILES]
    if positive:
        ranks.append(paths - positive + (positive - 1) / 2)
    got = sketch_quantiles(sketches, ranks)
    return (got[0], got[1], got[2]), got[3] if positive else None, total / paths


def run_monte_carlo(
    simulate: ChunkSimulator,
    *,
    seed: int,
    paths: int,
    max_paths: int,
    chunk_paths: int,
    threshold: float,
    projection_paths: int,
    keep_uplift: bool = False,
    progress: Callable[[int, int], None] | None = None,
    executor: Executor | None = None,
) -> MonteCarloOutcome:
    """Draw `paths` paths; while the 95% interval of the confidence straddles the threshold,
    double the draw (up to `max_paths`) instead of deciding on noise.

    Chunks go through `executor` (default: this process), merged in chunk order: the same outcome
    bit for bit on any executor. Only the first `projection_paths` paths keep their trajectories.
    Above EXACT_PATHS (max_paths), chunks send a fixed-size sketch of their uplift, not the array
    (100M paths would be 800 MB): quantiles from `sketch_quantiles`, count and mean exact,
    `keep_uplift` the first EXACT_PATHS paths. `progress(drawn, target)` follows each chunk."""
    run = executor or _IN_PROCESS
    sketch = max_paths > EXACT_PATHS
    uplifts: list[np.ndarray] = []
    sketches: list[tuple[int, np.ndarray]] = []
    kept: dict[str, list[np.ndarray]] = {"spend": [], "revenue": [], "conversions": []}
    linear_days: int | None = None
    positive = kept_count = chunk_index = drawn = rounds = 0
    total = 0.0
    target = paths
    while True:
        tasks = []
        start = drawn
        for size in chunk_sizes(target - drawn, chunk_paths):
            keep = max(0, min(size, projection_paths - kept_count))
            kept_count += keep
            tasks.append(
                ChunkTask(simulate, seed, chunk_index, size, keep, sketch, keep_uplift and start < EXACT_PATHS)
            )
            chunk_index += 1
            start += size
        for res in run.imap(draw_chunk, tasks):
            drawn += res.size
            positive += res.positive
            total += res.total
            if res.uplift is not None:
                uplifts.append(res.uplift)
            if res.sketch is not None:
                sketches.append((res.size, res.sketch))
            if res.kept is not None:
                linear_days = res.kept.linear_days
                for metric, arrays in kept.items():
                    arrays.append(getattr(res.kept, metric))
            if progress is not None:
                progress(drawn, target)
        if drawn >= max_paths or not straddles(wilson_interval(positive, drawn), threshold):
            break
        rounds += 1
        target = min(max_paths, drawn * 2)
    uplift = (uplifts[0] if len(uplifts) == 1 else np.concatenate(uplifts)) if uplifts else None
    merged = {m: arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=1) for m, arrays in kept.items()}
    # np.partition releases the GIL: the three metrics' bands are computed side by side
    bands = dict(zip(merged, _pool().map(lambda a: row_quantiles(a, QUANTILES), merged.values()), strict=True))
    if linear_days is not None:  # totals that accrue evenly: the day-d band is d/D of the total's band
        frac = (np.arange(1, linear_days + 1) / linear_days)[:, None]
        bands = {m: frac * band for m, band in bands.items()}
    if sketch:
        quantiles, median_positive, mean = summarize_sketches(sketches, drawn, positive, total)
    else:
        assert uplift is not None
        quantiles, median_positive, mean = summarize_uplift(uplift, positive)
    return MonteCarloOutcome(
        paths=drawn,
        positive=positive,
        initial_paths=paths,
        rounds=rounds,
        mean=mean,
        quantiles=quantiles,
        median_positive=median_positive,
        bands=bands,
        uplift=uplift if keep_uplift else None,
        quantile_method="sketch" if sketch else "exact",
    )


# The default: this process, with a chunk per core in flight (numpy draws without the GIL);
# results are merged in chunk order, so it is bit for bit the plain loop's outcome.
_IN_PROCESS = ThreadExecutor(
    max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
)
