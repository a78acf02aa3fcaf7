"""Scenario replays are the same bit for bit across a refactoring of the Council's composition.

tests/data/runner_traces.json holds traces captured on main (a575a3b) BEFORE `run_scenario` built its
Council through `build_council` (the runner had its own wiring then): per case the pauses, every
audit record's type, time, campaign and reason, the alerts, the final metrics and the whole
summary, plus a digest of the hourly series. The same scenario and seed must still give exactly
these. Regenerate only on purpose (a change that is meant to move a trace):

    python tests/test_runner_golden.py   # rewrites tests/data/runner_traces.json
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import harness.runner
from agents.base import Agent
from agents.council.build import ControlPort, Gate, Ports, build_council
from agents.syncnotify.sinks import MemorySink
from agents.syncshield.backends import InMemoryAuditStore
from agents.syncvalue.stores import InMemoryHistoryStore
from harness.chaos import BUILTIN_TEMPLATE, DRILLS, drill_scenario, sized_to
from harness.runner import VirtualTimeGatekeeper, run_scenario
from harness.trace import Trace
from scenarios.loader import load_scenario, scenario_from_dict
from scenarios.schema import Scenario
from synctwin.kernel.config import get_settings
from world.clock import make_environment
from world.world import World

DATA = Path(__file__).parent / "data" / "runner_traces.json"
DAY = 86_400.0

# the mirror's own scenario (tests/test_mirror.py): the built-ins run without the live mirror
MIRROR_CVR_DROP: dict[str, Any] = {
    "name": "mirror_cvr_drop",
    "duration": "3d",
    "world": {"tick": "15m"},
    "clients": [{"id": "acme", "history": {"generate": {"platform": "meta", "daily_spend": 6000}}}],
    "campaigns": [
        {
            "id": "acme-live",
            "client": "acme",
            "launch_at": "0s",
            "strategy": {
                "platform": "meta",
                "audience_size": 1_600_000,
                "cvr": 0.03,
                "daily_budget": 11_000,
                "gross_margin": 1.0,
            },
        }
    ],
    "faults": [{"id": "drop", "kind": "cvr_drop", "at": "1d", "campaign": "acme-live"}],
    "disabled_guards": ["auto_rollback", "margin_guardian"],
    "mirror": True,
    "gate_paths": 2000,
}


def _drill(name: str) -> Scenario:
    return drill_scenario(sized_to(DRILLS[name], BUILTIN_TEMPLATE), BUILTIN_TEMPLATE)


def cases() -> dict[str, tuple[Scenario, int, tuple[str, ...]]]:
    """name -> (scenario, seed, guards disabled): the built-ins, the mirror's scenario, and every
    chaos drill with its guard and without it (the drill must fail then)."""
    out: dict[str, tuple[Scenario, int, tuple[str, ...]]] = {
        "healthy_launch/0": (load_scenario("healthy_launch"), 0, ()),
        "tiktok_genz/0": (load_scenario("tiktok_genz"), 0, ()),
        "historical_10/0": (load_scenario("historical_10"), 0, ()),
        "portfolio_10/0": (load_scenario("portfolio_10"), 0, ()),  # benchmarks/replay.py's run
        "portfolio_10_3d/5": (load_scenario("portfolio_10").model_copy(update={"duration": 3 * DAY}), 5, ()),
        "mirror_cvr_drop/2": (scenario_from_dict(MIRROR_CVR_DROP), 2, ()),
    }
    for name, drill in DRILLS.items():
        out[f"drill:{name}/0"] = (_drill(name), 0, ())
        out[f"drill:{name}-no-guard/0"] = (_drill(name), 0, (drill.guard,))
    return out


def fingerprint(trace: Trace) -> dict[str, Any]:
    """What must not move: pauses, the audit records' types and times, alerts, final metrics, the
    summary (expectations, timeline, audit chain head, SimPy event count) and the series' digest."""
    summary = trace.to_dict()
    summary.pop("wall_s")
    series = trace.to_dict(series=True)
    series.pop("wall_s")
    return {
        "pauses": {cid: list(p) for cid, p in sorted(trace.pauses.items())},
        "audit": [[r["event_type"], r["ts"], r["campaign_id"], r["reason"]] for r in trace.audit],
        "final": {cid: c.final for cid, c in trace.campaigns.items()},
        "summary": summary,
        "series_sha256": hashlib.sha256(json.dumps(series, sort_keys=True).encode()).hexdigest(),
    }


