"""The replay's report: each campaign's real run against the plan the gate approved.

Per campaign, cumulative spend and revenue as delivered over the gate's projection fan, fault
windows shaded and pauses marked; then the expectations, the campaigns and the timeline as tables."""

from __future__ import annotations

from typing import Any

import numpy as np

from synctwin.app.reports.html import (
    BLUE,
    FAULT_COLOUR,
    GREEN,
    RED,
    Cell,
    Page,
    duration,
    frame,
    money,
    new_figure,
    num,
    verdict,
)
from synctwin.kernel.formatting import percent


def build_replay_page(trace: Any) -> str:
    """The HTML page for one replay (`trace` a harness.trace.Trace)."""
    passed = sum(e.passed for e in trace.expectations)
    total = len(trace.expectations)
    page = Page(
        f"SyncTwin replay: {trace.scenario} (seed {trace.seed})",
        f"{duration(trace.duration_s)} of virtual time, {trace.ticks:,} ticks in {trace.wall_s:.2f} s wall",
    )
    page.h2("Result")
    pauses = trace.pauses
    evaluations = sum(a.get("count", 1) for a in trace.alerts)
    page.kv(
        [
            ("verdict", verdict(trace.passed, "PASSED", "FAILED")),
            ("expectations", num(f"{passed}/{total} passed")),
            (
                "campaigns",
                num(
                    f"{len(trace.campaigns)} ({sum(c.launched_at is not None for c in trace.campaigns.values())}"
                    f" launched, {len(pauses)} paused)"
                ),
            ),
            ("faults", num(len(trace.faults))),
            ("audit records", num(len(trace.audit))),
            (
                "alerts",
                num(
                    f"{len(trace.alerts)}"
                    + (
                        f" (one per episode; {evaluations} evaluations alerted)"
                        if evaluations > len(trace.alerts)
                        else ""
                    )
                ),
            ),
        ]
    )
    failed = [e for e in trace.expectations if not e.passed]
    if failed:
        page.h2("Failed expectations")
        page.table(["", "expectation", "what happened"], [[verdict(False), e.expectation, e.message] for e in failed])
    # the plots that matter first: a campaign paused, hit by a fault or off its plan gets its own
    # figure; the rest share one figure of small panels (their lines sit on the plan: nothing to see)
    launched = [c for c in trace.campaigns.values() if c.launched_at is not None and c.hours]
    featured = [c for c in launched if needs_a_look(trace, c, failed)]
    quiet = [c for c in launched if c not in featured]
    if featured:
        page.h2("Campaigns that need a look")
    for c in featured:
        page.h3(c.campaign_id)
        page.p(_campaign_sentence(trace, c))
        page.figure(
            campaign_figure(trace, c),
            caption="Cumulative spend and revenue as delivered (solid) against the gate's projection at the same "
            "elapsed time (median dashed, p10-p90 band); shaded: fault windows; red line: the pause.",
            alt=f"{c.campaign_id}: realized spend and revenue against the projection",
        )
    if quiet:
        page.h2("The other campaigns: on plan" if featured else "Each campaign against its projection")
        page.figure(
            small_multiples(trace, quiet),
            caption="Cumulative revenue as delivered (black) inside the projection's p10-p90 band (green), one "
            "panel per campaign; none was paused, hit by a fault or left its band.",
            alt="cumulative revenue of the campaigns on plan against their projections",
        )
    page.h2("Campaigns")
    page.table(
        [
            "campaign",
            "gate",
            "confidence",
            "status",
            "spend",
            "revenue",
            "realized uplift",
            "projected uplift",
            "max day",
        ],
        [
            [
                c.campaign_id,
                c.decision or "-",
                num(percent(c.confidence, 1, missing="-")),
                _status(c),
                num(money(c.final.get("spend"))),
                num(money(c.final.get("revenue"))),
                num(money(c.net_profit_uplift)),
                num(money(c.projected_uplift)),
                num(percent(c.max_daily_spend_share)),
            ]
            for c in trace.campaigns.values()
        ],
    )
    for c in trace.campaigns.values():
        if c.decision is not None and (c.launched_at is None or not c.hours) and c not in featured:
            page.p(f"{c.campaign_id}: {_campaign_sentence(trace, c)}")
    if trace.faults:
        page.h2("Faults")
        page.table(
            ["fault", "kind", "target", "start", "end"],
            [
                [
                    fid,
                    f["kind"],
                    _target(f),
                    num(duration(f.get("start"))),
                    num(duration(f.get("end")) if f.get("end") is not None else "end of run"),
                ]
                for fid, f in trace.faults.items()
            ],
        )
    page.h2("Expectations")
    page.table(
        ["", "expectation", "what happened"],
        [[verdict(e.passed), e.expectation, e.message] for e in trace.expectations] or [["-", "(none)", ""]],
        collapsed=f"all {total} expectations ({passed} passed)" if total > 8 else None,
    )
    if trace.alerts:
        page.h2("Alerts")
        page.table(
            ["t", "severity", "alert", "evaluations"],
            [[num(duration(a["t"])), a["severity"], a["title"], num(a.get("count", 1))] for a in trace.alerts],
            collapsed=f"{len(trace.alerts)} alerts, one per episode" if len(trace.alerts) > 8 else None,
        )
    page.h2("Timeline")
    page.table(
        ["t", "event", "campaign", "details"],
        [
            [
                num(duration(e["t"])),
                e["kind"],
                e.get("campaign", ""),
                " ".join(f"{k}={v}" for k, v in e.items() if k not in ("t", "kind", "campaign")),
            ]
            for e in trace.timeline
        ]
        or [["-", "(no events)", "", ""]],
        collapsed=f"{len(trace.timeline)} events" if len(trace.timeline) > 12 else None,
    )
    return page.render()


