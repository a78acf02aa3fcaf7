"""The gate's rolling-origin backtest on one account's own history (docs/backtesting.md).

At each origin T (every `step` days) the gate sees only the history before T and is asked about
the plan really run over [T, T + horizon) (its mean daily spend as the budget); its projection
is scored against what happened: revenue against p10-p50-p90, the realized uplift (DESIGN.md's,
against the gate's own lookback baseline) against every path's (PIT, CRPS), and the confidence
against "the uplift was > 0" (Brier). A window's demand is set not to bind (`demand_strategy`):
the backtest scores the response to the budget, not a guess of the audience.

Windows overlap when step < horizon; the summary's intervals then come from a moving-block
bootstrap. Same history, settings and seed: the same report, bit for bit."""

from __future__ import annotations

import datetime as dt
import inspect
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

import numpy as np

from agents.syncvalue.baseline import Baseline, compute_baseline
from harness.evaluation.backtest import gate_seed
from harness.evaluation.scoring import (
    PitHistogram,
    Share,
    block_bootstrap,
    brier_score,
    crps_sample,
    pit_histogram,
    pit_value,
    share,
)
from synctwin.infra.executors import Executor
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.history import History
from synctwin.kernel.model_names import MODEL_ALIASES
from synctwin.kernel.models import GateResult, Strategy

DEFAULT_HORIZON = 30
DEFAULT_LOOKBACK = 90
DEFAULT_STEP = 7
DEFAULT_MIN_HISTORY = 28
DEMAND_HEADROOM = 10.0
DEMAND_IS_THE_FORECAST = {"one-factor": 1.0}  # models whose conversions ARE audience x cvr (canonical names)
DEMAND_CVR = 0.05  # the cvr of a window's strategy; audience_size carries the demand


class Forecaster(Protocol):
    """What the backtest needs of a gate: `SimulationGatekeeper` has it, whatever its model."""

    model: str
    paths: int

    def evaluate_with_uplift(
        self,
        strategy: Strategy,
        baseline: Baseline,
        *,
        seed: int | None = None,
        paths: int | None = None,
        model: str | None = None,
        **kwargs: Any,
    ) -> tuple[GateResult, np.ndarray]: ...


@dataclass(frozen=True, slots=True)
class RollingConfig:
    """The backtest's settings; `validate` names the option at fault."""

    horizon: int = DEFAULT_HORIZON
    lookback: int = DEFAULT_LOOKBACK
    step: int = DEFAULT_STEP
    min_history: int = DEFAULT_MIN_HISTORY
    gross_margin: float = 1.0
    paths: int = 10_000
    seed: int = 0
    model: str | None = None
    demand_headroom: float | None = None  # None: DEMAND_HEADROOM, or the model's DEMAND_IS_THE_FORECAST

    def validate(self) -> RollingConfig:
        checks = (
            ("--horizon", self.horizon, 1, 365, "days projected from each origin"),
            ("--lookback", self.lookback, 7, 3650, "days of history behind each origin"),
            ("--step", self.step, 1, 365, "days between origins"),
            ("--min-history", self.min_history, 14, 3650, "days of history an origin needs"),
            ("--paths", self.paths, 100, 10_000_000, "Monte Carlo paths per window"),
        )
        for name, value, lo, hi, what in checks:
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise InvalidInput(f"must be a whole number of {what} in [{lo}, {hi}] (got {value!r})", field=name)
        if self.min_history > self.lookback:
            raise InvalidInput(
                f"the lookback ({self.lookback} days) is shorter than the {self.min_history} days "
                "of history an origin needs; lengthen --lookback or shorten --min-history",
                field="--lookback",
            )
        if not (math.isfinite(self.gross_margin) and 0 < self.gross_margin <= 1):
            raise InvalidInput(f"must be in (0, 1] (got {self.gross_margin!r})", field="--gross-margin")
        if self.seed < 0:
            raise InvalidInput(f"must be >= 0 (got {self.seed})", field="--seed")
        if self.demand_headroom is not None and not (math.isfinite(self.demand_headroom) and self.demand_headroom > 0):
            raise InvalidInput(f"must be a positive number (got {self.demand_headroom!r})", field="--demand-headroom")
        return self

    @property
    def overlapping(self) -> bool:
        return self.step < self.horizon

    @property
    def block(self) -> int:
        """Windows per bootstrap block: those that share days with their first."""
        return math.ceil(self.horizon / self.step) if self.overlapping else 1

    def headroom(self, model: str) -> float:
        if self.demand_headroom is not None:
            return self.demand_headroom
        return DEMAND_IS_THE_FORECAST.get(MODEL_ALIASES.get(model, model), DEMAND_HEADROOM)


