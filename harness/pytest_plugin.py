"""The pytest plugin (registered through the `pytest11` entry point): users' own test suites get
a `synctwin_replay` fixture that runs a scenario in-process and hands back its Trace.

    def test_my_guard(synctwin_replay):
        trace = synctwin_replay("drills/market_shock.yaml", seed=3)
        assert trace.passed, trace.to_dict()["expectations"]
        assert trace.pauses["drill-campaign"][0] == "MARGIN_GUARDIAN"
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def synctwin_replay() -> Callable[..., Any]:
    """`synctwin_replay(name_or_path_or_scenario, seed=0, disabled_guards=()) -> Trace`."""
    from harness.runner import run_scenario
    from scenarios.loader import load_scenario
    from scenarios.schema import Scenario

    def run(scenario: str | Path | Scenario, seed: int = 0, *, disabled_guards: tuple[str, ...] = ()) -> Any:
        loaded = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        return run_scenario(loaded, seed, disabled_guards=disabled_guards)

    return run
