"""The chaos run's report: did each guard react to its fault, when, and what did it cost?

Per drill, the test campaign's hourly spend and revenue around the shaded fault window with the
guard's reaction marked; then the results, each drill's steady-state probes and the verdict."""

from __future__ import annotations

from typing import Any

import numpy as np

from synctwin.app.reports.html import BLUE, GREEN, GREY, PURPLE, Cell, Page, duration, money, new_figure, num, verdict
from synctwin.app.reports.replay import mark_pause, shade_faults
from synctwin.kernel.formatting import short_money


def build_chaos_page(run: Any) -> str:
    """The HTML page for one chaos run (`run` an harness.chaos.ChaosRun)."""
    total, failed = len(run.results), len(run.failures)
    ok = not run.failures
    page = Page(
        f"SyncTwin chaos drills: {total - failed}/{total} passed",
        f"virtual time, seed {run.seed}, {run.wall_s:.2f} s wall",
    )
    page.h2("Verdict")
    disabled = sorted({g for r in run.results for g in r.journal.get("disabled_guards", [])})
    page.kv(
        [
            (
                "verdict",
                verdict(
                    ok,
                    "PASS: every guard reacted as required",
                    f"FAIL: {failed} drill(s) failed ({', '.join(r.drill.name for r in run.failures)})",
                ),
            ),
            ("drills", num(f"{total - failed}/{total} passed")),
            ("guards switched off", ", ".join(disabled) or "none"),
        ]
    )
    page.h2("Results")
    rows = [r.row() for r in run.results]
    page.table(
        ["drill", "campaign", "fault", "expected guard", "what happened", "when", "verdict"],
        [
            [
                *(row[k] for k in ("drill", "template", "fault", "expected", "happened", "when")),
                verdict(row["verdict"] == "PASS"),
            ]
            for row in rows
        ],
    )
    for r, row in zip(run.results, rows, strict=True):
        c = next(iter(r.trace.campaigns.values()))
        page.h2(f"{r.drill.name} ({r.template}): {row['verdict']}", anchor=f"{r.drill.name}-{r.template}")
        page.p(_drill_sentence(r, c, row))
        if c.hours:
            page.figure(
                drill_figure(r, c),
                caption="Spend and revenue per hour of the test campaign (each step is the hour ending there); shaded: "
                "the fault; dashed: the budget's pace; red: the pause; green: bidding resumed after an outage.",
                alt=f"{r.drill.name}: spend and revenue per hour around the fault",
            )
        page.table(["phase", "probe", "status", "output"], _probe_rows(r.journal))
        if row["failures"]:
            page.p("Failed: " + "; ".join(row["failures"]), cls="bad")
    return page.render()


def _drill_sentence(r: Any, c: Any, row: dict[str, Any]) -> str:
    fault = r.trace.faults.get("fault") or {}
    start, end = fault.get("start"), fault.get("end")
    text = f"{r.drill.title}. Expected: {r.drill.expects}."
    if start is not None:
        text += f" The fault started at {duration(start)}" + (
            f" and ended at {duration(end)}." if end is not None else " and lasted to the end of the drill."
        )
    text += f" What happened: {row['happened']}"
    text += f", {row['when']}." if row["when"] != "-" else "."
    if c.final:
        text += (
            f" Spend over the drill {money(c.final.get('spend'))} (budget {money(c.daily_budget)} a day), "
            f"revenue {money(c.final.get('revenue'))}."
        )
    return text


def _probe_rows(journal: dict[str, Any]) -> list[list[Any]]:
    states = journal["steady_states"]
    rows: list[list[Any]] = []
    for phase, probes in (
        ("before", states["before"]["probes"]),
        ("during", states["during"]),
        ("after", states["after"]["probes"]),
    ):
        for p in probes:
            good = p["status"] == "succeeded"
            rows.append([phase, p["name"], Cell(p["status"], "ok" if good else "bad"), p.get("output", "")])
    return rows


def _hourly(hours: list[float], cumulative: list[float], start: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-interval increments of a cumulative series sampled at `hours` (from `start`)."""
    t = np.concatenate([[start], np.asarray(hours, dtype=float)])
    v = np.concatenate([[0.0], np.asarray(cumulative, dtype=float)])
    return t, np.concatenate([[0.0], np.diff(v)])


def drill_figure(r: Any, c: Any) -> Any:
    """Two panels, spend and revenue per hour, with the fault and the guard's reaction."""
    from matplotlib.ticker import FuncFormatter

    trace = r.trace
    unit = 3600.0
    fig, axes = new_figure(12, 3.3, cols=2)
    start = c.launched_at or 0.0
    recoveries = [
        t for t in trace.recoveries.get(c.platform, []) if t >= (trace.faults.get("fault") or {}).get("start", 0.0)
    ]
    opened = [
        e["t"]
        for e in trace.timeline
        if e["kind"] == "breaker_transition" and e.get("to") == "OPEN" and e.get("platform") == c.platform
    ]
    for ax, series, label, colour in (
        (axes[0][0], c.spend, "ad spend per hour", BLUE),
        (axes[0][1], c.revenue, "revenue per hour", GREEN),
    ):
        t, inc = _hourly(c.hours, series, start)
        ax.step(t / unit, inc, where="pre", color=colour, linewidth=1.8, label=label)
        if series is c.spend:
            ax.axhline(c.daily_budget / 24.0, color=GREY, linestyle="--", linewidth=1, label="budget pace")
        shade_faults(ax, trace, c, unit, label=False)
        fault = trace.faults.get("fault") or {}
        if fault.get("start") is not None:
            ax.axvline(fault["start"] / unit, color="#e65100", linewidth=1.2, label=f"fault: {fault['kind']}")
        mark_pause(ax, c, unit)
        if opened:
            ax.axvline(opened[0] / unit, color=PURPLE, linestyle=":", linewidth=1.4, label="breaker opened")
        if recoveries:
            ax.axvline(recoveries[0] / unit, color=GREEN, linestyle="-.", linewidth=1.4, label="bidding resumed")
        ax.set_xlim(0, trace.duration_s / unit)
        ax.set_ylim(bottom=0)
        ax.set_title(f"{r.drill.name}: {label}", fontsize=11)
        ax.set_xlabel("hours since the drill started")
        ax.yaxis.set_major_formatter(FuncFormatter(short_money))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    return fig
