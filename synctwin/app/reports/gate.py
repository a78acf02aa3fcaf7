"""The gate's report: why a campaign was approved or blocked, in two pictures and a table.

The paths' uplift distribution (the confidence is its green share) and the projection fan the
live mirror checks the real campaign against."""

from __future__ import annotations

from typing import Any

import numpy as np

from synctwin.app.reports.html import BLUE, GREEN, GREY, RED, Cell, Page, frame, money, new_figure, num, short_count
from synctwin.kernel.formatting import percent, plural, short_money

_MONEY = ("daily_budget", "cpm", "aov")
_SHARES = ("cvr", "ctr", "gross_margin")


def strategy_rows(strategy: Any) -> list[tuple[str, Any]]:
    """The strategy's fields as a reader wants them: money in $, rates in %, counts with separators,
    and the gross margin's default said out loud (it decides what revenue is worth)."""
    rows: list[tuple[str, Any]] = []
    for k, v in strategy.model_dump(exclude_none=True).items():
        if isinstance(v, bool):
            rows.append((k, "yes" if v else "no"))
        elif k in _MONEY:
            rows.append((k, num(money(v, 2 if k == "cpm" else 0))))
        elif k in _SHARES:
            default = k == "gross_margin" and k not in strategy.model_fields_set
            rows.append((k, num(percent(v, 2 if v < 0.1 else 0) + (" (default; set gross_margin)" if default else ""))))
        elif isinstance(v, int | float) and k != "launch_ts":
            rows.append((k, num(f"{v:,}")))
        else:
            rows.append((k, v))
    return rows


def build_gate_page(result: Any, uplift: np.ndarray, *, strategy: Any = None, source: str = "") -> str:
    """The HTML page for one gate decision (`result` a GateResult, `uplift` every path's uplift)."""
    sd = result.simulation_details
    approved = result.approved
    page = Page(
        f"SyncTwin gate: {result.decision} - {result.campaign_id}",
        f"client {result.client_id} - model {result.model} - seed {result.seed}" + (f" - {source}" if source else ""),
    )
    lo, hi = result.confidence_interval
    page.h2("Decision")
    verdict_cls = "ok" if approved else "bad"
    page.kv(
        [
            ("decision", Cell(result.decision, verdict_cls)),
            (
                "confidence score",
                num(f"{percent(result.confidence_score, 1)} (95% interval {percent(lo, 1)}-{percent(hi, 1)})"),
            ),
            ("threshold", num(f"approve when confidence > {result.threshold}")),
            ("risk profile", result.risk_profile),
            ("projected net profit uplift (median)", num(money(result.projected_net_profit_uplift))),
            (
                "uplift p10 / p50 / p90",
                num(f"{money(sd.p10_uplift)} / {money(sd.median_uplift)} / {money(sd.p90_uplift)}"),
            ),
            ("expected uplift (mean)", num(money(result.expected_uplift))),
            (
                "paths",
                num(
                    f"{sd.total_simulations:,} ({sd.positive_outcomes:,} with uplift > 0)"
                    + (
                        f"; {plural(sd.adaptive_rounds, 'adaptive round')} from {sd.initial_simulations:,}"
                        if sd.adaptive_rounds
                        else ""
                    )
                ),
            ),
            ("elapsed", num(f"{result.elapsed_ms:.1f} ms")),
        ]
    )
    if result.suggestions:
        page.h2("Suggestions (each was approved when applied to this strategy)")
        page.table(
            ["changes", "confidence"],
            [
                [", ".join(f"{k} = {v:,}" for k, v in s.changes.items()), num(f"{s.confidence_score:.4f}")]
                for s in result.suggestions
            ],
        )

    page.h2("Uplift distribution")
    page.figure(
        uplift_figure(result, uplift),
        caption=f"Net profit uplift of each of the {uplift.size:,} simulated paths: red ones lose money, "
        f"green ones make it. The confidence score ({result.confidence_score:.3f}) is the green "
        f"share; the gate approves above {result.threshold}.",
        alt=f"histogram of net profit uplift over {uplift.size:,} paths",
    )
    page.h2("Projection")
    proj = result.projection
    last = proj.points[-1]
    page.p(
        f"After {proj.horizon_days} days (medians): spend {money(last.spend_p50)}, revenue "
        f"{money(last.revenue_p50)}, {last.conversions_p50:,.0f} conversions. The live mirror compares the "
        "real campaign with these bands at the same elapsed time."
    )
    page.figure(
        projection_figure(result),
        caption="Cumulative totals since launch: median (line) and p10-p90 band over the paths; dashed: "
        "the baseline's pace over the same days.",
        alt="projection fan of spend, revenue and conversions",
    )
    bands = [(m, q) for m in ("spend", "revenue", "conversions") for q in ("p10", "p50", "p90")]

    def band(pt: Any, metric: str, q: str) -> Cell:
        value = getattr(pt, f"{metric}_{q}")
        return num(f"{value:,.0f}" if metric == "conversions" else money(value))

    page.table(
        ["day", *(f"{m} {q}" for m, q in bands)],
        [[num(f"{pt.t_hours / 24:g}"), *(band(pt, m, q) for m, q in bands)] for pt in proj.points],
        collapsed="the projection as a table, day by day",
    )
    if strategy is not None:
        page.h2("Strategy")
        page.kv(strategy_rows(strategy))
    b = result.baseline
    page.h2("Baseline")
    page.kv(
        [
            ("history window", f"{int(b.get('days', 0))} days"),
            ("revenue per day", num(money(b.get("daily_revenue")))),
            ("ad spend per day", num(money(b.get("daily_spend")))),
            ("average order value", num(money(b.get("avg_order_value"), 2))),
        ]
    )
    return page.render()


