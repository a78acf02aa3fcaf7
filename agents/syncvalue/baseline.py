"""The baseline a campaign must beat, from a client's daily history (no I/O: any store will do)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np

from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.history import History

DAYS_PER_MONTH = 30
CURVE_DAYS = 180  # the response curve learns from up to this many days (the baseline stays the lookback's)


@dataclass(frozen=True, slots=True)
class Baseline:
    """Daily averages and funnel rates over the lookback window; `*_log_sd`, the day-to-day sd of a
    rate's log, set the funnel model's daily noise and (over sqrt(days)) its mean's sampling error."""

    days: int
    lookback_days: int
    daily_revenue: float
    daily_spend: float
    daily_conversions: float
    avg_order_value: float
    cpm: float
    ctr: float
    cvr_click: float
    cpm_log_sd: float
    ctr_log_sd: float
    cvr_click_log_sd: float
    aov_log_sd: float
    conversions_per_dollar_log_sd: float
    monthly_churn: float
    ltv: float
    # daily rows the curve model fits: the last max(lookback, CURVE_DAYS) days (more spend levels to learn
    # the curve from; the averages above stay the lookback window's)
    window: History | None = field(default=None, compare=False, repr=False)

    @property
    def monthly_revenue(self) -> float:
        return self.daily_revenue * DAYS_PER_MONTH

    @property
    def monthly_ad_spend(self) -> float:
        return self.daily_spend * DAYS_PER_MONTH

    def revenue_over(self, days: int) -> float:
        return self.daily_revenue * days

    def spend_over(self, days: int) -> float:
        return self.daily_spend * days

    def to_dict(self) -> dict[str, float]:
        d = {f.name: float(getattr(self, f.name)) for f in fields(self) if f.name != "window"}
        d["monthly_revenue"] = self.monthly_revenue
        d["monthly_ad_spend"] = self.monthly_ad_spend
        return d


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def log_sd(num: np.ndarray, den: np.ndarray) -> float:
    """Sample sd of log(num/den) over the days where both are positive (0 if under 2 such days)."""
    ok = (num > 0) & (den > 0)
    if int(ok.sum()) < 2:
        return 0.0
    return float(np.std(np.log(num[ok] / den[ok]), ddof=1))


def compute_baseline(
    history: History,
    *,
    lookback_days: int = 90,
    min_days: int = 14,
    gross_margin: float = 1.0,
    default_monthly_churn: float = 0.25,
    source: str = "history",
) -> Baseline:
    """The baseline over the history's last `lookback_days` calendar days. Churn: 1 - the share of
    buyers who return (`returning_customers`), else configured; LTV: margin per order x months."""
    window = history.last(lookback_days)
    n = len(window)
    if n < min_days:
        raise InvalidInput(
            f"the history has {n} day(s) in the {lookback_days}-day lookback; "
            f"at least {min_days} are needed for a baseline",
            source=source,
        )
    spend, imp, clk, conv, rev = window.spend, window.impressions, window.clicks, window.conversions, window.revenue
    total_spend, total_conv, total_rev = float(spend.sum()), float(conv.sum()), float(rev.sum())
    if total_spend <= 0:
        raise InvalidInput("the history has no ad spend in the lookback window", source=source, field="spend")
    aov = _ratio(total_rev, total_conv)
    if window.returning_customers is not None and total_conv > 0:
        monthly_churn = float(np.clip(1.0 - window.returning_customers.sum() / total_conv, 0.01, 1.0))
    else:
        monthly_churn = default_monthly_churn
    ltv = aov * gross_margin / monthly_churn if math.isfinite(aov) else math.nan
    return Baseline(
        days=n,
        lookback_days=lookback_days,
        daily_revenue=total_rev / n,
        daily_spend=total_spend / n,
        daily_conversions=total_conv / n,
        avg_order_value=aov,
        cpm=_ratio(total_spend, float(imp.sum())) * 1000.0,
        ctr=_ratio(float(clk.sum()), float(imp.sum())),
        cvr_click=_ratio(total_conv, float(clk.sum())),
        cpm_log_sd=log_sd(spend, imp),
        ctr_log_sd=log_sd(clk, imp),
        cvr_click_log_sd=log_sd(conv, clk),
        aov_log_sd=log_sd(rev, conv),
        conversions_per_dollar_log_sd=log_sd(conv, spend),
        monthly_churn=monthly_churn,
        ltv=ltv,
        window=history.last(max(lookback_days, CURVE_DAYS)),
    )
