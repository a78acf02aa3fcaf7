"""Configuration from SYNCTWIN_* environment variables (pydantic-settings), with documented defaults."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.model_names import DEFAULT_MODEL, MODEL_CHOICES


class Settings(BaseSettings):
    """Every tunable in one place; the command line overrides a few of them per run."""

    model_config = SettingsConfigDict(env_prefix="SYNCTWIN_", env_file=None, extra="ignore")

    # --- the gate -------------------------------------------------------------------------
    threshold: float = Field(0.85, gt=0, lt=1, description="approve when confidence > threshold (seed: 0.85)")
    paths: int = Field(10_000, ge=100, description="Monte Carlo paths drawn first")
    max_paths: int = Field(160_000, ge=100, description="cap for adaptive sampling")
    chunk_paths: int = Field(50_000, ge=1_000, description="paths per chunk: bounds memory, fixes seed streams")
    projection_paths: int = Field(
        4_096, ge=100, description="paths drawn for the projection's daily bands (4k: each quantile within ~0.03 sd)"
    )
    model: str = Field(
        DEFAULT_MODEL, pattern=f"^({'|'.join(MODEL_CHOICES)})$", description="the gate's model (kernel/model_names.py)"
    )
    lookback_days: int = Field(90, ge=7, description="history window of the baseline")
    min_history_days: int = Field(14, ge=2, description="fewer days than this is an error")
    # uncertainty of the funnel model
    curve_structural_sigma: float = Field(
        0.03, ge=0, description="curve model: log-sd of the level beyond the fit's posterior (calibration scales it)"
    )
    new_context_sigma: float = Field(
        0.30, ge=0, description="curve model: log-sd of the conversion level for a new audience or platform"
    )
    calibrate: bool = Field(True, description="curve model: scale the spread by the history's rolling errors")
    structural_sigma: float = Field(
        0.10, ge=0, description="log-sd of each funnel rate beyond what the history's sampling error explains"
    )
    new_context_widening: float = Field(2.0, ge=1, description="uncertainty factor for a new audience or platform")
    demand_sigma: float = Field(0.15, ge=0, description="log-sd of demand (audience x cvr), the original design's 15%")
    delivery_sigma: float = Field(0.05, ge=0, description="daily log-sd of the platform's delivery of the budget")
    max_overdelivery: float = Field(1.2, ge=1, description="a platform spends at most this times the daily budget")
    default_monthly_churn: float = Field(0.25, gt=0, le=1, description="used when the history has no churn data")
    # --- SyncFlow's guards (virtual or wall-clock seconds) --------------------------------------
    guard_interval: float = Field(600.0, gt=0, description="seconds between MarginGuardian / AutoRollback checks")
    margin_warmup: float = Field(7_200.0, ge=0, description="no margin verdict before this long after launch")
    margin_window: float = Field(10_800.0, gt=0, description="trailing window of the running margin")
    margin_tolerance: float = Field(0.05, ge=0, description="pause when margin < -tolerance x spend in the window")
    margin_persistence: int = Field(3, ge=1, description="... for this many checks in a row")
    rollback_drop: float = Field(0.30, gt=0, lt=1, description="the conversion-rate crash AutoRollback is tuned for")
    rollback_threshold: float = Field(12.0, gt=0, description="CUSUM threshold (log-likelihood ratio)")
    rollback_warmup: float = Field(3_600.0, ge=0, description="no rollback verdict before this long after launch")
    budget_cap_share: float = Field(1.10, gt=1, description="emergency pause before a day's spend crosses this")
    budget_lookahead_ticks: float = Field(2.0, ge=0, description="ticks of spend at the current rate to look ahead")
    runaway_factor: float = Field(3.0, gt=1, description="spend per tick above this x the pace counts as runaway")
    runaway_ticks: int = Field(5, ge=1, description="... and pauses after this many ticks in a row")
    breaker_failures: int = Field(2, ge=1, description="API failures in a row that open the circuit breaker")
    breaker_reset: float = Field(60.0, gt=0, description="seconds open before a probe call")
    bid_interval: float = Field(300.0, gt=0, description="seconds between SyncFlow's bid updates")
    bid_retry: float = Field(15.0, gt=0, description="seconds between retries of bids the platform did not get")
    bid_headroom: float = Field(1.3, ge=1, description="initial bid cap as a multiple of the planned CPM")
    bid_staleness_cap: float = Field(600.0, gt=0, description="alert when bids served from cache are older")
    # --- the live mirror (real-to-sim sync); benchmarks/mirror_detection.py measures these ----------
    mirror_interval: float = Field(3_600.0, gt=0, description="seconds of campaign time between evaluations")
    mirror_warmup: float = Field(21_600.0, ge=0, description="no verdict before this long after launch")
    mirror_min_projected_conversions: float = Field(20.0, ge=0, description="... nor before this projected volume")
    mirror_threshold: float = Field(0.15, gt=0, description="practical threshold (the original design's 15%)")
    mirror_grey_threshold: float = Field(0.10, gt=0, description="deviation that alerts without pausing")
    mirror_window: float = Field(43_200.0, gt=0, description="the recent window compared besides since-launch")
    mirror_persistence: int = Field(3, ge=1, description="evaluations in a row before a pause")
    mirror_cusum_drop: float = Field(0.30, gt=0, lt=1, description="the fall the sequential tests are tuned for")
    mirror_cusum_threshold: float = Field(10.0, gt=0, description="CUSUM threshold (log-likelihood ratio)")
    mirror_reference_lag: float = Field(86_400.0, ge=0, description="the campaign's own level is read this long ago")
    mirror_reference_span: float = Field(172_800.0, gt=0, description="... over at most this long")
    mirror_min_reference_conversions: float = Field(50.0, ge=1, description="... once it holds this many")
    # a read returns what the stream holds, up to this: at live rates batches stay small (latency is
    # unchanged); behind a backlog a larger batch spreads each campaign's state write over more events
    mirror_batch: int = Field(2000, ge=1, description="events per XREADGROUP")
    mirror_claim_idle_ms: int = Field(30_000, ge=100, description="pending events idle this long are reclaimed")
    mirror_max_deliveries: int = Field(5, ge=1, description="deliveries before an event goes to the dead letters")
    mirror_heartbeat_ms: int = Field(
        5_000, ge=0, description="heartbeat TTL: a dead worker's pending events are taken over this soon (0: none)"
    )
    lease_ttl_ms: int = Field(
        5_000, ge=100, description="--shards N: a shard lease's TTL; a dead worker's shards move this soon"
    )
    council_tick_s: float = Field(
        300.0, gt=0, description="`synctwin run`: seconds between a campaign's bid events (the guards' pace)"
    )
    # --- the live stream's plausibility limits (agents/synctwin/mirror/event_limits.py): dead letters ---
    max_clock_skew_s: float = Field(
        300.0, ge=0, description="an event's ts at most this far ahead of the clock (or before its launch)"
    )
    mirror_flight_grace_s: float = Field(
        86_400.0, ge=0, description="an event's ts at most this long after its campaign's flight"
    )
    mirror_max_plan_factor: float = Field(
        100.0, gt=1, description="spend, revenue, conversions at most this x the projection's p90 ..."
    )
    mirror_plan_slack_s: float = Field(86_400.0, ge=0, description="... read this long after the event's time")
    mirror_max_counter: float = Field(1e15, gt=0, description="any cumulative field at most this")
    mirror_stuck_after: int = Field(
        20, ge=0, description="alert once after this many events in a row with totals gone backwards (0: never)"
    )
    # --- stores and sinks ---------------------------------------------------------------------
    redis_url: str | None = Field(None, description="redis://... ; None means the embedded store")
    key_prefix: str = Field("synctwin:", description="prefix of every Redis key")
    shards: int = Field(1, ge=1, le=16_384, description="bid stream shards (CRC32(UTF-8 id) mod N; docs/scale-out.md)")
    audit_key: SecretStr | None = Field(
        None, description="16+ characters: audit records are chained with HMAC-SHA256 under it (docs/audit.md)"
    )
    # --- the HTTP service (`synctwin serve`) ----------------------------------------------------
    host: str = Field("127.0.0.1", description="address the service binds (loopback unless told otherwise)")
    port: int = Field(8000, ge=0, le=65_535, description="port the service listens on")
    api_key: SecretStr | None = Field(None, description="when set, /v1/* requires this value in X-API-Key")
    service_max_paths: int = Field(200_000, ge=100, description="largest `paths` (and adaptive cap) a request may ask")
    max_body_bytes: int = Field(1_048_576, ge=1_024, description="larger request bodies get 413")
    service_gate_concurrency: int | None = Field(
        None, ge=1, description="gates computed at once per process (default: the CPU count; more fight for the GIL)"
    )


DAY = 86_400.0


class Limits(BaseSettings):
    """Upper bounds on what an input may say (docs/reliability.md, "Files and numbers").

    A number past these is a typo or an attack: refused, naming the field, its value and the setting,
    before it can overflow the Monte Carlo into an infinite "approval". Each is a SYNCTWIN_* variable."""

    model_config = SettingsConfigDict(env_prefix="SYNCTWIN_", env_file=None, extra="ignore")

    # --- a strategy (JSON file, HTTP body, scenario campaign) ---------------------------------------
    max_daily_budget: float = Field(1e8, gt=0, description="ad spend per day, in the account's currency")
    max_aov: float = Field(1e6, gt=0, description="average order value")
    max_cpm: float = Field(1e4, gt=0, description="cost per 1000 impressions")
    min_cpm: float = Field(0.01, gt=0, description="below this a CPM is a typo (1000/CPM would overflow)")
    max_audience_size: int = Field(10_000_000_000, gt=0, description="people a campaign can reach")
    # --- a history row (one day) --------------------------------------------------------------------
    max_history_spend: float = Field(1e9, gt=0, description="a day's ad spend")
    max_history_revenue: float = Field(1e11, gt=0, description="a day's revenue")
    max_history_count: float = Field(1e12, gt=0, description="a day's impressions (and so clicks, conversions)")
    max_history_rows: int = Field(7_320, ge=14, description="rows of a history (20 years of days)")
    # --- files ----------------------------------------------------------------------------------------
    max_history_bytes: int = Field(64 * 2**20, ge=1_024, description="a history CSV file")
    max_strategy_bytes: int = Field(2**20, ge=1_024, description="a strategy JSON file")
    max_scenario_bytes: int = Field(2**20, ge=1_024, description="a scenario YAML file")
    max_json_depth: int = Field(32, ge=2, description="nesting of arrays and objects in a strategy")
    max_yaml_aliases: int = Field(100, ge=0, description="aliases (*name) in a scenario file")
    max_yaml_nodes: int = Field(100_000, ge=100, description="nodes of a scenario once its aliases are expanded")
    # --- a scenario -----------------------------------------------------------------------------------
    max_scenario_duration: float = Field(400 * DAY, gt=0, description="seconds of virtual time (400 days)")
    min_tick: float = Field(1.0, gt=0, description="seconds per tick of the platforms, at least")
    max_scenario_ticks: int = Field(1_000_000, ge=1, description="duration / tick (a year of minutes is 525,600)")
    max_gate_paths: int = Field(1_000_000, ge=100, description="Monte Carlo paths of each gate in a scenario")
    max_fault_multiplier: float = Field(
        1_000.0, gt=1, description="a fault's multiplier, and a campaign's or client's rate factors"
    )


def limit_env(name: str) -> str:
    """The environment variable of a Limits field, for error messages."""
    return f"SYNCTWIN_{name.upper()}"


CONFIG_FILE_ENV = "SYNCTWIN_CONFIG_FILE"
DEFAULT_CONFIG_FILE = "synctwin.env"


def config_file() -> Path:
    """The `.env`-style file the settings read (and `synctwin tune --apply` writes): SYNCTWIN_CONFIG_FILE,
    else synctwin.env in the working directory. Environment variables win over it."""
    return Path(os.environ.get(CONFIG_FILE_ENV) or DEFAULT_CONFIG_FILE)


_S = TypeVar("_S", bound=BaseSettings)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read the environment (and the config file, when there is one) once per process."""
    return _load(Settings)


@lru_cache(maxsize=1)
def get_limits() -> Limits:
    """The input limits, read once per process (tests that change them call get_limits.cache_clear())."""
    return _load(Limits)


def _load(cls: type[_S]) -> _S:
    """Build a settings group from the environment and the config file; a bad value is one
    InvalidInput naming the variable (and the file), never a traceback, and never echoes a secret."""
    from pydantic import ValidationError

    path = config_file()
    env_file = path if path.is_file() else None
    try:
        return cls(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err.get("loc") else "?"
        field = cls.model_fields.get(name)
        secret = field is not None and "SecretStr" in str(field.annotation)
        shown = "" if secret else f" (got {str(err.get('input'))[:80]!r})"
        where = f" (or in {env_file})" if env_file else ""
        raise InvalidInput(f"setting SYNCTWIN_{name.upper()}{where}: {err['msg']}{shown}") from None
