"""Shadow mode: what rejected campaigns would have earned (the seed: "if false negatives exceed
5%, we lower the confidence threshold").

A rejection never launches, so over its would-be flight it is re-simulated under the market
observed on its platform (the live campaigns' CPM, CTR, conversions per click and order value, day
by day), and audited as SHADOW_OUTCOME for `synctwin review`, `tune` and `kpis`. Three ways in,
one arithmetic (`shadow_day` -> `simulate_day`, then `outcome_record`):
- `ShadowAgent` (SimPy): rejections from SyncBrain, the market from BidBatch messages, an outcome
  every midnight (`final` at the flight's end); days with no live campaign on the platform use the
  gate's planned rates and are counted apart (`market_days_observed`);
- `shadow_outcomes_from_market`: a market CSV `date,platform,cpm,ctr,cvr,aov` (`cvr` per click)
  covering every flight day (`synctwin shadow --market`);
- `LiveShadowAgent`, the Council's agent on the bid stream: batches go to its store port
  (`store.RedisShadowStore`), which learns the daily markets and settles closed days.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import simpy

from agents.base import Agent
from agents.synctwin.gate.outcomes import GateFacts, GateLike, net_profit_uplift, projected_revenue
from synctwin.kernel.config import get_limits
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.files import capped_lines, open_input
from synctwin.kernel.messages import AuditEvent, BidBatch, LiveEvents
from synctwin.kernel.models import GateResult, Strategy

SHADOW_OUTCOME = "SHADOW_OUTCOME"
DAY = 86_400.0
MARKET_COLUMNS = ("date", "platform", "cpm", "ctr", "cvr", "aov")


@dataclass(frozen=True, slots=True)
class MarketDay:
    """The rates live campaigns on one platform met on one day."""

    cpm: float
    ctr: float
    cvr: float  # conversions per click
    aov: float


@dataclass(slots=True)
class ShadowWatch:
    """A message for the shadow agent: follow this rejected strategy from now on."""

    strategy: Strategy
    result: GateResult


@dataclass(slots=True)
class ShadowTotals:
    """What a shadowed strategy would have done so far: sums over the days simulated."""

    spend: float = 0.0
    revenue: float = 0.0
    conversions: float = 0.0
    days: float = 0.0
    observed: int = 0  # days simulated under an observed market (the rest under the plan's rates)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A rejected strategy to shadow, its gate result (or essentials) and its would-be launch day."""

    strategy: Strategy
    result: GateLike
    start: dt.date


def planned_market(strategy: Strategy, result: GateLike) -> MarketDay:
    """The rates the gate planned with (strategy overrides, else the history baseline)."""
    b = result.baseline
    return MarketDay(
        cpm=strategy.cpm or b.get("cpm", math.nan),
        ctr=strategy.ctr or b.get("ctr", math.nan),
        cvr=b.get("cvr_click", math.nan),
        aov=strategy.aov or b.get("avg_order_value", math.nan),
    )


def usable(market: MarketDay) -> bool:
    """Every rate finite and positive (a baseline without clicks gives no planned rates)."""
    return all(math.isfinite(v) and v > 0 for v in (market.cpm, market.ctr, market.cvr, market.aov))


def market_from_sums(
    spend: float, impressions: float, clicks: float, conversions: float, revenue: float
) -> MarketDay | None:
    """The rates behind a day's summed counters of live campaigns; None when a rate is undefined
    (no impressions, clicks, conversions or spend): such a day is not an observed market."""
    if not (impressions > 0 and clicks > 0 and conversions > 0 and spend > 0):
        return None
    return MarketDay(spend / impressions * 1000.0, clicks / impressions, conversions / clicks, revenue / conversions)


def shadow_day(
    strategy: Strategy, totals: ShadowTotals, market: MarketDay | None, planned: MarketDay, fraction: float = 1.0
) -> bool:
    """Add `fraction` of a flight day to `totals`: under the observed `market`, else under the
    plan's rates (counted apart); False (nothing added) when neither is usable."""
    if market is None and not usable(planned):
        return False
    if market is not None:
        totals.observed += 1
    spend, conv, rev = simulate_day(strategy, market or planned, fraction)
    totals.spend += spend
    totals.conversions += conv
    totals.revenue += rev
    totals.days += fraction
    return True


