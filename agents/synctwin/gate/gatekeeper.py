"""The pre-launch gate (the Digital Handshake): simulate a strategy, approve it only when enough
simulated paths make money. `evaluate` is the synchronous core (CLI, SimPy agent, HTTP service);
`simulate_strategy` keeps the seed's async call shape and dict result."""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypedDict, Unpack

import numpy as np

from agents.synctwin.gate.montecarlo import (
    CurveParams,
    FunnelParams,
    MonteCarloOutcome,
    PathBlock,
    SeedModelParams,
    run_monte_carlo,
    simulate_curve_model,
    simulate_funnel_model,
    simulate_seed_model,
)
from agents.synctwin.gate.response_curve import (
    extrapolation,
    fit_response_curve,
    future_trend,
    future_weekdays,
    rolling_calibration,
)
from agents.synctwin.gate.stats import risk_profile
from agents.synctwin.gate.suggestions import suggest
from agents.syncvalue.baseline import Baseline
from agents.syncvalue.service import SyncValue
from synctwin.infra.executors import Executor
from synctwin.kernel.config import Settings, get_settings
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.model_names import canonical_model
from synctwin.kernel.models import GateResult, Projection, ProjectionPoint, SimulationDetails, Strategy, ensure_finite
from synctwin.kernel.strategy_io import strategy_from_dict

ProgressCallback = Callable[[int, int], None]  # (paths drawn, paths to draw)


class GateOptions(TypedDict, total=False):
    """A gate run's overrides of the gatekeeper's settings; `progress(drawn, target)` is called after
    each chunk of paths (for a progress bar), `executor` draws the chunks (default: this process)."""

    seed: int | None
    paths: int | None
    model: str | None
    threshold: float | None
    max_paths: int | None
    progress: ProgressCallback | None
    executor: Executor | None


def new_seed() -> int:
    """A fresh seed, reported with the result so the run can be repeated exactly."""
    return secrets.randbits(63)


def _require(value: float, what: str, hint: str) -> float:
    if not (math.isfinite(value) and value > 0):
        raise InvalidInput(f"cannot estimate {what} from the history; {hint}")
    return value


def _campaign(strategy: Strategy, baseline: Baseline) -> dict[str, Any]:
    """The fields every model's params share (ModelParams) but the order value."""
    d = strategy.duration_days
    return {
        "days": d,
        "daily_budget": strategy.daily_budget,
        "demand": strategy.audience_size * strategy.cvr,
        "base_revenue": baseline.revenue_over(d),
        "base_spend": baseline.spend_over(d),
        "gross_margin": strategy.gross_margin,
    }


def _daily(strategy: Strategy, baseline: Baseline, settings: Settings, widen: float) -> dict[str, Any]:
    """`_campaign` and the spreads of demand and delivery (DailyParams)."""
    return _campaign(strategy, baseline) | {
        "demand_sigma": widen * settings.demand_sigma,
        "delivery_sigma": settings.delivery_sigma,
        "max_overdelivery": settings.max_overdelivery,
    }


def seed_model_params(strategy: Strategy, baseline: Baseline) -> SeedModelParams:
    aov = _require(strategy.aov or baseline.avg_order_value, "the order value", "give 'aov' in the strategy")
    return SeedModelParams(aov=aov, **_campaign(strategy, baseline))


def funnel_params(strategy: Strategy, baseline: Baseline, settings: Settings) -> FunnelParams:
    """Funnel rates from the history (strategy overrides win); a mean's uncertainty is its sampling
    error (daily sd / sqrt(days)) plus a structural part; a new audience or platform widens both."""
    n = max(baseline.days, 1)
    hint = "give 'cpm', 'ctr' and 'aov' in the strategy"
    cpm = _require(strategy.cpm or baseline.cpm, "the CPM", hint)
    ctr = _require(strategy.ctr or baseline.ctr, "the CTR", hint)
    cvr_click = _require(baseline.cvr_click, "conversions per click", "the history needs clicks and conversions")
    aov = _require(strategy.aov or baseline.avg_order_value, "the order value", hint)
    widen = settings.new_context_widening if (strategy.new_audience or strategy.new_platform) else 1.0
    s = settings.structural_sigma

    def param_sigma(daily_sd: float) -> float:
        return widen * math.sqrt(daily_sd**2 / n + s**2)

    return FunnelParams(
        **_daily(strategy, baseline, settings, widen),
        conversions_per_dollar=1000.0 / cpm * ctr * cvr_click,
        aov=aov,
        param_cpd_sigma=param_sigma(baseline.conversions_per_dollar_log_sd),
        param_aov_sigma=param_sigma(baseline.aov_log_sd),
        daily_cpd_sigma=widen * baseline.conversions_per_dollar_log_sd,
        daily_aov_sigma=baseline.aov_log_sd,
    )


