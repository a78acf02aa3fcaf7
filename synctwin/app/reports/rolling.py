"""The rolling backtest's report: how far the gate's intervals and confidence held on one account.

The projection against what happened window by window, the PIT histogram and the reliability of
the confidence score, then the figures and every window as tables."""

from __future__ import annotations

from typing import Any

import numpy as np

from synctwin.app.reports.html import BLUE, GREEN, GREY, ORANGE, RED, Cell, Page, frame, money, new_figure, num

TARGET = (0.75, 0.85)
_REVENUE_BANDS = ("revenue_p10", "revenue_p50", "revenue_p90")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def build_rolling_page(d: dict[str, Any]) -> str:
    """The HTML page of a rolling backtest (`d` is RollingReport.to_dict())."""
    st, s, windows = d["settings"], d["summary"], d["windows"]
    page = Page(
        f"SyncTwin rolling backtest: {d['model']} on {d['source']}",
        f"{s['windows']} windows of {st['horizon']} days, every {st['step']} days; history "
        f"{d['history']['start']} to {d['history']['end']}; lookback {st['lookback']} days; "
        f"seed {st['seed']}, {st['paths']:,} paths a window",
    )
    cov = s["revenue_coverage_p10_p90"]
    ok = cov["value"] is not None and TARGET[0] <= cov["value"] <= TARGET[1]
    med, ucov, umed, crps, pit, brier = (
        s[k] for k in ("revenue_below_p50", "uplift_coverage_p10_p90", "uplift_below_p50", "crps", "pit", "brier")
    )
    page.h2("How far to trust the gate on this account")
    page.p(
        f"At each origin the gate saw only the history before it and was asked about the plan that was really "
        f"run over the next {st['horizon']} days (its realized mean daily spend). A calibrated gate's p10-p90 "
        "holds about 80% of what happened (target 75-85%), half of the outcomes fall below its median, its PIT "
        "histogram is flat, and of the windows it gives a confidence of 70%, about 70% make money. "
        + s["note"][0].upper()
        + s["note"][1:]
        + "."
    )
    page.kv(
        [
            (
                "revenue p10-p90 coverage",
                Cell(
                    f"{_pct(cov['value'])}  (95% {_pct(cov['interval'][0])}-{_pct(cov['interval'][1])}; target 75-85%)",
                    "ok" if ok else "bad",
                ),
            ),
            (
                "revenue below the median",
                num(f"{_pct(med['value'])}  (target 50%; off by {_pct(med['distance_from_half'])})"),
            ),
            (
                "uplift p10-p90 coverage",
                num(f"{_pct(ucov['value'])}  (95% {_pct(ucov['interval'][0])}-{_pct(ucov['interval'][1])})"),
            ),
            ("uplift below the median", num(_pct(umed["value"]))),
            (
                "CRPS of the uplift (mean a window)",
                num(
                    f"{money(crps['mean'])}  (95% {money(crps['interval'][0])}-{money(crps['interval'][1])})"
                    + (
                        ""
                        if crps["relative_to_revenue"] is None
                        else f"; {crps['relative_to_revenue']:.1%} of the mean realized revenue"
                    )
                ),
            ),
            (
                "PIT uniformity",
                num(
                    "n/a (fewer than 5 windows)"
                    if pit["chi2_pvalue"] is None
                    else f"chi-square p = {pit['chi2_pvalue']:.3g}, KS p = {pit['ks_pvalue']:.3g}"
                ),
            ),
            (
                "Brier score of 'uplift > 0'",
                num(
                    f"{brier['score']:.4f}  (95% {brier['interval'][0]:.4f}-"
                    f"{brier['interval'][1]:.4f}); reliability {brier['reliability']:.4f}, "
                    f"resolution {brier['resolution']:.4f}, uncertainty "
                    f"{brier['uncertainty']:.4f}"
                ),
            ),
            (
                "mean confidence / share profitable",
                num(f"{_pct(brier['mean_confidence'])} / {_pct(brier['profitable_share'])}"),
            ),
            ("windows (skipped origins)", num(f"{s['windows']} ({len(d['skipped'])})")),
            ("demand headroom / gross margin", num(f"{st['demand_headroom']:g} / {st['gross_margin']:g}")),
        ]
    )
    page.h2("Projection against what happened")
    page.figure(
        fan_figure(windows),
        caption="At each origin: the projection's p10-p90 band (shaded) and median (line) for the window's total "
        "revenue (top) and net profit uplift (bottom); dots are what happened, green inside the band, red outside.",
        alt="projected p10-p50-p90 against realized revenue and uplift per window",
    )
    page.h2("Calibration")
    page.figure(
        calibration_figure(pit, brier["table"]),
        caption="Left: where each realized uplift fell among the gate's paths (PIT). Flat = calibrated; "
        "U-shaped = overconfident (intervals too narrow); hump = underconfident; piled at one end = "
        "biased (right: outcomes above the projection). Right: the confidence score against the "
        "share of those windows that made money (the diagonal is a calibrated gate).",
        alt="PIT histogram and reliability diagram",
    )
    page.h2("Windows")
    rows = [
        [
            w["origin"],
            *(num(money(w[k])) for k in ("budget", "baseline_daily_spend", "realized_revenue", *_REVENUE_BANDS)),
            Cell("yes", "ok") if w["revenue_inside_p10_p90"] else Cell("no", "bad"),
            num(money(w["realized_uplift"])),
            num(money(w["uplift_p50"])),
            num(f"{w['pit']:.3f}"),
            num(f"{w['confidence']:.1%}"),
            "yes" if w["profitable"] else "no",
        ]
        for w in windows
    ]
    page.table(
        [
            "origin",
            "budget / day",
            "baseline spend / day",
            "realized revenue",
            "revenue p10",
            "revenue p50",
            "revenue p90",
            "inside p10-p90",
            "realized uplift",
            "projected uplift (p50)",
            "PIT of the uplift",
            "confidence",
            "profitable",
        ],
        rows,
        collapsed=f"all {len(rows)} windows as a table" if len(rows) > 30 else None,
    )
    if d["skipped"]:
        page.table(
            ["skipped origin", "reason"],
            [[x["origin"], x["reason"]] for x in d["skipped"]],
            collapsed=f"{len(d['skipped'])} origin(s) gave no window",
        )
    return page.render()


