"""Small statistics over arrays and counts, free of I/O."""

from __future__ import annotations

import math

import numpy as np

Z95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion: honest near 0 and 1, unlike the normal one."""
    if trials <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= trials:
        raise ValueError(f"successes {successes} not in [0, {trials}]")
    p = successes / trials
    z2 = z * z
    denom = 1.0 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denom
    # exact arithmetic puts p inside; rounding can leave it 1 ulp outside at 0 and 1
    return max(0.0, min(centre - half, p)), min(1.0, max(centre + half, p))


def risk_profile(confidence: float, projected_uplift: float) -> str:
    """The seed's rules, unchanged, applied to the median of all paths."""
    if confidence > 0.90 and projected_uplift > 10_000:
        return "LOW"
    if confidence > 0.85 and projected_uplift > 5_000:
        return "MEDIUM"
    if confidence > 0.70:
        return "HIGH"
    return "CRITICAL"


def row_quantiles(x: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """np.quantile(x, qs, axis=1).T ('linear'): (rows, len(qs)), by one partition per row, without
    np.quantile's per-call overhead and float64 copy."""
    n = x.shape[1]
    if n == 0:
        raise ValueError("no values")
    pos = np.asarray(qs, dtype=np.float64) * (n - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)
    part = np.partition(x, np.unique(np.concatenate([lo, hi])), axis=1)
    w = pos - lo
    return part[:, lo].astype(np.float64) * (1.0 - w) + part[:, hi].astype(np.float64) * w


BRACKET_MIN_SIZE = 100_000  # below this a plain np.partition is as fast
BRACKET_SAMPLE = 8192  # strided sample that brackets each rank
BRACKET_MARGIN_SD = 6.0  # bracket half-width in standard deviations of a sample rank


def order_statistics(x: np.ndarray, ranks: list[int] | tuple[int, ...]) -> dict[int, float]:
    """The values of NaN-free `x` at 0-based sorted positions `ranks`, exactly (np.partition's),
    without partitioning all of a large `x` (a million uplifts cost more to partition than to draw).
    A strided sample brackets each rank (Floyd-Rivest), a counting pass checks the bracket holds it,
    and only its few thousand elements are partitioned; a miss falls back to np.partition."""
    n = int(x.size)
    want = sorted({int(r) for r in ranks})
    if not want:
        return {}
    if want[0] < 0 or want[-1] >= n:
        raise ValueError(f"ranks must lie in [0, {n - 1}], got {want[0]}..{want[-1]}")
    if n < BRACKET_MIN_SIZE:
        part = np.partition(x, want)
        return {r: float(part[r]) for r in want}
    sample = np.sort(x[:: max(1, n // BRACKET_SAMPLE)])
    m = int(sample.size)
    clusters: list[tuple[list[int], int, int]] = []  # ranks whose sample brackets overlap, and the bracket
    for r in want:
        p = r / (n - 1)
        centre = p * (m - 1)
        pad = BRACKET_MARGIN_SD * math.sqrt(m * max(p * (1.0 - p), 1.0 / m)) + 2.0
        lo, hi = math.floor(centre - pad), math.ceil(centre + pad)
        if clusters and lo <= clusters[-1][2]:
            clusters[-1] = (clusters[-1][0] + [r], clusters[-1][1], max(clusters[-1][2], hi))
        else:
            clusters.append(([r], lo, hi))
    out: dict[int, float] = {}
    for rs, lo, hi in clusters:
        inside, below = _bracket(x, sample[lo] if lo > 0 else None, sample[hi] if hi < m - 1 else None)
        if inside is not None and below <= rs[0] and below + inside.size > rs[-1]:
            part = np.partition(inside, [r - below for r in rs])
            out.update({r: float(part[r - below]) for r in rs})
        else:
            part = np.partition(x, rs)
            out.update({r: float(part[r]) for r in rs})
    return out


def _bracket(x: np.ndarray, low: float | None, high: float | None) -> tuple[np.ndarray | None, int]:
    """The elements in [low, high] and how many lie below low (None: the bracket is everything)."""
    if low is None and high is None:
        return None, 0
    if low is None:
        return x[x <= high], 0
    under = x < low
    below = int(np.count_nonzero(under))
    if high is None:
        return x[~under], below
    return x[(x >= low) & (x <= high)], below
