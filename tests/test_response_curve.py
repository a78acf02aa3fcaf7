"""The response curve (agents/synctwin/gate/response_curve.py) and the gate's curve model built on it."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.synctwin.gate.gatekeeper import SimulationGatekeeper, curve_params
from agents.synctwin.gate.montecarlo import simulate_curve_model
from agents.synctwin.gate.response_curve import (
    B_MIN,
    B_PRIOR_MEAN,
    B_PRIOR_SD,
    CAL_BOUNDS,
    MIN_FIT_DAYS,
    conformal_scale,
    draw_parameters,
    extrapolation,
    fit_response_curve,
    future_trend,
    future_weekdays,
    poisson_log_var,
    predict_log_total,
    rolling_calibration,
)
from agents.syncvalue.baseline import compute_baseline
from synctwin.app.cli import main
from synctwin.infra.executors import InProcessExecutor, ThreadExecutor
from synctwin.kernel.config import Settings
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.history import History, load_history
from synctwin.kernel.models import Strategy

DATA = Path(__file__).parent / "data"
HISTORY = DATA / "history_90d.csv"


def dates(n: int) -> np.ndarray:
    return np.datetime64("2026-01-05", "D") + np.arange(n).astype("timedelta64[D]")


def synthetic(
    b: float,
    n: int = 150,
    seed: int = 0,
    *,
    spend_sd: float = 0.35,
    noise: float = 0.05,
    walk: float = 0.0,
    k: float = 2.0,
    aov: float = 50.0,
) -> History:
    """Known truth: conversions ~ Poisson(k spend^b exp(level)), budget steps and daily variation."""
    rng = np.random.default_rng(seed)
    steps = np.repeat(np.exp(rng.normal(0, spend_sd, n // 10 + 1)), 10)[:n]
    spend = 400.0 * steps * np.exp(rng.normal(0, 0.1, n))
    level = np.cumsum(rng.normal(0, walk, n)) if walk else np.zeros(n)
    conv = rng.poisson(k * spend**b * np.exp(level + rng.normal(0, noise, n))).astype(float)
    rev = conv * aov * np.exp(rng.normal(0, 0.1, n))
    return History(dates(n), np.round(spend, 2), spend * 100, spend * 2, conv, np.round(rev, 2))


def fit_of(h: History):
    return fit_response_curve(h.dates, h.spend, h.conversions, h.revenue)


# --- the fit -----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(MIN_FIT_DAYS, 60),
    seed=st.integers(0, 2**32 - 1),
    scale=st.floats(1e-2, 1e6),
    conv_scale=st.floats(0, 1e5),
    zeros=st.floats(0, 0.5),
)
def test_any_finite_positive_history_gives_a_finite_fit(
    n: int, seed: int, scale: float, conv_scale: float, zeros: float
) -> None:
    rng = np.random.default_rng(seed)
    spend = scale * np.exp(rng.normal(0, rng.uniform(0, 2), n))
    conv = np.floor(conv_scale * rng.random(n) * (rng.random(n) > zeros))
    rev = conv * rng.uniform(1, 500)
    fit = fit_response_curve(dates(n), spend, conv, rev)
    assert np.all(np.isfinite(fit.mean)) and np.all(np.isfinite(fit.chol)) and fit.scale > 0
    assert math.isfinite(fit.b_mean) and math.isfinite(fit.b_sd) and math.isfinite(fit.sigma)
    draws = draw_parameters(fit, 500, np.random.default_rng(seed))
    assert np.all((draws.b >= B_MIN) & (draws.b <= 1.0))
    assert all(np.all(np.isfinite(a)) for a in (draws.a, draws.dow, draws.trend, draws.sigma))
    if conv.sum() > 0:
        med, sd = predict_log_total(fit, np.log(spend[:7]), future_weekdays(fit, 7), future_trend(fit, 7), 0.03)
        assert math.isfinite(med) and math.isfinite(sd) and sd > 0


@pytest.mark.parametrize("b", [0.3, 0.6, 0.9])
def test_the_fit_recovers_a_known_elasticity(b: float) -> None:
    for seed in range(3):
        fit = fit_of(synthetic(b, seed=seed))
        assert not fit.flat and not fit.weak
        assert abs(fit.b_mean - b) < 0.1 and abs(fit.b_mean - b) < 3 * fit.b_sd + 0.02, (seed, fit.b_mean)


def test_a_flat_history_keeps_the_prior_and_says_the_curve_is_assumed() -> None:
    n = 90
    spend = np.full(n, 500.0)
    conv = np.random.default_rng(1).poisson(40, n).astype(float)
    fit = fit_response_curve(dates(n), spend, conv, conv * 60)
    assert fit.flat and fit.b_mean == pytest.approx(B_PRIOR_MEAN)
    assert fit.b_sd == pytest.approx(B_PRIOR_SD, rel=0.35)  # in the units of the fitted noise
    assert any("assumed" in note and "not learned" in note for note in fit.notes)


def test_zero_spend_days_are_left_out_and_counted() -> None:
    h = synthetic(0.6, n=90)
    spend = h.spend.copy()
    spend[::9] = 0.0
    fit = fit_response_curve(h.dates, spend, h.conversions, h.revenue)
    assert fit.zero_spend_days == 10 and fit.days == 80
    assert any("10 day(s) without ad spend" in note for note in fit.notes)


def test_too_few_days_with_spend_name_the_field() -> None:
    spend = np.array([0, 0, 100, 0, 120, 0, 0, 90, 0, 0.0])
    with pytest.raises(InvalidInput, match="at least 7") as err:
        fit_response_curve(dates(10), spend, np.ones(10), np.ones(10) * 50)
    assert err.value.field == "spend"


# --- extrapolation -----------------------------------------------------------------------------


def test_extrapolation_is_none_inside_and_grows_with_distance_outside() -> None:
    fit = fit_of(synthetic(0.6))
    lo, hi = fit.spend_range
    assert extrapolation(fit, math.sqrt(lo * hi)).to_dict() is None
    above = [extrapolation(fit, hi * m) for m in (1.5, 3, 10, 100)]
    below = [extrapolation(fit, lo / m) for m in (1.5, 3, 10)]
    for side in (above, below):
        widened = [e.widened_by for e in side]
        assert widened == sorted(widened) and widened[0] > 0
    d = above[-1].to_dict()
    assert d is not None and d["history_spend_range"] == [round(lo, 2), round(hi, 2)]
    assert "100.00x above" in d["note"] and d["distance"] == pytest.approx(math.log(100), abs=1e-3)
    with pytest.raises(InvalidInput) as err:
        extrapolation(fit, 0.0)
    assert err.value.field == "daily_budget"


def test_the_projected_revenue_spread_widens_with_the_distance_outside_the_range() -> None:
    h = synthetic(0.6)
    baseline = compute_baseline(h)
    hi = float(h.spend.max())
    spreads = []
    for m in (1.0, 2.0, 5.0, 20.0):
        s = Strategy(audience_size=10**9, cvr=0.5, daily_budget=hi * m)  # demand never binds
        params, extras = curve_params(s, baseline, Settings())
        block = simulate_curve_model(params, 4000, np.random.default_rng(0), keep_paths=True)
        assert block.revenue is not None
        spreads.append(float(np.std(np.log(block.revenue[-1]))))
        assert (extras["extrapolation"] is None) == (m == 1.0)
    assert spreads == sorted(spreads) and spreads[-1] > 1.5 * spreads[0]


# --- calibration -------------------------------------------------------------------------------


def test_the_conformal_scale_widens_for_overdispersed_and_narrows_for_tight_residuals() -> None:
    rng = np.random.default_rng(3)
    wide = conformal_scale(rng.normal(0, 2.0, 200))
    tight = conformal_scale(rng.normal(0, 0.5, 200))
    fair = conformal_scale(rng.normal(0, 1.0, 200))
    assert wide > 1.5 and tight < 0.7 and 0.85 < fair < 1.15
    assert conformal_scale(np.full(50, 100.0)) == CAL_BOUNDS[1]  # bounded
    assert conformal_scale(np.zeros(50)) == CAL_BOUNDS[0]
    assert conformal_scale(np.array([])) == 1.0
    # few residuals move the scale less (shrunk toward 1)
    assert 1.0 < conformal_scale(np.full(5, 2.0 * 1.2816)) < conformal_scale(np.full(200, 2.0 * 1.2816))


def test_rolling_calibration_widens_on_a_wandering_level_and_stays_near_one_on_a_steady_one() -> None:
    def scale(h: History) -> float:
        cal = rolling_calibration(h.dates, h.spend, h.conversions, h.revenue, horizon=14, structural_sigma=0.03)
        assert cal.n >= 8 and cal.method.startswith("split-conformal") and len(cal.z) == cal.n
        return cal.scale

    steady = [scale(synthetic(0.6, n=180, seed=s)) for s in range(4)]
    # a random-walk level: the AR(1) residuals take part of it, the conformal scale the rest
    wandering = [scale(synthetic(0.6, n=180, seed=s, walk=0.15)) for s in range(4)]
    assert max(steady) < 1.15 and min(wandering) > 1.4


def test_persistent_residuals_are_learned_and_widen_the_total() -> None:
    steady, wandering = fit_of(synthetic(0.6, n=180)), fit_of(synthetic(0.6, n=180, walk=0.08))
    assert steady.rho < 0.1 < 0.4 < wandering.rho <= 0.9
    days = 30
    args = (np.full(days, math.log(400.0)), future_weekdays(steady, days), future_trend(steady, days), 0.0)
    import dataclasses

    iid = predict_log_total(dataclasses.replace(steady, shock_rho=0.0), *args)[1]
    ar = predict_log_total(dataclasses.replace(steady, shock_rho=0.6), *args)[1]
    assert ar > iid
    # the lag-1 covariance is all the day shock's (the counts' Poisson noise is independent day to day)
    assert wandering.shock_rho >= wandering.rho and wandering.shock_var < wandering.sigma**2


def test_poisson_log_var_is_the_variance_of_a_log_count() -> None:
    rng = np.random.default_rng(3)
    for mu in (0.3, 2.0, 8.0, 60.0, 500.0):
        sample = np.log(rng.poisson(mu, 400_000) + 0.5)
        assert poisson_log_var(np.array([mu]))[0] == pytest.approx(sample.var(), rel=0.02), mu


def test_the_counts_own_noise_is_apart_and_a_cut_keeps_an_unbiased_mean() -> None:
    """Low counts (about 7 a day), no day shock: the residual variance of log(c + 0.5) is nearly all
    Poisson noise, so it must not enter the mean's exp(sigma^2 / 2) at the history's level. A cut to
    0.3x (about 3.5 a day) is then projected without the old bias (about -9%: the history's count
    noise retransformed, less 0.5)."""
    b, k, aov = 0.6, 0.2, 50.0 * math.exp(0.005)
    errors = []
    for seed in range(8):
        h = synthetic(b, n=720, seed=seed, k=k, noise=0.0, spend_sd=0.5)
        fit = fit_of(h)
        assert fit.shock_var < 0.2 * fit.sigma**2  # the count noise, not a shock
        days, budget = 30, 0.3 * 400.0
        med, _ = predict_log_total(
            fit, np.full(days, math.log(budget)), future_weekdays(fit, days), future_trend(fit, days), 0.0
        )
        errors.append(med - math.log(days * k * budget**b * aov))
    assert abs(float(np.mean(errors))) < 0.03, errors


def test_too_few_calibration_windows_say_so_and_scale_one() -> None:
    h = synthetic(0.6, n=40)
    cal = rolling_calibration(h.dates, h.spend, h.conversions, h.revenue, horizon=14, structural_sigma=0.03)
    assert cal.method == "none" and cal.scale == 1.0 and cal.note and "at least 8" in cal.note
    extra = rolling_calibration(
        h.dates,
        h.spend,
        h.conversions,
        h.revenue,
        horizon=14,
        structural_sigma=0.03,
        extra_z=np.full(10, 3.0),
        extra_set="realized campaign outcomes",
    )
    assert extra.n == cal.n + 10 and extra.scale > 1.2 and "10 realized campaign outcomes" in extra.calibration_set


# --- the gate with the curve model --------------------------------------------------------------


def test_the_curve_model_knows_a_budget_cut_keeps_most_sales() -> None:
    """The issue's story: on diminishing returns, a cut to 55% of the spend keeps far more than 55% of sales."""
    h = synthetic(0.3, n=120, seed=4)  # ROAS ~1.5: each dollar returns more than it costs on average, but
    baseline = compute_baseline(h)  # the marginal dollar (0.3 x 1.5) returns less: cutting pays
    assert 1.0 < baseline.daily_revenue / baseline.daily_spend < 2.5
    cut = Strategy(audience_size=10**9, cvr=0.5, daily_budget=round(0.55 * baseline.daily_spend, 2))
    curve = SimulationGatekeeper(model="curve").evaluate(cut, baseline, seed=1)
    funnel = SimulationGatekeeper(model="funnel").evaluate(cut, baseline, seed=1)
    kept = curve.projection.points[-1].revenue_p50 / baseline.revenue_over(30)
    assert 0.75 < kept < 0.95  # 0.55^0.3 = 0.84
    assert funnel.projection.points[-1].revenue_p50 / baseline.revenue_over(30) < 0.62
    assert curve.approved and not funnel.approved


