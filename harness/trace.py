"""What a scenario run leaves behind: decisions, pauses, bids, time series, audit and alerts.

`to_dict()` is the JSON summary `synctwin replay --json` prints; it holds no wall-clock figure
except `wall_s`, so two runs with one seed give identical JSON once that is dropped."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

# CampaignTrace's fields its summary and series copy as they are, in their JSON order
_SUMMARY_FIELDS = ("client_id", "platform", "daily_budget", "launch_at", "decision", "confidence", "projected_uplift")
_SUMMARY_FIELDS += ("status", "launched_at")
_SERIES_FIELDS = ("spend", "revenue", "conversions", "clicks", "daily_spend")


@dataclass(slots=True)
class CampaignTrace:
    """One campaign's story: the gate, its life on the platform, and the ground truth of spend."""

    campaign_id: str
    client_id: str
    platform: str
    daily_budget: float
    launch_at: float  # when SyncBrain was asked (scenario time, seconds)
    decision: str | None = None  # APPROVED / REJECTED / INVALID
    confidence: float | None = None
    projected_uplift: float | None = None
    gate_error: str | None = None
    baseline_daily_revenue: float = 0.0
    baseline_daily_spend: float = 0.0
    gross_margin: float = 1.0
    gross_margin_default: bool = False  # the strategy left it out: revenue counts as all profit
    launched_at: float | None = None
    status: str = "NOT_LAUNCHED"
    pause_reason: str | None = None
    paused_at: float | None = None
    pause_detail: dict[str, Any] = field(default_factory=dict)
    bids: dict[str, int] = field(default_factory=dict)
    guards: dict[str, str] = field(default_factory=dict)
    # ground truth from the world, hourly: t (s) and cumulative totals
    hours: list[float] = field(default_factory=list)
    spend: list[float] = field(default_factory=list)
    revenue: list[float] = field(default_factory=list)
    conversions: list[float] = field(default_factory=list)
    clicks: list[float] = field(default_factory=list)
    daily_spend: list[float] = field(default_factory=list)  # per virtual day the campaign was live
    final: dict[str, float] = field(default_factory=dict)
    # the gate's projection (cumulative quantiles since launch), to plot the real run against
    projection: list[dict[str, float]] | None = None

    @property
    def max_daily_spend_share(self) -> float:
        return max(self.daily_spend, default=0.0) / self.daily_budget

    @property
    def net_profit_uplift(self) -> float | None:
        """Realized uplift over the time live (DESIGN.md's formula, baseline pro rata)."""
        if self.launched_at is None or not self.final:
            return None
        days = self.final["live_s"] / 86_400.0
        r_base, s_base = self.baseline_daily_revenue * days, self.baseline_daily_spend * days
        return (self.final["revenue"] - r_base) * self.gross_margin - (self.final["spend"] - s_base)

    def to_dict(self, *, series: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {k: getattr(self, k) for k in _SUMMARY_FIELDS} | {
            "pause": None
            if self.pause_reason is None
            else {"reason": self.pause_reason, "t": self.paused_at, "detail": self.pause_detail},
            "totals": {k: round(v, 4) for k, v in self.final.items()},
            "net_profit_uplift": None if self.net_profit_uplift is None else round(self.net_profit_uplift, 2),
            "max_daily_spend_share": round(self.max_daily_spend_share, 4),
            "bids": self.bids,
            "guards": self.guards,
        }
        if self.gate_error:
            d["gate_error"] = self.gate_error
        if series:
            d["series"] = {"t_hours": [h / 3600 for h in self.hours]} | {k: getattr(self, k) for k in _SERIES_FIELDS}
            if self.projection is not None:
                d["projection"] = self.projection
        return d


@dataclass(slots=True)
class ExpectationResult:
    expectation: str
    passed: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Trace:
    scenario: str
    seed: int
    duration_s: float
    epoch0: float
    ticks: int = 0
    campaigns: dict[str, CampaignTrace] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> kind, start, end
    audit: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    recoveries: dict[str, list[float]] = field(default_factory=dict)  # platform -> API recovery times
    breakers: dict[str, str] = field(default_factory=dict)
    expectations: list[ExpectationResult] = field(default_factory=list)
    events: int = 0  # SimPy events the environment processed (timeouts, mailbox puts and gets, ...)
    bid_events: int = 0  # DESIGN.md's bid events: one per live campaign per tick
    wall_s: float = 0.0

    @property
    def passed(self) -> bool:
        return all(e.passed for e in self.expectations)

    @property
    def pauses(self) -> dict[str, tuple[str, float]]:
        return {
            c.campaign_id: (c.pause_reason, c.paused_at)
            for c in self.campaigns.values()
            if c.pause_reason is not None and c.paused_at is not None
        }

    def to_dict(self, *, series: bool = False) -> dict[str, Any]:
        by_type = Counter(r["event_type"] for r in self.audit)
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "duration_s": self.duration_s,
            "ticks": self.ticks,
            "passed": self.passed,
            "expectations": [e.to_dict() for e in self.expectations],
            "campaigns": {cid: c.to_dict(series=series) for cid, c in self.campaigns.items()},
            "faults": self.faults,
            "timeline": self.timeline,
            "audit": {
                "records": len(self.audit),
                "by_type": dict(sorted(by_type.items())),
                "head_hash": self.audit[-1]["hash"] if self.audit else None,
            },
            "alerts": self.alerts,
            "breakers": self.breakers,
            "events": self.events,
            "bid_events": self.bid_events,
            "wall_s": round(self.wall_s, 4),
        }
