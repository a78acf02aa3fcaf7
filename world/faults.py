"""Faults injected at virtual times: CPM shock, CVR drop, API outage, runaway spend.

Each fault is an action with a start and (optionally) an end that always undoes it, in the
spirit of Chaos Toolkit's rollbacks: the world returns to normal when the fault is over."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import simpy

from scenarios.schema import FaultSpec
from world.api import PlatformAPI
from world.platforms import AdPlatforms

FaultListener = Callable[[str, FaultSpec, float], None]  # ("start" | "end" | "skipped", fault, t)


class FaultInjector:
    def __init__(
        self,
        env: simpy.Environment,
        platforms: AdPlatforms,
        apis: dict[str, PlatformAPI],
        faults: list[FaultSpec],
        listener: FaultListener,
    ) -> None:
        self.env = env
        self.platforms = platforms
        self.apis = apis
        self.listener = listener
        for fault in sorted(faults, key=lambda f: f.at):
            env.process(self._run(fault))

    def _run(self, fault: FaultSpec) -> Generator[Any, Any, None]:
        # the world's tick at time t delivers the minute ending at t: it belongs before a fault that
        # starts (or ends) at t. A zero timeout queues behind that tick, so the fault never leaks
        # into the interval before its start (the budget_burn plot stepped up before the fault line)
        yield self.env.timeout(fault.at)
        yield self.env.timeout(0)
        undo = self._apply(fault)
        if undo is None:
            self.listener("skipped", fault, self.env.now)
            return
        self.listener("start", fault, self.env.now)
        if fault.duration is not None:
            yield self.env.timeout(fault.duration)
            yield self.env.timeout(0)
            undo()
            self.listener("end", fault, self.env.now)

    def _platform_of(self, fault: FaultSpec) -> str | None:
        if fault.platform is not None:
            return fault.platform
        p = self.platforms
        if fault.campaign in p.index:
            return next(k for k, v in p.platform_index.items() if v == p.plat[p.index[fault.campaign]])
        return None

    def _apply(self, fault: FaultSpec) -> Callable[[], None] | None:
        """Start the fault; return what ends it (None when its target is not live)."""
        p = self.platforms
        if fault.kind == "api_outage":
            name = self._platform_of(fault)
            if name is None:
                return None
            self.apis[name].start_outage(fault.duration or 300.0)
            return lambda: None  # the outage ends by itself
        rate = {"cpm_shock": "cpm", "cvr_drop": "cvr", "runaway_spend": "spend"}[fault.kind]
        m = float(fault.multiplier or 1.0)
        if fault.campaign is not None:
            if fault.campaign not in p.index:
                return None
            name, i = f"{rate}_mult", p.index[fault.campaign]
        else:
            name, i = f"platform_{rate}_mult", p.platform_index[fault.platform]
        p.scale(name, i, m)

        def undo() -> None:
            # by name, at undo time: a campaign launched during the fault replaces the columns
            p.scale(name, i, m, undo=True)

        return undo
