"""Write the bundled gate examples: one clear approval and one clear rejection.

`python -m world.generate_examples` rewrites scenarios/examples/approve/ and reject/
deterministically: each a `strategy.json` and the client's 90-day `history.csv`, drawn by the
scenarios' own generator (`world.history.generate_history`) from the default Meta market, with
budget steps so the gate's response curve can learn what a dollar buys.

Two examples, so a first gate shows each outcome without doubt: the approval scales a profitable
account up moderately (its 10th percentile is a gain); the rejection puts a doubled budget into an
audience holding fewer buyers than the account already converts (its median is a clear loss)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np

from scenarios.schema import DEFAULT_MARKETS, GeneratedHistory
from world.history import generate_history

OUT_DIR = Path(__file__).resolve().parents[1] / "scenarios" / "examples"
SEED = 20260301
END = dt.date(2026, 3, 1)  # the day after the history's last day: a launch on 1 March 2026
DAILY_SPEND = 600.0


def _example(campaign_id: str, audience_size: int, daily_budget: int) -> dict[str, Any]:
    """One example's strategy: the same client, platform, cvr, duration and margin in both."""
    return {
        "campaign_id": campaign_id,
        "client_id": "example-client",
        "platform": "meta",
        "audience_size": audience_size,
        "cvr": 0.02,
        "daily_budget": daily_budget,
        "duration_days": 30,
        "gross_margin": 0.5,
    }


EXAMPLES: dict[str, dict[str, Any]] = {
    "approve": _example("spring-scale-up", 400000, 950),
    "reject": _example("spring-small-audience", 60000, 1200),
}


def main(out_dir: Path = OUT_DIR) -> None:
    """Both examples share one history (one client): only the strategies differ."""
    spec = GeneratedHistory(platform="meta", days=90, daily_spend=DAILY_SPEND)
    history = generate_history(DEFAULT_MARKETS["meta"], spec, np.random.default_rng(SEED), END)
    for name, strategy in EXAMPLES.items():
        out = out_dir / name
        out.mkdir(parents=True, exist_ok=True)
        (out / "strategy.json").write_text(json.dumps(strategy, indent=2) + "\n")
        (out / "history.csv").write_text(history.to_csv())
        print(f"wrote {out}/strategy.json and history.csv")


if __name__ == "__main__":
    main()