def test_the_result_reports_extrapolation_calibration_and_notes() -> None:
    baseline = compute_baseline(load_history(HISTORY))
    r = SimulationGatekeeper().evaluate(
        Strategy(audience_size=160_000, cvr=0.02, daily_budget=60_000), baseline, seed=1
    )
    d = json.loads(json.dumps(r.to_dict()))
    assert d["model"] == "curve"
    assert d["extrapolation"]["budget"] == 60_000 and d["extrapolation"]["widened_by"] > 0.5
    assert d["calibration"]["n"] >= 8 and d["calibration"]["calibration_set"]
    assert any("extrapolated" in n for n in d["notes"])
    inside = SimulationGatekeeper().evaluate(
        Strategy(audience_size=160_000, cvr=0.02, daily_budget=600), baseline, seed=1
    )
    assert inside.extrapolation is None
    for v in (d["confidence_score"], d["expected_uplift"], d["projected_net_profit_uplift"]):
        assert math.isfinite(v)


def test_a_baseline_without_daily_rows_assumes_the_curve() -> None:
    import dataclasses

    baseline = dataclasses.replace(compute_baseline(load_history(HISTORY)), window=None)
    r = SimulationGatekeeper().evaluate(Strategy(audience_size=160_000, cvr=0.02, daily_budget=700), baseline, seed=1)
    assert r.calibration is None and any("assumed" in n for n in r.notes)