@dataclass(frozen=True, slots=True)
class RollingWindow:
    """One origin: the plan, what the gate projected from the past, and what happened."""

    origin: str  # first day of the window (ISO date)
    end: str  # last day of the window
    history_days: int  # days in the lookback the baseline was computed from
    budget: float  # realized mean daily spend over the window: the plan the gate was asked about
    baseline_daily_spend: float
    baseline_daily_revenue: float
    realized_spend: float
    realized_revenue: float
    revenue_p10: float
    revenue_p50: float
    revenue_p90: float
    realized_uplift: float
    uplift_p10: float
    uplift_p50: float
    uplift_p90: float
    expected_uplift: float
    pit: float  # share of the paths' uplift below the realized uplift (ties split at random)
    crps: float  # of the uplift paths at the realized uplift, in money
    confidence: float
    decision: str
    seed: int

    @property
    def revenue_inside(self) -> bool:
        return self.revenue_p10 <= self.realized_revenue <= self.revenue_p90

    @property
    def revenue_below_p50(self) -> bool:
        return self.realized_revenue < self.revenue_p50

    @property
    def uplift_inside(self) -> bool:
        return self.uplift_p10 <= self.realized_uplift <= self.uplift_p90

    @property
    def uplift_below_p50(self) -> bool:
        return self.realized_uplift < self.uplift_p50

    @property
    def profitable(self) -> bool:
        return self.realized_uplift > 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            revenue_inside_p10_p90=self.revenue_inside,
            revenue_below_p50=self.revenue_below_p50,
            uplift_inside_p10_p90=self.uplift_inside,
            uplift_below_p50=self.uplift_below_p50,
            profitable=self.profitable,
        )
        return d


@dataclass(frozen=True, slots=True)
class SkippedOrigin:
    """An origin that gave no window, and why (a gap in the data, no spend, a baseline the gate refuses)."""

    origin: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"origin": self.origin, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class RollingReport:
    """Every window and the calibration summary over them."""

    config: RollingConfig
    model: str
    windows: tuple[RollingWindow, ...]
    skipped: tuple[SkippedOrigin, ...]
    source: str
    history_start: str
    history_end: str
    summary: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "summary", summarize(self.windows, self.config))

    def to_dict(self) -> dict[str, Any]:
        c = self.config
        return {
            "source": self.source,
            "model": self.model,
            "history": {"start": self.history_start, "end": self.history_end},
            "settings": {k: v for k, v in asdict(c).items() if k != "model"}
            | {"demand_headroom": c.headroom(self.model)},
            "summary": self.summary,
            "windows": [w.to_dict() for w in self.windows],
            "skipped": [s.to_dict() for s in self.skipped],
        }


# --- the windows ------------------------------------------------------------------------------


def _rows(h: History, keep: np.ndarray) -> History:
    """The rows of `h` where `keep` is True (every column, the optional ones included)."""
    return History(*(None if (a := getattr(h, f.name)) is None else a[keep] for f in fields(History)))


def window_seed(seed: int, origin: np.datetime64) -> int:
    """Keyed by the origin's date: a longer history leaves the earlier windows' draws unchanged."""
    return gate_seed(seed, int(origin.astype("datetime64[D]").astype(np.int64)) & 0xFFFFFFFF)


def origins(history: History, config: RollingConfig) -> list[np.datetime64]:
    """Origins every `step` days from the first with `min_history` calendar days behind it to
    the last with `horizon` days ahead."""
    if len(history) == 0:
        return []
    first = history.dates[0] + np.timedelta64(config.min_history, "D")
    last = history.dates[-1] - np.timedelta64(config.horizon - 1, "D")
    if first > last:
        return []
    span = int((last - first).astype(np.int64))
    return [first + np.timedelta64(k, "D") for k in range(0, span + 1, config.step)]


