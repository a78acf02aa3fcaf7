"""How well the mirror separates on-plan campaigns from the seed's faults, against an oracle.

Streams are drawn from the projection itself: each on-plan campaign follows one path of the
Monte Carlo band (a rate multiplier drawn from the band's spread), with Poisson conversions,
gamma order values and steady spend, one cumulative bid event every 5 minutes for 3 days.
Faults start on day 2 (hour 30): CVR -30%, CPM +50% (a third fewer conversions for the same
spend), 10x spend. The mirror is `agents.synctwin.mirror.deviation.apply_event`, the code production
runs. The oracle is a Poisson CUSUM that knows the fault's size and start and the campaign's
true on-plan rate, with its threshold set to give the mirror's false-pause rate.

    python benchmarks/mirror_detection.py [--campaigns N] [--rate CONV_PER_HOUR] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace

import numpy as np

from agents.synctwin.gate.gatekeeper import SimulationGatekeeper
from agents.synctwin.mirror.deviation import MirrorConfig, MirrorState, ProjectionCurve, apply_event
from agents.syncvalue.baseline import compute_baseline
from synctwin.kernel.history import parse_history_csv
from synctwin.kernel.models import Strategy

STEP = 300.0  # seconds between bid events
HOURS = 72
FAULT_HOUR = 30


def projection_for(rate_per_hour: float, seed: int = 1) -> tuple[ProjectionCurve, float]:
    """A gate projection for a campaign converting about `rate_per_hour`, from a flat history."""
    aov, cpa = 60.0, 10.0
    daily_conv = rate_per_hour * 24
    rows = ["date,spend,impressions,clicks,conversions,revenue"]
    rng = np.random.default_rng(seed)
    for d in range(90):
        conv = rng.poisson(daily_conv)
        spend = daily_conv * cpa * math.exp(rng.normal(0, 0.05))
        clicks = conv * 25
        rows.append(
            f"{np.datetime64('2026-01-01') + d},{spend:.2f},{clicks * 50},{clicks},{conv},"
            f"{conv * aov * math.exp(rng.normal(0, 0.05)):.2f}"
        )
    history = parse_history_csv("\n".join(rows) + "\n")
    strategy = Strategy(
        audience_size=10**8,
        cvr=0.5,
        daily_budget=daily_conv * cpa,
        campaign_id="c",
        duration_days=30,
        launch_ts=1_767_225_600.0,
    )
    result = SimulationGatekeeper().evaluate(strategy, compute_baseline(history), seed=seed, paths=10_000)
    return ProjectionCurve.from_projection(result.projection.model_dump()), aov


def streams(curve: ProjectionCurve, aov: float, n: int, fault: str | None, rng: np.random.Generator):
    """Per campaign: (ts, cumulative spend, revenue, conversions) arrays at every event."""
    t = np.arange(STEP, HOURS * 3600 + 1, STEP)
    hours = t / 3600
    conv50 = np.array([curve.at("conversions", h)[1] for h in hours])
    spend50 = np.array([curve.at("spend", h)[1] for h in hours])
    p10, p50 = curve.at("conversions", curve.horizon_hours)[:2]
    sigma = math.log(p50 / p10) / 1.2816 if p10 > 0 else 0.1
    conv_rate = np.diff(np.concatenate(([0.0], conv50)))
    spend_rate = np.diff(np.concatenate(([0.0], spend50)))
    after = hours > FAULT_HOUR
    for _ in range(n):
        m = math.exp(rng.normal(-sigma * sigma / 2, sigma))
        lam = conv_rate * m
        spend = spend_rate * math.exp(rng.normal(0, 0.02))
        if fault == "cvr_drop":
            lam = np.where(after, lam * 0.7, lam)
        elif fault == "cpm_shock":
            lam = np.where(after, lam / 1.5, lam)
        elif fault == "runaway_spend":
            spend = np.where(after, spend * 10, spend)
        conv = rng.poisson(lam)
        orders = np.where(conv > 0, rng.gamma(np.maximum(conv, 1) / 0.35**2, aov * 0.35**2), 0.0)
        yield t, np.cumsum(spend), np.cumsum(orders), np.cumsum(conv).astype(np.float64), m


def run_mirror(curve: ProjectionCurve, cfg: MirrorConfig, stream) -> float | None:
    """Hours after launch of the mirror's pause, or None."""
    t, spend, revenue, conv, _ = stream
    state = MirrorState("c")
    ts0 = curve.launch_ts
    for i in range(len(t)):
        v = apply_event(state, str(i), ts0 + t[i], (spend[i], 0.0, 0.0, conv[i], revenue[i]), curve, cfg)
        if v is not None and v.action == "PAUSE":
            return float(t[i] / 3600)
    return None


