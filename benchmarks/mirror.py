"""The production mirror's figures, in one run, against one local Redis (DESIGN.md, issue 5):

1. throughput: events/s one worker drains (`synctwin mirror`, the Council with the mirror alone:
   XREADGROUP, apply, one atomic write + XACK a batch) over 200k bid events of 100 campaigns,
   beside the seed's approach on the same server (per event one HSET of the mirror state and one
   HGETALL of the projected state, with its round trips; re-implemented below as the seed wrote it);
2. latency from an event's XADD (its ts is time.time() at the XADD) to its PAUSE on the control
   stream, with a publisher process at 1,000 events/s: healthy campaigns and a deviating one
   every 0.1 s whose pause falls due during the run;
3. a worker's memory (RSS) over 1M events (state per campaign, not per event), and the streams'
   lengths afterwards (the worker trims the bid stream below what every group has acknowledged);
4. detection: benchmarks/mirror_detection.py (on-plan false pauses over 3 days, CVR -30%,
   CPM +50% and 10x spend, each beside the oracle CUSUM) at ~20 and ~6 conversions an hour.

    python benchmarks/mirror.py                 # starts its own redis-server on a free port
    python benchmarks/mirror.py --redis URL     # or uses yours (keys under synctwin-bench:, removed after)
    python benchmarks/mirror.py --quick         # smaller sizes, for a smoke run
    python benchmarks/mirror.py --json
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import redis  # noqa: E402

from agents.council.redis import RedisCouncil, redis_council, redis_mirror  # noqa: E402
from agents.synctwin.mirror.agent import mirror_config  # noqa: E402
from agents.synctwin.mirror.deviation import ProjectionCurve  # noqa: E402
from synctwin.infra.redis_conn import connect as redis_connect  # noqa: E402
from synctwin.kernel.config import Settings, get_settings  # noqa: E402

PREFIX = "synctwin-bench:"
STEP = 60.0  # seconds of campaign time between a campaign's bid events (the world's default tick)
TARGETS = {
    "events_per_s": 20_000,
    "ratio_vs_seed": 5.0,
    "p99_ms": 50.0,
    "false_pause_rate": 0.01,
    "cvr_drop_within_24h": 0.95,
}


# ----------------------------------------------------------------------------------- the seed
class SeedRealToSimSync:
    """The seed's `RealToSimSync._process_bid_event` (mirror_sync.py), as written: a synchronous
    redis-py client, per event one HSET of the real state and one HGETALL of the projected state,
    then the Decimal deviation from the projected *total*. Only the gRPC calls that the trigger
    makes are left out (they are counted): the seed would pause every campaign in its first
    minutes, and the yardstick here is its per-event Redis work."""

    def __init__(self, client: Any, prefix: str = "") -> None:
        self.redis = client
        self.prefix = prefix
        self.triggers = 0

    def process_bid_event(self, bid_event: dict[str, Any]) -> None:
        campaign_id = bid_event["campaign_id"]
        mirror_key = f"{self.prefix}campaign:{campaign_id}:mirror_state"
        real_state = {
            "total_spend": bid_event["total_spend"],
            "conversions": bid_event["conversions"],
            "revenue": bid_event["revenue"],
            "timestamp": bid_event["timestamp"],
        }
        self.redis.hset(mirror_key, mapping=real_state)
        projected_key = f"{self.prefix}campaign:{campaign_id}:projected_state"
        projected_state = self.redis.hgetall(projected_key)
        if not projected_state:
            return
        real_revenue = Decimal(real_state["revenue"])
        projected_revenue = Decimal(projected_state["revenue"])
        deviation = (
            abs(real_revenue - projected_revenue) / projected_revenue if projected_revenue > 0 else Decimal("0.0")
        )
        if deviation > Decimal("0.15"):
            self.triggers += 1  # the seed: _trigger_auto_rollback (pause, alert, audit over gRPC)


# ------------------------------------------------------------------------------------ helpers
from own_redis import OwnRedis  # noqa: E402  (benchmarks/ is the script's own folder)


def connect(url: str) -> redis.Redis:
    """The client `synctwin run` and `synctwin mirror` make (synctwin/infra/redis_conn.py)."""
    return redis_connect(url)


def cleanup(client: redis.Redis) -> None:
    """Remove the benchmark's keys (only those: --redis may point at someone's server)."""
    keys = list(client.scan_iter(match=f"{PREFIX}*", count=1000))
    for i in range(0, len(keys), 500):
        client.unlink(*keys[i : i + 500])


def rss_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak, where /proc is missing


def gate_projection(rate: float = 20.0) -> dict[str, Any]:
    """A projection from the real gate (10k paths, a flat 90-day history at ~`rate` conversions an
    hour), as `synctwin gate --redis` publishes it; campaign_id and launch_ts are set per campaign."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from mirror_detection import projection_for

    curve, _aov = projection_for(rate)
    points = []
    for i, t in enumerate(curve.t_hours.tolist()):
        point = {"t_hours": t}
        for m, b in curve.bands.items():
            point |= {f"{m}_p10": float(b[i, 0]), f"{m}_p50": float(b[i, 1]), f"{m}_p90": float(b[i, 2])}
        points.append(point)
    return {"campaign_id": "", "launch_ts": None, "horizon_days": 30, "points": points}