def _accepts_history(forecaster: Forecaster) -> bool:
    """A model that fits the history itself (not only its baseline) is handed the past too."""
    try:
        params = inspect.signature(forecaster.evaluate_with_uplift).parameters
    except (TypeError, ValueError):
        return False
    return "history" in params


def demand_strategy(
    config: RollingConfig, model: str, origin: np.datetime64, budget: float, baseline: Baseline
) -> Strategy:
    """The plan that was run over the window, with demand that does not bind (module docstring)."""
    per_dollar = baseline.daily_conversions / baseline.daily_spend if baseline.daily_spend > 0 else 0.0
    demand = max(1.0, config.headroom(model) * per_dollar * budget * config.horizon)
    day = str(origin.astype("datetime64[D]"))
    launch = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp()
    return Strategy(
        audience_size=max(1, math.ceil(demand / DEMAND_CVR)),
        cvr=DEMAND_CVR,
        daily_budget=budget,
        duration_days=config.horizon,
        gross_margin=config.gross_margin,
        launch_ts=launch,
        campaign_id=f"rolling-{day}",
        client_id="rolling-backtest",
    )


def run_rolling_backtest(
    history: History,
    forecaster: Forecaster,
    config: RollingConfig | None = None,
    *,
    source: str = "history",
    progress: Callable[[int, int], None] | None = None,
    executor: Executor | None = None,
) -> RollingReport:
    """Slide the origin over the history, gate each window on its past, score the gate's claims.

    Raises InvalidInput (naming `source`) when the history is too short for a single window.
    `progress(done, total)` is called after each origin; `executor` (a process pool, Ray) draws
    each window's paths, with the same result as in this process."""
    config = (config or RollingConfig()).validate()
    model = config.model or forecaster.model
    starts = origins(history, config)
    if not starts:
        have = len(history)
        span = "" if not have else f" ({history.dates[0]} to {history.dates[-1]})"
        raise InvalidInput(
            f"the history has {have} day(s){span}; a rolling backtest with a {config.horizon}-day "
            f"horizon needs at least {config.min_history + config.horizon} days ({config.min_history} of "
            f"history before the first origin and {config.horizon} after it); shorten --horizon or give a "
            "longer history",
            source=source,
        )
    options: dict[str, Any] = {} if executor is None else {"executor": executor}
    pass_history = _accepts_history(forecaster)
    pit_rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0x5049]))

    def window(t: np.datetime64, past: History, ahead: History) -> RollingWindow:
        baseline = compute_baseline(
            past,
            lookback_days=config.lookback,
            min_days=config.min_history,
            gross_margin=config.gross_margin,
            source=source,
        )
        realized_spend, realized_revenue = float(ahead.spend.sum()), float(ahead.revenue.sum())
        budget = realized_spend / config.horizon
        s = window_seed(config.seed, t)
        result, uplift = forecaster.evaluate_with_uplift(
            demand_strategy(config, model, t, budget, baseline),
            baseline,
            seed=s,
            paths=config.paths,
            model=model,
            **({**options, "history": past} if pass_history else options),
        )
        base_rev, base_spend = baseline.revenue_over(config.horizon), baseline.spend_over(config.horizon)
        realized_uplift = (realized_revenue - base_rev) * config.gross_margin - (realized_spend - base_spend)
        end, sd = result.projection.points[-1], result.simulation_details
        return RollingWindow(
            origin=str(t),
            end=str(t + np.timedelta64(config.horizon - 1, "D")),
            history_days=baseline.days,
            budget=budget,
            baseline_daily_spend=baseline.daily_spend,
            baseline_daily_revenue=baseline.daily_revenue,
            realized_spend=realized_spend,
            realized_revenue=realized_revenue,
            revenue_p10=end.revenue_p10,
            revenue_p50=end.revenue_p50,
            revenue_p90=end.revenue_p90,
            realized_uplift=realized_uplift,
            uplift_p10=sd.p10_uplift,
            uplift_p50=sd.median_uplift,
            uplift_p90=sd.p90_uplift,
            expected_uplift=result.expected_uplift,
            pit=pit_value(uplift, realized_uplift, pit_rng),
            crps=crps_sample(uplift, realized_uplift),
            confidence=result.confidence_score,
            decision=result.decision,
            seed=s,
        )

    windows: list[RollingWindow] = []
    skipped: list[SkippedOrigin] = []
    for i, t in enumerate(starts):
        past = _rows(history, history.dates < t)
        ahead = _rows(history, (history.dates >= t) & (history.dates < t + np.timedelta64(config.horizon, "D")))
        if len(ahead) < config.horizon:
            missing = config.horizon - len(ahead)
            why = f"{missing} of the {config.horizon} days ahead are missing from the history"
            skipped.append(SkippedOrigin(str(t), why))
        elif float(ahead.spend.sum()) <= 0:
            skipped.append(SkippedOrigin(str(t), "no ad spend in the window: there is no plan to project"))
        else:
            try:
                windows.append(window(t, past, ahead))
            except InvalidInput as exc:  # a lookback the gate cannot use (too few days, no conversions, ...)
                skipped.append(SkippedOrigin(str(t), exc.reason))
        if progress is not None:
            progress(i + 1, len(starts))
    if not windows:
        reasons = "; ".join(sorted({s.reason for s in skipped}))
        raise InvalidInput(f"no origin of the history gave a window the gate could evaluate ({reasons})", source=source)
    return RollingReport(
        config=config,
        model=model,
        windows=tuple(windows),
        skipped=tuple(skipped),
        source=source,
        history_start=str(history.dates[0]),
        history_end=str(history.dates[-1]),
    )