def needs_a_look(trace: Any, c: Any, failed: list[Any]) -> bool:
    """Paused, touched by a fault, named by a failed expectation, or its final revenue outside the
    projection's p10-p90 at the same elapsed time."""
    if c.pause_reason or any(f.get("start") is not None and applies(f, c) for f in trace.faults.values()):
        return True
    if any(c.campaign_id in e.expectation for e in failed):
        return True
    if not c.projection:
        return False
    p10, _, p90 = projection_at(c.projection, "revenue", (c.hours[-1] - c.launched_at) / 3600.0)
    return not p10 <= c.revenue[-1] <= p90


def small_multiples(trace: Any, campaigns: list[Any], cols: int = 4) -> Any:
    """One small panel per campaign: cumulative revenue over its projection band (days since launch)."""
    rows = -(-len(campaigns) // cols)
    fig, axes = new_figure(12, 2.1 * rows + 0.4, rows=rows, cols=cols)
    unit, unit_name = time_axis(trace.duration_s)
    for ax, c in zip((a for row in axes for a in row), campaigns, strict=False):
        if c.projection:
            ts = np.array([p["t_hours"] for p in c.projection]) * 3600.0 + c.launched_at
            keep = ts <= trace.duration_s
            band = [np.array([p[f"revenue_{q}"] for p in c.projection])[keep] for q in ("p10", "p90")]
            ax.fill_between(ts[keep] / unit, band[0], band[1], color=GREEN, alpha=0.25, linewidth=0)
        ax.plot(np.asarray(c.hours) / unit, c.revenue, color="black", linewidth=1.2)
        frame(ax, c.campaign_id, fontsize=9)
        ax.set_xlim(0, trace.duration_s / unit)
        ax.set_ylim(bottom=0)
        ax.tick_params(labelsize=7)
    for ax in [a for row in axes for a in row][len(campaigns) :]:
        ax.set_visible(False)
    fig.supxlabel(f"{unit_name} since the start of the run", fontsize=8)
    return fig


def _status(c: Any) -> Cell:
    if c.pause_reason:
        return Cell(f"paused: {c.pause_reason} at {duration(c.paused_at)}", "bad")
    return Cell(c.status.lower(), "ok" if c.status == "LIVE" else "")


def _target(f: dict[str, Any]) -> str:
    return ", ".join(f"{k} {f[k]}" for k in ("campaign", "platform") if f.get(k)) or "all"


def applies(fault: dict[str, Any], c: Any) -> bool:
    """Whether a fault touched this campaign: its own, its platform's, or a world-wide one."""
    if fault.get("campaign") and fault["campaign"] != c.campaign_id:
        return False
    return not (fault.get("platform") and fault["platform"] != c.platform)


def projection_at(points: list[dict[str, float]], metric: str, t_hours: float) -> tuple[float, float, float]:
    """The projection's p10/p50/p90 of a cumulative metric at `t_hours` after launch (linear between points)."""
    ts = [p["t_hours"] for p in points]
    p10, p50, p90 = (float(np.interp(t_hours, ts, [p[f"{metric}_{q}"] for p in points])) for q in ("p10", "p50", "p90"))
    return p10, p50, p90


def _campaign_sentence(trace: Any, c: Any) -> str:
    if c.decision is None:
        return "Not gated."
    if c.gate_error:
        return f"Gate: invalid ({c.gate_error}); never launched."
    gate = (
        f"Gate: {c.decision}"
        + (
            f" (confidence {percent(c.confidence, 1)}, projected uplift {money(c.projected_uplift)})"
            if c.confidence is not None
            else ""
        )
        + "."
    )
    if c.launched_at is None:
        return gate + " Never launched."
    text = gate + f" Launched at {duration(c.launched_at)}."
    if c.pause_reason:
        text += f" Paused at {duration(c.paused_at)} ({c.pause_reason})."
    if c.final and c.projection:
        at = (c.paused_at if c.paused_at is not None else trace.duration_s) - c.launched_at
        idx = int(np.searchsorted(np.asarray(c.hours), c.launched_at + at, side="right")) - 1
        when = "at the pause" if c.paused_at is not None else "at the end"
        for metric, series in (("spend", c.spend), ("revenue", c.revenue)):
            if idx < 0:
                break
            real = series[idx]
            _, p50, _ = projection_at(c.projection, metric, (c.hours[idx] - c.launched_at) / 3600.0)
            off = f" ({round((real - p50) / p50, 3) + 0.0:+.1%})" if p50 > 0 else ""
            text += f" {metric.capitalize()} {when}: {money(real)} against a projected median of {money(p50)}{off}."
    if c.net_profit_uplift is not None:
        text += f" Realized net profit uplift: {money(c.net_profit_uplift)}."
    return text


def time_axis(duration_s: float) -> tuple[float, str]:
    """Hours for short runs (drills), days for long ones."""
    return (3600.0, "hours") if duration_s <= 2 * 86_400 else (86_400.0, "days")


def shade_faults(ax: Any, trace: Any, c: Any, unit: float, *, label: bool = True) -> None:
    """Shade each fault window that touched the campaign; a very short one still shows as a band."""
    minimum = trace.duration_s / 300.0
    first = True
    for fid, f in trace.faults.items():
        if f.get("start") is None or not applies(f, c):
            continue
        end = f["end"] if f.get("end") is not None else trace.duration_s
        end = max(end, f["start"] + minimum)
        ax.axvspan(
            f["start"] / unit,
            end / unit,
            color=FAULT_COLOUR,
            alpha=0.3,
            linewidth=0,
            label=f"fault ({f['kind']})" if label and first else None,
        )
        if label:
            ax.annotate(
                fid,
                (f["start"] / unit, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(2, -2),
                textcoords="offset points",
                ha="left",
                va="top",
                fontsize=8,
                color="#e65100",
            )
        first = False


def mark_pause(ax: Any, c: Any, unit: float) -> None:
    if c.paused_at is not None:
        ax.axvline(c.paused_at / unit, color=RED, linewidth=1.6, label=f"paused: {c.pause_reason}")


def campaign_figure(trace: Any, c: Any) -> Any:
    """Two panels, cumulative spend and revenue: the real run over the projection fan."""
    unit, unit_name = time_axis(trace.duration_s)
    fig, axes = new_figure(12, 3.4, cols=2)
    t_real = np.concatenate([[c.launched_at], np.asarray(c.hours, dtype=float)])
    horizon_end = trace.duration_s
    for ax, metric, series, colour in ((axes[0][0], "spend", c.spend, BLUE), (axes[0][1], "revenue", c.revenue, GREEN)):
        if c.projection:
            pts = c.projection
            ts = np.array([p["t_hours"] for p in pts]) * 3600.0 + c.launched_at
            keep = ts <= horizon_end
            grid = np.append(ts[keep], horizon_end) if ts[keep][-1] < horizon_end < ts[-1] else ts[keep]
            q = {k: np.interp(grid, ts, [p[f"{metric}_{k}"] for p in pts]) for k in ("p10", "p50", "p90")}
            ax.fill_between(
                grid / unit, q["p10"], q["p90"], color=colour, alpha=0.18, linewidth=0, label="projection p10-p90"
            )
            ax.plot(grid / unit, q["p50"], color=colour, linestyle="--", linewidth=1.3, label="projection median")
        ax.plot(
            t_real / unit,
            np.concatenate([[0.0], np.asarray(series, dtype=float)]),
            color="black",
            linewidth=1.8,
            label=f"real {metric}",
        )
        shade_faults(ax, trace, c, unit)
        mark_pause(ax, c, unit)
        ax.set_xlim(0, trace.duration_s / unit)
        ax.set_ylim(bottom=0)
        frame(ax, f"{c.campaign_id}: cumulative {metric}", xlabel=f"{unit_name} since the start of the run")
        ax.legend(fontsize=8, loc="upper left")
    return fig
