"""The world: the environment's clock, the platforms, their APIs and the faults, wired together.

Every tick the platforms deliver and the world publishes one BidBatch to each subscriber's
store (the Council's event source: SyncFlow, the mirror, shadow mode). Randomness comes from
streams spawned from one seed, so the same seed gives the same world, bit for bit."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import simpy

from scenarios.schema import FaultSpec, WorldSpec
from synctwin.kernel.messages import BidBatch
from world.api import PlatformAPI
from world.clock import Clock
from world.faults import FaultInjector, FaultListener
from world.platforms import PLATFORMS, AdPlatforms


class World:
    def __init__(
        self,
        env: simpy.Environment,
        spec: WorldSpec,
        rng: np.random.Generator,
        faults: list[FaultSpec] = (),
        fault_listener: FaultListener | None = None,
        epoch0: float | None = None,
    ) -> None:
        self.env = env
        self.spec = spec
        self.clock = Clock(env, spec.epoch0 if epoch0 is None else epoch0)
        self.platforms = AdPlatforms(dict(spec.platforms), rng, spec.tick)
        self.truths: dict[str, dict[str, float]] = {}  # campaign -> how its true rates differ
        self.apis = {p: PlatformAPI(env, p, self.platforms, spec.platforms[p], self.truths) for p in PLATFORMS}
        self.subscribers: list[simpy.Store] = []
        self.observers: list[Callable[[BidBatch], None]] = []  # harness recorders: called, not messaged
        self.ticks = 0
        self.faults = FaultInjector(env, self.platforms, self.apis, list(faults), fault_listener or (lambda *_: None))
        self.process = env.process(self._run())

    def subscribe(self) -> simpy.Store:
        """A store that receives every tick's BidBatch."""
        store = simpy.Store(self.env)
        self.subscribers.append(store)
        return store

    def observe(self, callback: Callable[[BidBatch], None]) -> None:
        """Call `callback(batch)` every tick: for observers outside the Council (the harness)."""
        self.observers.append(callback)

    def _run(self) -> Generator[Any, Any, None]:
        tick, p = self.spec.tick, self.platforms
        day = self.clock.day_index()
        while True:
            if self.clock.day_index() != day:
                day = self.clock.day_index()
                p.new_day()
            yield self.env.timeout(tick)
            p.tick()
            self.ticks += 1
            if p.ids and (self.subscribers or self.observers):
                # the platforms replace their cumulative columns every tick: no copies needed
                batch = BidBatch(
                    t=self.env.now,
                    ts=self.clock.now(),
                    campaign_ids=p.id_tuple,
                    spend=p.spend,
                    impressions=p.impressions,
                    clicks=p.clicks,
                    conversions=p.conversions,
                    revenue=p.revenue,
                )
                for store in self.subscribers:
                    store.put(batch)
                for callback in self.observers:
                    callback(batch)
