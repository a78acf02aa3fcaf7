"""Does the gate's confidence mean what it says? Scored on synthetic accounts with a known truth.

    python benchmarks/gate_calibration.py                 # 4 worlds x 300 accounts, then the held-out world
    python benchmarks/gate_calibration.py --accounts 60   # a quicker look
    python benchmarks/gate_calibration.py --json

Accounts come from harness/evaluation/worlds.py (diminishing returns b in 0.3-0.9, weekly seasonality,
budget steps, heavy-tailed order values, creative fatigue, budget multipliers 0.3x-3x). Every
account's strategy goes through the gate with each model (curve, funnel, one-factor), and the
decision is scored against the realized net profit uplift:

- approved-losing: share of the approved campaigns that lost money (target < 5%);
- profitable-rejected: share of the rejected campaigns that would have made money (target < 20%);
- coverage: share of accounts whose realized uplift lies in the gate's p10-p90 (target 75-85%);
- Brier: mean (confidence - made money)^2 (target < 0.08).

Shares carry 95% Wilson intervals, Brier a 95% bootstrap interval over accounts. The held-out
world is scored only at the end and was never used to choose the model's settings. A last row,
"known truth", is a forecaster that knows each account's truth (it simulates the account's own
future `--oracle-futures` times): the floor the outcome's own noise sets for every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from agents.synctwin.gate.gatekeeper import SimulationGatekeeper  # noqa: E402
from agents.synctwin.gate.stats import wilson_interval  # noqa: E402
from agents.syncvalue.baseline import compute_baseline  # noqa: E402
from harness.evaluation.worlds import HELD_OUT, WORLDS, Account, WorldSpec, make_account, oracle_uplifts  # noqa: E402
from synctwin.infra.executors import InProcessExecutor  # noqa: E402
from synctwin.kernel.config import Settings  # noqa: E402
from synctwin.kernel.model_names import MODELS  # noqa: E402
from synctwin.kernel.models import Strategy  # noqa: E402

TARGETS = {"approved_losing": "< 5%", "profitable_rejected": "< 20%", "coverage": "75-85%", "brier": "< 0.08"}


def score(rows: list[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """The four figures, each with its 95% interval, over (confidence, approved, p10, p90, uplift) rows."""
    conf = np.array([r["confidence"] for r in rows])
    approved = np.array([r["approved"] for r in rows])
    realized = np.array([r["uplift"] for r in rows])
    p10 = np.array([r["p10"] for r in rows])
    p90 = np.array([r["p90"] for r in rows])
    profit = realized > 0
    n_app, n_rej = int(approved.sum()), int((~approved).sum())
    lose_app = int((approved & ~profit).sum())
    prof_rej = int((~approved & profit).sum())
    covered = int(((realized >= p10) & (realized <= p90)).sum())
    sq = (conf - profit) ** 2
    rng = np.random.default_rng(seed)
    boots = sq[rng.integers(0, sq.shape[0], (2000, sq.shape[0]))].mean(axis=1)

    def share(k: int, n: int) -> dict[str, Any]:
        lo, hi = wilson_interval(k, n) if n else (0.0, 1.0)
        return {"value": k / n if n else None, "low": lo, "high": hi, "k": k, "n": n}

    return {
        "accounts": len(rows),
        "approved": n_app,
        "profitable": int(profit.sum()),
        "approved_losing": share(lose_app, n_app),
        "profitable_rejected": share(prof_rej, n_rej),
        "coverage": share(covered, len(rows)),
        "brier": {
            "value": float(sq.mean()),
            "low": float(np.quantile(boots, 0.025)),
            "high": float(np.quantile(boots, 0.975)),
        },
    }


def run_world(
    spec: WorldSpec,
    accounts: int,
    paths: int,
    seed: int,
    gates: dict[str, SimulationGatekeeper],
    oracle_futures: int = 0,
    threshold: float = 0.85,
) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {m: [] for m in gates}
    if oracle_futures:
        out["known truth"] = []
    serial = InProcessExecutor()
    for i in range(accounts):
        acc: Account = make_account(spec, i, seed)
        strategy = Strategy(**acc.strategy)
        baseline = compute_baseline(acc.history, gross_margin=strategy.gross_margin)
        for model, gate in gates.items():
            r = gate.evaluate(strategy, baseline, seed=seed + i, paths=paths, max_paths=paths, executor=serial)
            sd = r.simulation_details
            out[model].append(
                {
                    "confidence": r.confidence_score,
                    "approved": r.approved,
                    "p10": sd.p10_uplift,
                    "p90": sd.p90_uplift,
                    "uplift": acc.realized_uplift,
                    "b": acc.b,
                }
            )
        if oracle_futures:  # a forecaster that knows the truth: the floor set by the outcome's own noise
            ups = oracle_uplifts(spec, i, seed, oracle_futures)
            conf = float((ups > 0).mean())
            out["known truth"].append(
                {
                    "confidence": conf,
                    "approved": conf > threshold,
                    "p10": float(np.quantile(ups, 0.1)),
                    "p90": float(np.quantile(ups, 0.9)),
                    "uplift": acc.realized_uplift,
                    "b": acc.b,
                }
            )
    return out


def _fmt(f: dict[str, Any], pct: bool) -> str:
    if f.get("value") is None:
        return "n/a"
    if pct:
        return f"{f['value']:6.1%} [{f['low']:.1%}, {f['high']:.1%}]"
    return f"{f['value']:.3f} [{f['low']:.3f}, {f['high']:.3f}]"


def print_block(title: str, figures: dict[str, dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(
        f"{'model':<12} {'accounts':>8} {'approved':>8}  {'approved-losing (<5%)':<24} "
        f"{'profitable-rejected (<20%)':<26} {'p10-p90 coverage (75-85%)':<26} {'Brier (<0.08)':<22}"
    )
    for model, f in figures.items():
        print(
            f"{model:<12} {f['accounts']:>8} {f['approved']:>8}  {_fmt(f['approved_losing'], True):<24} "
            f"{_fmt(f['profitable_rejected'], True):<26} {_fmt(f['coverage'], True):<26} "
            f"{_fmt(f['brier'], False):<22}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=300, help="accounts per world (default 300)")
    parser.add_argument("--paths", type=int, default=4000, help="Monte Carlo paths per gate run (default 4000)")
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--worlds", default="", help="comma-separated world names (default: all)")
    parser.add_argument("--no-held-out", action="store_true", help="skip the held-out world")
    parser.add_argument(
        "--oracle-futures",
        type=int,
        default=100,
        help="futures per account of the known-truth forecaster (the floor row; 0 to skip)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    settings = Settings()
    gates = {m: SimulationGatekeeper(settings=settings, model=m) for m in MODELS}
    chosen = [w for w in WORLDS if not args.worlds or w.name in args.worlds.split(",")]
    started = time.perf_counter()
    report: dict[str, Any] = {
        "accounts_per_world": args.accounts,
        "paths": args.paths,
        "seed": args.seed,
        "threshold": settings.threshold,
        "worlds": {},
        "targets": TARGETS,
    }
    pooled: dict[str, list[dict[str, Any]]] = {m: [] for m in gates}
    if args.oracle_futures:
        pooled["known truth"] = []
    for w in chosen:
        rows = run_world(w, args.accounts, args.paths, args.seed, gates, args.oracle_futures, settings.threshold)
        report["worlds"][w.name] = {m: score(r) for m, r in rows.items()}
        for m in rows:
            pooled[m] += rows[m]
    report["pooled"] = {m: score(r) for m, r in pooled.items()}
    if not args.no_held_out:
        rows = run_world(
            HELD_OUT, args.accounts, args.paths, args.seed + 7919, gates, args.oracle_futures, settings.threshold
        )
        report["held_out"] = {m: score(r) for m, r in rows.items()}
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(
        f"gate calibration on known-truth worlds: {args.accounts} accounts per world, {args.paths} paths, "
        f"threshold {settings.threshold}, seed {args.seed} (figures with 95% intervals)"
    )
    for name, figures in report["worlds"].items():
        print_block(f"world {name}", figures)
    print_block(f"pooled over {len(chosen)} world(s)", report["pooled"])
    if "held_out" in report:
        print_block("HELD-OUT world (scored once, not tuned to)", report["held_out"])
    print(f"\nelapsed {report['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
