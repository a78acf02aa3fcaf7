"""Generate the 10 built-in historical campaigns (5 profitable, 5 not) for `synctwin backtest`.

`python -m harness.evaluation.generate_historical` rewrites them (OUT_DIR) deterministically.

Each client has a true market the gate never sees: CPM (drifting), CTR, conversions per click,
order value (per-order dispersion), daily noise and diminishing returns (conversions ~ spend^b,
b = `elasticity` < 1). Its 90-day history is drawn from it with budget steps, so the curve can be
learned. The campaign's outcome is a separate draw of the same market with the story's changes
the history cannot show (Q4 CPM inflation, a cold audience, ...), its conversions capped by the
audience's true demand: the gate's own funnel, drawn from the truth and never from the gate
(that would be circular). The realized uplift is DESIGN.md's, against the written history's
daily averages times the days."""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.syncvalue.baseline import compute_baseline
from synctwin.kernel.history import History, history_from_records, load_history

SEED = 20250207
HISTORY_DAYS = 90
OUT_DIR = Path(__file__).resolve().parent / "builtin" / "historical"
# day-of-week multipliers (Mon..Sun): people buy a little more early in the week, and
# auctions are a little dearer at weekends
WEEKDAY_CONVERSION = np.array([1.06, 1.04, 1.00, 0.98, 0.95, 0.96, 1.01])
WEEKDAY_CPM = np.array([0.97, 0.98, 0.99, 1.00, 1.01, 1.03, 1.02])
WEEKDAY_SPEND = np.array([1.02, 1.02, 1.01, 1.00, 0.99, 0.97, 0.99])


@dataclass(frozen=True, slots=True)
class Market:
    """A client's true auction and funnel, at the start of its history."""

    cpm: float
    ctr: float
    conv_per_click: float
    aov: float
    cpm_drift: float = 0.0  # relative change of CPM over the 90 history days (log-linear)
    order_cv: float = 0.7  # coefficient of variation of a single order's value
    cpm_sd: float = 0.08  # daily log-sds
    ctr_sd: float = 0.06
    cpc_sd: float = 0.08
    aov_sd: float = 0.03
    elasticity: float = 0.7  # b: conversions ~ spend^b around the client's usual spend

    def cpm_at(self, day: float) -> float:
        """CPM on day `day` since the history started (the drift continues into the campaign)."""
        return self.cpm * math.exp(math.log1p(self.cpm_drift) * day / HISTORY_DAYS)


@dataclass(frozen=True, slots=True)
class World:
    """How the campaign period really differed from the history (the gate's blind spots)."""

    cpm_shift: float = 1.0  # e.g. Q4 auction inflation
    conv_shift: float = 1.0  # e.g. a cold audience converting worse per click
    aov_shift: float = 1.0
    demand_factor: float = 1.0  # true demand / the strategy's audience_size * cvr
    level_sd: float = 0.04  # campaign-level log-sd of each rate around the story
    demand_daily_sd: float = 0.12


@dataclass(frozen=True, slots=True)
class CaseSpec:
    """One historical campaign: the client, its history and the campaign that followed."""

    slug: str
    description: str
    client_id: str
    platform: str
    launch: dt.date
    market: Market
    history_spend: float  # the client's average daily spend over the history
    strategy: dict[str, Any]
    world: World = field(default_factory=World)
    history_gap_days: int = 4  # the history ends this many days before launch
    history_spend_ramp: float = 0.0  # relative change of daily spend over the history
    spend_sd: float = 0.12  # day-to-day log-sd of spend around the current budget step
    step_sd: float = 0.18  # log-sd of the budget steps (every 12-20 days)


