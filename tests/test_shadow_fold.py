"""Shadow mode folds a batch with numpy: what it queues for Redis is, per (platform, day, campaign)
and per campaign's flight, the element-wise maximum a fold event by event gives, whatever the
order, duplicates, days, unknown campaigns, earlier launches or events past the flight."""

from __future__ import annotations

import random
import time
from typing import Any

import fakeredis

from agents.synctwin.shadow.store import RedisShadowStore, _Plan, day_of
from synctwin.kernel.messages import LiveEvents

LAUNCH = 1_767_225_600.0  # 2026-01-01 00:00 UTC
DAY = 86_400.0


def reference(plans: dict[str, _Plan], rows: list[tuple[str, float, tuple[float, ...]]]) -> tuple[dict, dict]:
    """The fold event by event (what the store did before it used numpy)."""
    market: dict[Any, list[float]] = {}
    totals: dict[Any, list[float]] = {}

    def fold(acc: dict[Any, list[float]], key: Any, values: tuple[float, ...]) -> None:
        cur = acc.setdefault(key, list(values))
        acc[key] = [max(a, b) for a, b in zip(cur, values, strict=True)]

    for cid, ts, values in rows:
        plan = plans[cid]
        if plan.platform is None or ts < plan.launch_ts:
            continue
        launch = repr(plan.launch_ts)
        fold(market, (plan.platform, day_of(ts), f"{cid}|{launch}"), values)
        if ts <= plan.end_ts:
            fold(totals, (cid, launch), (ts, *values))
    return market, totals


def test_the_numpy_fold_is_the_event_by_event_fold() -> None:
    rng = random.Random(7)
    for _ in range(200):
        store = RedisShadowStore(fakeredis.FakeRedis(decode_responses=True))
        now = time.monotonic() + 1e6  # plans cached: no Redis read
        plans = {
            "a": _Plan("meta", LAUNCH, LAUNCH + 2 * DAY, now),
            "b": _Plan("tiktok", LAUNCH + 0.5 * DAY, LAUNCH + 3 * DAY, now),
            "c": _Plan("meta", LAUNCH + 7.25, LAUNCH + 1 * DAY, now),  # its flight ends mid-batch
            "x": _Plan(None, 0.0, 0.0, now),  # no published plan
        }
        store._plans.update(plans)
        rows = []
        for _ in range(rng.randint(1, 60)):
            cid = rng.choice("abcx")
            ts = LAUNCH + rng.choice([-3600.0, 0.0, DAY, DAY - 1e-7, 2 * DAY]) + rng.uniform(0, 1.5 * DAY)
            rows.append((cid, ts, tuple(float(rng.randint(0, 50)) for _ in range(5))))
        rows += rng.sample(rows, min(5, len(rows)))  # duplicates, out of order
        store.observe(LiveEvents.of([("", cid, ts, v) for cid, ts, v in rows]), 0, screened=True)
        market, totals = reference(plans, rows)
        assert store._market == market
        assert store._totals == totals
        applied = [r for r in rows if plans[r[0]].platform is not None and r[1] >= plans[r[0]].launch_ts]
        assert store.stats.applied == len(applied)
        assert store._newest == (max(r[1] for r in applied) if applied else None)
