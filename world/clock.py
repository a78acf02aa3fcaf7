"""Virtual or wall-clock time: the only thing that differs between a replay and production.

Agents receive an environment and use `env.now`, `env.timeout` and stores; whether one virtual
second is instantaneous (simpy.Environment) or lasts a real second (simpy.rt.RealtimeEnvironment)
is decided here and nowhere else."""

from __future__ import annotations

import time

import simpy
import simpy.rt


def make_environment(
    *, realtime: bool = False, factor: float = 1.0, strict: bool = False, initial_time: float = 0.0
) -> simpy.Environment:
    """A virtual-time environment, or a wall-clock one (`factor` real seconds per sim second)."""
    if realtime:
        return simpy.rt.RealtimeEnvironment(initial_time=initial_time, factor=factor, strict=strict)
    return simpy.Environment(initial_time=initial_time)


class Clock:
    """Maps the environment's seconds to epoch seconds, so events carry real timestamps."""

    def __init__(self, env: simpy.Environment, epoch0: float | None = None) -> None:
        self.env = env
        self.epoch0 = time.time() if epoch0 is None else epoch0

    def now(self) -> float:
        """Epoch seconds now (virtual in a replay)."""
        return self.epoch0 + self.env.now

    def day_index(self, at: float | None = None) -> int:
        """Whole days since virtual time zero (platform budgets reset at each)."""
        return int((self.env.now if at is None else at) // 86_400)
