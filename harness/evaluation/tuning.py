"""Threshold tuning: false-negative and false-positive rates at each threshold, and calibration.

The seed lowers the confidence threshold when false negatives exceed 5%. Evidence is
(confidence, made money?) pairs: backtest cases, shadow outcomes of rejected campaigns and live
outcomes of approved ones (CAMPAIGN_OUTCOME: production's only evidence of false positives).
The rule: among thresholds with FN <= 5%, the fewest false positives (ties: the one closest to
the current threshold: no change the evidence does not ask for)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

FN_GOAL = 0.05
THRESHOLDS = tuple(round(0.50 + 0.01 * i, 2) for i in range(50))  # 0.50 .. 0.99
BINS = ((0.0, 0.5), (0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.85), (0.85, 0.9), (0.9, 0.95), (0.95, 1.0001))


@dataclass(frozen=True, slots=True)
class Evidence:
    """One campaign: the gate's confidence and whether it made (or would have made) money."""

    name: str
    confidence: float
    profitable: bool
    source: str  # "backtest", "shadow" or "live"


def rates_at(evidence: Iterable[Evidence], threshold: float) -> dict[str, Any]:
    """Confusion counts and rates at `threshold` (approve when confidence > threshold)."""
    calls = Counter((e.confidence > threshold, e.profitable) for e in evidence)  # (approved, profitable)
    tp, fp, fn, tn = calls[True, True], calls[True, False], calls[False, True], calls[False, False]
    return {
        "threshold": threshold,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "fn_rate": fn / (tp + fn) if tp + fn else None,
        "fp_rate": fp / (fp + tn) if fp + tn else None,
    }


def reliability(evidence: Iterable[Evidence]) -> list[dict[str, Any]]:
    """Confidence bins against the share that made money (a calibrated gate has them equal)."""
    rows = []
    items = list(evidence)
    for lo, hi in BINS:
        inside = [e for e in items if lo <= e.confidence < hi]
        rows.append(
            {
                "low": lo,
                "high": min(hi, 1.0),
                "n": len(inside),
                "mean_confidence": sum(e.confidence for e in inside) / len(inside) if inside else None,
                "profitable_share": sum(e.profitable for e in inside) / len(inside) if inside else None,
            }
        )
    return rows


def brier(evidence: Iterable[Evidence]) -> float | None:
    """Mean (confidence - made money)^2: 0 for a sure and right gate, 0.25 for a coin."""
    items = list(evidence)
    return sum((e.confidence - e.profitable) ** 2 for e in items) / len(items) if items else None


def calibration_effect(before: list[Evidence], after: list[Evidence]) -> dict[str, Any]:
    """Reliability and Brier of the confidence without the gate's calibration of its spread ("before")
    and with it ("after"), on the same campaigns."""
    return {
        "before": {"brier": brier(before), "reliability": reliability(before)},
        "after": {"brier": brier(after), "reliability": reliability(after)},
    }


def pick_threshold(curve: list[dict[str, Any]], current: float, fn_goal: float = FN_GOAL) -> tuple[float, str]:
    """The seed's rule over the FN/FP curve; returns (threshold, why)."""
    ok = [r for r in curve if (r["fn_rate"] or 0.0) <= fn_goal]
    if not ok:
        return curve[0]["threshold"], f"no threshold keeps false negatives at or below {fn_goal:.0%}: the lowest"
    best = min(ok, key=lambda r: ((r["fp_rate"] or 0.0), abs(r["threshold"] - current), -r["threshold"]))
    return best["threshold"], (
        f"false negatives <= {fn_goal:.0%}, then the fewest false positives (ties: nearest the current threshold)"
    )


def tune(evidence: list[Evidence], current: float) -> dict[str, Any]:
    """Everything `synctwin tune` reports, as a plain dict."""
    curve = [rates_at(evidence, t) for t in THRESHOLDS]
    chosen, why = pick_threshold(curve, current)
    return {
        "evidence": {
            "total": len(evidence),
            **{source: sum(e.source == source for e in evidence) for source in ("backtest", "shadow", "live")},
            "profitable": sum(e.profitable for e in evidence),
        },
        "current": rates_at(evidence, current),
        "recommended": rates_at(evidence, chosen),
        "threshold": chosen,
        "rule": why,
        "curve": curve,
        "reliability": reliability(evidence),
    }


def shadow_evidence(records: Iterable[Mapping[str, Any]]) -> list[Evidence]:
    """The latest SHADOW_OUTCOME per campaign with a confidence and a profitable flag."""
    latest: dict[str, Mapping[str, Any]] = {}
    for rec in records:
        if rec.get("event_type") == "SHADOW_OUTCOME" and rec.get("campaign_id"):
            latest[rec["campaign_id"]] = rec
    out = []
    for cid, rec in latest.items():
        meta = rec.get("metadata") or {}
        conf, profitable = meta.get("confidence_score"), meta.get("profitable")
        if isinstance(conf, int | float) and isinstance(profitable, bool):
            out.append(Evidence(cid, float(conf), profitable, "shadow"))
    return out


def live_evidence(records: Iterable[Mapping[str, Any]]) -> list[Evidence]:
    """The latest final CAMPAIGN_OUTCOME per campaign: an approved campaign's gate confidence and
    whether it made money (a campaign still running has no final outcome and is no evidence)."""
    latest: dict[str, Mapping[str, Any]] = {}
    for rec in records:
        meta = rec.get("metadata") or {}
        if rec.get("event_type") == "CAMPAIGN_OUTCOME" and rec.get("campaign_id") and meta.get("final") is not False:
            latest[rec["campaign_id"]] = meta
    out = []
    for cid, meta in latest.items():
        conf, profitable = meta.get("confidence_score"), meta.get("profitable")
        if isinstance(conf, int | float) and not isinstance(conf, bool) and isinstance(profitable, bool):
            out.append(Evidence(cid, float(conf), profitable, "live"))
    return out
