"""The Monte Carlo core: analytic checks of the seed model, funnel limits, determinism, properties."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.synctwin.gate.montecarlo import (
    FunnelParams,
    SeedModelParams,
    chunk_rng,
    chunk_sizes,
    cumulate_days,
    run_monte_carlo,
    simulate_funnel_model,
    simulate_seed_model,
)
from agents.synctwin.gate.stats import risk_profile, row_quantiles, wilson_interval

SEED_P = SeedModelParams(days=30, demand=3200, daily_budget=900, aov=62.0, base_revenue=151_500, base_spend=18_200)
FUNNEL_P = FunnelParams(
    days=30,
    daily_budget=900,
    demand=3200,
    conversions_per_dollar=0.125,
    aov=62.0,
    base_revenue=151_500,
    base_spend=18_200,
)


def run(simulate, *, seed=1, paths=20_000, max_paths=None, threshold=0.85, chunk=50_000):
    return run_monte_carlo(
        simulate,
        seed=seed,
        paths=paths,
        max_paths=max_paths or paths,
        chunk_paths=chunk,
        threshold=threshold,
        projection_paths=50_000,
        keep_uplift=True,
    )


def seed_sim(p: SeedModelParams):
    return lambda n, rng, keep: simulate_seed_model(p, n, rng, keep_paths=keep)


def funnel_sim(p: FunnelParams):
    return lambda n, rng, keep: simulate_funnel_model(p, n, rng, keep_paths=keep)


def analytic_seed_confidence(p: SeedModelParams) -> float:
    """uplift = v*k - c with v ~ N(1, sd): P(uplift > 0) in closed form."""
    k = p.demand * p.aov * p.gross_margin - p.daily_budget * p.days
    c = p.base_revenue * p.gross_margin - p.base_spend
    z = (c / k - 1.0) / p.variance_sd
    tail = 0.5 * math.erfc(z / math.sqrt(2))  # P(v > c/k)
    return tail if k > 0 else 1.0 - tail


def test_seed_model_matches_its_closed_form() -> None:
    out = run(seed_sim(SEED_P), paths=200_000)
    expected = analytic_seed_confidence(SEED_P)
    se = math.sqrt(expected * (1 - expected) / out.paths)
    assert abs(out.confidence - expected) < 4 * se
    k = SEED_P.demand * SEED_P.aov - SEED_P.daily_budget * SEED_P.days
    mean = k - (SEED_P.base_revenue - SEED_P.base_spend)
    assert abs(out.uplift.mean() - mean) < 4 * 0.15 * abs(k) / math.sqrt(out.paths)
    assert np.std(out.uplift) == pytest.approx(0.15 * abs(k), rel=0.02)


@pytest.mark.parametrize("budget", [400.0, 900.0, 2500.0])
def test_seed_model_various_budgets(budget: float) -> None:
    p = replace(SEED_P, daily_budget=budget)
    out = run(seed_sim(p), paths=100_000)
    expected = analytic_seed_confidence(p)
    assert abs(out.confidence - expected) < 4 * math.sqrt(max(expected * (1 - expected), 1e-6) / out.paths) + 1e-4


def test_funnel_agrees_with_the_seed_when_the_budget_does_not_bind() -> None:
    """Budget buys far more than the audience gives: expected conversions = audience x cvr."""
    p = replace(FUNNEL_P, conversions_per_dollar=10.0)
    block = simulate_funnel_model(p, 50_000, chunk_rng(3, 0), keep_paths=True)
    total_conversions = block.conversions[-1]
    assert total_conversions.mean() == pytest.approx(p.demand, rel=0.01)


def test_funnel_is_capped_by_what_the_budget_buys() -> None:
    p = replace(FUNNEL_P, demand=1e9, param_cpd_sigma=0.0, daily_cpd_sigma=0.0, delivery_sigma=0.0)
    block = simulate_funnel_model(p, 1_000, chunk_rng(3, 0), keep_paths=True)
    expected = p.daily_budget * p.days * p.conversions_per_dollar
    np.testing.assert_allclose(block.conversions[-1], expected, rtol=1e-5)
    np.testing.assert_allclose(block.spend[-1], p.daily_budget * p.days, rtol=1e-5)


def test_gross_margin_enters_the_uplift() -> None:
    p = replace(
        FUNNEL_P,
        demand=1e9,
        param_cpd_sigma=0.0,
        daily_cpd_sigma=0.0,
        delivery_sigma=0.0,
        param_aov_sigma=0.0,
        daily_aov_sigma=0.0,
        gross_margin=0.4,
    )
    u = simulate_funnel_model(p, 10, chunk_rng(0, 0)).uplift
    revenue = p.daily_budget * p.days * p.conversions_per_dollar * p.aov
    expected = (revenue - p.base_revenue) * 0.4 - (p.daily_budget * p.days - p.base_spend)
    np.testing.assert_allclose(u, expected, rtol=1e-5)


def test_same_seed_same_result_bit_for_bit() -> None:
    a = run(funnel_sim(FUNNEL_P), seed=42, paths=30_000, chunk=7_000)
    b = run(funnel_sim(FUNNEL_P), seed=42, paths=30_000, chunk=7_000)
    assert np.array_equal(a.uplift, b.uplift)
    for m in a.bands:
        assert np.array_equal(a.bands[m], b.bands[m])
    c = run(funnel_sim(FUNNEL_P), seed=43, paths=30_000, chunk=7_000)
    assert not np.array_equal(a.uplift, c.uplift)


def test_chunks_are_independent_streams() -> None:
    """Chunk k draws the same numbers however many chunks come before or after it."""
    a = run(funnel_sim(FUNNEL_P), seed=5, paths=20_000, chunk=10_000)
    b = run(funnel_sim(FUNNEL_P), seed=5, paths=10_000, chunk=10_000)
    assert np.array_equal(a.uplift[:10_000], b.uplift)
    assert chunk_sizes(25, 10) == [10, 10, 5] and chunk_sizes(20, 10) == [10, 10]


def test_adaptive_sampling_draws_more_when_undecided() -> None:
    # a campaign whose confidence sits near the threshold
    out = run(
        seed_sim(replace(SEED_P, daily_budget=1010.0)),
        paths=2_000,
        max_paths=64_000,
        threshold=analytic_seed_confidence(replace(SEED_P, daily_budget=1010.0)),
    )
    assert out.rounds >= 1 and out.paths > out.initial_paths
    assert out.paths <= 64_000
    clear = run(seed_sim(SEED_P), paths=2_000, max_paths=64_000, threshold=0.05)
    assert clear.rounds == 0 and clear.paths == 2_000


def test_summary_matches_numpy() -> None:
    out = run(funnel_sim(FUNNEL_P), paths=12_345, chunk=5_000)
    np.testing.assert_allclose(out.quantiles, np.quantile(out.uplift, (0.1, 0.5, 0.9)), rtol=1e-12)
    assert out.positive == int(np.count_nonzero(out.uplift > 0)) and out.paths == 12_345
    assert out.median_positive == pytest.approx(float(np.median(out.uplift[out.uplift > 0])), rel=1e-12)
    assert out.mean == pytest.approx(float(out.uplift.mean()), rel=1e-12)


@pytest.mark.parametrize("model", ["seed", "funnel"])
def test_projection_bands_are_cumulative_and_ordered(model: str) -> None:
    out = run(seed_sim(SEED_P) if model == "seed" else funnel_sim(FUNNEL_P), paths=10_000)
    for band in out.bands.values():
        assert band.shape == (30, 3)
        assert np.all(np.diff(band, axis=0) >= 0)
        assert np.all(band[:, 0] <= band[:, 1]) and np.all(band[:, 1] <= band[:, 2])


def test_cumulate_days_matches_cumsum() -> None:
    x = np.random.default_rng(0).random((17, 33)).astype(np.float32)
    np.testing.assert_allclose(cumulate_days(x.copy()), np.cumsum(x, axis=0), rtol=1e-5)


# --- property tests -------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    cpd=st.floats(0.01, 1.0),
    factor=st.floats(1.0, 3.0),
    budget=st.floats(50, 5_000),
    demand=st.floats(100, 20_000),
    seed=st.integers(0, 2**32),
)
def test_confidence_is_monotone_in_budget_efficiency(
    cpd: float, factor: float, budget: float, demand: float, seed: int
) -> None:
    """More conversions per dollar, same random draws: never a lower confidence."""
    base = replace(FUNNEL_P, conversions_per_dollar=cpd, daily_budget=budget, demand=demand)
    better = replace(base, conversions_per_dollar=cpd * factor)
    lo = run(funnel_sim(base), seed=seed, paths=2_000)
    hi = run(funnel_sim(better), seed=seed, paths=2_000)
    assert 0.0 <= lo.confidence <= hi.confidence <= 1.0
    assert np.all(hi.uplift >= lo.uplift - 1e-6 * np.abs(lo.uplift).max())


@settings(max_examples=40, deadline=None)
@given(
    aov=st.floats(1, 500),
    budget=st.floats(1, 10_000),
    seed=st.integers(0, 2**32),
    model=st.sampled_from(["seed", "funnel"]),
)
def test_confidence_in_unit_interval_and_interval_holds_it(aov: float, budget: float, seed: int, model: str) -> None:
    sim = (
        seed_sim(replace(SEED_P, aov=aov, daily_budget=budget))
        if model == "seed"
        else funnel_sim(replace(FUNNEL_P, aov=aov, daily_budget=budget))
    )
    out = run(sim, seed=seed, paths=1_000, max_paths=4_000)
    lo, hi = out.interval
    assert 0.0 <= lo <= out.confidence <= hi <= 1.0
    again = run(sim, seed=seed, paths=1_000, max_paths=4_000)
    assert np.array_equal(out.uplift, again.uplift)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 100_000), data=st.data())
def test_wilson_interval_properties(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(0, n))
    lo, hi = wilson_interval(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    lo2, hi2 = wilson_interval(4 * k, 4 * n)
    assert hi2 - lo2 <= hi - lo + 1e-12


def test_wilson_known_value() -> None:
    lo, hi = wilson_interval(81, 100)  # a textbook value
    assert lo == pytest.approx(0.7222, abs=1e-4) and hi == pytest.approx(0.8749, abs=1e-4)


@settings(max_examples=50, deadline=None)
@given(rows=st.integers(1, 5), cols=st.integers(1, 300), seed=st.integers(0, 1000))
def test_row_quantiles_equal_numpy(rows: int, cols: int, seed: int) -> None:
    x = np.random.default_rng(seed).normal(size=(rows, cols)).astype(np.float32)
    qs = (0.1, 0.5, 0.9)
    np.testing.assert_allclose(
        row_quantiles(x, qs), np.quantile(x.astype(np.float64), qs, axis=1).T, rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize(
    ("conf", "uplift", "profile"),
    [
        (0.95, 12_000, "LOW"),
        (0.95, 8_000, "MEDIUM"),
        (0.88, 6_000, "MEDIUM"),
        (0.88, 1_000, "HIGH"),
        (0.75, 50_000, "HIGH"),
        (0.70, 50_000, "CRITICAL"),
        (0.62, -3_200, "CRITICAL"),
    ],
)
def test_risk_profile_follows_the_seed(conf: float, uplift: float, profile: str) -> None:
    assert risk_profile(conf, uplift) == profile


# --- exact order statistics without a full partition ---------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=400),
    order=st.sampled_from(["as drawn", "sorted", "reversed", "rounded (ties)"]),
    picks=st.lists(st.floats(0, 1), min_size=1, max_size=8),
)
def test_order_statistics_equal_a_full_partition(
    values: list[float], order: str, picks: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    import agents.synctwin.gate.stats as stats

    # small arrays take the bracketed path too (the same constants for every example: safe to share)
    monkeypatch.setattr(stats, "BRACKET_MIN_SIZE", 16)
    monkeypatch.setattr(stats, "BRACKET_SAMPLE", 8)
    x = np.array(values)
    if order == "sorted":
        x.sort()
    elif order == "reversed":
        x = np.sort(x)[::-1].copy()
    elif order == "rounded (ties)":
        x = np.round(x / 1e5)
    before = x.copy()
    ranks = sorted({min(len(x) - 1, int(p * len(x))) for p in picks})
    got = stats.order_statistics(x, ranks)
    part = np.partition(x, ranks)
    assert got == {r: float(part[r]) for r in ranks}
    assert np.array_equal(x, before)  # the input is not modified


def test_order_statistics_fall_back_when_the_sample_misleads(monkeypatch: pytest.MonkeyPatch) -> None:
    import agents.synctwin.gate.stats as stats

    monkeypatch.setattr(stats, "BRACKET_MIN_SIZE", 100)
    monkeypatch.setattr(stats, "BRACKET_SAMPLE", 10)
    x = np.random.default_rng(5).normal(100.0, 1.0, 1000)
    x[::100] = 0.0  # every sampled element is an outlier: each bracket misses its rank
    ranks = [100, 500, 900]
    part = np.partition(x, ranks)
    assert stats.order_statistics(x, ranks) == {r: float(part[r]) for r in ranks}
    calls: list[int] = []
    real = np.partition
    monkeypatch.setattr(stats.np, "partition", lambda a, k: calls.append(a.size) or real(a, k))
    stats.order_statistics(x, ranks)
    assert 1000 in calls  # the whole array was partitioned: the fallback ran


def test_order_statistics_on_a_million_paths_partition_only_a_bracket(monkeypatch: pytest.MonkeyPatch) -> None:
    import agents.synctwin.gate.stats as stats

    x = np.random.default_rng(9).normal(0.0, 1.0, 1_000_000)
    ranks = [99_999, 100_000, 499_999, 500_000, 899_999, 900_000]
    part = np.partition(x, ranks)
    sizes: list[int] = []
    real = np.partition
    monkeypatch.setattr(stats.np, "partition", lambda a, k: sizes.append(a.size) or real(a, k))
    assert stats.order_statistics(x, ranks) == {r: float(part[r]) for r in ranks}
    assert sizes and max(sizes) < 100_000  # brackets of tens of thousands, never the million

    with pytest.raises(ValueError, match="ranks"):
        stats.order_statistics(x, [1_000_000])