def test_the_curve_model_is_bit_for_bit_on_every_executor() -> None:
    baseline = compute_baseline(load_history(HISTORY))
    s = Strategy(audience_size=160_000, cvr=0.02, daily_budget=900)
    gate = SimulationGatekeeper(settings=Settings(chunk_paths=5_000))
    plain, u1 = gate.evaluate_with_uplift(s, baseline, seed=11, paths=20_000, executor=InProcessExecutor())
    threads, u2 = gate.evaluate_with_uplift(s, baseline, seed=11, paths=20_000, executor=ThreadExecutor(3))
    assert np.array_equal(u1, u2)
    a, b = plain.to_dict(), threads.to_dict()
    a.pop("elapsed_ms"), b.pop("elapsed_ms")
    assert a == b


# --- model names and bad input on the command line ------------------------------------------------


@pytest.mark.parametrize(
    ("given_name", "reported"),
    [("curve", "curve"), ("funnel", "funnel"), ("one-factor", "one-factor"), ("seed", "seed")],
)
def test_every_model_name_and_alias_works(given_name: str, reported: str, capsys: pytest.CaptureFixture[str]) -> None:
    main(
        [
            "gate",
            str(DATA / "strategy.json"),
            "--history",
            str(HISTORY),
            "--model",
            given_name,
            "--seed",
            "1",
            "--json",
            "--no-suggestions",
            "--paths",
            "1000",
        ]
    )
    assert json.loads(capsys.readouterr().out)["model"] == reported
    assert SimulationGatekeeper(model=given_name).model == reported


