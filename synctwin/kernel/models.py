"""Typed models for everything that crosses a boundary: files, Redis, Python callers.

Validation lives here (pydantic v2) so the numerical core can trust its inputs and stay
plain numpy. Inside hot loops we use arrays and dataclasses, never these models."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from synctwin.kernel.config import Limits, get_limits, limit_env
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.model_names import ModelChoice

Platform = Literal["meta", "tiktok", "google"]
Decision = Literal["APPROVED", "REJECTED"]
RiskProfile = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]


def _finite(value: float | None, name: str) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number")
    return value


def _not_bool(value: Any, info: Any) -> Any:
    """JSON's true is not a budget of 1: pydantic's lax mode would take it as one."""
    if isinstance(value, bool):
        raise ValueError("a number is expected, not a boolean")
    return value


def show_number(value: float | int) -> str:
    """A number short enough for an error message, however large."""
    if isinstance(value, int) and abs(value) >= 10**16:
        return f"a {len(str(abs(value)))}-digit integer" if value.bit_length() < 14_000 else "a huge integer"
    return f"{value:,.6g}" if isinstance(value, float) else f"{value:,}"


def _at_most(value: float | int | None, limit: str) -> Any:
    """Refuse a value above the Limits field `limit`, naming the value, the limit and its setting."""
    bound = getattr(get_limits(), limit)
    if value is not None and value > bound:
        raise ValueError(f"over the limit of {show_number(bound)} ({limit_env(limit)})")
    return value


def _depth(value: Any) -> int:
    """Nesting depth of lists and dicts (iterative: a deep value cannot blow the stack here)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


STRATEGY_LIMITS = {
    "daily_budget": "max_daily_budget",
    "aov": "max_aov",
    "cpm": "max_cpm",
    "audience_size": "max_audience_size",
}
_STRATEGY_NUMBERS = (*STRATEGY_LIMITS, "cvr", "duration_days", "ctr", "gross_margin", "launch_ts")  # no bools
LAUNCH_TS_MAX = 253_402_300_799.0  # 9999-12-31T23:59:59Z: the last time a datetime can hold


class Strategy(BaseModel):
    """A campaign strategy as SyncBrain hands it over (the seed's three fields suffice)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    audience_size: int = Field(gt=0, description="people the campaign can reach")
    cvr: float = Field(gt=0, le=1, description="share of the audience expected to convert over the campaign")
    daily_budget: float = Field(gt=0, description="ad spend per day, in the account's currency")
    campaign_id: str = Field("campaign", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:\-]+$")
    client_id: str = Field("client", min_length=1, max_length=200)
    platform: Platform = "meta"
    duration_days: int = Field(30, ge=1, le=365)
    cpm: float | None = Field(None, gt=0, description="cost per 1000 impressions; default from history")
    ctr: float | None = Field(None, gt=0, le=1, description="clicks per impression; default from history")
    aov: float | None = Field(None, gt=0, description="average order value; default from history")
    gross_margin: float = Field(1.0, gt=0, le=1, description="share of revenue that is profit before ad spend")
    new_audience: bool = Field(False, description="an audience never advertised to widens the uncertainty")
    new_platform: bool = Field(False, description="a platform the history does not cover widens it too")
    launch_ts: float | None = Field(None, ge=0, le=LAUNCH_TS_MAX, description="epoch seconds of launch; default: now")

    _no_bools = field_validator(*_STRATEGY_NUMBERS, mode="before")(_not_bool)

    @field_validator("cvr", "daily_budget", "cpm", "ctr", "aov", "gross_margin", "launch_ts", mode="after")
    @classmethod
    def _no_nan(cls, v: float | None, info: Any) -> float | None:
        return _finite(v, info.field_name)

    @field_validator("daily_budget", "aov", "cpm", "audience_size", mode="after")
    @classmethod
    def _bounded(cls, v: float | int | None, info: Any) -> float | int | None:
        """Upper bounds (Limits): a budget of 1e308 is a typo that would overflow the simulation."""
        if info.field_name == "cpm" and v is not None:
            low = get_limits().min_cpm
            if v < low:
                raise ValueError(f"under the limit of {low:g} (SYNCTWIN_MIN_CPM)")
        return _at_most(v, STRATEGY_LIMITS[info.field_name])

    @model_validator(mode="after")
    def _extra_depth(self) -> Strategy:
        """Extra fields travel into the audit log: bound their nesting (json would overflow the stack)."""
        limit = get_limits().max_json_depth
        for name, value in (self.model_extra or {}).items():
            if _depth(value) > limit:
                raise ValueError(f"{name}: nested deeper than {limit} levels (SYNCTWIN_MAX_JSON_DEPTH)")
        return self


HISTORY_LIMITS = {
    "spend": "max_history_spend",
    "revenue": "max_history_revenue",
    "impressions": "max_history_count",
    "clicks": "max_history_count",
    "conversions": "max_history_count",
    "returning_customers": "max_history_count",
}


class DailyRecord(BaseModel):
    """One row of a client's daily history."""

    model_config = ConfigDict(frozen=True)

    date: dt.date
    spend: float = Field(ge=0)
    impressions: float = Field(ge=0)
    clicks: float = Field(ge=0)
    conversions: float = Field(ge=0)
    revenue: float = Field(ge=0)
    returning_customers: float | None = Field(None, ge=0)

    _no_bools = field_validator(
        "spend", "impressions", "clicks", "conversions", "revenue", "returning_customers", mode="before"
    )(_not_bool)

    @field_validator("spend", "impressions", "clicks", "conversions", "revenue", "returning_customers")
    @classmethod
    def _finite(cls, v: float | None, info: Any) -> float | None:
        _finite(v, info.field_name)
        return _at_most(v, HISTORY_LIMITS[info.field_name])

    @model_validator(mode="after")
    def _funnel_order(self) -> DailyRecord:
        """conversions <= clicks <= impressions: a day with more buyers than clicks is a broken export."""
        if self.clicks > self.impressions:
            raise ValueError(f"clicks ({self.clicks:g}) exceed impressions ({self.impressions:g})")
        if self.conversions > self.clicks:
            raise ValueError(f"conversions ({self.conversions:g}) exceed clicks ({self.clicks:g})")
        return self


