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
    """Quantiles of each row of a 2-D array ('linear' method, as numpy's default): (rows, len(qs)).

    One partition per row selects every order statistic needed at once; same values as
    np.quantile(x, qs, axis=1).T, without its per-call overhead and float64 copy.
    """
    n = x.shape[1]
    if n == 0:
        raise ValueError("no values")
    pos = np.asarray(qs, dtype=np.float64) * (n - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)
    part = np.partition(x, np.unique(np.concatenate([lo, hi])), axis=1)
    w = pos - lo
    return part[:, lo].astype(np.float64) * (1.0 - w) + part[:, hi].astype(np.float64) * w