CAL_HORIZON_DAYS = 14  # rolling calibration windows: long enough to total, short enough to be many


def _window_arrays(baseline: Baseline) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """The baseline window's daily dates, spend, conversions, revenue; without a window (a baseline
    built elsewhere) a flat history at its daily averages (so the curve is the prior's)."""
    b, w = baseline, baseline.window
    if w is not None and len(w) > 0:
        return w.dates, w.spend, w.conversions, w.revenue, True
    n = max(b.days, 7)
    dates = np.datetime64("today", "D") - np.arange(n - 1, -1, -1).astype("timedelta64[D]")
    spend, conv, rev = (np.full(n, v) for v in (b.daily_spend, b.daily_conversions, b.daily_revenue))
    return dates, spend, conv, rev, False


def curve_params(
    strategy: Strategy,
    baseline: Baseline,
    settings: Settings,
    *,
    extra_z: np.ndarray | None = None,
    extra_set: str | None = None,
) -> tuple[CurveParams, dict[str, Any]]:
    """The curve model's inputs and what the result reports about them (extrapolation, calibration,
    notes). Closed form throughout: the fit and the rolling calibration cost milliseconds."""
    d = strategy.duration_days
    dates, spend, conv, rev, real = _window_arrays(baseline)
    fit = fit_response_curve(dates, spend, conv, rev)
    notes = list(fit.notes)
    if not real:
        notes.append("no daily history rows came with the baseline: the curve is assumed from its averages")
    ext = extrapolation(fit, strategy.daily_budget)
    new_context = strategy.new_audience or strategy.new_platform
    widen = settings.new_context_widening if new_context else 1.0
    cal = None
    if settings.calibrate and real:
        structural = widen * settings.curve_structural_sigma
        horizon = min(d, CAL_HORIZON_DAYS)
        cal = rolling_calibration(
            dates, spend, conv, rev, horizon=horizon, structural_sigma=structural, extra_z=extra_z, extra_set=extra_set
        )
        if cal.note:
            notes.append(cal.note)
    spread = (1.0 if cal is None else cal.scale) * widen
    start = None
    offset = 0
    if strategy.launch_ts is not None:
        start = np.datetime64(int(strategy.launch_ts), "s").astype("datetime64[D]")
        offset = max(0, int((start - fit.last_date).astype(np.int64)) - 1)
    ext_d = ext.to_dict()
    if ext_d is not None:
        notes.append(str(ext_d["note"]))
    aov = _require(strategy.aov or fit.aov, "the order value", "give 'aov' in the strategy")
    params = CurveParams(
        **_daily(strategy, baseline, settings, widen),
        fit=fit,
        weekday=tuple(int(v) for v in future_weekdays(fit, d, start)),
        trend=tuple(float(v) for v in future_trend(fit, d, offset)),
        aov=aov,
        spread=spread,
        extra_sd=math.hypot(ext.widened_by, settings.new_context_sigma if new_context else 0.0),
        structural_sigma=settings.curve_structural_sigma,
        aov_log_se=fit.aov_log_se,
    )
    return params, {"extrapolation": ext_d, "calibration": None if cal is None else cal.to_dict(), "notes": notes}


