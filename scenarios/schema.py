"""The scenario file format (YAML), validated with pydantic.

A scenario is the world's parameters, clients (with given or generated histories), campaigns
(strategies launched at virtual times), a timeline of injected faults, expectations to check
against the trace and, optionally, a grid of market parameters for `synctwin sweep`. Durations
are written as people write them: 90s, 30m, 2h, 3d. docs/scenarios-and-harness.md shows every
field; scenarios/examples/market_shock_grid.yaml is a complete file."""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from synctwin.kernel.config import get_limits, limit_env
from synctwin.kernel.durations import format_duration, parse_duration
from synctwin.kernel.models import Platform, show_number

PauseReason = Literal["MARGIN_GUARDIAN", "BUDGET_EMERGENCY", "AUTO_ROLLBACK", "SYNCTWIN_DEVIATION_THRESHOLD"]
FaultKind = Literal["cpm_shock", "cvr_drop", "api_outage", "runaway_spend"]
GuardName = Literal["margin_guardian", "budget_emergency", "auto_rollback", "api_circuit_breaker"]


Duration = Annotated[float, Field(ge=0)]
# written as people write them (90s, 30m, 2h); an optional one leaves None to the field's type
Seconds = Annotated[Duration, BeforeValidator(parse_duration)]
_OR_NONE = BeforeValidator(lambda v: None if v is None else parse_duration(v))


class _Strict(BaseModel):
    # allow_inf_nan: a market CPM or a fault multiplier of .inf is no scenario
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _at_most(value: float | int | None, limit: str) -> Any:
    """Refuse a value above the Limits field `limit`, naming the limit and its setting."""
    bound = getattr(get_limits(), limit)
    if value is not None and value > bound:
        raise ValueError(f"over the limit of {show_number(bound)} ({limit_env(limit)})")
    return value


def _limit(limit: str) -> AfterValidator:
    """The field refuses values above the Limits field `limit` (`_at_most`)."""
    return AfterValidator(lambda v: _at_most(v, limit))


def _factors(factors: dict[str, float]) -> dict[str, float]:
    """Rate factors and true-rate multipliers: positive, at most the fault multiplier's limit."""
    for name, v in factors.items():
        if v <= 0:
            raise ValueError(f"{name}: must be greater than 0 (got {v!r})")
        _at_most(v, "max_fault_multiplier")
    return factors


class PlatformMarket(_Strict):
    """The true market of one platform (the twin's world, not what the gate believes)."""

    cpm: float = Field(gt=0, description="mean cost per 1000 impressions")
    ctr: float = Field(gt=0, le=1, description="clicks per impression")
    cvr: float = Field(gt=0, le=1, description="conversions per click")
    aov: float = Field(gt=0, description="mean order value")
    aov_cv: float = Field(0.35, ge=0, description="coefficient of variation of one order's value")
    cpm_drift_sd: float = Field(0.02, ge=0, description="log-sd of the CPM's drift per day")
    cpm_noise_sd: float = Field(0.08, ge=0, description="log-sd of the CPM's noise per tick")
    overdelivery: float = Field(0.05, ge=0, le=0.5, description="the platform spends at most (1+x) x budget a day")
    api_latency: Duration = Field(0.12, description="seconds per API call")
    api_timeout: Duration = Field(10.0, description="seconds before a call to an unreachable API fails")
    api_rate_limit: float = Field(50.0, gt=0, description="API calls per second before RATE_LIMITED")

    @field_validator("cpm", "aov", mode="after")
    @classmethod
    def _bounded(cls, v: float, info: Any) -> float:
        """The strategy's limits hold for the market too (SYNCTWIN_MAX_CPM, SYNCTWIN_MAX_AOV)."""
        if info.field_name == "cpm" and v < get_limits().min_cpm:
            raise ValueError(f"under the limit of {get_limits().min_cpm:g} (SYNCTWIN_MIN_CPM)")
        return _at_most(v, f"max_{info.field_name}")


DEFAULT_MARKETS: dict[str, PlatformMarket] = {
    "meta": PlatformMarket(cpm=6.0, ctr=0.018, cvr=0.044, aov=62.0),
    "tiktok": PlatformMarket(cpm=4.2, ctr=0.012, cvr=0.021, aov=48.0),
    "google": PlatformMarket(cpm=9.5, ctr=0.035, cvr=0.038, aov=85.0),
}


