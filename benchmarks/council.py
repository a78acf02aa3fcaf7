"""`synctwin run`'s figures against a redis-server of its own on a free port:

1. drain throughput with every guard live (the production Council: the mirror, SyncFlow with
   MarginGuardian, AutoRollback, the budget emergency stop and the circuit breaker, SyncShield,
   SyncNotify and shadow mode; one Council message per batch, one WATCH/MULTI write + XACK per
   batch), the same without shadow mode, the mirror alone (`synctwin mirror`: the Council without
   SyncFlow) over the same bid events, and the seed's one-round-trip-per-event loop
   (benchmarks/mirror.py's SeedRealToSimSync) on the first of them; `--runs` rounds, medians printed
   (the machine may be shared: a median of several rounds is the figure to quote);
2. latency from a deciding event's XADD to its PAUSE on the control stream (both read off the
   server's entry ids), with a publisher process at 1,000 events/s over healthy campaigns and
   runaways (10x spend) that start during the run.

    python benchmarks/council.py [--events 200000] [--campaigns 100] [--runs 3] [--rate 1000] [--seconds 30] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import numpy as np  # noqa: E402
from mirror import (  # noqa: E402
    PREFIX,
    OwnRedis,
    SeedRealToSimSync,
    StreamMaker,
    cleanup,
    connect,
    gate_projection,
    publish_plans,
    run_settings,
    xadd_all,
)

from agents.council.redis import redis_council, redis_mirror  # noqa: E402
from agents.synctwin.mirror.deviation import ProjectionCurve  # noqa: E402

TARGETS = {"council_events_per_s": 50_000, "p99_ms": 50.0}


def bench_throughput(
    url: str, n_events: int, n_campaigns: int, batch: int, seed_events: int = 20_000
) -> dict[str, Any]:
    """One round: the mirror alone, the Council with every guard and shadow mode, the Council
    without shadow mode (each from no mirror states, its plans adopted before the clock, as a
    long-running worker holds them), and the seed's loop on the first `seed_events` events."""
    client = connect(url)
    cleanup(client)
    base = gate_projection()
    curve = ProjectionCurve.from_projection(base | {"campaign_id": "x", "launch_ts": 1.0})
    launch = 1_767_225_600.0
    cids = [f"tp-{i:03d}" for i in range(n_campaigns)]
    daily = float(curve.at("spend", 24.0)[1])
    publish_plans(client, base, dict.fromkeys(cids, launch), daily)
    events = StreamMaker(curve, cids, launch, seed=1).chunk(max(1, n_events // n_campaigns))
    xadd_all(client, f"{PREFIX}bids", events)
    st = run_settings()
    out: dict[str, Any] = {"events": len(events), "campaigns": n_campaigns, "batch": batch}
    workers = {
        "mirror": lambda: redis_mirror(
            client, st, group="bench-mirror", consumer="m", batch=batch, block_ms=None, trim_every_s=0
        ),
        "council": lambda: redis_council(
            client, st, group="bench-council", consumer="c", batch=batch, block_ms=None, trim_every_s=0
        ),
        "council_no_shadow": lambda: redis_council(
            client, st, group="bench-council-ns", consumer="n", batch=batch, block_ms=None, trim_every_s=0, shadow=False
        ),
    }
    for name, make in workers.items():
        # the mirror's states are in Redis: each worker starts from none
        client.delete(*[f"{PREFIX}campaign:{cid}:{k}" for cid in cids for k in ("mirror", "paused")])
        worker = make()
        worker.ensure_group()
        worker.council.adopt(
            [got for got in worker._plans(cids).values() if not isinstance(got, str)], at=worker._now()
        )
        t = time.perf_counter()
        worker.run(lambda: False, once=True)
        out[f"{name}_s"] = round(time.perf_counter() - t, 3)
        out[f"{name}_events_per_s"] = round(len(events) / out[f"{name}_s"])
        out[f"{name}_pauses"] = worker.stats.pauses
        out[f"{name}_pending_after"] = int(client.xpending(f"{PREFIX}bids", worker.group)["pending"])
    out["seed_events_per_s"] = _seed_rate(client, curve, cids, events[:seed_events])
    out["ratio_vs_seed"] = round(out["council_events_per_s"] / out["seed_events_per_s"], 2)
    cleanup(client)
    client.close()
    return out


def _seed_rate(client: Any, curve: ProjectionCurve, cids: list[str], events: list[dict[str, str]]) -> int:
    """The seed's loop (an HSET and an HGETALL per event, each a round trip) on the same server."""
    pipe = client.pipeline(transaction=False)
    for cid in cids:
        pipe.hset(
            f"{PREFIX}campaign:{cid}:projected_state",
            mapping={m: curve.at(m, curve.horizon_hours)[1] for m in ("revenue", "spend", "conversions")},
        )
    pipe.execute()
    seed = SeedRealToSimSync(client, prefix=PREFIX)
    rows = [
        {
            "campaign_id": e["campaign_id"],
            "total_spend": float(e["spend"]),
            "conversions": float(e["conversions"]),
            "revenue": float(e["revenue"]),
            "timestamp": float(e["ts"]),
        }
        for e in events
    ]
    t = time.perf_counter()
    for e in rows:
        seed.process_bid_event(e)
    return round(len(rows) / (time.perf_counter() - t))


def medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per figure of the rounds: its median (numbers only)."""
    return {
        k: float(np.median([r[k] for r in rounds]))
        for k, v in rounds[0].items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _publisher(
    url: str,
    cids: list[str],
    runaway_at: dict[str, float],
    pace: float,
    rate: float,
    seconds: float,
    start_at: float,
    out: Any,
) -> None:
    """Round robin over the campaigns at `rate` events/s, ts = time.time() at the XADD; a runaway
    spends 10x its pace per event from its start; the entry id of every event, for the latencies."""
    client = connect(url)
    spend = dict.fromkeys(cids, 0.0)
    ids: dict[str, str] = {}
    n = 0
    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.time()
    while (now := time.time()) < t0 + seconds:
        due = int((now - t0) * rate)
        while n < due:
            cid = cids[n % len(cids)]
            k = n // len(cids)
            ts = time.time()
            spend[cid] += pace * (10.0 if ts >= runaway_at.get(cid, float("inf")) else 1.0)
            conv = k * 0.02
            eid = f"{cid}:{k}"
            ids[eid] = client.xadd(
                f"{PREFIX}bids",
                {
                    "event_id": eid,
                    "campaign_id": cid,
                    "ts": repr(ts),
                    "spend": repr(spend[cid]),
                    "impressions": repr(k * 100.0),
                    "clicks": repr(k * 2.0),
                    "conversions": repr(conv),
                    "revenue": repr(conv * 60.0),
                },
            )
            n += 1
        time.sleep(0.0005)
    out.put((n, ids))


def bench_latency(url: str, rate: float, seconds: float, n_campaigns: int) -> dict[str, Any]:
    client = connect(url)
    cleanup(client)
    base = gate_projection()
    launch = time.time()
    cids = [f"lat-{i:03d}" for i in range(n_campaigns)]
    daily = 10_000.0
    publish_plans(client, base, dict.fromkeys(cids, launch), daily)
    st = run_settings()
    pace = daily / (86_400.0 / st.council_tick_s)
    start_at = time.time() + 2.0
    runaways = cids[::2]
    runaway_at = {cid: start_at + 2.0 + (seconds - 6.0) * i / len(runaways) for i, cid in enumerate(runaways)}
    q: Any = mp.Queue()
    pub = mp.Process(target=_publisher, args=(url, cids, runaway_at, pace, rate, seconds, start_at, q))
    pub.start()
    worker = redis_council(client, st, group="bench-latency", consumer="l", batch=st.mirror_batch, block_ms=20)
    done = {"at": float("inf")}
    worker.run(lambda: time.time() > min(done["at"], start_at + seconds + 3.0) or _finished(pub, done))
    n, ids = q.get(timeout=30)
    pub.join(10)
    latencies = []
    reasons: dict[str, int] = {}
    for entry_id, f in client.xrange(f"{PREFIX}control"):
        reasons[f["reason"]] = reasons.get(f["reason"], 0) + 1
        src = ids.get(f["event_id"])
        if src is not None:
            latencies.append(int(entry_id.split("-")[0]) - int(src.split("-")[0]))
    arr = np.array(latencies, dtype=float) if latencies else np.array([np.nan])
    out = {
        "rate": rate,
        "seconds": seconds,
        "events": n,
        "campaigns": n_campaigns,
        "runaways": len(runaways),
        "pauses": len(latencies),
        "reasons": reasons,
        "p50_ms": float(np.quantile(arr, 0.5)),
        "p99_ms": float(np.quantile(arr, 0.99)),
        "max_ms": float(np.max(arr)),
    }
    cleanup(client)
    client.close()
    return out


def _finished(pub: Any, done: dict[str, float]) -> bool:
    """The publisher is done: drain what is left for a second more."""
    if not pub.is_alive() and done["at"] == float("inf"):
        done["at"] = time.time() + 1.0
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--campaigns", type=int, default=100)
    ap.add_argument("--batch", type=int, default=None, help="events per read (default: SYNCTWIN_MIRROR_BATCH, 2000)")
    ap.add_argument("--runs", type=int, default=3, help="throughput rounds (medians are printed)")
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--latency-campaigns", type=int, default=100)
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    server = OwnRedis()
    try:
        rounds = [
            bench_throughput(server.url, args.events, args.campaigns, args.batch or run_settings().mirror_batch)
            for _ in range(max(1, args.runs))
        ]
        figures: dict[str, Any] = {"throughput": medians(rounds) | {"rounds": rounds}}
        if not args.skip_latency:
            figures["latency"] = bench_latency(server.url, args.rate, args.seconds, args.latency_campaigns)
    finally:
        server.close()
    figures["targets"] = TARGETS
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    tp = figures["throughput"]
    runs = tp["rounds"]

    def line(label: str, key: str, target: str = "") -> None:
        each = ", ".join(f"{r[key]:,}" for r in runs)
        print(f"  {label:<44}{tp[key]:>9,.0f} events/s (median of {len(runs)}: {each}){target}")

    print(f"drain, {tp['events']:,.0f} events of {tp['campaigns']:.0f} campaigns, batch {tp['batch']:.0f}:")
    line(
        "Council, every guard live and shadow mode",
        "council_events_per_s",
        f"; target >= {TARGETS['council_events_per_s']:,}",
    )
    line("Council without shadow mode", "council_no_shadow_events_per_s")
    line("mirror alone (synctwin mirror)", "mirror_events_per_s")
    line("the seed's loop (HSET + HGETALL per event)", "seed_events_per_s")
    print(f"  Council / the seed's loop: {tp['ratio_vs_seed']:.1f}x (median)")
    if "latency" in figures:
        la = figures["latency"]
        print(
            f"XADD -> PAUSE at {la['rate']:,.0f} events/s over {la['seconds']:.0f} s: {la['pauses']} pauses of "
            f"{la['runaways']} runaways {la['reasons']}; p50 {la['p50_ms']:.0f} ms, p99 {la['p99_ms']:.0f} ms, "
            f"max {la['max_ms']:.0f} ms (target p99 <= {TARGETS['p99_ms']:.0f} ms)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