# --- the summary ------------------------------------------------------------------------------


def _median_share(flags: np.ndarray, block: int, rng: np.random.Generator) -> dict[str, Any]:
    s = share(flags, block=block, rng=rng)
    d = s.to_dict()
    d["distance_from_half"] = None if s.value is None else abs(s.value - 0.5)
    return d


def summarize(windows: tuple[RollingWindow, ...] | list[RollingWindow], config: RollingConfig) -> dict[str, Any]:
    """Coverage, median share, CRPS, PIT and Brier over the windows, each with a 95% interval."""
    n = len(windows)
    block = config.block
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0x5355]))
    if n == 0:
        return {"windows": 0}
    revenue_inside = np.array([w.revenue_inside for w in windows])
    uplift_inside = np.array([w.uplift_inside for w in windows])
    crps = np.array([w.crps for w in windows])
    scale = float(np.mean([w.realized_revenue for w in windows]))
    conf = np.array([w.confidence for w in windows])
    won = np.array([w.profitable for w in windows])
    pits = np.array([w.pit for w in windows])
    hist: PitHistogram = pit_histogram(pits)
    brier = brier_score(conf, won)

    def interval(values: np.ndarray, stat: Callable[[np.ndarray], float]) -> list[float]:
        if n < 2:
            return [float(stat(values)), float(stat(values))]
        return list(block_bootstrap(values, stat, block=block, rng=rng))

    def brier_of(rows: np.ndarray) -> float:
        return float(((rows[:, 0] - rows[:, 1]) ** 2).mean())

    coverage: Share = share(revenue_inside, block=block, rng=rng)
    return {
        "windows": n,
        "overlapping": config.overlapping,
        "bootstrap_block": block,
        "note": (
            f"windows overlap (step {config.step} < horizon {config.horizon} days): neighbours share days, "
            f"so intervals come from a moving-block bootstrap of {block} windows"
        )
        if config.overlapping
        else "windows do not overlap; coverage intervals are Wilson's",
        "revenue_coverage_p10_p90": coverage.to_dict(),
        "revenue_below_p50": _median_share(np.array([w.revenue_below_p50 for w in windows]), block, rng),
        "uplift_coverage_p10_p90": share(uplift_inside, block=block, rng=rng).to_dict(),
        "uplift_below_p50": _median_share(np.array([w.uplift_below_p50 for w in windows]), block, rng),
        "crps": {
            "mean": float(crps.mean()),
            "interval": interval(crps, np.mean),
            "relative_to_revenue": float(crps.mean() / scale) if scale > 0 else None,
            "mean_realized_revenue": scale,
        },
        "pit": hist.to_dict(),
        "brier": {
            **brier.to_dict(),
            "interval": interval(np.column_stack([conf, won.astype(float)]), brier_of),
            "mean_confidence": float(conf.mean()),
            "profitable_share": float(won.mean()),
        },
    }