def publish_projections(client: redis.Redis, base: dict[str, Any], launches: dict[str, float]) -> None:
    pipe = client.pipeline(transaction=False)
    for cid, launch in launches.items():
        pipe.set(f"{PREFIX}campaign:{cid}:projection", json.dumps(base | {"campaign_id": cid, "launch_ts": launch}))
    pipe.execute()


def publish_plans(client: redis.Redis, base: dict[str, Any], launches: dict[str, float], daily_budget: float) -> None:
    """What `gate --redis` leaves for `synctwin run`: each campaign's projection and strategy."""
    publish_projections(client, base, launches)
    pipe = client.pipeline(transaction=False)
    for cid, launch in launches.items():
        strategy = {
            "campaign_id": cid,
            "client_id": "bench",
            "platform": "meta",
            "audience_size": 50_000_000,
            "cvr": 0.02,
            "daily_budget": daily_budget,
            "duration_days": 30,
            "launch_ts": launch,
            "aov": 60.0,
        }
        pipe.set(f"{PREFIX}campaign:{cid}:strategy", json.dumps(strategy))
    pipe.execute()


def run_settings() -> Settings:
    """`synctwin run`'s defaults, with the bench's keys and its event spacing as the budget guard's tick."""
    return Settings(key_prefix=PREFIX, council_tick_s=STEP)


class StreamMaker:
    """On-plan cumulative bid events for many campaigns, one every STEP seconds per campaign, made
    chunk by chunk (nothing kept per event): Poisson conversions around the projection's median
    (each campaign with its own level, as the band allows), gamma order values, spend on plan."""

    def __init__(self, curve: ProjectionCurve, campaigns: list[str], launch: float, seed: int = 0) -> None:
        self.curve, self.campaigns, self.launch = curve, campaigns, launch
        self.rng = np.random.default_rng(seed)
        self.level = np.exp(self.rng.normal(0, 0.05, len(campaigns)))
        self.k = 0  # events so far per campaign
        self.totals = np.zeros((len(campaigns), 3))  # spend, conversions, revenue

    def _plan(self, k0: int, k1: int, metric: str) -> np.ndarray:
        hours = np.arange(k0, k1 + 1) * STEP / 3600
        return np.diff(np.interp(hours, self.curve.t_hours, self.curve.bands[metric][:, 1]))

    def chunk(self, per_campaign: int) -> list[dict[str, str]]:
        k0, k1 = self.k, self.k + per_campaign
        spend, conv_rate = self._plan(k0, k1, "spend"), self._plan(k0, k1, "conversions")
        aov = 60.0
        columns = []
        for i, _cid in enumerate(self.campaigns):
            conv = self.rng.poisson(conv_rate * self.level[i])
            orders = np.where(conv > 0, self.rng.gamma(np.maximum(conv, 1) / 0.35**2, aov * 0.35**2), 0.0)
            cs = self.totals[i, 0] + np.cumsum(spend)
            cc = self.totals[i, 1] + np.cumsum(conv)
            cr = self.totals[i, 2] + np.cumsum(orders)
            self.totals[i] = cs[-1], cc[-1], cr[-1]
            columns.append((cs.tolist(), cc.tolist(), cr.tolist()))
        out = []
        for j in range(per_campaign):
            ts = repr(self.launch + (k0 + j + 1) * STEP)
            for i, cid in enumerate(self.campaigns):
                cs, cc, cr = columns[i]
                c = cc[j]
                out.append(
                    {
                        "event_id": f"{cid}:{k0 + j + 1}",
                        "campaign_id": cid,
                        "ts": ts,
                        "spend": repr(cs[j]),
                        "impressions": repr(c * 50.0),
                        "clicks": repr(c * 2.0),
                        "conversions": repr(c),
                        "revenue": repr(cr[j]),
                    }
                )
        self.k = k1
        return out


