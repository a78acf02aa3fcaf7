"""Backtest the gate: its decisions on campaigns whose real outcomes are known.

The seed asks to "test with 10 historical campaigns (5 profitable, 5 unprofitable)" and to
watch false negatives (< 5%) and false positives (< 10%); this module measures both.

A backtest *case* is one JSON file; an input is one case file or a directory of them (`*.json`,
sorted by name, not recursive; the built-in set is `builtin_historical_dir()`)::

    {
      "name": "04_meta_lookalike_budget_cut",
      "description": "what was tried and what happened",
      "strategy": {<Strategy fields: audience_size, cvr, daily_budget, duration_days, ...>},
      "history": "histories/harbor-home.csv",
      "outcome": {"revenue": 65488.48, "spend": 29845.62, "net_profit_uplift": -7608.92}
    }

- `history`: the client's daily history CSV before the campaign, relative to the case file (or
  absolute); it must end before the campaign's `launch_ts` when that is given.
- `outcome`: the campaign's revenue, ad spend and `net_profit_uplift` over `duration_days`, as
  DESIGN.md defines it against the history baseline's daily averages; other keys (e.g.
  `conversions`) are not used. A campaign is *profitable* iff the uplift is > 0.
- `description` is optional; unknown top-level keys are an error (a typo must not pass).

Verdicts take "approved" as the positive call: TP = approved and profitable, FP = approved
and unprofitable (money lost), FN = rejected but would have been profitable (profit missed),
TN = rejected and unprofitable (loss avoided)."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import numpy as np

from agents.synctwin.gate.gatekeeper import SimulationGatekeeper, model_name
from agents.syncvalue.baseline import compute_baseline
from synctwin.infra.executors import Executor, InProcessExecutor
from synctwin.kernel.config import get_limits
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.files import load_json
from synctwin.kernel.history import History, load_history
from synctwin.kernel.models import Strategy
from synctwin.kernel.strategy_io import strategy_from_dict

Verdict = Literal["TP", "FP", "FN", "TN"]
REQUIRED_KEYS = ("name", "strategy", "history", "outcome")
OPTIONAL_KEYS = ("description",)
OUTCOME_KEYS = ("revenue", "spend", "net_profit_uplift")
# the report's figures, in its JSON order
_FIGURES = ("total", "profitable", "unprofitable", "approved", "rejected", "fn_rate", "fp_rate")
_FIGURES += ("fp_share_of_approved", "rejection_share", "accuracy")


def builtin_historical_dir() -> Path:
    """The shipped historical campaigns (package data of `scenarios`)."""
    return Path(str(files("scenarios") / "builtin" / "historical"))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the campaign really did over its duration."""

    revenue: float
    spend: float
    net_profit_uplift: float

    @property
    def profitable(self) -> bool:
        return self.net_profit_uplift > 0


@dataclass(frozen=True, slots=True)
class BacktestCase:
    """One campaign with a known outcome, ready for the gate."""

    name: str
    description: str
    strategy: Strategy
    history: History
    history_path: Path
    outcome: Outcome
    source: Path

    @property
    def profitable(self) -> bool:
        return self.outcome.profitable


@dataclass(frozen=True, slots=True)
class BacktestRow:
    """The gate's call on one case next to what really happened."""

    name: str
    decision: str
    confidence: float
    projected_uplift: float
    realized_uplift: float
    profitable: bool
    verdict: Verdict
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _share(num: int, den: int) -> float | None:
    """A rate, or None when nothing could have been counted (not 0: that would claim a result)."""
    return num / den if den else None


