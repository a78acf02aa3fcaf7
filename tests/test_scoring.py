"""The forecast scores (harness/evaluation/scoring.py): exact against brute force, and properties
a calibrated forecast must have (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.evaluation.scoring import (
    block_bootstrap,
    brier_score,
    crps_sample,
    pit_histogram,
    pit_value,
    share,
)

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


def crps_brute(x: np.ndarray, y: float) -> float:
    return float(np.abs(x - y).mean() - 0.5 * np.abs(x[:, None] - x[None, :]).mean())


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=1, max_size=60), finite)
def test_crps_sorted_formula_equals_brute_force(xs: list[float], y: float) -> None:
    x = np.array(xs)
    assert crps_sample(x, y) == pytest.approx(max(0.0, crps_brute(x, y)), rel=1e-9, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(st.lists(finite, min_size=1, max_size=40), finite)
def test_crps_is_nonnegative_and_zero_only_for_a_point_mass_at_the_truth(xs: list[float], y: float) -> None:
    x = np.array(xs)
    c = crps_sample(x, y)
    assert c >= 0
    if not np.all(x == y):
        assert c > 0
    assert crps_sample(np.full(7, y), y) == 0.0


def test_crps_of_a_point_forecast_is_its_absolute_error_and_of_a_normal_its_closed_form() -> None:
    assert crps_sample(np.array([3.0]), 10.0) == pytest.approx(7.0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(200_000)
    # N(0,1) at y = 0: 2 phi(0) - 1/sqrt(pi) ... CRPS = sigma (y(2Phi-1) + 2phi - 1/sqrt(pi))
    expected = 2 * (1 / np.sqrt(2 * np.pi)) - 1 / np.sqrt(np.pi)
    assert crps_sample(x, 0.0) == pytest.approx(expected, rel=0.01)


def test_crps_rejects_empty_and_non_finite() -> None:
    with pytest.raises(ValueError):
        crps_sample(np.array([]), 1.0)
    with pytest.raises(ValueError):
        crps_sample(np.array([1.0, np.nan]), 1.0)


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1), st.sampled_from(["normal", "lognormal", "discrete"]))
def test_pit_of_draws_from_the_forecast_itself_is_uniform(seed: int, family: str) -> None:
    rng = np.random.default_rng(seed)

    def draw(size: int) -> np.ndarray:
        if family == "normal":
            return rng.normal(5.0, 2.0, size)
        if family == "lognormal":
            return rng.lognormal(0.0, 1.0, size)
        return rng.integers(0, 3, size).astype(float)  # heavy ties: the randomization must spread them

    pits = [pit_value(draw(200), float(draw(1)[0]), rng) for _ in range(400)]
    hist = pit_histogram(pits)
    assert hist.n == 400
    assert hist.ks_pvalue is not None and hist.ks_pvalue > 1e-4
    assert hist.chi2_pvalue is not None and hist.chi2_pvalue > 1e-4


def test_pit_shapes_show_overconfidence_and_bias() -> None:
    rng = np.random.default_rng(3)
    narrow = [pit_value(rng.normal(0, 0.3, 500), float(rng.normal(0, 1)), rng) for _ in range(500)]
    counts = pit_histogram(narrow).counts
    assert counts[0] + counts[-1] > 3 * (counts[4] + counts[5])  # U: outcomes in the tails
    biased = [pit_value(rng.normal(-1, 1, 500), float(rng.normal(0, 1)), rng) for _ in range(500)]
    hist = pit_histogram(biased)
    assert hist.counts[-1] > 3 * hist.counts[0] and hist.ks_pvalue is not None and hist.ks_pvalue < 1e-6


def test_pit_histogram_needs_values_in_the_unit_interval_and_skips_tests_below_five() -> None:
    with pytest.raises(ValueError):
        pit_histogram([0.2, 1.5])
    h = pit_histogram([0.1, 0.5])
    assert h.chi2_pvalue is None and h.ks_pvalue is None and h.counts[1] == 1 and h.counts[5] == 1


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_a_correct_80_percent_interval_covers_about_80_percent(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 2000
    mu = rng.normal(0, 10, n)
    y = rng.normal(mu, 1.0)
    z = 1.2815515655446004
    cov = share((y >= mu - z) & (y <= mu + z))
    assert cov.value is not None and abs(cov.value - 0.8) < 0.04
    assert cov.low < cov.value < cov.high and 0.03 < cov.high - cov.low < 0.04  # Wilson's 95% at n = 2000
    assert cov.method == "wilson"


def test_block_bootstrap_widens_the_interval_of_correlated_windows() -> None:
    rng = np.random.default_rng(5)
    runs = np.repeat(rng.random(40) < 0.8, 5)  # 200 windows in runs of 5 identical flags
    wilson = share(runs)
    blocked = share(runs, block=5, rng=np.random.default_rng(0))
    assert blocked.value == wilson.value
    assert (blocked.high - blocked.low) > 1.5 * (wilson.high - wilson.low)
    again = share(runs, block=5, rng=np.random.default_rng(0))
    assert (again.low, again.high) == (blocked.low, blocked.high)  # deterministic per rng
    lo, hi = block_bootstrap(np.arange(10.0), np.mean, block=3, rng=np.random.default_rng(1))
    assert 0 <= lo < 4.5 < hi <= 9
    with pytest.raises(ValueError):
        block_bootstrap(np.array([]), np.mean, block=2)
    assert share(np.array([], dtype=bool)).value is None


def test_brier_score_and_its_decomposition() -> None:
    p = np.array([0.9, 0.9, 0.1, 0.1, 0.9])
    o = np.array([True, True, False, True, False])
    b = brier_score(p, o)
    assert b.score == pytest.approx(np.mean((p - o) ** 2))
    # forecasts constant within their bins: the decomposition is exact
    assert b.score == pytest.approx(b.reliability - b.resolution + b.uncertainty)
    assert abs(b.residual) < 1e-12
    assert b.uncertainty == pytest.approx(0.6 * 0.4)
    top = b.table[-1]
    assert top.count == 3 and top.observed == pytest.approx(2 / 3) and top.mean_forecast == pytest.approx(0.9)
    perfect = brier_score(np.array([1.0, 0.0]), np.array([True, False]))
    assert perfect.score == 0.0
    with pytest.raises(ValueError):
        brier_score(np.array([1.2]), np.array([True]))
    with pytest.raises(ValueError):
        brier_score(np.array([0.5, 0.5]), np.array([True]))


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_calibrated_probabilities_have_small_reliability(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.random(4000)
    o = rng.random(4000) < p
    b = brier_score(p, o, bins=10)
    assert b.reliability < 0.005
    wrong = brier_score(np.clip(p + 0.3, 0, 1), o, bins=10)
    assert wrong.reliability > 0.03


def test_too_few_overlapping_windows_get_a_wide_interval_not_a_zero_width_one() -> None:
    """5 windows in blocks of 5 are one block: resampling it can only return itself."""
    from harness.evaluation.scoring import block_bootstrap, share

    flags = np.array([True, True, True, True, False])
    s = share(flags, block=5, rng=np.random.default_rng(0))
    assert s.value == 0.8 and s.high - s.low > 0.5
    lo, hi = block_bootstrap(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.mean, block=5, rng=np.random.default_rng(0))
    assert (lo, hi) == (1.0, 5.0)