def test_an_unknown_model_names_the_field() -> None:
    with pytest.raises(InvalidInput) as err:
        SimulationGatekeeper(model="magic")
    assert err.value.field == "model"


def _history_csv(tmp_path: Path, h: History) -> Path:
    p = tmp_path / "h.csv"
    p.write_text(h.to_csv())
    return p


def test_bad_input_never_gives_nan_or_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hist = _history_csv(tmp_path, synthetic(0.6, n=90))
    strategy = tmp_path / "s.json"
    # a budget of 0: exit 2 naming daily_budget
    strategy.write_text(json.dumps({"audience_size": 100_000, "cvr": 0.02, "daily_budget": 0}))
    assert main(["gate", str(strategy), "--history", str(hist)]) == 2
    assert "daily_budget" in capsys.readouterr().err
    # 100x the history's spend: an answer, with the extrapolation note
    strategy.write_text(json.dumps({"audience_size": 100_000_000, "cvr": 0.02, "daily_budget": 40_000 * 100}))
    code = main(["gate", str(strategy), "--history", str(hist), "--json", "--no-suggestions", "--seed", "1"])
    out = capsys.readouterr().out
    assert code in (0, 1) and "NaN" not in out
    d = json.loads(out)
    assert d["extrapolation"] and d["extrapolation"]["distance"] > 4
    # a history whose spend is zero on some days
    h = synthetic(0.6, n=90)
    spend = h.spend.copy()
    spend[::3] = 0.0
    zero_days = _history_csv(tmp_path, History(h.dates, spend, h.impressions, h.clicks, h.conversions, h.revenue))
    strategy.write_text(json.dumps({"audience_size": 100_000, "cvr": 0.02, "daily_budget": 500}))
    assert main(["gate", str(strategy), "--history", str(zero_days), "--json", "--no-suggestions"]) in (0, 1)
    d = json.loads(capsys.readouterr().out)
    assert any("without ad spend" in n for n in d["notes"])
    # too short a history, and one with no spend at all: exit 2 with the field named
    short = _history_csv(tmp_path, synthetic(0.6, n=10))
    assert main(["gate", str(strategy), "--history", str(short)]) == 2
    assert "at least 14" in capsys.readouterr().err
    none = _history_csv(tmp_path, History(h.dates, h.spend * 0, h.impressions, h.clicks, h.conversions, h.revenue))
    assert main(["gate", str(strategy), "--history", str(none)]) == 2
    assert "spend" in capsys.readouterr().err
    # a flat history: answered, and the curve is said to be assumed
    flat = History(h.dates, np.full(90, 400.0), h.impressions, h.clicks, h.conversions, h.revenue)
    assert main(["gate", str(strategy), "--history", str(_history_csv(tmp_path, flat)), "--no-suggestions"]) in (0, 1)
    assert "assumed" in capsys.readouterr().out