class WorldSpec(_Strict):
    tick: Seconds = Field(60.0, gt=0, description="seconds per tick of the platforms (1m = minute resolution)")
    start: dt.datetime = Field(dt.datetime(2026, 1, 5, tzinfo=dt.UTC), description="virtual time zero (UTC)")
    platforms: dict[Platform, PlatformMarket] = Field(default_factory=lambda: dict(DEFAULT_MARKETS))

    @field_validator("tick", mode="after")
    @classmethod
    def _tick_floor(cls, v: float) -> float:
        """A microsecond tick turns a day into 86 billion steps: at least SYNCTWIN_MIN_TICK."""
        low = get_limits().min_tick
        if v < low:
            raise ValueError(f"under the limit of {format_duration(low)} (SYNCTWIN_MIN_TICK)")
        return v

    @field_validator("platforms", mode="before")
    @classmethod
    def _fill(cls, v: Any) -> Any:
        """Platforms not named keep their defaults; named ones may give only what differs."""
        if not isinstance(v, dict):
            return v
        merged: dict[str, Any] = {k: m.model_dump() for k, m in DEFAULT_MARKETS.items()}
        for name, spec in v.items():
            if isinstance(spec, dict) and name in merged:
                merged[name] = {**merged[name], **spec}
            else:
                merged[name] = spec
        return merged

    @property
    def epoch0(self) -> float:
        start = self.start if self.start.tzinfo else self.start.replace(tzinfo=dt.UTC)
        return start.timestamp()


class GeneratedHistory(_Strict):
    """A history drawn from the platform's market before the scenario starts."""

    platform: Platform = "meta"
    days: int = Field(90, ge=14, le=730)
    daily_spend: Annotated[float, _limit("max_daily_budget")] = Field(gt=0)
    budget_steps: float = Field(
        0.25,
        ge=0,
        le=1,
        description="log-sd of the budget steps (every 2-3 weeks, mean one over the history): the spend variation the "
        "gate's response curve learns what a dollar buys from; 0 for a flat history",
    )
    rate_factors: dict[Literal["cpm", "ctr", "cvr", "aov"], float] = Field(
        default_factory=dict,
        description="this client's rates relative to the platform's, e.g. {cvr: 0.8}; "
        "its campaigns on the same platform run at these rates too unless their `truth` says otherwise",
    )

    _rates = field_validator("rate_factors", mode="after")(_factors)


class HistorySpec(_Strict):
    csv: str | None = Field(None, description="a history CSV, relative to the scenario file")
    generate: GeneratedHistory | None = None

    @model_validator(mode="after")
    def _one(self) -> HistorySpec:
        if (self.csv is None) == (self.generate is None):
            raise ValueError("give exactly one of csv or generate")
        return self


class ClientSpec(_Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:\-]+$")
    history: HistorySpec


class CampaignSpec(_Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:\-]+$")
    client: str
    launch_at: Seconds = 0.0
    strategy: dict[str, Any] = Field(description="Strategy fields; campaign_id and client_id are filled in")
    truth: dict[Literal["cpm", "ctr", "cvr", "aov", "demand"], float] = Field(
        default_factory=dict,
        description="how this campaign's true rates differ from its platform's; "
        "defaults to its client's generated-history rate_factors on the same platform, which these override",
    )
    test: bool = Field(
        False,
        description="a chaos-test campaign: gated for its plan, deployed whatever the "
        "decision (as the seed's create_test_campaign), audited as such",
    )

    _truth = field_validator("truth", mode="after")(_factors)


class FaultSpec(_Strict):
    """A fault injected at a virtual time: on a platform, or on one campaign."""

    id: str | None = None
    kind: FaultKind
    at: Annotated[Duration, _OR_NONE]
    duration: Annotated[Duration | None, _OR_NONE] = Field(
        None, description="how long it lasts; default: to the end (outage: 5m)"
    )
    multiplier: Annotated[float | None, _limit("max_fault_multiplier")] = Field(
        None, gt=0, description="cpm_shock 1.5, cvr_drop 0.7, runaway_spend 10"
    )
    platform: Platform | None = None
    campaign: str | None = None

    @model_validator(mode="after")
    def _defaults(self) -> FaultSpec:
        defaults = {"cpm_shock": 1.5, "cvr_drop": 0.7, "runaway_spend": 10.0}
        if self.kind in defaults and self.multiplier is None:
            object.__setattr__(self, "multiplier", defaults[self.kind])
        if self.kind == "api_outage" and self.duration is None:
            object.__setattr__(self, "duration", 300.0)
        if self.platform is None and self.campaign is None:
            raise ValueError("a fault needs a platform or a campaign")
        return self