CASES: list[CaseSpec] = [
    CaseSpec(
        slug="meta_apparel_fall_scale_up",
        description="Meta, women's apparel: double a strong prospecting program (ROAS ~3.4 at a 60% "
        "margin) from about $800 to $1,600 a day for the fall season. A broad audience saturates slowly "
        "(conversions ~ spend^0.85, which the history's budget steps show); CPM drifting up into Q4 trims "
        "the uplift, but the extra dollars still earn more than they cost.",
        client_id="northwind-apparel",
        platform="meta",
        launch=dt.date(2025, 9, 8),
        market=Market(cpm=11.0, ctr=0.015, conv_per_click=0.032, aov=78.0, cpm_drift=0.08, elasticity=0.85),
        history_spend=800.0,
        strategy=dict(audience_size=2_100_000, cvr=0.0015, daily_budget=1600, duration_days=30, gross_margin=0.6),
        world=World(cpm_shift=1.05),
    ),
    CaseSpec(
        slug="tiktok_genz_streetwear_launch",
        description="TikTok, Gen-Z streetwear: after a small test that never paid, "
        "$500 a day for 30 days into a 220k Gen-Z audience. The audience gives ~220 orders whatever "
        "the budget; $15k of spend brings under $9k of revenue, a loss of about $7k.",
        client_id="volt-streetwear",
        platform="tiktok",
        launch=dt.date(2025, 6, 2),
        market=Market(cpm=6.5, ctr=0.011, conv_per_click=0.013, aov=38.0, cpm_sd=0.12, cpc_sd=0.12),
        history_spend=180.0,
        strategy=dict(audience_size=220_000, cvr=0.001, daily_budget=500, duration_days=30, gross_margin=0.6),
        world=World(demand_factor=0.95),
        history_gap_days=6,
    ),
    CaseSpec(
        slug="google_furniture_search_expansion",
        description="Google Search, furniture: widen high-intent keywords from about $1,100 to $1,800 a "
        "day. Large orders ($540) and a 38% margin make each click worth far more than it costs.",
        client_id="oakline-furniture",
        platform="google",
        launch=dt.date(2025, 3, 3),
        market=Market(cpm=45.0, ctr=0.045, conv_per_click=0.016, aov=540.0, order_cv=0.9, ctr_sd=0.05, elasticity=0.8),
        history_spend=1100.0,
        strategy=dict(audience_size=420_000, cvr=0.003, daily_budget=1800, duration_days=30, gross_margin=0.38),
        world=World(conv_shift=0.97),
        history_spend_ramp=0.05,
    ),
    CaseSpec(
        slug="meta_lookalike_budget_cut",
        description="Meta, home goods: move to a 2.4M lookalike audience assumed to convert at 0.9% and "
        "cut the budget from $1,500 to $1,000 a day. The one-factor formula counts 21,600 conversions and "
        "approves; $1,000 a day buys about 1,200. With little saturation (conversions ~ spend^0.75) "
        "revenue falls almost with the budget and the program, profitable at the margin, loses profit.",
        client_id="harbor-home",
        platform="meta",
        launch=dt.date(2025, 5, 12),
        market=Market(cpm=10.0, ctr=0.012, conv_per_click=0.032, aov=84.0, elasticity=0.75),
        history_spend=1500.0,
        strategy=dict(audience_size=2_400_000, cvr=0.009, daily_budget=1000, duration_days=30, gross_margin=0.5),
        world=World(conv_shift=0.93),
    ),
    CaseSpec(
        slug="meta_supplements_efficiency_cut",
        description="Meta, supplements: the program returns less margin than it spends (ROAS 1.15 at a 60% margin), so "
        "the strategy cuts $4,000 a day to $2,200 for 45 days. Revenue drops, spend drops more: profit goes up.",
        client_id="peak-nutrition",
        platform="meta",
        launch=dt.date(2025, 1, 13),
        market=Market(cpm=14.0, ctr=0.010, conv_per_click=0.035, aov=46.0, cpm_drift=0.04),
        history_spend=4000.0,
        strategy=dict(audience_size=1_100_000, cvr=0.003, daily_budget=2200, duration_days=45, gross_margin=0.6),
        world=World(conv_shift=1.04, cpm_shift=0.97),
        history_spend_ramp=0.10,
    ),
    CaseSpec(
        slug="google_electronics_low_margin_scale",
        description="Google Shopping, consumer electronics reseller: ROAS 4.5 looks strong, but at a 14% "
        "gross margin each dollar of spend returns about 64 cents of margin. Scaling from $2,200 to "
        "$3,500 a day loses more the more it spends.",
        client_id="voltcart-electronics",
        platform="google",
        launch=dt.date(2025, 8, 18),
        market=Market(cpm=18.0, ctr=0.009, conv_per_click=0.022, aov=410.0, order_cv=0.8),
        history_spend=2200.0,
        strategy=dict(audience_size=900_000, cvr=0.0015, daily_budget=3500, duration_days=30, gross_margin=0.14),
        world=World(cpm_shift=1.02),
    ),
    CaseSpec(
        slug="tiktok_skincare_new_audience",
        description="TikTok, skincare: a new audience (men 30-44, never advertised to) at $1,200 a day "
        "against a $300-a-day program with ROAS ~3.6 at a 78% margin, saturating slowly. The gate doubles its "
        "uncertainty for a new audience and still approves, with less room; the new audience "
        "converts 10% worse per click and the campaign still earns.",
        client_id="lumen-beauty",
        platform="tiktok",
        launch=dt.date(2025, 4, 14),
        market=Market(cpm=7.5, ctr=0.016, conv_per_click=0.031, aov=55.0, cpm_sd=0.10, cpc_sd=0.10, elasticity=0.85),
        history_spend=300.0,
        strategy=dict(
            audience_size=1_800_000,
            cvr=0.0025,
            daily_budget=1200,
            duration_days=28,
            gross_margin=0.78,
            new_audience=True,
        ),
        world=World(conv_shift=0.90),
    ),
    CaseSpec(
        slug="meta_outdoor_cold_audience",
        description="Meta, outdoor gear: a cold interest audience (new_audience) at $1,500 a day against "
        "$700. On the history's rates it would likely earn, but not surely: the gate rejects. The "
        "cold audience converted a third worse per click and the campaign would have lost money.",
        client_id="fjord-outdoor",
        platform="meta",
        launch=dt.date(2025, 10, 6),
        market=Market(cpm=11.0, ctr=0.012, conv_per_click=0.025, aov=95.0, cpm_drift=0.05),
        history_spend=700.0,
        strategy=dict(
            audience_size=900_000, cvr=0.0025, daily_budget=1500, duration_days=30, gross_margin=0.45, new_audience=True
        ),
        world=World(conv_shift=0.66, cpm_shift=1.06),
    ),
    CaseSpec(
        slug="google_toys_holiday_sprint",
        description="Google Shopping, toys: a 14-day December sprint from $900 to $2,000 a day on a program with ROAS "
        "~5 at a 48% margin, whose earlier budget pushes show it saturating slowly. Holiday auctions cost a fifth more "
        "while shoppers convert only a little better: the realized uplift is well below the projection, but positive.",
        client_id="brightside-toys",
        platform="google",
        launch=dt.date(2025, 12, 1),
        market=Market(cpm=8.0, ctr=0.015, conv_per_click=0.036, aov=75.0, cpm_drift=0.06, elasticity=0.85),
        history_spend=900.0,
        strategy=dict(audience_size=700_000, cvr=0.004, daily_budget=2000, duration_days=14, gross_margin=0.48),
        world=World(conv_shift=1.05, cpm_shift=1.20),
        history_gap_days=3,
        step_sd=0.30,  # the client has tried larger budgets before (pushes of up to ~1.5x)
    ),
    CaseSpec(
        slug="meta_retargeting_saturation",
        description="Meta, kitchenware retargeting: double the budget ($500 to $1,000 a day) on an 85k "
        "site-visitor pool that gives about 40 orders a day. The extra spend buys frequency, not "
        "orders; both models see the cap and reject.",
        client_id="copper-kettle",
        platform="meta",
        launch=dt.date(2025, 7, 14),
        market=Market(cpm=16.0, ctr=0.022, conv_per_click=0.045, aov=58.0),
        history_spend=500.0,
        strategy=dict(audience_size=85_000, cvr=0.010, daily_budget=1000, duration_days=21, gross_margin=0.5),
        world=World(demand_factor=0.97),
    ),
]