@dataclass(frozen=True, slots=True)
class BacktestReport:
    """Per-case rows, the confusion matrix and the seed's FN/FP rates."""

    rows: tuple[BacktestRow, ...]
    model: str
    threshold: float
    paths: int
    seed: int
    tp: int = field(init=False)  # the confusion matrix: how many rows have each verdict
    fp: int = field(init=False)
    fn: int = field(init=False)
    tn: int = field(init=False)

    def __post_init__(self) -> None:
        for v in ("tp", "fp", "fn", "tn"):
            object.__setattr__(self, v, sum(r.verdict == v.upper() for r in self.rows))

    @property
    def total(self) -> int:
        return len(self.rows)

    @property
    def profitable(self) -> int:
        return self.tp + self.fn

    @property
    def unprofitable(self) -> int:
        return self.fp + self.tn

    @property
    def approved(self) -> int:
        return self.tp + self.fp

    @property
    def rejected(self) -> int:
        return self.fn + self.tn

    @property
    def fn_rate(self) -> float | None:
        """Rejected but would have been profitable, among the profitable campaigns."""
        return _share(self.fn, self.profitable)

    @property
    def fp_rate(self) -> float | None:
        """Approved but ended up unprofitable, among the unprofitable campaigns."""
        return _share(self.fp, self.unprofitable)

    @property
    def fp_share_of_approved(self) -> float | None:
        """Of the campaigns the gate let through, the share that lost money."""
        return _share(self.fp, self.approved)

    @property
    def rejection_share(self) -> float | None:
        return _share(self.rejected, self.total)

    @property
    def accuracy(self) -> float | None:
        return _share(self.tp + self.tn, self.total)

    def money(self) -> dict[str, float]:
        """The realized uplift in each cell: what the gate's calls were worth."""

        def total(verdict: str) -> float:
            return round(sum(r.realized_uplift for r in self.rows if r.verdict == verdict), 2)

        return {
            "captured_profit": total("TP"),
            "approved_losses": total("FP"),
            "missed_profit": total("FN"),
            "avoided_losses": -total("TN"),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "threshold": self.threshold,
            "paths": self.paths,
            "seed": self.seed,
            "cases": [r.to_dict() for r in self.rows],
            "confusion": {v: getattr(self, v.lower()) for v in ("TP", "FP", "FN", "TN")},
            **{k: getattr(self, k) for k in _FIGURES},
            "money": self.money(),
        }


# --- loading ---------------------------------------------------------------------------------


def load_cases(path: str | Path) -> list[BacktestCase]:
    """Cases from one JSON file or a directory of them (`*.json`, sorted by file name)."""
    p = Path(path)
    if p.is_dir():
        files_ = sorted(f for f in p.glob("*.json") if f.is_file())
        if not files_:
            raise InvalidInput("no backtest case files (*.json) in this directory", source=str(p))
        cases = [load_case(f) for f in files_]
        seen: dict[str, Path] = {}
        for case in cases:
            if case.name in seen:
                raise InvalidInput(
                    f"duplicate case name {case.name!r} (also in {seen[case.name]})",
                    source=str(case.source),
                    field="name",
                )
            seen[case.name] = case.source
        return cases
    if not p.exists():
        raise InvalidInput("no such file or directory", source=str(p))
    return [load_case(p)]


def load_case(path: str | Path) -> BacktestCase:
    """One case file; every problem names the file and the field."""
    p = Path(path)
    limits = get_limits()  # a case file is a strategy and an outcome: a strategy's size and nesting limits
    data = load_json(
        p, max_bytes=limits.max_strategy_bytes, max_depth=limits.max_json_depth, setting="SYNCTWIN_MAX_STRATEGY_BYTES"
    )
    return case_from_dict(data, source=p)