# --- expectations -------------------------------------------------------------------------------


class _Expectation(_Strict):
    campaign: str


class GateExpectation(_Expectation):
    """The gate decides this campaign so (and, optionally, with a confidence in a range)."""

    expect: Literal["gate"]
    decision: Literal["APPROVED", "REJECTED"]
    confidence_between: tuple[float, float] | None = None


class PausedExpectation(_Expectation):
    """Paused with this reason, within `within` of `after` (a fault id, or 'launch')."""

    expect: Literal["paused"]
    reason: PauseReason
    after: str = "launch"
    within: Annotated[Duration | None, _OR_NONE] = None


class NeverPausedExpectation(_Expectation):
    expect: Literal["never_paused"]


class NeverLaunchedExpectation(_Expectation):
    """The campaign never reached SyncFlow or a platform (a rejection must stop it before launch)."""

    expect: Literal["never_launched"]


class SpendCapExpectation(_Expectation):
    """No day's spend above `max_share` x the daily budget."""

    expect: Literal["daily_spend_at_most"]
    max_share: float = Field(1.10, gt=0)


class NoLostBidsExpectation(_Expectation):
    """Every bid decision was delivered or superseded by a newer one; bidding resumed after outages."""

    expect: Literal["no_lost_bids"]
    resumed_within: Seconds = Field(300.0, description="after each outage ends")
    cached_fallback: bool = Field(True, description="also require that cached bids were served during an outage")


class ProfitExpectation(_Expectation):
    """The campaign's net profit uplift over its run is above `min_uplift`."""

    expect: Literal["profit_at_least"]
    min_uplift: float


Expectation = Annotated[
    GateExpectation
    | PausedExpectation
    | NeverPausedExpectation
    | NeverLaunchedExpectation
    | SpendCapExpectation
    | NoLostBidsExpectation
    | ProfitExpectation,
    Field(discriminator="expect"),
]


# --- the sweep grid ------------------------------------------------------------------------------

MAX_GRID_POINTS = 1_000  # a grid is a product: a few more keys and it is a nightly job of its own
GridValue = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class SweepSpec(_Strict):
    """Market parameters `synctwin sweep` varies: `PLATFORM.FIELD: [values]`, where FIELD is a
    PlatformMarket field. The grid is the cartesian product (keys in file order, values in list
    order); `replay` ignores it and runs the scenario's own market."""

    grid: dict[str, list[GridValue]] = Field(description="PLATFORM.FIELD (e.g. meta.cpm) to the values it takes")

    @property
    def size(self) -> int:
        return math.prod(len(v) for v in self.grid.values())

    def points(self) -> list[dict[str, float]]:
        """Every point of the grid, as {key: value}, the last key varying fastest."""
        keys = list(self.grid)
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*self.grid.values())]


def split_grid_key(key: str) -> tuple[str, str]:
    """`meta.cpm` -> ("meta", "cpm"); the key's validity is checked by the Scenario."""
    platform, _, name = key.partition(".")
    return platform, name


def _check_grid(sweep: SweepSpec, world: WorldSpec) -> None:
    """Each key names a platform and a PlatformMarket field, each list is a non-empty set of values
    that field accepts on the scenario's market (a platform the world does not name keeps its
    default market, as in WorldSpec), and the product stays small. Messages start with the
    field's path, which the loader reports as the field."""
    platforms = list(DEFAULT_MARKETS)
    fields = list(PlatformMarket.model_fields)
    if not sweep.grid:
        raise ValueError("sweep.grid: empty: give at least one PLATFORM.FIELD: [values] (e.g. meta.cpm: [5.0, 6.0])")
    for key, values in sweep.grid.items():
        where = f"sweep.grid.{key}"
        platform, name = split_grid_key(key)
        if not name:
            raise ValueError(f"{where}: a key is PLATFORM.FIELD (e.g. meta.cpm), got {key!r}")
        if platform not in platforms:
            raise ValueError(f"{where}: unknown platform {platform!r} (expected {', '.join(platforms)})")
        if name not in fields:
            raise ValueError(f"{where}: unknown market field {name!r} (expected {', '.join(fields)})")
        if not values:
            raise ValueError(f"{where}: empty list: give at least one value")
        dupes = sorted(v for v, n in Counter(values).items() if n > 1)
        if dupes:
            raise ValueError(f"{where}: duplicate value(s) {', '.join(map(repr, dupes))}")
    if sweep.size > MAX_GRID_POINTS:
        shape = " x ".join(str(len(v)) for v in sweep.grid.values())
        raise ValueError(
            f"sweep.grid: {sweep.size:,} points ({shape}); at most {MAX_GRID_POINTS:,}: "
            "sweep fewer values, or split the grid over several scenario files"
        )
    for key, values in sweep.grid.items():
        platform, name = split_grid_key(key)
        base = world.platforms[platform].model_dump()
        for v in values:
            try:
                PlatformMarket.model_validate({**base, name: v})
            except ValidationError as exc:
                raise ValueError(
                    f"sweep.grid.{key}: {platform}'s {name} cannot be {v!r}: {exc.errors()[0]['msg']}"
                ) from None