def test_the_worlds_are_deterministic_and_hold_their_truth() -> None:
    from harness.evaluation.worlds import HELD_OUT, WORLDS, make_account

    a, b = make_account(WORLDS[0], 3, 99), make_account(WORLDS[0], 3, 99)
    assert a.realized_uplift == b.realized_uplift and np.array_equal(a.history.spend, b.history.spend)
    for spec in (*WORLDS, HELD_OUT):
        acc = make_account(spec, 0, 1)
        assert spec.b[0] <= acc.b <= spec.b[1]
        assert 90 <= len(acc.history) <= 180 and float(np.std(np.log(acc.history.spend))) > 0.1
        assert dt.date.fromisoformat(str(acc.history.dates[-1])) > dt.date(2026, 1, 5)
        fit = fit_of(acc.history)
        assert not fit.flat


# --- calibration from realized outcomes ------------------------------------------------------------


def test_outcome_residuals_score_full_flights_with_a_projection_only() -> None:
    from agents.synctwin.gate.calibration_log import outcome_residual, outcome_residuals

    base = {"final": True, "days": 30, "days_total": 30, "revenue": 1000.0, "projected_revenue": [500, 1000, 2000]}
    assert outcome_residual(base) == pytest.approx(0.0)
    z = outcome_residual({**base, "revenue": 2000.0})
    assert z == pytest.approx(math.log(2) / ((math.log(2000) - math.log(500)) / (2 * 1.2815515655446004)))
    for bad in (
        {"days": 10},
        {"final": False},
        {"projected_revenue": None},
        {"projected_revenue": [1, 0, 2]},
        {"revenue": 0.0},
        {"revenue": float("nan")},
        {"projected_revenue": [1, 2]},
    ):
        assert outcome_residual({**base, **bad}) is None, bad
    records = [
        {"event_type": "CAMPAIGN_OUTCOME", "campaign_id": "a", "metadata": {**base, "revenue": 900.0}},
        {"event_type": "CAMPAIGN_OUTCOME", "campaign_id": "a", "metadata": base},  # the latest counts
        {"event_type": "SHADOW_OUTCOME", "campaign_id": "b", "metadata": base},
        {"event_type": "CAMPAIGN_APPROVED", "campaign_id": "c", "metadata": base},
    ]
    assert outcome_residuals(records).tolist() == [0.0, 0.0]