def _lognormal(rng: np.random.Generator, sd: float, size: int | None = None) -> Any:
    """Mean-one lognormal noise."""
    return np.exp(rng.normal(-0.5 * sd * sd, sd, size))


def _revenue(rng: np.random.Generator, orders: np.ndarray, aov: np.ndarray, order_cv: float) -> np.ndarray:
    """Sum of `orders` order values, each gamma with mean aov and the given dispersion."""
    k = 1.0 / (order_cv * order_cv)
    out = np.zeros(orders.shape, dtype=np.float64)
    has = orders > 0
    out[has] = rng.gamma(orders[has] * k, aov[has] / k)
    return out


def _funnel_days(
    rng: np.random.Generator,
    m: Market,
    spend: np.ndarray,
    days_since_start: np.ndarray,
    weekday: np.ndarray,
    *,
    reference_spend: float,
    cpm_level: float = 1.0,
    conv_level: float = 1.0,
    aov_level: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Impressions, clicks, conversions the spend buys (before any demand cap) and AOV, per day.
    Conversions per click fall like (spend / reference_spend)^(b - 1): diminishing returns."""
    n = spend.shape[0]
    cpm = np.array([m.cpm_at(d) for d in days_since_start]) * WEEKDAY_CPM[weekday] * cpm_level
    cpm *= _lognormal(rng, m.cpm_sd, n)
    impressions = np.floor(spend / cpm * 1000.0)
    ctr = np.clip(m.ctr * _lognormal(rng, m.ctr_sd, n), 0, 1)
    clicks = rng.binomial(impressions.astype(np.int64), ctr)
    saturation = (spend / reference_spend) ** (m.elasticity - 1.0)
    cpc = np.clip(
        m.conv_per_click * WEEKDAY_CONVERSION[weekday] * conv_level * saturation * _lognormal(rng, m.cpc_sd, n), 0, 1
    )
    conversions = rng.binomial(clicks, cpc)
    aov = m.aov * aov_level * _lognormal(rng, m.aov_sd, n)
    return impressions, clicks.astype(np.float64), conversions.astype(np.float64), aov


def draw_history(rng: np.random.Generator, spec: CaseSpec) -> History:
    """The client's last 90 days before the campaign, drawn from its true market."""
    end = spec.launch - dt.timedelta(days=spec.history_gap_days)
    dates = [end - dt.timedelta(days=HISTORY_DAYS - 1 - i) for i in range(HISTORY_DAYS)]
    weekday = np.array([d.weekday() for d in dates])
    t = np.arange(HISTORY_DAYS, dtype=np.float64)
    ramp = 1.0 + spec.history_spend_ramp * (t / (HISTORY_DAYS - 1) - 0.5)
    noise = _lognormal(rng, spec.spend_sd, HISTORY_DAYS)
    steps = np.empty(HISTORY_DAYS)
    i = 0
    while i < HISTORY_DAYS:  # budget steps around the usual level, mean one over the window
        run = int(rng.integers(12, 21))
        steps[i : i + run] = float(_lognormal(rng, spec.step_sd))
        i += run
    steps /= steps.mean()
    spend = np.round(spec.history_spend * ramp * WEEKDAY_SPEND[weekday] * steps * noise, 2)
    impressions, clicks, conversions, aov = _funnel_days(
        rng, spec.market, spend, t, weekday, reference_spend=spec.history_spend
    )
    revenue = np.round(_revenue(rng, conversions, aov, spec.market.order_cv), 2)
    cols = {
        "spend": spend,
        "impressions": impressions,
        "clicks": clicks,
        "conversions": conversions,
        "revenue": revenue,
    }
    rows = [{"date": d.isoformat(), **{k: v[i] for k, v in cols.items()}} for i, d in enumerate(dates)]
    return history_from_records(rows, source=spec.slug)


def draw_outcome(rng: np.random.Generator, spec: CaseSpec) -> dict[str, float]:
    """The campaign as it really went: the world's day-by-day funnel, capped by true demand."""
    s, w, m = spec.strategy, spec.world, spec.market
    days = int(s.get("duration_days", 30))
    dates = [spec.launch + dt.timedelta(days=i) for i in range(days)]
    weekday = np.array([d.weekday() for d in dates])
    t = HISTORY_DAYS - 1 + spec.history_gap_days + np.arange(1, days + 1, dtype=np.float64)
    delivery = np.minimum(_lognormal(rng, 0.05, days), 1.2)
    spend = np.round(float(s["daily_budget"]) * delivery, 2)
    _, _, bought, aov = _funnel_days(
        rng,
        m,
        spend,
        t,
        weekday,
        reference_spend=spec.history_spend,
        cpm_level=w.cpm_shift * float(_lognormal(rng, w.level_sd)),
        conv_level=w.conv_shift * float(_lognormal(rng, w.level_sd)),
        aov_level=w.aov_shift * float(_lognormal(rng, w.level_sd)),
    )
    demand_total = s["audience_size"] * s["cvr"] * w.demand_factor * float(_lognormal(rng, w.level_sd))
    demand = rng.poisson(demand_total / days * WEEKDAY_CONVERSION[weekday] * _lognormal(rng, w.demand_daily_sd, days))
    conversions = np.minimum(bought, demand)
    revenue = _revenue(rng, conversions, aov, m.order_cv)
    return {
        "revenue": round(float(revenue.sum()), 2),
        "spend": round(float(spend.sum()), 2),
        "conversions": float(conversions.sum()),
    }


def net_profit_uplift(history: History, days: int, gross_margin: float, revenue: float, spend: float) -> float:
    """DESIGN.md's definition against the history's baseline (daily averages x days)."""
    b = compute_baseline(history)
    return (revenue - b.revenue_over(days)) * gross_margin - (spend - b.spend_over(days))


def build_case(index: int, spec: CaseSpec, rng: np.random.Generator, out_dir: Path) -> dict[str, Any]:
    """Draw one case, write its history CSV and return the case document."""
    name = f"{index:02d}_{spec.slug}"
    history_rel = f"histories/{spec.client_id}.csv"
    history_path = out_dir / history_rel
    history_path.parent.mkdir(parents=True, exist_ok=True)
    history_path.write_text(draw_history(rng, spec).to_csv(), encoding="utf-8")
    written = load_history(history_path)  # the baseline of the file as written (rounded values)
    outcome = draw_outcome(rng, spec)
    conversions = outcome.pop("conversions")  # listed after the uplift in the case file
    days = int(spec.strategy.get("duration_days", 30))
    margin = float(spec.strategy.get("gross_margin", 1.0))
    uplift = net_profit_uplift(written, days, margin, outcome["revenue"], outcome["spend"])
    launch_ts = dt.datetime.combine(spec.launch, dt.time(), tzinfo=dt.UTC).timestamp()
    strategy = {
        "campaign_id": spec.slug.replace("_", "-"),
        "client_id": spec.client_id,
        "platform": spec.platform,
        **spec.strategy,
        "launch_ts": launch_ts,
    }
    return {
        "name": name,
        "description": spec.description,
        "strategy": strategy,
        "history": history_rel,
        "outcome": {**outcome, "net_profit_uplift": round(uplift, 2), "conversions": conversions},
    }


def generate(out_dir: Path = OUT_DIR, seed: int = SEED) -> list[dict[str, Any]]:
    """Write all cases; each draws from its own seed stream, so editing one leaves the rest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    streams = np.random.SeedSequence(seed).spawn(len(CASES))
    docs = []
    for i, (spec, stream) in enumerate(zip(CASES, streams, strict=True), start=1):
        doc = build_case(i, spec, np.random.default_rng(stream), out_dir)
        (out_dir / f"{doc['name']}.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        docs.append(doc)
    return docs


def main() -> None:
    docs = generate()
    for doc in docs:
        o = doc["outcome"]
        flag = "profitable  " if o["net_profit_uplift"] > 0 else "unprofitable"
        print(
            f"{doc['name']:<42} {flag} revenue {o['revenue']:>11,.2f}  spend {o['spend']:>10,.2f}  "
            f"uplift {o['net_profit_uplift']:>+11,.2f}"
        )
    print(f"wrote {len(docs)} cases to {OUT_DIR}")


if __name__ == "__main__":
    main()