class Scenario(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    duration: Seconds = Field(description="virtual time to simulate")
    world: WorldSpec = Field(default_factory=WorldSpec)
    clients: list[ClientSpec] = Field(default_factory=list)
    campaigns: list[CampaignSpec] = Field(default_factory=list)
    faults: list[FaultSpec] = Field(default_factory=list)
    expectations: list[Expectation] = Field(default_factory=list)
    disabled_guards: list[GuardName] = Field(default_factory=list, description="switch guards off (drills)")
    gate_paths: Annotated[int, _limit("max_gate_paths")] = Field(
        10_000, ge=100, description="Monte Carlo paths of each pre-launch gate (at most SYNCTWIN_MAX_GATE_PATHS)"
    )
    mirror: bool = Field(True, description="run the live mirror (real-to-sim sync) on launched campaigns")
    sweep: SweepSpec | None = Field(None, description="a grid of market parameters for `synctwin sweep`")
    base_dir: Path | None = Field(None, exclude=True, description="where relative paths resolve (set by the loader)")

    @field_validator("duration", mode="after")
    @classmethod
    def _duration_bound(cls, v: float) -> float:
        """100000000d is no scenario: at most SYNCTWIN_MAX_SCENARIO_DURATION seconds (400 days)."""
        high = get_limits().max_scenario_duration
        if v > high:
            raise ValueError(f"over the limit of {format_duration(high)} (SYNCTWIN_MAX_SCENARIO_DURATION)")
        return v

    @model_validator(mode="after")
    def _tick_count(self) -> Scenario:
        """The work of a replay is duration / tick steps: bounded too (SYNCTWIN_MAX_SCENARIO_TICKS)."""
        ticks = self.duration / self.world.tick
        high = get_limits().max_scenario_ticks
        if ticks > high:
            raise ValueError(
                f"world.tick: {format_duration(self.duration)} at a {format_duration(self.world.tick)} "
                f"tick is {ticks:,.0f} ticks, over the limit of {high:,} (SYNCTWIN_MAX_SCENARIO_TICKS); "
                "use a longer tick"
            )
        return self

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        """Every name a campaign, fault or expectation uses must exist: typos fail at load time.

        Messages start with the field's path ("expectations[2].campaign: ..."): the loader turns
        that into the field it reports, since a model-level error carries no location of its own."""
        clients = {c.id for c in self.clients}
        campaigns = [c.id for c in self.campaigns]
        dupes = {c for c in campaigns if campaigns.count(c) > 1}
        if dupes:
            raise ValueError(f"campaigns: duplicate campaign id(s): {', '.join(sorted(dupes))}")
        for i, c in enumerate(self.campaigns):
            if c.client not in clients:
                raise ValueError(f"campaigns[{i}].client: unknown client {c.client!r} (campaign {c.id})")
            if c.launch_at >= self.duration:
                raise ValueError(f"campaigns[{i}].launch_at: after the scenario's end (campaign {c.id})")
        fault_ids = {f.id for f in self.faults if f.id}
        for i, f in enumerate(self.faults):
            if f.campaign is not None and f.campaign not in campaigns:
                raise ValueError(f"faults[{i}].campaign: unknown campaign {f.campaign!r}")
        for i, e in enumerate(self.expectations):
            if e.campaign not in campaigns:
                raise ValueError(f"expectations[{i}].campaign: unknown campaign {e.campaign!r}")
            if isinstance(e, PausedExpectation) and e.after != "launch" and e.after not in fault_ids:
                raise ValueError(f"expectations[{i}].after: names no fault id or 'launch' ({e.after!r})")
        return self

    @model_validator(mode="after")
    def _grid(self) -> Scenario:
        if self.sweep is not None:
            _check_grid(self.sweep, self.world)
        return self