def run_case(name: str) -> dict[str, Any]:
    scenario, seed, disabled = cases()[name]
    return fingerprint(run_scenario(scenario, seed, disabled_guards=disabled))


def _expected() -> dict[str, Any]:
    return json.loads(DATA.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", list(cases()))
def test_trace_is_the_one_captured_before_the_council_was_shared(name: str) -> None:
    expected = _expected()[name]
    got = json.loads(json.dumps(run_case(name)))  # the JSON round trip the data went through
    assert got["pauses"] == expected["pauses"]
    assert got["audit"] == expected["audit"]
    # the final totals to a few ulps: numpy's exp and power are vectorized per CPU (AVX2, AVX-512),
    # and their last bit differs between machines; on one machine a run repeats bit for bit
    assert got["final"].keys() == expected["final"].keys()
    for cid, final in expected["final"].items():
        assert got["final"][cid] == pytest.approx(final, rel=1e-12, abs=0.0), cid
    assert got["summary"] == expected["summary"]
    assert got["series_sha256"] == expected["series_sha256"]


def test_the_captured_drills_pass_with_their_guard_and_fail_without() -> None:
    """The data itself is worth comparing against: each drill passed, and failed with its guard off."""
    expected = _expected()
    for name in DRILLS:
        assert expected[f"drill:{name}/0"]["summary"]["passed"] is True
        assert expected[f"drill:{name}-no-guard/0"]["summary"]["passed"] is False
    assert expected["mirror_cvr_drop/2"]["pauses"]["acme-live"][0] == "SYNCTWIN_DEVIATION_THRESHOLD"


def test_a_changed_trace_is_caught() -> None:
    """The comparison bites: another seed's trace is not the captured one."""
    scenario, _, disabled = cases()["healthy_launch/0"]
    other = json.loads(json.dumps(fingerprint(run_scenario(scenario, 1, disabled_guards=disabled))))
    expected = _expected()["healthy_launch/0"]
    assert other["summary"] != expected["summary"] or other["series_sha256"] != expected["series_sha256"]


def agents_wired_in(source: str) -> list[str]:
    """The Council agent classes a module imports (it would be wiring its own Council)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("agents."):
            module = importlib.import_module(node.module)
            for alias in node.names:
                obj = getattr(module, alias.name, None)
                if inspect.isclass(obj) and issubclass(obj, Agent):
                    found.append(alias.name)
    return found


def test_the_runner_wires_no_agent_of_its_own() -> None:
    """One composition: the runner builds its Council through build_council and imports no agent;
    the check finds one when a module does (the wiring this change deleted)."""
    source = Path(harness.runner.__file__).read_text(encoding="utf-8")
    assert agents_wired_in(source) == []
    assert "build_council(" in source
    assert agents_wired_in(source + "\nfrom agents.syncflow.agent import SyncFlow\n") == ["SyncFlow"]


def test_a_council_on_a_world_needs_its_launch_side() -> None:
    """A world's Council launches what the gate approves: without the gate, SyncFlow, the platforms'
    APIs or the history store it is refused at build time, not silently idle."""
    env, settings = make_environment(), get_settings()
    scenario = load_scenario("healthy_launch")
    world = World(env, scenario.world, np.random.default_rng(0))
    gate = Gate(VirtualTimeGatekeeper(settings=settings), 0, {})

    def ports(**kw: Any) -> Ports:
        base = {"platforms": world.apis, "events": world, "history": InMemoryHistoryStore()}
        return Ports(None, InMemoryAuditStore(clock=world.clock.now), [MemorySink()], **(base | kw))

    council = build_council(env, settings, ports(), gate=gate, clock=world.clock.now)
    assert council.brain is not None and council.flow is not None and council.flow.apis is world.apis
    for bad, kw in (
        (ports(), {}),  # no gate
        (ports(history=None), {"gate": gate}),
        (ports(platforms=None), {"gate": gate}),
        (ports(), {"gate": gate, "flow": False}),
        (Ports(ControlPort(), InMemoryAuditStore(), [MemorySink()]), {"gate": gate}),  # a stream has no gate
    ):
        with pytest.raises(ValueError, match="a Council on a world needs"):
            build_council(env, settings, bad, **kw)


if __name__ == "__main__":
    DATA.write_text(json.dumps({name: run_case(name) for name in cases()}, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {DATA}", file=sys.stderr)