def build_projection(outcome: MonteCarloOutcome, campaign_id: str, launch_ts: float | None, days: int) -> Projection:
    """Cumulative quantiles at launch (all zero) and at the end of every day."""
    b = {m: np.round(outcome.bands[m], 4).tolist() for m in ("spend", "revenue", "conversions")}
    points = [ProjectionPoint(t_hours=0.0, **{f"{m}_p{q}": 0 for m in b for q in (10, 50, 90)})]
    for day in range(days):
        cells = {f"{m}_p{q}": v for m, rows in b.items() for q, v in zip((10, 50, 90), rows[day], strict=True)}
        points.append(ProjectionPoint(t_hours=24.0 * (day + 1), **cells))
    return Projection(campaign_id=campaign_id, launch_ts=launch_ts, horizon_days=days, points=points)


class SimulationGatekeeper:
    """Pre-launch validation: blocks campaigns predicted to lose money."""

    def __init__(
        self,
        syncvalue_client: SyncValue | None = None,
        *,
        settings: Settings | None = None,
        model: str | None = None,
        threshold: float | None = None,
        paths: int | None = None,
        calibration_z: np.ndarray | None = None,
        calibration_set: str | None = None,
    ) -> None:
        """`calibration_z`: extra calibration residuals z = log(realized/projected revenue) / sd from
        realized outcomes (see agents/synctwin/gate/calibration_log.py), joining the history's own."""
        self.syncvalue_client = syncvalue_client
        self.calibration_z = calibration_z
        self.calibration_set = calibration_set
        self.settings = settings or get_settings()
        self.model = model or self.settings.model
        model_name(self.model)  # an unknown name is refused here, naming `model`
        self.threshold = self.settings.threshold if threshold is None else threshold
        self.paths = paths or self.settings.paths
        if not 0 < self.threshold < 1:
            raise InvalidInput(f"threshold {self.threshold} must be in (0, 1)", field="threshold")

    def evaluate(self, strategy: Strategy, baseline: Baseline, **options: Unpack[GateOptions]) -> GateResult:
        """Simulate and decide. Same strategy, baseline and seed: the same result, bit for bit,
        whichever `executor` draws the chunks of paths (default: this process)."""
        return self._evaluate(strategy, baseline, options, keep_uplift=False)[0]

    def evaluate_with_uplift(
        self, strategy: Strategy, baseline: Baseline, **options: Unpack[GateOptions]
    ) -> tuple[GateResult, np.ndarray]:
        """`evaluate`, plus every path's net profit uplift (for the report's histogram): the array the
        summary is computed from anyway, so the result is `evaluate`'s; it costs 8 bytes a path."""
        result, uplift = self._evaluate(strategy, baseline, options, keep_uplift=True)
        assert uplift is not None
        return result, uplift

    def _evaluate(
        self, strategy: Strategy, baseline: Baseline, options: GateOptions, *, keep_uplift: bool
    ) -> tuple[GateResult, np.ndarray | None]:
        started = time.perf_counter()
        unknown = options.keys() - GateOptions.__annotations__.keys()
        if unknown:  # a misspelt option must not be ignored silently (a typed **options is not checked)
            raise TypeError(f"unknown gate option(s): {', '.join(sorted(unknown))}")
        asked = options.get("model") or self.model  # the result reports the name asked for (`seed` stays `seed`)
        model = model_name(asked)
        threshold = options.get("threshold")
        threshold = self.threshold if threshold is None else threshold
        paths = options.get("paths") or self.paths
        if paths < 100:
            raise InvalidInput(f"paths {paths} is too few; use at least 100", field="paths")
        seed = options.get("seed")
        seed = new_seed() if seed is None else int(seed)
        if seed < 0:
            raise InvalidInput(f"seed {seed} must be >= 0", field="seed")
        max_paths = max(paths, options.get("max_paths") or self.settings.max_paths)
        extras: dict[str, Any] = {}
        if model == "one-factor":
            simulate = partial(_chunk, simulate_seed_model, seed_model_params(strategy, baseline))
        elif model == "funnel":
            simulate = partial(_chunk, simulate_funnel_model, funnel_params(strategy, baseline, self.settings))
        else:
            params, extras = curve_params(
                strategy, baseline, self.settings, extra_z=self.calibration_z, extra_set=self.calibration_set
            )
            simulate = partial(_chunk, simulate_curve_model, params)
        outcome = run_monte_carlo(
            simulate,
            seed=seed,
            paths=paths,
            max_paths=max_paths,
            chunk_paths=self.settings.chunk_paths,
            threshold=threshold,
            projection_paths=self.settings.projection_paths,
            keep_uplift=keep_uplift,
            progress=options.get("progress"),
            executor=options.get("executor"),
        )
        result = self._result(strategy, baseline, outcome, model=asked, seed=seed, threshold=threshold, started=started)
        if extras:
            result = result.model_copy(update=extras)
        return ensure_finite(result, strategy), outcome.uplift

    def _result(
        self,
        strategy: Strategy,
        baseline: Baseline,
        outcome: MonteCarloOutcome,
        *,
        model: str,
        seed: int,
        threshold: float,
        started: float,
    ) -> GateResult:
        p10, p50, p90 = outcome.quantiles
        raw_conf = outcome.confidence
        confidence = round(raw_conf, 4)
        (low, high), projected = outcome.interval, round(p50, 2)
        return GateResult(
            confidence_score=confidence,
            risk_profile=risk_profile(raw_conf, p50),
            projected_net_profit_uplift=projected,
            simulation_details=SimulationDetails(
                total_simulations=outcome.paths,
                positive_outcomes=outcome.positive,
                median_uplift=projected,
                p10_uplift=round(p10, 2),
                p90_uplift=round(p90, 2),
                initial_simulations=outcome.initial_paths,
                adaptive_rounds=outcome.rounds,
                median_positive_uplift=None if outcome.median_positive is None else round(outcome.median_positive, 2),
            ),
            decision="APPROVED" if raw_conf > threshold else "REJECTED",
            threshold=threshold,
            confidence_interval=(min(round(low, 4), confidence), max(round(high, 4), confidence)),
            expected_uplift=round(outcome.mean, 2),
            model=model,
            seed=seed,
            elapsed_ms=round((time.perf_counter() - started) * 1000.0, 3),
            campaign_id=strategy.campaign_id,
            client_id=strategy.client_id,
            baseline={k: round(v, 6) for k, v in baseline.to_dict().items() if math.isfinite(v)},
            projection=build_projection(outcome, strategy.campaign_id, strategy.launch_ts, strategy.duration_days),
        )

    async def simulate_strategy(
        self,
        strategy: Strategy | Mapping[str, Any],
        client_id: str | None = None,
        lookback_days: int = 90,
        *,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """The seed's interface: fetch the baseline from SyncValue, simulate, return a dict."""
        if self.syncvalue_client is None:
            raise RuntimeError("SimulationGatekeeper needs a SyncValue client to fetch baselines")
        if not isinstance(strategy, Strategy):
            data = dict(strategy)
            if client_id is not None:
                data.setdefault("client_id", client_id)
            strategy = strategy_from_dict(data)
        client = client_id or strategy.client_id
        baseline = self.syncvalue_client.baseline(client, lookback_days, gross_margin=strategy.gross_margin)
        result = self.evaluate(strategy, baseline, seed=seed)
        return self.with_suggestions(result, strategy, baseline).to_dict()

    def with_suggestions(
        self, result: GateResult, strategy: Strategy, baseline: Baseline, *, max_paths: int | None = None
    ) -> GateResult:
        """A rejection with resubmission advice (agents/synctwin/gate/suggestions.py); an approval as is.
        Advice only: the decision never changes."""
        if result.approved:
            return result
        return result.model_copy(update={"suggestions": suggest(strategy, baseline, self, result, max_paths=max_paths)})


def model_name(name: str) -> str:
    """The canonical model name (aliases resolved); InvalidInput naming `model` for an unknown one."""
    try:
        return canonical_model(name)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="model") from None


def _chunk(model: Callable[..., PathBlock], params: Any, n: int, rng: np.random.Generator, keep: bool) -> PathBlock:
    """A chunk of one model's paths: top level, so a partial of it over frozen params pickles."""
    return model(params, n, rng, keep_paths=keep)
