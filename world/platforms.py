"""The simulated ad platforms: every live campaign of Meta, TikTok and Google, delivered tick by
tick in one vectorized step (a month at minute resolution in seconds).

Per tick and campaign: the market's CPM (drifting price, per-tick noise, injected shocks), the
share of the budget's pace the bid wins, impressions, clicks (Poisson on CTR), conversions
(Poisson on CVR per click, capped by the demand the audience holds, arriving at a steady rate)
and revenue (a sum of order values). Budgets reset at each virtual midnight; a day's spend is at
most (1 + overdelivery) x the budget unless a runaway-spend fault breaks the pacing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scenarios.schema import PlatformMarket

PLATFORMS: tuple[str, ...] = ("meta", "tiktok", "google")
SECONDS_PER_DAY = 86_400.0
BID_ELASTICITY = 4.0  # share of the pace won = min(1, (bid / clearing CPM) ** this)
FAULT_COLUMNS = ("cpm_mult", "cvr_mult", "spend_mult", "platform_cpm_mult", "platform_cvr_mult", "platform_spend_mult")


@dataclass(slots=True)
class CampaignSetup:
    """What the platform needs to run a campaign (from the deployed strategy)."""

    campaign_id: str
    platform: str
    daily_budget: float
    bid_cpm: float
    daily_demand: float  # conversions the audience can give a day
    truth: dict[str, float]  # the campaign's true rates relative to its platform's


class AdPlatforms:
    """All campaigns of all platforms as columns; the world ticks them together."""

    def __init__(self, markets: dict[str, PlatformMarket], rng: np.random.Generator, tick_seconds: float) -> None:
        self.rng = rng
        self.tick_seconds = tick_seconds
        self.ticks_per_day = SECONDS_PER_DAY / tick_seconds
        self.platform_index = {p: i for i, p in enumerate(PLATFORMS)}
        m = [markets[p] for p in PLATFORMS]
        self.base_cpm = np.array([x.cpm for x in m])
        self.ctr = np.array([x.ctr for x in m])
        self.cvr = np.array([x.cvr for x in m])
        self.aov = np.array([x.aov for x in m])
        self.aov_cv = np.array([x.aov_cv for x in m])
        self.cpm_noise_sd = np.array([x.cpm_noise_sd for x in m])
        self.cpm_drift_sd = np.array([x.cpm_drift_sd for x in m])
        self.overdelivery = np.array([x.overdelivery for x in m])
        self.log_drift = np.zeros(len(PLATFORMS))
        # platform-wide fault multipliers
        self.platform_cpm_mult = np.ones(len(PLATFORMS))
        self.platform_cvr_mult = np.ones(len(PLATFORMS))
        self.platform_spend_mult = np.ones(len(PLATFORMS))
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self._columns = (
            *("plat", "budget", "bid", "demand_rate", "demand_cap", "cpm0", "ctr0", "cvr0", "aov0", "cv2"),
            *("noise_sd", "day_cap_share", "active", "cpm_mult", "cvr_mult", "spend_mult", "spend", "impressions"),
            *("clicks", "conversions", "revenue", "spend_today", "demand_left"),
        )
        for name in self._columns:
            setattr(self, name, np.zeros(0, dtype=np.int64 if name == "plat" else np.float64))
        self.id_tuple: tuple[str, ...] = ()
        self._stale = True  # the per-campaign factors below need recomputing

    def _refresh(self) -> None:
        """Recompute what a tick needs that only changes on a launch, a new day or a fault.

        Same expressions, same order of operations as computing them every tick (so a seed's
        numbers do not change), without ~15 array operations per tick."""
        p = self.plat
        platform_cpm = np.exp(self.log_drift) * self.platform_cpm_mult
        self._cpm_level = self.cpm0 * platform_cpm[p] * self.cpm_mult
        sd = self.noise_sd
        self._half_var = 0.5 * sd * sd
        self._runaway = self.spend_mult * self.platform_spend_mult[p]
        self._any_runaway = bool((self._runaway > 1.0).any())
        self._pace = self.budget / self.ticks_per_day
        self._cap = self.budget * self.day_cap_share
        q = np.minimum(self.cvr0 * self.cvr_mult * self.platform_cvr_mult[p], 1.0)
        self._q_both = np.concatenate((q, 1.0 - q))
        self._stale = False

    def scale(self, column: str, index: int, factor: float, *, undo: bool = False) -> None:
        """Multiply (or, undoing, divide) one fault multiplier: `cpm_mult`, `platform_cvr_mult`, ...

        The column is looked up at call time: a launch replaces the per-campaign columns, so a
        fault must never keep a reference to the array it started on."""
        if column not in FAULT_COLUMNS:
            raise ValueError(f"{column!r} is not a fault multiplier")
        array = getattr(self, column)
        if undo:
            array[index] /= factor
        else:
            array[index] *= factor
        self._stale = True

    # --- the campaign registry --------------------------------------------------------------
    def launch(self, setup: CampaignSetup) -> None:
        if setup.campaign_id in self.index:
            raise ValueError(f"campaign {setup.campaign_id} is already live")
        k = self.platform_index[setup.platform]
        t = setup.truth
        row = {
            "plat": k,
            "budget": setup.daily_budget,
            "bid": setup.bid_cpm,
            "demand_rate": setup.daily_demand / self.ticks_per_day,
            "demand_cap": setup.daily_demand / 4.0,
            "cpm0": self.base_cpm[k] * t.get("cpm", 1.0),
            "ctr0": self.ctr[k] * t.get("ctr", 1.0),
            "cvr0": self.cvr[k] * t.get("cvr", 1.0),
            "aov0": self.aov[k] * t.get("aov", 1.0),
            "cv2": self.aov_cv[k] ** 2,
            "noise_sd": self.cpm_noise_sd[k],
            "day_cap_share": 1.0 + self.overdelivery[k],
            "demand_left": setup.daily_demand / 4.0,
            "active": 1.0,
            "cpm_mult": 1.0,
            "cvr_mult": 1.0,
            "spend_mult": 1.0,
        }
        for name in self._columns:
            setattr(self, name, np.append(getattr(self, name), row.get(name, 0)))
        self.index[setup.campaign_id] = len(self.ids)
        self.ids.append(setup.campaign_id)
        self.id_tuple = tuple(self.ids)
        self._stale = True

    def set_bid(self, campaign_id: str, bid_cpm: float) -> None:
        self.bid[self.index[campaign_id]] = bid_cpm

    def pause(self, campaign_id: str) -> None:
        self.active[self.index[campaign_id]] = 0.0

    def is_active(self, campaign_id: str) -> bool:
        return bool(self.active[self.index[campaign_id]])

    # --- time ---------------------------------------------------------------------------------
    def new_day(self) -> None:
        """Budgets reset; the market drifts."""
        self.spend_today[:] = 0.0
        self.log_drift += self.cpm_drift_sd * self.rng.standard_normal(len(PLATFORMS))
        self._stale = True

    def tick(self) -> None:
        """Deliver one tick for every active campaign, adding to the cumulative columns.

        Per-campaign factors are recomputed only when they change (`_refresh`), so a tick is
        about 30 small array operations whatever the number of campaigns: the cost of a month is
        the number of ticks. The cumulative columns (spend, impressions, clicks, conversions,
        revenue) are replaced, never changed in place, so a BidBatch may hold them uncopied."""
        if not self.ids:
            return
        if self._stale:
            self._refresh()
        rng, sd, n = self.rng, self.noise_sd, len(self.ids)
        cpm = self._cpm_level * np.exp(sd * rng.standard_normal(n) - self._half_var)
        won = np.minimum(1.0, (self.bid / cpm) ** BID_ELASTICITY)
        spend = self._pace * won * self._runaway
        room = np.maximum(self._cap - self.spend_today, 0.0)
        if self._any_runaway:  # a runaway ignores the cap
            spend = np.where(self._runaway > 1.0, spend, np.minimum(spend, room)) * self.active
        else:
            spend = np.minimum(spend, room) * self.active
        impressions = spend / cpm * 1000.0
        # clicks ~ Poisson(a) and conversions | clicks ~ Binomial(clicks, q) is the same as two
        # independent Poisson draws, converting (a q) and not converting (a (1 - q)): one call
        a = impressions * self.ctr0
        draws = rng.poisson(np.concatenate((a, a)) * self._q_both).astype(np.float64)
        converting, other = draws[:n], draws[n:]
        clicks = converting + other
        # demand arrives at a steady rate; what the funnel cannot convert now waits a few hours at most
        demand = np.minimum(self.demand_left + self.demand_rate, self.demand_cap)
        conversions = np.minimum(converting, np.floor(demand))
        self.demand_left = demand - conversions
        self.spend = self.spend + spend
        self.spend_today += spend
        self.impressions = self.impressions + impressions
        self.clicks = self.clicks + clicks
        self.conversions = self.conversions + conversions
        has = conversions > 0
        if has.any():  # a sum of order values: gamma with the order value's coefficient of variation
            cv2 = self.cv2[has]
            revenue = self.revenue.copy()
            revenue[has] += rng.gamma(conversions[has] / cv2, self.aov0[has] * cv2)
            self.revenue = revenue