def fan_figure(windows: list[dict[str, Any]]) -> Any:
    """Two panels over the origins: revenue and uplift, band, median and realized dots."""
    x = np.array([np.datetime64(w["origin"]) for w in windows]).astype("datetime64[D]").astype(object)
    fig, axes = new_figure(12, 7.2, rows=2, sharex=True)
    panels = (
        ("revenue", "realized_revenue", "revenue_inside_p10_p90", "total revenue over the window", BLUE),
        ("uplift", "realized_uplift", "uplift_inside_p10_p90", "net profit uplift over the window", ORANGE),
    )
    for ax, (key, real_key, inside_key, title, colour) in zip(axes[:, 0], panels, strict=True):
        p10, p50, p90 = (np.array([w[f"{key}_{q}"] for w in windows]) for q in ("p10", "p50", "p90"))
        real = np.array([w[real_key] for w in windows])
        inside = np.array([w[inside_key] for w in windows])
        ax.fill_between(
            x,
            p10,
            p90,
            color=colour,
            alpha=0.22,
            linewidth=0,
            label="projected p10-p90",
            step="mid" if len(x) == 1 else None,
        )
        ax.plot(x, p50, color=colour, linewidth=2, marker="." if len(x) < 40 else None, label="projected median")
        ax.scatter(x[inside], real[inside], color=GREEN, zorder=3, s=28, label="realized, inside")
        ax.scatter(x[~inside], real[~inside], color=RED, zorder=3, s=28, label="realized, outside")
        if key == "uplift":
            ax.axhline(0, color=GREY, linewidth=1, linestyle="--")
        share = inside.mean() if inside.size else 0.0
        frame(ax, f"{title}: {share:.0%} of realized values inside p10-p90 (target 75-85%)")
        ax.legend(fontsize=8, loc="best")
    axes[1][0].set_xlabel("window origin (the gate saw only the days before it)")
    fig.autofmt_xdate()
    return fig


def calibration_figure(pit: dict[str, Any], table: list[dict[str, Any]]) -> Any:
    """PIT histogram with the flat line and its binomial band; reliability diagram."""
    from matplotlib.ticker import PercentFormatter

    fig, axes = new_figure(12, 4.4, cols=2)
    ax = axes[0][0]
    counts = np.array(pit["counts"], dtype=float)
    n = counts.sum()
    edges = np.array(pit["edges"])
    centers = (edges[:-1] + edges[1:]) / 2
    ax.bar(centers, counts, width=(edges[1] - edges[0]) * 0.92, color=BLUE, alpha=0.75, label="windows")
    if n:
        k = counts.size
        expected = n / k
        sd = np.sqrt(n * (1 / k) * (1 - 1 / k))
        ax.axhline(expected, color="black", linestyle="--", linewidth=1.2, label="flat (calibrated)")
        ax.axhspan(
            max(0.0, expected - 2 * sd), expected + 2 * sd, color=GREY, alpha=0.15, label="flat +- 2 sd (chance)"
        )
    pv = "n/a" if pit["chi2_pvalue"] is None else f"{pit['chi2_pvalue']:.3g}"
    ax.set_title(f"PIT of the realized uplift ({int(n)} windows; uniformity chi-square p = {pv})", fontsize=11)
    ax.set_xlabel("share of the gate's paths below what happened")
    ax.set_ylabel("windows")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8, loc="upper center")
    ax.grid(axis="y", alpha=0.3)

    ax = axes[0][1]
    ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="calibrated")
    pts = [b for b in table if b["count"]]
    if pts:
        xs = [b["mean_forecast"] for b in pts]
        ys = [b["observed"] for b in pts]
        sizes = [30 + 12 * b["count"] for b in pts]
        ax.scatter(xs, ys, s=sizes, color=ORANGE, zorder=3, label="windows (area = count)")
        for b, xv, yv in zip(pts, xs, ys, strict=True):
            ax.annotate(str(b["count"]), (xv, yv), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("the gate's confidence (share of paths with uplift > 0)")
    ax.set_ylabel("share of those windows that made money")
    ax.set_title("Reliability of the confidence score", fontsize=11)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return fig
