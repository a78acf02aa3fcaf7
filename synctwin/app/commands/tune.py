"""`synctwin tune`: the threshold the tuning rule picks from backtests, shadow and live outcomes.

Evidence: the backtest cases (default the built-in 10), the audit log's SHADOW_OUTCOME records
(rejections re-simulated) and final CAMPAIGN_OUTCOME records (approvals realized). `--apply` writes
the pick to the configuration file and audits THRESHOLD_CHANGED with the rates before and after."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from synctwin.app.commands.review import read_audit_log
from synctwin.app.console import console, emit
from synctwin.app.reports import check_report_path, write_report
from synctwin.kernel.config import config_file, get_settings
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.formatting import percent


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--apply",
        action="store_true",
        help="write the recommended threshold to the configuration "
        "file (SYNCTWIN_CONFIG_FILE, default ./synctwin.env) and audit THRESHOLD_CHANGED",
    )
    p.add_argument("--report", metavar="FILE.html", help="write the reliability diagram and the FN/FP curves")
    p.add_argument(
        "--audit-log",
        metavar="FILE",
        help="read SHADOW_OUTCOME and CAMPAIGN_OUTCOME records from this audit log; --apply audits THRESHOLD_CHANGED "
        "there (default: synctwin-audit.jsonl beside the config file)",
    )
    p.add_argument("--cases", metavar="DIR", help="backtest cases (default: the built-in 10 historical campaigns)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="backtest seed (default 0)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON document")


def collect(args: argparse.Namespace) -> tuple[list[Any], float, list[Any]]:
    """The evidence (backtest rows + shadow outcomes + live outcomes), the current threshold, and the
    same evidence with the backtest gated without the calibration of the spread (for before/after)."""
    from agents.synctwin.gate.gatekeeper import SimulationGatekeeper
    from harness.evaluation.backtest import builtin_historical_dir, load_cases, run_backtest
    from harness.evaluation.tuning import Evidence, live_evidence, shadow_evidence

    settings = get_settings()
    cases = load_cases(args.cases or builtin_historical_dir())

    def backtest(gate_settings: Any) -> list[Any]:
        report = run_backtest(cases, SimulationGatekeeper(settings=gate_settings), seed=args.seed)
        return [Evidence(r.name, r.confidence, r.profitable, "backtest") for r in report.rows]

    evidence, before = backtest(settings), backtest(settings.model_copy(update={"calibrate": False}))
    if args.audit_log:
        records = read_audit_log(args.audit_log)
        outcomes = shadow_evidence(records) + live_evidence(records)
        evidence += outcomes
        before += outcomes  # recorded confidences: the same before and after
    return evidence, settings.threshold, before


def apply_threshold(threshold: float, path: Path) -> None:
    """Set SYNCTWIN_THRESHOLD in the `.env`-style file, keeping every other line."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    kept = [ln for ln in lines if not ln.strip().upper().startswith("SYNCTWIN_THRESHOLD=")]
    kept.append(f"SYNCTWIN_THRESHOLD={threshold}")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(kept) + "\n", encoding="utf-8")
    tmp.replace(path)


def run(args: argparse.Namespace) -> int:
    from harness.evaluation.tuning import calibration_effect, tune

    check_report_path(args.report)
    evidence, current, before = collect(args)
    if not evidence:
        raise InvalidInput("no evidence: no backtest cases and no shadow or live outcomes")
    result = tune(evidence, current)
    result["calibration"] = calibration_effect(before, evidence)
    if args.apply:
        path = config_file()
        apply_threshold(result["threshold"], path)
        get_settings.cache_clear()
        from agents.syncshield.backends import JsonlAuditStore

        audit = args.audit_log or str(path.with_name("synctwin-audit.jsonl"))
        JsonlAuditStore(audit).append(
            "THRESHOLD_CHANGED",
            reason="SYNCTWIN_TUNE",
            metadata={
                "from": current,
                "to": result["threshold"],
                "rule": result["rule"],
                "config_file": str(path),
                "before": _rates(result["current"]),
                "after": _rates(result["recommended"]),
                "evidence": result["evidence"],
            },
        )
        result["applied"] = {"config_file": str(path), "audit_log": audit}
    if args.report:
        write_report(args.report, build_page(result))
    emit(args.json, result, print_tune)
    return 0


def _rates(r: dict[str, Any]) -> dict[str, Any]:
    return {k: r[k] for k in ("threshold", "fn_rate", "fp_rate", "tp", "fp", "fn", "tn")}


def _pct(x: float | None) -> str:
    return percent(x, 1, missing="-")