def test_a_campaign_outcome_carries_the_projected_revenue() -> None:
    from agents.synctwin.gate.outcomes import GateFacts, campaign_outcome

    baseline = compute_baseline(load_history(HISTORY))
    r = SimulationGatekeeper().evaluate(Strategy(audience_size=160_000, cvr=0.02, daily_budget=700), baseline, seed=1)
    facts = GateFacts.from_dict(GateFacts.of(r).to_dict())
    last = r.projection.points[-1]
    assert facts.projected_revenue == (last.revenue_p10, last.revenue_p50, last.revenue_p90)
    meta = campaign_outcome(
        platform="meta",
        launch_ts=0.0,
        days=30,
        days_total=30,
        spend=1.0,
        revenue=2.0,
        conversions=1.0,
        gross_margin=1.0,
        gate=facts,
        reason="FLIGHT_ENDED",
    )
    assert meta["projected_revenue"] == [round(v, 2) for v in facts.projected_revenue]


def test_gate_calibration_log_widens_on_outcomes_the_gate_missed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agents.syncshield.backends import JsonlAuditStore

    log = tmp_path / "audit.jsonl"
    store = JsonlAuditStore(log)
    for i in range(30):  # realized revenue 3x or 1/3 of the projection: far outside its bands
        revenue = 3000.0 if i % 2 else 333.0
        store.append(
            "CAMPAIGN_OUTCOME",
            campaign_id=f"c{i}",
            metadata={
                "final": True,
                "days": 30,
                "days_total": 30,
                "revenue": revenue,
                "projected_revenue": [800, 1000, 1250],
            },
        )
    argv = ["gate", str(DATA / "strategy.json"), "--history", str(HISTORY), "--seed", "1", "--json", "--no-suggestions"]
    main(argv)
    plain = json.loads(capsys.readouterr().out)["calibration"]
    main([*argv, "--calibration-log", str(log)])
    learned = json.loads(capsys.readouterr().out)["calibration"]
    assert learned["n"] == plain["n"] + 30 and "30 realized outcomes" in learned["calibration_set"]
    assert learned["scale"] > plain["scale"] * 1.5
    assert main([*argv, "--calibration-log", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such audit log file" in capsys.readouterr().err


def test_tune_shows_the_reliability_before_and_after_calibration(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.evaluation.tuning import Evidence, brier

    assert brier([Evidence("a", 1.0, True, "x"), Evidence("b", 0.5, False, "x")]) == pytest.approx(0.125)
    assert brier([]) is None
    assert main(["tune", "--json"]) == 0
    cal = json.loads(capsys.readouterr().out)["calibration"]
    for side in ("before", "after"):
        assert 0 <= cal[side]["brier"] < 0.25 and sum(b["n"] for b in cal[side]["reliability"]) == 10
    assert main(["tune"]) == 0
    assert "Brier score of the confidence: before" in capsys.readouterr().out
