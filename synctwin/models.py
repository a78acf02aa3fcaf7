"""Typed models for everything that crosses a boundary: files, Redis, Python callers.

Validation lives here (pydantic v2) so the numerical core can trust its inputs and stay
plain numpy. Inside hot loops we use arrays and dataclasses, never these models.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Platform = Literal["meta", "tiktok", "google"]
Decision = Literal["APPROVED", "REJECTED"]
RiskProfile = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]
ModelName = Literal["curve", "funnel", "one-factor"]
# The gate's models, in one place: the command lines' choices and the settings' pattern come from
# here. `seed` is the one-factor model's former name, kept as an alias on every entry point.
MODELS: tuple[str, ...] = ("curve", "funnel", "one-factor")
MODEL_ALIASES: dict[str, str] = {"seed": "one-factor"}
MODEL_CHOICES: tuple[str, ...] = MODELS + tuple(MODEL_ALIASES)
ModelChoice = Literal["curve", "funnel", "one-factor", "seed"]
DEFAULT_MODEL = "curve"
MODEL_HELP = ("curve (default): a response curve fitted to the history (diminishing returns, weekday "
              "seasonality, trend); funnel: the history's constant conversions per dollar; one-factor "
              "(alias seed): the original one-factor formula")


def canonical_model(name: str) -> str:
    """The canonical name of a model or its alias; ValueError for an unknown one."""
    name = MODEL_ALIASES.get(name, name)
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODEL_CHOICES)}")
    return name


def _finite(value: float | None, name: str) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number")
    return value


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
    launch_ts: float | None = Field(None, ge=0, description="epoch seconds of launch; default: now")

    @field_validator("cvr", "daily_budget", "cpm", "ctr", "aov", "gross_margin", mode="after")
    @classmethod
    def _no_nan(cls, v: float | None, info: Any) -> float | None:
        return _finite(v, info.field_name)


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

    @field_validator("spend", "impressions", "clicks", "conversions", "revenue", "returning_customers")
    @classmethod
    def _finite(cls, v: float | None, info: Any) -> float | None:
        return _finite(v, info.field_name)

    @model_validator(mode="after")
    def _funnel_order(self) -> DailyRecord:
        if self.clicks > self.impressions:
            raise ValueError(f"clicks ({self.clicks:g}) exceed impressions ({self.impressions:g})")
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
        None, description="the seed's figure (median of the positive paths only); it overstates the uplift"
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
    model: ModelName
    seed: int
    elapsed_ms: float
    campaign_id: str
    client_id: str
    baseline: dict[str, float]
    projection: Projection
    suggestions: list[Suggestion] = Field(default_factory=list)
    extrapolation: dict[str, Any] | None = Field(
        None, description="set when the daily budget lies outside the spend the history covers (curve model)")
    calibration: dict[str, Any] | None = Field(
        None, description="how the predictive spread was calibrated: method, calibration set, n, scale")
    notes: list[str] = Field(default_factory=list, description="plain-language caveats of this projection")

    @field_validator("model", mode="before")
    @classmethod
    def _canonical(cls, v: Any) -> Any:
        return MODEL_ALIASES.get(v, v) if isinstance(v, str) else v

    @property
    def approved(self) -> bool:
        return self.decision == "APPROVED"

    def to_dict(self) -> dict[str, Any]:
        """The plain dict the seed's callers expect (JSON-ready)."""
        return self.model_dump(mode="json")