def print_tune(r: dict[str, Any]) -> None:
    from rich.table import Table

    out = console()
    ev = r["evidence"]
    out.print(
        f"[bold]Threshold tuning[/] on {ev['total']} campaigns ({ev['backtest']} backtest, "
        f"{ev['shadow']} shadow outcomes, {ev['live']} live outcomes; {ev['profitable']} made money)"
    )
    t = Table(box=None, pad_edge=False)
    for col in ("threshold", "FN rate", "FP rate", "TP", "FP", "FN", "TN"):
        t.add_column(col, justify="right")
    marks = {r["current"]["threshold"]: " (current)", r["threshold"]: " (recommended)"}
    for row in r["curve"]:
        if round(row["threshold"] * 100) % 5 and row["threshold"] not in marks:
            continue  # every 0.05 and the two that matter; --json has all 50
        t.add_row(
            f"{row['threshold']:.2f}{marks.get(row['threshold'], '')}",
            _pct(row["fn_rate"]),
            _pct(row["fp_rate"]),
            *(str(row[k]) for k in ("tp", "fp", "fn", "tn")),
        )
    out.print(t)
    rel = Table(
        box=None,
        pad_edge=False,
        title="reliability: of the campaigns given this confidence, how many "
        "made money (before: without the calibration of the spread; after: as the gate decides)",
    )
    for col in ("confidence", "campaigns", "mean confidence", "made money", "before: campaigns", "made money"):
        rel.add_column(col, justify="right")
    cal = r.get("calibration") or {"before": {"reliability": r["reliability"], "brier": None}}
    for b, a in zip(cal["before"]["reliability"], r["reliability"], strict=True):
        rel.add_row(
            f"{a['low']:.2f}-{a['high']:.2f}",
            str(a["n"]),
            "-" if a["mean_confidence"] is None else f"{a['mean_confidence']:.3f}",
            _pct(a["profitable_share"]),
            str(b["n"]),
            _pct(b["profitable_share"]),
        )
    out.print(rel)
    if cal["before"]["brier"] is not None:
        out.print(
            f"Brier score of the confidence: before {cal['before']['brier']:.3f}, "
            f"after {cal['after']['brier']:.3f} (lower is better; 0.25 is a coin)"
        )
    cur, rec = r["current"], r["recommended"]
    out.print(f"current threshold {cur['threshold']}: FN {_pct(cur['fn_rate'])}, FP {_pct(cur['fp_rate'])}")
    out.print(
        f"[bold]recommended threshold {r['threshold']}[/]: FN {_pct(rec['fn_rate'])}, FP {_pct(rec['fp_rate'])}"
        f" ({r['rule']})"
    )
    if "applied" in r:
        out.print(f"applied: {r['applied']['config_file']} (audited THRESHOLD_CHANGED in {r['applied']['audit_log']})")


def build_page(r: dict[str, Any]) -> str:
    """Reliability diagram and FN/FP curves, with the numbers as tables."""
    from synctwin.app.reports.html import Page, new_figure

    page = Page(
        "SyncTwin threshold tuning",
        f"{r['evidence']['total']} campaigns; recommended threshold {r['threshold']} ({r['rule']})",
    )
    fig, axes = new_figure(9.0, 3.6, cols=2)
    ax = axes[0][0]
    bins = [b for b in r["reliability"] if b["n"]]
    ax.plot([0, 1], [0, 1], color="#999", linestyle="--", label="calibrated")
    ax.plot([b["mean_confidence"] for b in bins], [b["profitable_share"] for b in bins], marker="o", label="gate")
    ax.set_xlabel("confidence")
    ax.set_ylabel("share that made money")
    ax.set_title("reliability")
    ax.legend(loc="upper left")
    ax = axes[0][1]
    xs = [c["threshold"] for c in r["curve"]]
    for rate, label in (("fn_rate", "FN rate"), ("fp_rate", "FP rate")):
        ax.plot(xs, [float("nan") if c[rate] is None else c[rate] for c in r["curve"]], label=label)
    ax.axvline(r["threshold"], color="#2a7", linestyle=":", label=f"recommended {r['threshold']}")
    ax.axhline(0.05, color="#c33", linewidth=0.8, linestyle="--", label="FN goal 5%")
    ax.set_xlabel("threshold")
    ax.set_title("false negatives and false positives")
    ax.legend(loc="upper left", fontsize=7)
    page.figure(
        fig,
        "Left: confidence against the share that made money. Right: FN/FP rates by threshold.",
        "reliability diagram and FN/FP curves",
    )
    page.h2("Reliability")
    page.table(
        ["confidence", "campaigns", "mean confidence", "made money"],
        [
            [f"{b['low']:.2f}-{b['high']:.2f}", b["n"], b["mean_confidence"], _pct(b["profitable_share"])]
            for b in r["reliability"]
        ],
    )
    page.h2("Rates by threshold")
    page.table(
        ["threshold", "FN rate", "FP rate", "TP", "FP", "FN", "TN"],
        [
            [c["threshold"], _pct(c["fn_rate"]), _pct(c["fp_rate"]), c["tp"], c["fp"], c["fn"], c["tn"]]
            for c in r["curve"]
        ],
        collapsed="all 50 thresholds",
    )
    return page.render()
