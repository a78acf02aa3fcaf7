"""Rolling-origin backtests of the gate's models on public daily ad data and a synthetic history.

    python benchmarks/rolling_backtest.py --display-ads online_advertising_performance_data.csv
    python benchmarks/rolling_backtest.py --display-ads FILE --models funnel seed --final
    python benchmarks/rolling_backtest.py --history my_account.csv --json

Datasets:
- `--display-ads FILE`: the public display-advertising export (docs/backtesting.md says where to
  get it; its licence is not stated, so it is not shipped): one history per campaign, converted
  by benchmarks/convert_display_ads.py.
- `--history FILE ...`: any history CSVs of the contract (one account each).
- always: a synthetic history with known diminishing returns (harness/evaluation/synthetic.py),
  with the true response law as a reference model (`truth`): the backtest itself must find it
  calibrated.

Hold-out: each history is split in time at the start of its last third. Windows that end before
the cut are the development part (looked at while building); windows that start on or after it
are held out and printed only with `--final` (the last run, after which nothing is tuned).
Windows straddling the cut are in neither. Figures per model side by side: windows, revenue
p10-p90 coverage with its 95% interval, share below p50, mean CRPS of the uplift relative to
the mean realized revenue, Brier of "uplift > 0", PIT uniformity (chi-square p-value).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any, get_args

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from agents.synctwin.gate.gatekeeper import SimulationGatekeeper  # noqa: E402
from harness.evaluation.rolling import RollingConfig, RollingWindow, run_rolling_backtest, summarize  # noqa: E402
from harness.evaluation.synthetic import ResponseLaw, TrueResponseGate, synthetic_history  # noqa: E402
from synctwin.kernel.errors import InvalidInput  # noqa: E402
from synctwin.kernel.history import History, history_from_records, load_history  # noqa: E402
from synctwin.kernel.model_names import ModelName  # noqa: E402

PARTS = ("dev", "held-out")


def cut_date(history: History) -> np.datetime64:
    """The first day of the history's last third: where its held-out part begins."""
    span = int((history.dates[-1] - history.dates[0]).astype(np.int64)) + 1
    return history.dates[0] + np.timedelta64(span - span // 3, "D")


def split(windows: tuple[RollingWindow, ...], cut: np.datetime64) -> dict[str, list[RollingWindow]]:
    dev = [w for w in windows if np.datetime64(w.end) < cut]
    held = [w for w in windows if np.datetime64(w.origin) >= cut]
    return {"dev": dev, "held-out": held}


def figures(windows: list[RollingWindow], config: RollingConfig) -> dict[str, Any]:
    if not windows:
        return {"windows": 0}
    s = summarize(windows, config)
    cov, med = s["revenue_coverage_p10_p90"], s["revenue_below_p50"]
    return {
        "windows": s["windows"],
        "coverage": cov["value"],
        "coverage_interval": cov["interval"],
        "below_p50": med["value"],
        "crps_relative": s["crps"]["relative_to_revenue"],
        "crps": s["crps"]["mean"],
        "brier": s["brier"]["score"],
        "pit_chi2_p": s["pit"]["chi2_pvalue"],
        "pit_ks_p": s["pit"]["ks_pvalue"],
        "pit_counts": s["pit"]["counts"],
        "uplift_coverage": s["uplift_coverage_p10_p90"]["value"],
    }


def display_ads_histories(path: Path) -> dict[str, History]:
    from convert_display_ads import convert

    with path.open(newline="", encoding="utf-8") as f:
        per_campaign = convert(list(csv.DictReader(f)), str(path))
    return {
        f"display-ads {name}": history_from_records(rows, source=f"{path} ({name})", first_line=2)
        for name, rows in per_campaign.items()
    }


def run(
    datasets: dict[str, History],
    models: list[str],
    config: RollingConfig,
    *,
    final: bool,
    truth: dict[str, ResponseLaw],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pooled: dict[str, dict[str, list[RollingWindow]]] = {m: {p: [] for p in PARTS} for m in models}
    for name, history in datasets.items():
        cut = cut_date(history)
        entry: dict[str, Any] = {
            "days": len(history),
            "start": str(history.dates[0]),
            "end": str(history.dates[-1]),
            "holdout_from": str(cut),
            "models": {},
        }
        names = models + (["truth"] if name in truth else [])
        for model in names:
            gate = TrueResponseGate(truth[name]) if model == "truth" else SimulationGatekeeper(model=model)
            cfg = RollingConfig(
                horizon=config.horizon,
                lookback=config.lookback,
                step=config.step,
                min_history=config.min_history,
                gross_margin=config.gross_margin,
                paths=config.paths,
                seed=config.seed,
                model=None if model == "truth" else model,
            )
            started = time.perf_counter()
            try:
                report = run_rolling_backtest(history, gate, cfg, source=name)
            except InvalidInput as exc:
                entry["models"][model] = {"error": exc.reason}
                continue
            parts = split(report.windows, cut)
            entry["models"][model] = {p: figures(parts[p], cfg) for p in PARTS if p == "dev" or final}
            entry["models"][model]["seconds"] = round(time.perf_counter() - started, 2)
            if model in pooled and not name.startswith("synthetic"):
                for p in PARTS:
                    pooled[model][p].extend(parts[p])
        out[name] = entry
    public = [n for n in datasets if not n.startswith("synthetic")]
    if len(public) > 1:
        out["all public campaigns"] = {
            "models": {m: {p: figures(pooled[m][p], config) for p in PARTS if p == "dev" or final} for m in models}
        }
    return out


def pct(x: float | None) -> str:
    return "  n/a" if x is None else f"{x:5.0%}"


def print_table(results: dict[str, Any], final: bool) -> None:
    parts = PARTS if final else ("dev",)
    print(
        f"{'dataset / part':<38} {'model':<7} {'win':>3} {'p10-p90 cov (95%)':>20} {'<p50':>5} "
        f"{'CRPS/rev':>8} {'Brier':>6} {'PIT p':>7}"
    )
    for name, entry in results.items():
        for part in parts:
            for model, m in entry["models"].items():
                label = f"{name} [{part}]"
                if "error" in m:
                    print(f"{label:<38} {model:<7} {'-':>3}  {m['error'][:60]}")
                    continue
                f = m.get(part, {"windows": 0})
                if not f["windows"]:
                    print(f"{label:<38} {model:<7} {0:>3}")
                    continue
                lo, hi = f["coverage_interval"]
                cov = f"{f['coverage']:.0%} ({lo:.0%}-{hi:.0%})"
                crps = "n/a" if f["crps_relative"] is None else f"{f['crps_relative']:.1%}"
                pit = "n/a" if f["pit_chi2_p"] is None else f"{f['pit_chi2_p']:.2g}"
                print(
                    f"{label:<38} {model:<7} {f['windows']:>3} {cov:>20} {pct(f['below_p50'])} {crps:>8} "
                    f"{f['brier']:>6.3f} {pit:>7}"
                )
    if not final:
        print("held-out windows are not shown: run with --final for the last, scoring run")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--display-ads", type=Path, metavar="FILE", help="the public display-advertising export")
    p.add_argument("--history", type=Path, nargs="*", default=[], metavar="FILE", help="history CSVs")
    p.add_argument("--models", nargs="+", default=list(get_args(ModelName)), help="gate models (default: all)")
    p.add_argument("--horizon", type=int, default=7)
    p.add_argument("--step", type=int, default=7)
    p.add_argument("--lookback", type=int, default=90)
    p.add_argument("--min-history", type=int, default=14)
    p.add_argument("--paths", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-synthetic", action="store_true", help="skip the synthetic history")
    p.add_argument("--final", action="store_true", help="also score the held-out part (the last run)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    config = RollingConfig(
        horizon=args.horizon,
        step=args.step,
        lookback=args.lookback,
        min_history=args.min_history,
        paths=args.paths,
        seed=args.seed,
    )
    datasets: dict[str, History] = {}
    truth: dict[str, ResponseLaw] = {}
    try:
        config.validate()
        if args.display_ads:
            datasets.update(display_ads_histories(args.display_ads))
        for path in args.history:
            datasets[path.name] = load_history(path)
    except (InvalidInput, OSError) as exc:
        print(f"rolling_backtest: {exc}", file=sys.stderr)
        return 2
    if not args.no_synthetic:
        law = ResponseLaw()
        name = "synthetic (elasticity 0.4)"
        datasets[name] = synthetic_history(law, days=args.min_history + args.horizon * 60, seed=1)
        truth[name] = law
    results = run(datasets, args.models, config, final=args.final, truth=truth)
    if args.json:
        print(
            json.dumps(
                {
                    "settings": {
                        "horizon": args.horizon,
                        "step": args.step,
                        "lookback": args.lookback,
                        "min_history": args.min_history,
                        "paths": args.paths,
                        "seed": args.seed,
                        "final": args.final,
                    },
                    "results": results,
                },
                indent=2,
            )
        )
    else:
        print(
            f"rolling backtests: horizon {args.horizon} d, step {args.step} d, lookback {args.lookback} d, "
            f"min history {args.min_history} d, {args.paths:,} paths, seed {args.seed}"
        )
        print_table(results, args.final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
