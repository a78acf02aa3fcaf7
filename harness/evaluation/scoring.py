"""Scores of probabilistic forecasts against what happened: pure functions over arrays.

A forecast that prints an interval or a confidence makes a claim; these check it: interval
coverage (~80% inside p10-p90) with an interval; the PIT (where the outcome fell in the
forecast's own distribution: uniform when calibrated, U-shaped when overconfident, hump-shaped
when underconfident, sloped when biased); CRPS (the distance between the forecast and the
outcome, in its units: a point forecast's is its absolute error); the Brier score of "uplift > 0"
with Murphy's decomposition and a reliability table. Overlapping rolling windows give correlated
scores, so `block_bootstrap` resamples blocks of consecutive windows for honest intervals."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from agents.synctwin.gate.stats import wilson_interval

# --- CRPS and PIT ------------------------------------------------------------------------------


def crps_sample(sample: np.ndarray, y: float) -> float:
    """CRPS of the empirical distribution of `sample` at the outcome `y`.

    CRPS = E|X - y| - 0.5 E|X - X'| with X, X' independent draws of the sample (all n^2
    pairs, the empirical distribution's exact CRPS). Sorting turns the pair sum into a
    weighted sum: sum_ij |x_i - x_j| = 2 sum_i (2i - n - 1) x_(i) (1-based i), so the cost
    is O(n log n), not O(n^2)."""
    x = np.sort(np.asarray(sample, dtype=np.float64).ravel())
    n = x.size
    if n == 0:
        raise ValueError("an empty sample has no CRPS")
    if not math.isfinite(y) or not np.all(np.isfinite(x)):
        raise ValueError("CRPS needs finite values")
    first = float(np.abs(x - y).mean())
    weights = 2.0 * np.arange(1, n + 1, dtype=np.float64) - n - 1.0
    # the weights sum to zero, so shifting by the minimum changes nothing but rounding: a point
    # mass then scores exactly 0
    pair_mean = 2.0 * float(weights @ (x - x[0])) / (n * n)
    return max(0.0, first - 0.5 * pair_mean)


def pit_value(sample: np.ndarray, y: float, rng: np.random.Generator) -> float:
    """Where `y` falls in the sample's distribution, in (0, 1); ties are split at random.

    (#{x < y} + U * (#{x == y} + 1)) / (n + 1) with U ~ Uniform(0, 1): when y is one more
    draw from the same distribution as the sample, its rank among the n + 1 values is
    uniform, and this spreads that rank evenly over its cell, so the PIT is exactly uniform
    whatever n and however many ties (a point mass included)."""
    x = np.asarray(sample, dtype=np.float64).ravel()
    n = x.size
    if n == 0:
        raise ValueError("an empty sample has no PIT")
    below = int(np.count_nonzero(x < y))
    equal = int(np.count_nonzero(x == y))
    return (below + float(rng.random()) * (equal + 1)) / (n + 1)


@dataclass(frozen=True, slots=True)
class PitHistogram:
    """A 10-bin histogram of PIT values and two tests of their uniformity."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]
    chi2_pvalue: float | None  # None below 5 values: no test worth the name
    ks_pvalue: float | None

    @property
    def n(self) -> int:
        return int(sum(self.counts))

    def to_dict(self) -> dict[str, object]:
        return {
            "edges": list(self.edges),
            "counts": list(self.counts),
            "n": self.n,
            "chi2_pvalue": self.chi2_pvalue,
            "ks_pvalue": self.ks_pvalue,
        }


def pit_histogram(pits: Sequence[float] | np.ndarray, bins: int = 10) -> PitHistogram:
    """Counts per bin of [0, 1] and p-values of a chi-square and a Kolmogorov-Smirnov test of
    uniformity. A small p-value says the PIT is not uniform; a large one says the data cannot
    tell (with 20 windows only gross miscalibration shows)."""
    from scipy import stats

    p = np.asarray(pits, dtype=np.float64).ravel()
    if p.size and (np.any(p < 0) or np.any(p > 1) or not np.all(np.isfinite(p))):
        raise ValueError("PIT values must lie in [0, 1]")
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts, _ = np.histogram(p, bins=edges)
    chi2_p = ks_p = None
    if p.size >= 5:
        expected = p.size / bins
        chi2 = float(((counts - expected) ** 2).sum() / expected)
        chi2_p = float(stats.chi2.sf(chi2, bins - 1))
        ks_p = float(stats.kstest(p, "uniform").pvalue)
    return PitHistogram(
        edges=tuple(float(e) for e in edges), counts=tuple(int(c) for c in counts), chi2_pvalue=chi2_p, ks_pvalue=ks_p
    )


# --- intervals and probabilities -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Share:
    """A share of windows with a 95% interval (Wilson, or a block bootstrap when windows overlap)."""

    value: float | None
    low: float
    high: float
    n: int
    method: str

    def to_dict(self) -> dict[str, object]:
        return {"value": self.value, "interval": [self.low, self.high], "n": self.n, "method": self.method}


def share(flags: np.ndarray, *, block: int = 1, rng: np.random.Generator | None = None, reps: int = 2000) -> Share:
    """The share of True flags. Independent windows (block 1) get Wilson's interval; windows
    that overlap get a moving-block bootstrap with blocks of `block` windows."""
    f = np.asarray(flags, dtype=bool).ravel()
    n = f.size
    if n == 0:
        return Share(None, 0.0, 1.0, 0, "none")
    k = int(f.sum())
    if block <= 1:
        lo, hi = wilson_interval(k, n)
        return Share(k / n, lo, hi, n, "wilson")
    if n <= block:
        # one block of windows in all: a bootstrap would resample it and claim a zero-width interval;
        # Wilson's at the effective number of independent windows says how little 3-5 windows tell
        n_eff = max(1, round(n / block))
        lo, hi = wilson_interval(round(k / n * n_eff), n_eff)
        return Share(k / n, min(lo, k / n), max(hi, k / n), n, f"wilson at {n_eff} effective window(s)")
    lo, hi = block_bootstrap(f.astype(np.float64), np.mean, block=block, rng=rng, reps=reps)
    # a bootstrap of 3 windows can miss the point estimate's own value; keep it inside
    return Share(k / n, min(lo, k / n), max(hi, k / n), n, f"block bootstrap ({block})")


def block_bootstrap(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    *,
    block: int,
    rng: np.random.Generator | None = None,
    reps: int = 2000,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of `statistic` under the moving-block bootstrap (Kunsch 1989).

    Consecutive windows that share days share their errors; resampling blocks of `block`
    consecutive windows keeps that dependence, so the interval is not too narrow. `values` is
    1-D (one score per window) or 2-D (one row per window). Deterministic for a given `rng`."""
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[0]
    if n == 0:
        raise ValueError("no values to bootstrap")
    rng = rng or np.random.default_rng(0)
    b = max(1, min(block, n))
    if n <= b:
        # one block cannot be resampled into anything but itself: the range of the statistic over the
        # windows taken one at a time is an honest (wide) interval instead of a zero-width one
        each = np.array([statistic(v[i : i + 1]) for i in range(n)])
        return float(each.min()), float(each.max())
    starts_max = n - b + 1
    per = math.ceil(n / b)
    stats_ = np.empty(reps, dtype=np.float64)
    offsets = np.arange(b)
    for r in range(reps):
        starts = rng.integers(0, starts_max, size=per)
        idx = (starts[:, None] + offsets[None, :]).ravel()[:n]
        stats_[r] = statistic(v[idx])
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats_, (alpha, 1.0 - alpha))
    return float(lo), float(hi)


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    """Forecasts whose probability fell in [low, high): how many, their mean, how many came true."""

    low: float
    high: float
    count: int
    mean_forecast: float | None
    observed: float | None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class BrierScore:
    """Mean squared error of probabilities, and Murphy's decomposition over `bins` bins:
    brier = reliability - resolution + uncertainty (exact when forecasts are constant within a
    bin; otherwise up to a within-bin term, reported as the residual)."""

    score: float
    reliability: float
    resolution: float
    uncertainty: float
    residual: float
    table: tuple[ReliabilityBin, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "score": self.score,
            "reliability": self.reliability,
            "resolution": self.resolution,
            "uncertainty": self.uncertainty,
            "within_bin_residual": self.residual,
            "table": [b.to_dict() for b in self.table],
        }


def brier_score(prob: np.ndarray, outcome: np.ndarray, bins: int = 5) -> BrierScore:
    """The Brier score of probabilities `prob` for binary `outcome`s, with its decomposition."""
    p = np.asarray(prob, dtype=np.float64).ravel()
    o = np.asarray(outcome, dtype=bool).ravel().astype(np.float64)
    if p.size != o.size:
        raise ValueError("one outcome per forecast")
    if p.size == 0:
        raise ValueError("no forecasts to score")
    if np.any(p < 0) or np.any(p > 1):
        raise ValueError("probabilities must lie in [0, 1]")
    score = float(((p - o) ** 2).mean())
    base = float(o.mean())
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    rel = res = 0.0
    table = []
    for k in range(bins):
        m = which == k
        c = int(m.sum())
        pk = ok = None
        if c:
            pk, ok = float(p[m].mean()), float(o[m].mean())
            rel += c * (pk - ok) ** 2
            res += c * (ok - base) ** 2
        table.append(ReliabilityBin(float(edges[k]), float(edges[k + 1]), c, pk, ok))
    n = p.size
    rel, res, unc = rel / n, res / n, base * (1.0 - base)
    return BrierScore(score, rel, res, unc, residual=score - (rel - res + unc), table=tuple(table))