def oracle_statistic(curve: ProjectionCurve, stream, drop: float) -> np.ndarray:
    """The oracle's CUSUM path from the fault's start, per event, on the true on-plan rate."""
    t, _, _, conv, m = stream
    hours = t / 3600
    conv50 = np.array([curve.at("conversions", h)[1] for h in hours]) * m
    mu = np.diff(np.concatenate(([0.0], conv50)))
    x = np.diff(np.concatenate(([0.0], conv)))
    inc = x * math.log(1 - drop) + mu * drop
    s, out = 0.0, np.zeros(len(t))
    for i in range(len(t)):
        if hours[i] > FAULT_HOUR:
            s = max(0.0, s + inc[i])
        out[i] = s
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--campaigns", type=int, default=300)
    ap.add_argument("--rate", type=float, default=20.0, help="conversions an hour on plan")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--cusum-threshold", type=float, default=None)
    args = ap.parse_args()
    cfg = MirrorConfig()
    if args.cusum_threshold is not None:
        cfg = replace(cfg, cusum_threshold=args.cusum_threshold)
    curve, aov = projection_for(args.rate)
    rng = np.random.default_rng(42)
    started = time.perf_counter()
    results: dict[str, dict[str, float]] = {}
    onplan = list(streams(curve, aov, args.campaigns, None, rng))
    pauses = [run_mirror(curve, cfg, s) for s in onplan]
    false_rate = sum(p is not None for p in pauses) / len(pauses)
    results["on_plan"] = {"false_pause_rate": false_rate}
    # oracle threshold: the smallest h with the same false-pause rate (at least 1 / N) on-plan
    drop = 0.3
    onplan_max = np.array([oracle_statistic(curve, s, drop).max() for s in onplan])
    h_oracle = float(np.quantile(onplan_max, 1 - max(false_rate, 1 / len(onplan))))
    for fault in ("cvr_drop", "cpm_shock", "runaway_spend"):
        data = list(streams(curve, aov, args.campaigns, fault, rng))
        hits = [run_mirror(curve, cfg, s) for s in data]
        delays = [h - FAULT_HOUR for h in hits if h is not None and h > FAULT_HOUR]
        early = int(sum(h is not None and h <= FAULT_HOUR for h in hits))
        within24 = sum(d <= 24 for d in delays) / len(data)
        row = {
            "detected_within_24h": within24,
            "detected_by_72h": len(delays) / len(data),
            "median_delay_h": float(np.median(delays)) if delays else None,
            "paused_before_fault": early,
        }
        if fault != "runaway_spend":
            d = 0.3 if fault == "cvr_drop" else 1 - 1 / 1.5
            od = []
            for s in data:
                stat = oracle_statistic(curve, s, d)
                hit = np.nonzero(stat > h_oracle)[0]
                if hit.size:
                    od.append(s[0][hit[0]] / 3600 - FAULT_HOUR)
            row["oracle_within_24h"] = sum(x <= 24 for x in od) / len(data)
            row["oracle_median_delay_h"] = float(np.median(od)) if od else None
        results[fault] = row
    results["meta"] = {
        "campaigns": args.campaigns,
        "conversions_per_hour": args.rate,
        "oracle_h": h_oracle,
        "wall_s": round(time.perf_counter() - started, 2),
        "config": cfg.__repr__(),
    }
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