class ProjectionPoint(BaseModel):
    """Quantiles over paths of the cumulative totals since launch, at t_hours after launch."""

    t_hours: float
    spend_p10: float
    spend_p50: float
    spend_p90: float
    revenue_p10: float
    revenue_p50: float
    revenue_p90: float
    conversions_p10: float
    conversions_p50: float
    conversions_p90: float


class Projection(BaseModel):
    """What the live mirror compares a campaign with, at the same elapsed time."""

    campaign_id: str
    launch_ts: float | None = Field(None, description="epoch seconds; null until the campaign is launched")
    horizon_days: int
    points: list[ProjectionPoint]


class SimulationDetails(BaseModel):
    total_simulations: int
    positive_outcomes: int
    median_uplift: float
    p10_uplift: float
    p90_uplift: float
    initial_simulations: int
    adaptive_rounds: int
    median_positive_uplift: float | None = Field(
        None, description="the original design's figure (median of the positive paths only); it overstates the uplift"
    )


class Suggestion(BaseModel):
    changes: dict[str, float | int]
    confidence_score: float


class GateResult(BaseModel):
    """The gate's answer: the seed's keys plus ours (DESIGN.md, 'Gate result')."""

    confidence_score: float
    risk_profile: RiskProfile
    projected_net_profit_uplift: float
    simulation_details: SimulationDetails
    decision: Decision
    threshold: float
    confidence_interval: tuple[float, float]
    expected_uplift: float
    model: ModelChoice  # the name asked for: `seed` (the one-factor model's alias) stays `seed`
    seed: int
    elapsed_ms: float
    campaign_id: str
    client_id: str
    baseline: dict[str, float]
    projection: Projection
    suggestions: list[Suggestion] = Field(default_factory=list)
    extrapolation: dict[str, Any] | None = Field(
        None, description="set when the daily budget lies outside the spend the history covers (curve model)"
    )
    calibration: dict[str, Any] | None = Field(
        None, description="how the predictive spread was calibrated: method, calibration set, n, scale"
    )
    notes: list[str] = Field(default_factory=list, description="plain-language caveats of this projection")

    @property
    def approved(self) -> bool:
        return self.decision == "APPROVED"

    def to_dict(self) -> dict[str, Any]:
        """The plain dict the seed's callers expect (JSON-ready)."""
        return self.model_dump(mode="json")


def _floats(value: Any, path: str) -> list[tuple[str, float]]:
    """Every float in a dumped model, with its dotted path."""
    if isinstance(value, float):
        return [(path, value)]
    if isinstance(value, dict):
        return [f for k, v in value.items() for f in _floats(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list | tuple):
        return [f for i, v in enumerate(value) for f in _floats(v, f"{path}[{i}]")]
    return []


def ensure_finite(result: GateResult, strategy: Strategy | None = None) -> GateResult:
    """Refuse a gate result holding a non-finite figure: inputs so large the Monte Carlo overflowed
    give no decision, and it must never be audited, published or answered. InvalidInput names the
    strategy's money and count fields, the largest against its limit first."""
    bad = [path for path, v in _floats(result.model_dump(exclude={"baseline"}), "") if not math.isfinite(v)]
    if not bad:
        return result

    shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
    field = None
    culprits = ""
    if strategy is not None:  # largest against its default limit first: how far past a sane value it is
        defaults = {name: Limits.model_fields[limit].default for name, limit in STRATEGY_LIMITS.items()}
        given = [(name, getattr(strategy, name)) for name in STRATEGY_LIMITS if getattr(strategy, name) is not None]
        given.sort(key=lambda nv: -float(nv[1]) / float(defaults[nv[0]]))
        culprits = "; " + ", ".join(f"{n}={show_number(v)}" for n, v in given)
        field = given[0][0] if given else None
    raise InvalidInput(
        f"the simulation overflowed ({shown} not finite): the strategy's figures are too large for the model{culprits}",
        field=field,
    )