def flight_days(launch_ts: float, duration_days: int) -> list[tuple[int, float]]:
    """The UTC days (index since the epoch) a flight covers, each with its share inside the flight
    (launched at 18:00: 0.25 of its first day, 0.75 of the day after its last full one)."""
    end = launch_ts + duration_days * DAY
    out = []
    day = int(launch_ts // DAY)
    while day * DAY < end - 1e-6:
        share = (min(end, (day + 1) * DAY) - max(launch_ts, day * DAY)) / DAY
        if share > 1e-9:
            out.append((day, share))
        day += 1
    return out


def simulate_day(strategy: Strategy, market: MarketDay, fraction: float = 1.0) -> tuple[float, float, float]:
    """(spend, conversions, revenue) of `fraction` of a flight day under `market`, as the gate's funnel:
    the budget buys at the rates, conversions capped by the day's demand (audience x cvr / days)."""
    spend = strategy.daily_budget * fraction
    bought = spend / market.cpm * 1000.0 * market.ctr * market.cvr
    demand = strategy.audience_size * strategy.cvr / strategy.duration_days * fraction
    conversions = min(bought, demand)
    return spend, conversions, conversions * market.aov


def outcome_record(strategy: Strategy, result: GateLike, totals: ShadowTotals, *, final: bool) -> dict[str, Any]:
    """The SHADOW_OUTCOME metadata: what the strategy would have earned over the days so far,
    with the net profit uplift against the baseline over the same days (DESIGN.md)."""
    days = totals.days
    uplift = net_profit_uplift(totals.revenue, totals.spend, days, result.baseline, strategy.gross_margin)
    out = {
        "platform": strategy.platform,
        "days": round(days, 4),
        "days_total": strategy.duration_days,
        "final": final,
        "market_days_observed": totals.observed,
        "revenue": round(totals.revenue, 2),
        "spend": round(totals.spend, 2),
        "conversions": round(totals.conversions, 2),
        "net_profit_uplift": round(uplift, 2),
        "profitable": uplift > 0,
        "confidence_score": result.confidence_score,
        "threshold": result.threshold,
    }
    projected = projected_revenue(result)
    if projected is not None:  # what the gate projected for the flight: realized outcomes calibrate its spread
        out["projected_revenue"] = [round(v, 2) for v in projected]
    return out


class ShadowAgent(Agent):
    """Follows rejected campaigns in the twin; `platform_of` says which platform a live campaign
    id runs on (bid events carry no platform)."""

    name = "shadow"

    def __init__(
        self, env: simpy.Environment, *, bids: simpy.Store, audit: simpy.Store, platform_of: Mapping[str, str]
    ) -> None:
        self.bids = bids
        self.audit = audit
        self.platform_of = platform_of
        self.market: dict[tuple[str, int], MarketDay] = {}  # (platform, day index) -> closed days
        self.outcomes: dict[str, dict[str, Any]] = {}  # campaign -> latest outcome
        self._day: int | None = None
        self._last: BidBatch | None = None
        self._day_start: dict[str, np.ndarray] = {}  # campaign -> cumulative totals when the day began
        super().__init__(env)
        self.reader = env.process(self._read_bids())

    def _read_bids(self) -> Generator[Any, Any, None]:
        while True:
            batch: BidBatch = yield self.bids.get()
            day = int((batch.t - 1e-9) // DAY)  # the tick ending at midnight belongs to the day before
            if self._day is not None and day != self._day and self._last is not None:
                self.market.update(self._day_market(self._day, self._last))
                for i, cid in enumerate(self._last.campaign_ids):
                    self._day_start[cid] = self._cum(self._last, i)
            self._day, self._last = day, batch

    @staticmethod
    def _cum(batch: BidBatch, i: int) -> np.ndarray:
        return np.array(
            [batch.spend[i], batch.impressions[i], batch.clicks[i], batch.conversions[i], batch.revenue[i]], dtype=float
        )

    def _day_market(self, day: int, batch: BidBatch) -> dict[tuple[str, int], MarketDay]:
        """Each platform's rates over `day` so far, summed over its live campaigns."""
        sums: dict[str, np.ndarray] = {}
        for i, cid in enumerate(batch.campaign_ids):
            platform = self.platform_of.get(cid)
            if platform is None:
                continue
            delta = self._cum(batch, i) - self._day_start.get(cid, 0.0)
            sums[platform] = sums.get(platform, 0.0) + delta
        markets = {(platform, day): market_from_sums(*map(float, row)) for platform, row in sums.items()}
        return {k: m for k, m in markets.items() if m is not None}

    def _market_on(self, platform: str, day: int) -> MarketDay | None:
        if (platform, day) in self.market:
            return self.market[(platform, day)]
        if self._day == day and self._last is not None:  # the day in progress
            return self._day_market(day, self._last).get((platform, day))
        return None

    def handle(self, message: Any) -> Generator[Any, Any, None]:
        if isinstance(message, ShadowWatch):
            self.env.process(self._follow(message))
        yield from ()

    def _follow(self, watch: ShadowWatch) -> Generator[Any, Any, None]:
        s, r = watch.strategy, watch.result
        planned = planned_market(s, r)
        end = self.env.now + s.duration_days * DAY
        totals = ShadowTotals()
        while self.env.now < end:
            start = self.env.now
            stop = min((math.floor(start / DAY) + 1) * DAY, end)
            yield self.env.timeout(stop - start)
            day = int((stop - 1e-9) // DAY)
            if not shadow_day(s, totals, self._market_on(s.platform, day), planned, (stop - start) / DAY):
                continue
            record = outcome_record(s, r, totals, final=self.env.now >= end - 1e-6)
            self.outcomes[s.campaign_id] = record
            yield self.audit.put(AuditEvent(SHADOW_OUTCOME, s.client_id, s.campaign_id, "SHADOW_MODE", record))


class ShadowPort(Protocol):
    """Where the live shadow keeps the market it learns (production: shadow_store.RedisShadowStore)."""

    def observe(self, rows: LiveEvents, invalid: int = 0, screened: bool = False) -> None: ...


@dataclass(frozen=True, slots=True)
class Observed:
    """A live batch for shadow mode: its events in stream order, how many entries did not parse;
    `screened`: already judged inside their plans' limits."""

    events: LiveEvents
    invalid: int = 0
    screened: bool = False


class LiveShadowAgent(Agent):
    """Shadow mode in a Council on a bid stream: the store port observes every event the Council
    reads (it tells live campaigns by their published plans) and settles closed days on the
    driver's schedule, since it reads every worker's market."""

    name = "shadow"

    def __init__(self, env: simpy.Environment, *, store: ShadowPort) -> None:
        self.store = store
        self.bids: simpy.Store = simpy.Store(env)
        super().__init__(env)
        env.process(self._read_bids())

    def _read_bids(self) -> Generator[Any, Any, None]:
        while True:
            batch: Observed = yield self.bids.get()
            self.store.observe(batch.events, batch.invalid, batch.screened)


# --- production: a market file -------------------------------------------------------------------
@dataclass(slots=True)
class Market:
    """A market file's rows: (platform, date) -> MarketDay."""

    days: dict[tuple[str, dt.date], MarketDay] = field(default_factory=dict)
    source: str = ""


def load_market(path: str | Path) -> Market:
    """Read `date,platform,cpm,ctr,cvr,aov`; every platform's dates must be contiguous (a gap
    would silently shorten a shadowed flight), every rate positive."""
    src = str(path)
    if not Path(path).exists():
        raise InvalidInput("no such market file", source=src)
    limits = get_limits()
    with open_input(path) as fh:
        lines = capped_lines(fh, src, max_bytes=limits.max_history_bytes, setting="SYNCTWIN_MAX_HISTORY_BYTES")
        try:
            return _read_market(csv.DictReader(lines), src, limits)
        except csv.Error as exc:
            raise InvalidInput(f"malformed CSV: {exc}", source=src) from None


def _read_market(reader: csv.DictReader, src: str, limits: Any) -> Market:
    """The rows of a market file, validated as they are read (the first bad one stops the read)."""
    market = Market(source=src)
    missing = [c for c in MARKET_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise InvalidInput(
            f"missing column(s) {', '.join(missing)}; expected {','.join(MARKET_COLUMNS)}", source=src, line=1
        )
    for line, row in enumerate(reader, start=2):
        try:
            date = dt.date.fromisoformat((row["date"] or "").strip())
        except ValueError:
            raise InvalidInput(f"not an ISO date: {row['date']!r}", source=src, line=line, field="date") from None
        platform = (row["platform"] or "").strip()
        if platform not in ("meta", "tiktok", "google"):
            raise InvalidInput(
                f"unknown platform {platform!r} (meta, tiktok, google)", source=src, line=line, field="platform"
            )
        if len(market.days) >= 3 * limits.max_history_rows:
            what = f"more than {3 * limits.max_history_rows:,} rows (3 platforms x SYNCTWIN_MAX_HISTORY_ROWS)"
            raise InvalidInput(what, source=src, line=line)
        values = {}
        for name in ("cpm", "ctr", "cvr", "aov"):
            try:
                v = values[name] = float(row[name])
            except (TypeError, ValueError):
                v = math.nan
            if not (math.isfinite(v) and v > 0) or (name in ("ctr", "cvr") and v > 1):
                raise InvalidInput(f"{row[name]!r} is not a valid {name}", source=src, line=line, field=name)
            if v > (cap := getattr(limits, f"max_{name}", math.inf)):
                what = f"{row[name]!r} is over the limit of {cap:g} (SYNCTWIN_MAX_{name.upper()})"
                raise InvalidInput(what, source=src, line=line, field=name)
        if (platform, date) in market.days:
            raise InvalidInput(f"second row for {platform} on {date}", source=src, line=line)
        market.days[(platform, date)] = MarketDay(**values)
    for platform in {p for p, _ in market.days}:
        dates = sorted(d for q, d in market.days if q == platform)
        if (dates[-1] - dates[0]).days >= limits.max_history_rows:  # a gap of centuries: not listed day by day
            raise InvalidInput(
                f"{platform} has gaps: its {len(dates):,} rows span {dates[0]} to {dates[-1]}", source=src
            )
        span = (dates[0] + dt.timedelta(days=i) for i in range((dates[-1] - dates[0]).days + 1))
        if gaps := sorted(set(span) - set(dates)):
            raise InvalidInput(f"{platform} has gaps: no row for {_dates_text(gaps)}", source=src)
    return market


def _dates_text(dates: list[dt.date], limit: int = 10) -> str:
    text = ", ".join(d.isoformat() for d in dates[:limit])
    return text + (f" and {len(dates) - limit} more" if len(dates) > limit else "")


def shadow_outcomes_from_market(
    rejections: Iterable[Rejection], market_file: str | Path | Market
) -> list[dict[str, Any]]:
    """One SHADOW_OUTCOME record (`campaign_id`, `client_id`, `metadata`) per rejection: its flight
    under the market file's rates; InvalidInput names the flight days the file does not cover."""
    market = market_file if isinstance(market_file, Market) else load_market(market_file)
    out = []
    for rej in rejections:
        s = rej.strategy
        flight = [rej.start + dt.timedelta(days=i) for i in range(s.duration_days)]
        gaps = [d for d in flight if (s.platform, d) not in market.days]
        if gaps:
            raise InvalidInput(
                f"campaign {s.campaign_id}: no {s.platform} market for {_dates_text(gaps)}", source=market.source
            )
        totals = ShadowTotals()
        for d in flight:
            shadow_day(s, totals, market.days[(s.platform, d)], planned_market(s, rej.result))
        out.append(
            {
                "event_type": SHADOW_OUTCOME,
                "campaign_id": s.campaign_id,
                "client_id": s.client_id,
                "metadata": outcome_record(s, rej.result, totals, final=True),
            }
        )
    return out


def rejections_from_audit(
    records: Iterable[Mapping[str, Any]], *, source: str = ""
) -> tuple[list[Rejection], list[str]]:
    """The rejections an audit log still owes a final shadow outcome (the latest CAMPAIGN_REJECTED per
    campaign with its strategy, no final SHADOW_OUTCOME after it; the flight starts on the UTC date
    of its `launch_ts`, else its time), and the ids of those without a strategy (not re-simulable)."""
    latest: dict[str, tuple[int, Mapping[str, Any]]] = {}
    finals: dict[str, int] = {}
    for i, rec in enumerate(records):
        cid = rec.get("campaign_id")
        if not cid:
            continue
        if rec.get("event_type") == "CAMPAIGN_REJECTED":
            latest[cid] = (i, rec)
        elif rec.get("event_type") == SHADOW_OUTCOME and (rec.get("metadata") or {}).get("final") is True:
            finals[cid] = i
    out: list[Rejection] = []
    no_strategy: list[str] = []
    for cid, (i, rec) in latest.items():
        if finals.get(cid, -1) > i:
            continue
        meta = rec.get("metadata") or {}
        if not isinstance(meta.get("strategy"), Mapping):
            no_strategy.append(cid)
            continue
        where = f"audit record seq {rec.get('seq')} ({cid})"
        try:
            strategy = Strategy.model_validate(meta["strategy"])
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            first = exc.errors()[0] if hasattr(exc, "errors") else {"loc": (), "msg": str(exc)}
            field = ".".join(str(x) for x in first["loc"]) or "strategy"
            raise InvalidInput(f"{where}: strategy field {field!r}: {first['msg']}", source=source) from None
        try:
            facts = GateFacts.from_dict(meta)
        except ValueError as exc:
            raise InvalidInput(f"{where}: {exc}", source=source) from None
        launch = meta.get("launch_ts", rec.get("ts"))
        if not isinstance(launch, int | float) or isinstance(launch, bool) or not math.isfinite(launch):
            raise InvalidInput(f"{where}: launch_ts is not a number ({launch!r})", source=source)
        out.append(Rejection(strategy, facts, dt.datetime.fromtimestamp(launch, dt.UTC).date()))
    return out, no_strategy