def xadd_all(client: redis.Redis, key: str, events: list[dict[str, str]], chunk: int = 2000) -> None:
    for i in range(0, len(events), chunk):
        pipe = client.pipeline(transaction=False)
        for e in events[i : i + chunk]:
            pipe.xadd(key, e)
        pipe.execute()


def mirror_worker(client: Any, **kw: Any) -> RedisCouncil:
    """`synctwin mirror`'s worker: the Council with the mirror alone, on the bench's keys."""
    return redis_mirror(client, get_settings(), prefix=PREFIX, **kw)


def preload(worker: RedisCouncil, cids: list[str]) -> None:
    """Adopt the campaigns' plans before the clock, as a long-running worker holds them already."""
    worker.council.adopt([got for got in worker._plans(cids).values() if not isinstance(got, str)], at=worker._now())


def drain(worker: RedisCouncil) -> None:
    worker.ensure_group()
    while worker.step():
        pass


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.quantile(np.array(values), q))


# ------------------------------------------------------------------------------ 1. throughput
def bench_throughput(url: str, n_events: int, n_campaigns: int, seed_events: int, batch: int) -> dict[str, Any]:
    client = connect(url)
    cleanup(client)
    base = gate_projection()
    curve = ProjectionCurve.from_projection(base | {"campaign_id": "x", "launch_ts": 1.0})
    launch = 1_767_225_600.0
    cids = [f"tp-{i:03d}" for i in range(n_campaigns)]
    publish_projections(client, base, dict.fromkeys(cids, launch))
    events = StreamMaker(curve, cids, launch, seed=1).chunk(max(1, n_events // n_campaigns))
    t = time.perf_counter()
    xadd_all(client, f"{PREFIX}bids", events)
    publish_s = time.perf_counter() - t
    worker = mirror_worker(client, consumer="bench", batch=batch, block_ms=None, trim_every_s=0)
    worker.ensure_group()
    preload(worker, cids)
    t = time.perf_counter()
    drain(worker)
    ours_s = time.perf_counter() - t
    ours = len(events) / ours_s
    # the seed, on the same server, over the same events (from memory: the seed got them over gRPC)
    seed = SeedRealToSimSync(client, prefix=PREFIX)
    pipe = client.pipeline(transaction=False)
    for cid in cids:
        pipe.hset(
            f"{PREFIX}campaign:{cid}:projected_state",
            mapping={
                "revenue": curve.at("revenue", curve.horizon_hours)[1],
                "spend": curve.at("spend", curve.horizon_hours)[1],
                "conversions": curve.at("conversions", curve.horizon_hours)[1],
            },
        )
    pipe.execute()
    seed_input = [
        {
            "campaign_id": e["campaign_id"],
            "total_spend": float(e["spend"]),
            "conversions": float(e["conversions"]),
            "revenue": float(e["revenue"]),
            "timestamp": float(e["ts"]),
        }
        for e in events[:seed_events]
    ]
    t = time.perf_counter()
    for e in seed_input:
        seed.process_bid_event(e)
    seed_s = time.perf_counter() - t
    theirs = len(seed_input) / seed_s
    s = worker.stats
    out = {
        "events": len(events),
        "campaigns": n_campaigns,
        "batch": batch,
        "publish_s": round(publish_s, 2),
        "drain_s": round(ours_s, 3),
        "events_per_s": round(ours),
        "applied": s.applied,
        "pauses": s.pauses,
        "conflicts": s.conflicts,
        "seed_events": len(seed_input),
        "seed_s": round(seed_s, 3),
        "seed_events_per_s": round(theirs),
        "seed_triggers": seed.triggers,
        "ratio_vs_seed": round(ours / theirs, 2),
        "pending_after": int(client.xpending(f"{PREFIX}bids", worker.group)["pending"]),
    }
    cleanup(client)
    client.close()
    return out


# --------------------------------------------------------------------------------- 2. latency
def _publisher(
    url: str,
    base: dict[str, Any],
    plan: list[tuple[str, float, bool]],
    rate: float,
    seconds: float,
    start_at: float,
    out: Any,
) -> None:
    """One event at a time at `rate` a second, round robin over the campaigns; ts = time.time() at
    the XADD; deviating campaigns spend three times their plan."""
    client = connect(url)
    curve = ProjectionCurve.from_projection(base | {"campaign_id": "x", "launch_ts": 1.0})
    key = f"{PREFIX}bids"
    n = int(rate * seconds)
    counters = [0] * len(plan)
    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.perf_counter()
    for k in range(n):
        due = t0 + k / rate
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        i = k % len(plan)
        cid, launch, deviating = plan[i]
        counters[i] += 1
        ts = time.time()
        hours = (ts - launch) / 3600
        spend, conv, rev = (curve.at(m, hours)[1] for m in ("spend", "conversions", "revenue"))
        conv = math.floor(conv)
        client.xadd(
            key,
            {
                "event_id": f"{cid}:live:{counters[i]}",
                "campaign_id": cid,
                "ts": repr(ts),
                "spend": repr(spend * (3.0 if deviating else 1.0)),
                "impressions": repr(conv * 50.0),
                "clicks": repr(conv * 2.0),
                "conversions": repr(float(conv)),
                "revenue": repr(rev),
            },
        )
    out.put(n / (time.perf_counter() - t0))
    client.close()


def bench_latency(url: str, rate: float, seconds: float, healthy: int) -> dict[str, Any]:
    client = connect(url)
    cleanup(client)
    cfg = mirror_config(get_settings())
    base = gate_projection()
    curve = ProjectionCurve.from_projection(base | {"campaign_id": "x", "launch_ts": 1.0})
    k_hours = 10  # every campaign is this far into its life
    start_at = time.time() + 3.0
    rng = np.random.default_rng(2)
    plan: list[tuple[str, float, bool]] = [
        (f"lat-ok-{i:03d}", start_at - k_hours * 3600 - float(rng.uniform(0, 3600)), False) for i in range(healthy)
    ]
    # a deviating campaign every 0.1 s, whose pause falls due then: it crosses its 10th hour (an
    # evaluation) at that moment, with the evaluations before it already breached (backfilled)
    n_bad = int(seconds * 10) - 10
    bad = [(f"lat-bad-{i:03d}", start_at + 0.5 + i * 0.1 - k_hours * 3600, True) for i in range(n_bad)]
    plan += bad
    rng.shuffle(plan)
    publish_projections(client, base, {cid: launch for cid, launch, _ in plan})
    backfill = []
    for cid, launch, _ in bad:
        for h in range(k_hours - cfg.persistence + 1, k_hours):
            spend, conv, rev = (curve.at(m, h)[1] for m in ("spend", "conversions", "revenue"))
            conv = math.floor(conv)
            backfill.append(  # a funnel the live stream's limits accept (clicks >= conversions), as the publisher's
                {
                    "event_id": f"{cid}:h{h}",
                    "campaign_id": cid,
                    "ts": repr(launch + h * 3600),
                    "spend": repr(spend * 3),
                    "impressions": repr(conv * 50.0),
                    "clicks": repr(conv * 2.0),
                    "conversions": repr(float(conv)),
                    "revenue": repr(rev),
                }
            )
    xadd_all(client, f"{PREFIX}bids", backfill)
    worker = mirror_worker(client, consumer="bench", block_ms=200)
    drain(worker)
    primed = [client.hget(f"{PREFIX}campaign:{cid}:mirror", "breaches") for cid, _, _ in bad]
    assert all(b == str(cfg.persistence - 1) for b in primed), (
        f"backfill did not prime the deviating campaigns ({worker.stats.dead} dead letters: "
        f"{client.xrange(worker.dead, count=1)})"
    )
    assert worker.stats.pauses == 0
    preload(worker, [cid for cid, _, _ in plan])
    worker.stats.pause_latencies_ms.clear()
    ctx = mp.get_context("spawn")
    rate_q = ctx.Queue()
    pub = ctx.Process(target=_publisher, args=(url, base, plan, rate, seconds, start_at, rate_q))
    pub.start()
    stop = threading.Event()

    def watch() -> None:
        pub.join()
        watcher = connect(url)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            g = next(g for g in watcher.xinfo_groups(f"{PREFIX}bids") if g["name"] == worker.group)
            last = watcher.xinfo_stream(f"{PREFIX}bids")["last-generated-id"]
            if g["pending"] == 0 and g["last-delivered-id"] == last:
                break
            time.sleep(0.05)
        watcher.close()
        stop.set()

    threading.Thread(target=watch, daemon=True).start()
    before = worker.stats.events
    worker.run(stop.is_set)
    lat = list(worker.stats.pause_latencies_ms)
    # the same from the control stream: the entry's id (Redis's clock at the XADD inside EXEC) minus
    # the deciding event's ts (launch + the mirror's paused_at)
    launches = {cid: launch for cid, launch, _ in plan}
    from_stream = []
    for entry_id, fields in client.xrange(f"{PREFIX}control"):
        cid = fields["campaign_id"]
        paused_at = float(client.hget(f"{PREFIX}campaign:{cid}:mirror", "paused_at"))
        from_stream.append(int(entry_id.split("-")[0]) - (launches[cid] + paused_at) * 1000.0)
    healthy_paused = sum(
        1 for cid, _, dev in plan if not dev and client.hget(f"{PREFIX}campaign:{cid}:mirror", "status") == "PAUSED"
    )
    out = {
        "rate": rate,
        "seconds": seconds,
        "campaigns": len(plan),
        "deviating": len(bad),
        "events": worker.stats.events - before,
        "achieved_rate": round(rate_q.get()),
        "pauses": len(lat),
        "healthy_paused": healthy_paused,
        "p50_ms": round(quantile(lat, 0.5), 2),
        "p99_ms": round(quantile(lat, 0.99), 2),
        "max_ms": round(max(lat), 2) if lat else None,
        "control_stream_p50_ms": round(quantile(from_stream, 0.5), 2),
        "control_stream_p99_ms": round(quantile(from_stream, 0.99), 2),
    }
    cleanup(client)
    client.close()
    return out


# ---------------------------------------------------------------------------------- 3. memory
def _memory_worker(url: str, n_events: int, every: int, out: Any, kind: str = "mirror") -> None:
    """The worker alone in a fresh interpreter (the publisher is another process): its RSS is the
    worker's, sampled every `every` events. `kind`: "mirror" (`synctwin mirror`) or "run" (`synctwin
    run`'s worker: every guard and shadow mode)."""
    client = connect(url)
    if kind == "run":
        worker = redis_council(client, run_settings(), consumer="bench", batch=500, block_ms=200, trim_every_s=1.0)
    else:
        worker = mirror_worker(client, consumer="bench", batch=500, block_ms=200, trim_every_s=1.0)
    samples = [(0, round(rss_mb(), 1))]
    mark = {"next": every}

    def stop() -> bool:
        if worker.stats.events >= mark["next"]:
            samples.append((worker.stats.events, round(rss_mb(), 1)))
            mark["next"] += every
        return worker.stats.events >= n_events

    t = time.perf_counter()
    worker.run(stop)
    wall = time.perf_counter() - t
    worker.trim()
    out.put(
        {
            "events": worker.stats.events,
            "wall_s": round(wall, 1),
            "rss_mb": samples,
            "states_cached": len(worker.book.states) if worker.book is not None else 0,
            "pauses": worker.stats.pauses,
            "trimmed": worker.stats.trimmed,
        }
    )
    client.close()


def bench_memory(
    url: str, n_events: int, n_campaigns: int, chunk: int = 20_000, kind: str = "mirror"
) -> dict[str, Any]:
    client = connect(url)
    cleanup(client)
    base = gate_projection()
    curve = ProjectionCurve.from_projection(base | {"campaign_id": "x", "launch_ts": 1.0})
    launch = 1_767_225_600.0
    cids = [f"mem-{i:03d}" for i in range(n_campaigns)]
    publish_plans(client, base, dict.fromkeys(cids, launch), float(curve.at("spend", 24.0)[1]))
    maker = StreamMaker(curve, cids, launch, seed=3)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_memory_worker, args=(url, n_events, max(chunk, n_events // 10), q, kind))
    p.start()
    bids, group = f"{PREFIX}bids", "synctwin-council" if kind == "run" else "synctwin-mirror"
    published, max_len, previous_last = 0, 0, None
    while published < n_events:
        events = maker.chunk(max(1, min(chunk, n_events - published) // n_campaigns))
        xadd_all(client, bids, events)
        published += len(events)
        del events
        max_len = max(max_len, client.xlen(bids))
        # back-pressure: publish the next chunk once the worker has read past the previous one
        while previous_last is not None and p.is_alive():
            g = next((g for g in client.xinfo_groups(bids) if g["name"] == group), None)
            if g is not None and tuple(map(int, g["last-delivered-id"].split("-"))) >= previous_last:
                break
            time.sleep(0.01)
        previous_last = tuple(map(int, client.xinfo_stream(bids)["last-generated-id"].split("-")))
    result = q.get()
    p.join()
    rss = result["rss_mb"]
    half = next(((n, r) for n, r in rss if n >= n_events // 2), rss[-1])
    result |= {
        "campaigns": n_campaigns,
        "worker": kind,
        "rss_half_mb": half[1],
        "rss_half_at": half[0],
        "rss_end_mb": rss[-1][1],
        "rss_growth_mb": round(rss[-1][1] - half[1], 1),
        "bids_max_len": max_len,
        "published": published,
        "stream_lengths": {k: client.xlen(f"{PREFIX}{k}") for k in ("bids", "bids:dead", "control", "alerts", "audit")},
        "pending": int(client.xpending(bids, group)["pending"]),
    }
    cleanup(client)
    client.close()
    return result


# ------------------------------------------------------------------------------- 4. detection
def bench_detection(campaigns: int) -> dict[str, Any]:
    script = ROOT / "benchmarks" / "mirror_detection.py"
    procs = {
        rate: subprocess.Popen(
            [sys.executable, str(script), "--campaigns", str(campaigns), "--rate", str(rate)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for rate in (20.0, 6.0)
    }
    out = {}
    for rate, p in procs.items():
        stdout, stderr = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"mirror_detection.py --rate {rate} failed:\n{stderr[-2000:]}")
        out[f"{rate:g}_per_hour"] = json.loads(stdout)
    return out


# ---------------------------------------------------------------------------------- reporting
def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(f: dict[str, Any]) -> None:
    env = f["environment"]
    print(
        f"SyncTwin mirror benchmark: {env['redis']} ({env['server']}), Python {env['python']}, "
        f"redis-py {env['redis_py']}, hiredis {env['hiredis']}, {env['cpus']} CPUs"
    )
    if "throughput" in f:
        t = f["throughput"]
        print(
            f"\n1. Throughput: one worker drains {t['events']:,} events of {t['campaigns']} campaigns "
            f"(gate projections; an event a minute per campaign; batches of {t['batch']})"
        )
        ours = "synctwin mirror (the Council, mirror alone: XREADGROUP, 1 MULTI/EXEC write+XACK a batch)"
        print(
            f"   {ours:<64}{t['events_per_s']:>10,} events/s"
            f"   target >= {TARGETS['events_per_s']:,}: {verdict(t['events_per_s'] >= TARGETS['events_per_s'])}"
        )
        print(
            f"   {'the seed (HSET + HGETALL per event, same server)':<64}{t['seed_events_per_s']:>10,} events/s"
            f"   ({t['seed_events']:,} events)"
        )
        print(
            f"   {'ratio':<64}{t['ratio_vs_seed']:>10.1f}x         target >= {TARGETS['ratio_vs_seed']:g}x: "
            f"{verdict(t['ratio_vs_seed'] >= TARGETS['ratio_vs_seed'])}"
        )
        print(
            f"   ({t['applied']:,} applied, {t['pauses']} pauses, {t['conflicts']} write conflicts, "
            f"{t['pending_after']} pending after; the seed's rule fired on {t['seed_triggers']:,} of its events)"
        )
    if "latency" in f:
        la = f["latency"]
        print(
            f"\n2. Latency from an event's XADD to its PAUSE on the control stream, at {la['rate']:,.0f} events/s "
            f"for {la['seconds']:g} s ({la['campaigns']} campaigns, {la['deviating']} of them deviating)"
        )
        print(
            f"   p50 {la['p50_ms']:.1f} ms   p99 {la['p99_ms']:.1f} ms   max {la['max_ms']:.1f} ms over "
            f"{la['pauses']} pauses (worker's clock)   target p99 <= {TARGETS['p99_ms']:g} ms: "
            f"{verdict(la['p99_ms'] <= TARGETS['p99_ms'])}"
        )
        print(
            f"   p50 {la['control_stream_p50_ms']:.1f} ms   p99 {la['control_stream_p99_ms']:.1f} ms "
            f"(the control entry's id, Redis's clock, minus the deciding event's ts)"
        )
        print(
            f"   {la['events']:,} events published at {la['achieved_rate']:,}/s; healthy campaigns paused: "
            f"{la['healthy_paused']}"
        )
    if "memory" in f:
        m = f["memory"]
        marks = "  ".join(f"{n // 1000:,}k: {r:.0f}" for n, r in m["rss_mb"])
        print(
            f"\n3. Memory of one worker (its own process; the publisher is another) over {m['events']:,} events of "
            f"{m['campaigns']} campaigns ({m['wall_s']} s)"
        )
        print(f"   RSS MB after  {marks}")
        print(
            f"   from {m['rss_half_at'] // 1000:,}k to {m['events'] // 1000:,}k events: "
            f"{m['rss_half_mb']:.1f} -> {m['rss_end_mb']:.1f} MB ({m['rss_growth_mb']:+.1f} MB); states held: "
            f"{m['states_cached']} (one per campaign)   target flat: {verdict(abs(m['rss_growth_mb']) <= 2)}"
        )
        lengths = ", ".join(f"{k} {v:,}" for k, v in m["stream_lengths"].items())
        print(
            f"   streams after: {lengths}; the bid stream peaked at {m['bids_max_len']:,} entries "
            f"(the worker trimmed {m['trimmed']:,} acknowledged ones), {m['pending']} pending"
        )
    if "detection" in f:
        print("\n4. Detection (benchmarks/mirror_detection.py; streams drawn from the projection, faults at hour 30)")
        cols = []
        for key, d in f["detection"].items():
            rows = [("false pauses, 3 days", d["on_plan"]["false_pause_rate"], "(set equal)")]
            for fault, label in (
                ("cvr_drop", "CVR -30% within 24 h"),
                ("cpm_shock", "CPM +50% within 24 h"),
                ("runaway_spend", "10x spend within 24 h"),
            ):
                r = d[fault]
                rows.append((label, r["detected_within_24h"], r.get("oracle_within_24h")))
                rows.append(("  median delay (h)", r["median_delay_h"], r.get("oracle_median_delay_h")))
                rows.append(("  paused before the fault", r["paused_before_fault"], None))
            cols.append((key, rows))
        titles = [
            f"~{k.replace('_per_hour', '')} conversions/hour, {f['detection'][k]['meta']['campaigns']} campaigns"
            for k, _ in cols
        ]
        print("   " + "".join(f"{title:<52}    " for title in titles))
        print("   " + "".join(f"{'':<28}{'mirror':>10}{'oracle':>14}    " for _ in titles))
        for i in range(len(cols[0][1])):
            line = "   "
            for _, rows in cols:
                label, a, b = rows[i]
                fa = "-" if a is None else (f"{a:.3f}" if isinstance(a, float) else str(a))
                fb = "" if b is None else (f"{b:.3f}" if isinstance(b, float) else str(b))
                fa = "never" if a is None and "delay" in label else fa
                line += f"{label:<28}{fa:>10}{fb:>14}    "
            print(line)
        d20 = f["detection"].get("20_per_hour")
        if d20:
            fp, cvr = d20["on_plan"]["false_pause_rate"], d20["cvr_drop"]["detected_within_24h"]
            print(
                f"   at ~20/hour: false pauses {fp:.1%} (target <= {TARGETS['false_pause_rate']:.0%}: "
                f"{verdict(fp <= TARGETS['false_pause_rate'])}), CVR -30% within 24 h {cvr:.1%} "
                f"(target >= {TARGETS['cvr_drop_within_24h']:.0%}: {verdict(cvr >= TARGETS['cvr_drop_within_24h'])})"
            )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--redis", metavar="URL", help="use this Redis (keys under synctwin-bench:) instead of our own")
    ap.add_argument("--events", type=int, default=200_000, help="throughput: events (default 200k)")
    ap.add_argument("--campaigns", type=int, default=100, help="throughput and memory: campaigns (default 100)")
    ap.add_argument("--seed-events", type=int, default=50_000, help="events for the seed's loop (default 50k)")
    ap.add_argument("--batch", type=int, default=2000, help="events per XREADGROUP (default 2000, as settings)")
    ap.add_argument("--rate", type=float, default=1000.0, help="latency: events a second (default 1000)")
    ap.add_argument("--seconds", type=float, default=20.0, help="latency: how long to publish (default 20)")
    ap.add_argument("--memory-events", type=int, default=1_000_000, help="memory: events (default 1M)")
    ap.add_argument(
        "--memory-worker",
        choices=["mirror", "run"],
        default="mirror",
        help="memory: `synctwin mirror`'s worker or `synctwin run`'s (every guard and shadow mode)",
    )
    ap.add_argument("--detection-campaigns", type=int, default=1000, help="detection: campaigns per case")
    ap.add_argument(
        "--only",
        action="append",
        choices=["throughput", "latency", "memory", "detection"],
        help="run only these parts (repeatable)",
    )
    ap.add_argument("--quick", action="store_true", help="smaller sizes: a smoke run")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.events, args.seed_events, args.seconds = 40_000, 5_000, 6.0
        args.memory_events, args.detection_campaigns = 100_000, 200
    parts = args.only or ["throughput", "latency", "memory", "detection"]
    own = None if args.redis else OwnRedis()
    url = args.redis or own.url  # type: ignore[union-attr]
    try:
        probe = connect(url)
        info = probe.info("server")
        probe.close()
        import hiredis

        f: dict[str, Any] = {
            "environment": {
                "redis": f"redis-server {info['redis_version']}",
                "server": "own, no persistence" if own else url,
                "python": platform.python_version(),
                "redis_py": redis.__version__,
                "hiredis": hiredis.__version__,
                "cpus": os.cpu_count(),
            }
        }
        if "throughput" in parts:
            f["throughput"] = bench_throughput(url, args.events, args.campaigns, args.seed_events, args.batch)
        if "latency" in parts:
            f["latency"] = bench_latency(url, args.rate, args.seconds, healthy=100)
        if "memory" in parts:
            f["memory"] = bench_memory(url, args.memory_events, args.campaigns, kind=args.memory_worker)
        if "detection" in parts:
            f["detection"] = bench_detection(args.detection_campaigns)
    finally:
        if own is not None:
            own.close()
    if args.json:
        print(json.dumps(f, indent=2))
    else:
        report(f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