def uplift_figure(result: Any, uplift: np.ndarray) -> Any:
    """Histogram of the paths' uplift, split at zero, with p10/p50/p90 and the decision."""
    from matplotlib.ticker import FuncFormatter, PercentFormatter

    sd = result.simulation_details
    fig, axes = new_figure(11, 4.2)
    ax = axes[0][0]
    values = np.asarray(uplift, dtype=np.float64)
    # the tails of a million paths would squeeze the body into a few bins: show 0.1%-99.9%
    lo, hi = np.quantile(values, (0.001, 0.999)) if values.size > 1000 else (values.min(), values.max())
    span = max(hi - lo, 1.0)
    lo, hi = min(lo, 0.0) - 0.03 * span, max(hi, 0.0) + 0.03 * span
    edges = np.linspace(lo, hi, 81)
    counts, _ = np.histogram(np.clip(values, lo, hi), bins=edges)
    share = counts / max(values.size, 1)
    centers = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    colours = [GREEN if c > 0 else RED for c in centers]
    ax.bar(centers, share, width=width * 0.95, color=colours, alpha=0.75, linewidth=0)
    ax.axvline(0, color="black", linewidth=1.4, label="zero uplift")
    ymax = share.max() if share.size else 1.0
    for q, value, style, height in (
        ("p10", sd.p10_uplift, ":", 1.02),
        ("p50", sd.median_uplift, "--", 1.09),
        ("p90", sd.p90_uplift, ":", 1.02),
    ):
        ax.axvline(value, color=BLUE, linestyle=style, linewidth=1.3)
        ax.annotate(
            f"{q} {short_money(value)}",
            (value, ymax * height),
            ha="center",
            va="bottom",
            fontsize=9,
            color=BLUE,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
        )
    ax.set_ylim(0, ymax * 1.2 if ymax > 0 else 1)
    ax.xaxis.set_major_formatter(FuncFormatter(short_money))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=1))
    ax.set_xlabel("net profit uplift over the campaign (per path)")
    ax.set_ylabel("share of paths")
    lose = 1.0 - result.confidence_score
    for x, ha, colour, text in (
        (0.01, "left", RED, f"{lose:.1%} of paths lose money"),
        (0.99, "right", GREEN, f"{result.confidence_score:.1%} make money"),
    ):
        ax.text(x, 0.97, text, transform=ax.transAxes, ha=ha, va="top", color=colour, fontsize=10)
    lo_ci, hi_ci = result.confidence_interval
    ax.set_title(
        f"{result.decision}: confidence {result.confidence_score:.3f} (95% CI {lo_ci:.3f}-{hi_ci:.3f}) "
        f"vs threshold {result.threshold}",
        color=GREEN if result.approved else RED,
        fontsize=12,
    )
    ax.grid(axis="y", alpha=0.3)
    return fig


def projection_figure(result: Any) -> Any:
    """Three panels (spend, revenue, conversions): p10-p90 band and median over days."""
    pts = result.projection.points
    days = np.array([p.t_hours / 24 for p in pts])
    b = result.baseline
    fig, axes = new_figure(12, 3.6, cols=3)
    panels = (
        ("spend", "cumulative ad spend", BLUE, b.get("daily_spend"), short_money),
        ("revenue", "cumulative revenue", GREEN, b.get("daily_revenue"), short_money),
        ("conversions", "cumulative conversions", GREY, None, short_count),
    )
    for ax, (metric, title, colour, base, fmt) in zip(axes[0], panels, strict=True):
        p10, p50, p90 = (np.array([getattr(p, f"{metric}_{q}") for p in pts]) for q in ("p10", "p50", "p90"))
        ax.fill_between(days, p10, p90, color=colour, alpha=0.22, linewidth=0, label="p10-p90")
        ax.plot(days, p50, color=colour, linewidth=2, label="median")
        if base:
            ax.plot(days, days * base, color="black", linestyle="--", linewidth=1, label="baseline pace")
        frame(ax, title, xlabel="days since launch", fmt=fmt)
        ax.set_xlim(0, days[-1] if days[-1] > 0 else 1)
        ax.legend(fontsize=8, loc="upper left")
    return fig