def case_from_dict(data: Any, *, source: Path) -> BacktestCase:
    """Validate a decoded case; `history` is resolved against the case file's directory."""
    src = str(source)
    if not isinstance(data, dict):
        raise InvalidInput(f"expected a JSON object, got {type(data).__name__}", source=src)
    for key in REQUIRED_KEYS:
        if key not in data:
            raise InvalidInput("missing (required)", source=src, field=key)
    unknown = sorted(set(data) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise InvalidInput(f"unknown key(s) {', '.join(unknown)}", source=src, field=unknown[0])
    name = data["name"]
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("must be a non-empty string", source=src, field="name")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise InvalidInput("must be a string", source=src, field="description")
    strategy = _strategy(data["strategy"], src)
    outcome = _outcome(data["outcome"], src)
    history_path = _history_path(data["history"], source)
    history = load_history(history_path)  # its errors name the CSV file and line
    if strategy.launch_ts is not None and len(history):
        launch_day = np.datetime64(int(strategy.launch_ts // 86400), "D")
        if history.dates[-1] >= launch_day:
            raise InvalidInput(
                f"the history ends on {history.dates[-1]}, not before the campaign's launch "
                f"({launch_day}): its outcome would leak into the baseline",
                source=src,
                field="history",
            )
    return BacktestCase(
        name=name.strip(),
        description=description,
        strategy=strategy,
        history=history,
        history_path=history_path,
        outcome=outcome,
        source=source,
    )


def _strategy(value: Any, src: str) -> Strategy:
    if not isinstance(value, dict):
        raise InvalidInput(f"expected a JSON object, got {type(value).__name__}", source=src, field="strategy")
    try:
        return strategy_from_dict(value, source=src)
    except InvalidInput as exc:
        sub = f"strategy.{exc.field}" if exc.field else "strategy"
        raise InvalidInput(exc.reason, source=src, field=sub) from None


def _number(value: Any, src: str, name: str, *, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"must be a number (got {value!r})", source=src, field=name)
    x = float(value)
    if not math.isfinite(x):
        raise InvalidInput(f"must be a finite number (got {value!r})", source=src, field=name)
    if minimum is not None and x < minimum:
        raise InvalidInput(f"must be >= {minimum:g} (got {value!r})", source=src, field=name)
    return x


def _outcome(value: Any, src: str) -> Outcome:
    if not isinstance(value, dict):
        raise InvalidInput(f"expected a JSON object, got {type(value).__name__}", source=src, field="outcome")
    for key in OUTCOME_KEYS:
        if key not in value:
            raise InvalidInput("missing (required)", source=src, field=f"outcome.{key}")
    return Outcome(
        revenue=_number(value["revenue"], src, "outcome.revenue", minimum=0.0),
        spend=_number(value["spend"], src, "outcome.spend", minimum=0.0),
        net_profit_uplift=_number(value["net_profit_uplift"], src, "outcome.net_profit_uplift"),
    )


def _history_path(value: Any, source: Path) -> Path:
    src = str(source)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(
            "must be the path of the history CSV (relative to the case file)", source=src, field="history"
        )
    p = Path(value)
    if not p.is_absolute():
        p = source.parent / p
    if not p.is_file():
        raise InvalidInput(f"history file not found: {p}", source=src, field="history")
    return p


# --- running ---------------------------------------------------------------------------------


def gate_seed(seed: int, key: int) -> int:
    """The gate's seed for one item of a run, fixed by the run's seed and a 32-bit key of the item."""
    state = np.random.SeedSequence([int(seed), key]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) | (int(state[1]) >> 1)


def case_seed(seed: int, name: str) -> int:
    """Keyed by the case's name (not its position): adding a case leaves the others' results unchanged."""
    return gate_seed(seed, zlib.crc32(name.encode("utf-8")))


def verdict(approved: bool, profitable: bool) -> Verdict:
    if approved:
        return "TP" if profitable else "FP"
    return "FN" if profitable else "TN"


def run_backtest(
    cases: Iterable[BacktestCase],
    gatekeeper: SimulationGatekeeper,
    *,
    seed: int = 0,
    paths: int | None = None,
    model: str | None = None,
    progress: Callable[[int], None] | None = None,
    executor: Executor | None = None,
) -> BacktestReport:
    """Gate every case on its own history's baseline and compare with its real outcome.

    Each case is one task of `executor` (default: this process) with its own seed, and rows
    come back in case order: the report is the same on any executor. `progress(done)` is
    called after each case (for a progress bar)."""
    if seed < 0:
        raise InvalidInput(f"seed {seed} must be >= 0", field="seed")
    model = model_name(model or gatekeeper.model)
    paths = paths or gatekeeper.paths
    tasks = [(gatekeeper, case, case_seed(seed, case.name), paths, model) for case in cases]
    rows = []
    for row in (executor or InProcessExecutor()).imap(gate_case, tasks):
        rows.append(row)
        if progress is not None:
            progress(len(rows))
    return BacktestReport(rows=tuple(rows), model=model, threshold=gatekeeper.threshold, paths=paths, seed=seed)


def gate_case(task: tuple[SimulationGatekeeper, BacktestCase, int, int, str]) -> BacktestRow:
    """One case through the gate (top-level, so a process pool or Ray worker can run it)."""
    gatekeeper, case, s, paths, model = task
    settings = gatekeeper.settings
    baseline = compute_baseline(
        case.history,
        lookback_days=settings.lookback_days,
        min_days=settings.min_history_days,
        gross_margin=case.strategy.gross_margin,
        default_monthly_churn=settings.default_monthly_churn,
        source=str(case.history_path),
    )
    result = gatekeeper.evaluate(case.strategy, baseline, seed=s, paths=paths, model=model)
    return BacktestRow(
        name=case.name,
        decision=result.decision,
        confidence=result.confidence_score,
        projected_uplift=result.projected_net_profit_uplift,
        realized_uplift=case.outcome.net_profit_uplift,
        profitable=case.profitable,
        verdict=verdict(result.approved, case.profitable),
        seed=s,
    )
