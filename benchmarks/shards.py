"""Raw cost of the sharded bid stream: XADD, XREADGROUP and XACK per shard, on one redis-server and on a
local 3-master Redis Cluster, with 1, 2 and 4 shards and 1 or 2 worker processes.

It measures what every sharded worker pays before any agent runs (the stream's own cost), so the
capacity model of docs/scale-out.md can add it to the Council's per-event cost (benchmarks/council.py).
Events are routed as a producer would (`stream_for`: CRC32(id) mod N); each worker owns the shards
k with k mod W = its index (what the leases settle on) and drains them with XREADGROUP COUNT batch +
XACK of the batch, one shard after another. Every figure is the median of --repeats runs.

`--council`: the same grid running the Council itself (`synctwin run --shards N`'s worker,
agents/council/sharded.py: leases, one RedisCouncil per shard held, every guard live and shadow
mode) over the synthetic feed's campaigns (world/redis_feed.py, renamed copies), beside the
unsharded single-stream worker (N = 1, today's keys). W worker processes heartbeat before they start,
so the leases split the shards evenly from the first step; each drains what it holds and stops.
Printed: events/s (all events / wall time of the slowest worker) and each worker's CPU per event
(its process's CPU, all its councils' threads, over the events it decided).

    python benchmarks/shards.py [--events 100000] [--campaigns 100] [--batch 500] [--repeats 3] [--json]
    python benchmarks/shards.py --council [--copies 20] [--repeats 3] [--no-cluster] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import fakeredis  # noqa: E402
from own_redis import OwnRedis, free_port  # noqa: E402

from agents.council.redis import redis_council  # noqa: E402
from agents.council.sharded import sharded_council  # noqa: E402
from synctwin.infra.redis_conn import connect  # noqa: E402
from synctwin.infra.shards import all_shards, campaign_keys, stream_for  # noqa: E402
from synctwin.kernel.config import get_settings  # noqa: E402
from synctwin.services.feed import start_feed  # noqa: E402
from world.clock import make_environment  # noqa: E402

PREFIX = "bench-shards:"
GROUP = "bench"
CREATE_FLAGS = ("--cluster-replicas", "0", "--cluster-yes")


class OwnCluster:
    """Three `redis-server --cluster-enabled yes` on free ports, joined by `redis-cli --cluster create`."""

    def __init__(self, masters: int = 3) -> None:
        import redis

        binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if binary is None or cli is None:
            raise SystemExit("redis-server and redis-cli must be on PATH for the cluster figures")
        self.dir = tempfile.TemporaryDirectory(prefix="synctwin-bench-cluster-")
        self.ports = [self._port() for _ in range(masters)]
        self.procs = []
        for port in self.ports:
            node = Path(self.dir.name) / str(port)
            node.mkdir()
            self.procs.append(
                subprocess.Popen(
                    [
                        binary,
                        *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
                        *("--cluster-enabled", "yes", "--cluster-config-file", str(node / "nodes.conf")),
                        *("--dir", str(node), "--logfile", "redis.log"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.STDOUT,
                )
            )
        for port in self.ports:
            client = redis.Redis(port=port)
            for _ in range(500):
                try:
                    client.ping()
                    break
                except redis.exceptions.ConnectionError:
                    time.sleep(0.01)
            client.close()
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports), *CREATE_FLAGS],
            check=True,
            capture_output=True,
        )
        for port in self.ports:
            client = redis.Redis(port=port, decode_responses=True)
            while client.cluster("INFO").get("cluster_state") != "ok":
                time.sleep(0.05)
            client.close()
        self.url = f"redis://127.0.0.1:{self.ports[0]}/0"

    @staticmethod
    def _port() -> int:
        while True:
            port = free_port()
            if port + 10_000 <= 65_535:
                with socket.socket() as s:
                    try:
                        s.bind(("127.0.0.1", port + 10_000))
                    except OSError:
                        continue
                return port

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(10)
        self.dir.cleanup()


def server_cpu(ports: list[int]) -> float:
    """CPU seconds (user + sys) the Redis servers on `ports` have used so far."""
    import redis

    total = 0.0
    for port in ports:
        client = redis.Redis(port=port, decode_responses=True)
        info = client.info("cpu")
        total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        client.close()
    return total


def events(n_events: int, n_campaigns: int) -> list[dict[str, str]]:
    """Bid events with the stream's fields, campaigns interleaved as a live feed has them."""
    out = []
    for i in range(n_events):
        c, step = i % n_campaigns, i // n_campaigns + 1
        out.append(
            {
                "event_id": f"e{i}",
                "campaign_id": f"camp-{c}",
                "ts": str(1_700_000_000 + 300 * step),
                "spend": f"{10.0 * step:.2f}",
                "impressions": str(1000 * step),
                "clicks": str(20 * step),
                "conversions": str(step),
                "revenue": f"{60.0 * step:.2f}",
            }
        )
    return out


def reset(client: Any, shards: int) -> None:
    for keys in all_shards(PREFIX, shards):
        client.delete(keys.bids)
        client.xgroup_create(keys.bids, GROUP, id="0", mkstream=True)


def produce(client: Any, rows: list[dict[str, str]], shards: int, chunk: int) -> float:
    """XADD every event to its campaign's shard, `chunk` per pipeline (a producer's batching); seconds."""
    routed = [(stream_for(PREFIX, r["campaign_id"], shards), r) for r in rows]
    start = time.perf_counter()
    for i in range(0, len(routed), chunk):
        pipe = client.pipeline(transaction=False)
        for stream, row in routed[i : i + chunk]:
            pipe.xadd(stream, row)
        pipe.execute()
    return time.perf_counter() - start


def drain(url: str, streams: list[str], batch: int, go: Any, out: Any) -> None:
    """One worker: XREADGROUP + XACK on each of its shards in turn until all are empty."""
    client = connect(url)
    go.wait()
    start, cpu, done = time.perf_counter(), time.process_time(), 0
    busy = True
    while busy:
        busy = False
        for stream in streams:
            reply = client.xreadgroup(GROUP, "w", {stream: ">"}, count=batch)
            if not reply:
                continue
            ids = [entry_id for entry_id, _ in reply[0][1]]
            client.xack(stream, GROUP, *ids)
            done += len(ids)
            busy = True
    out.put((done, time.perf_counter() - start, time.process_time() - cpu))
    client.close()


def consume(url: str, shards: int, workers: int, batch: int) -> tuple[int, float, float]:
    """W worker processes, shard k to worker k mod W; (events drained, wall seconds of the slowest,
    CPU seconds of all workers)."""
    ctx = mp.get_context("fork")
    go, out = ctx.Event(), ctx.Queue()
    streams = [k.bids for k in all_shards(PREFIX, shards)]
    procs = [
        ctx.Process(target=drain, args=(url, streams[w::workers], batch, go, out))
        for w in range(workers)
        if streams[w::workers]
    ]
    for proc in procs:
        proc.start()
    time.sleep(0.3)  # every worker connected and waiting
    go.set()
    results = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    return sum(r[0] for r in results), max(r[1] for r in results), sum(r[2] for r in results)


def run_grid(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = events(args.events, args.campaigns)
    table = []
    servers: list[tuple[str, Any]] = [("redis", OwnRedis())]
    if not args.no_cluster:
        servers.append(("cluster", OwnCluster()))
    try:
        for target, server in servers:
            client = connect(server.url)
            ports = getattr(server, "ports", None) or [server.port]
            for shards in (1, 2, 4):
                for workers in (1, 2):
                    if workers > shards:
                        continue
                    xadd, drained, worker_us, xadd_server_us, drain_server_us = [], [], [], [], []
                    for _ in range(args.repeats):
                        reset(client, shards)
                        cpu0 = server_cpu(ports)
                        xadd.append(len(rows) / produce(client, rows, shards, args.batch))
                        cpu1 = server_cpu(ports)
                        n, seconds, cpu = consume(server.url, shards, workers, args.batch)
                        cpu2 = server_cpu(ports)
                        assert n == len(rows), (n, len(rows))
                        drained.append(n / seconds)
                        worker_us.append(1e6 * cpu / n)
                        xadd_server_us.append(1e6 * (cpu1 - cpu0) / n)
                        drain_server_us.append(1e6 * (cpu2 - cpu1) / n)
                    xadd_rate, drain_rate = statistics.median(xadd), statistics.median(drained)
                    table.append(
                        {
                            "target": target,
                            "shards": shards,
                            "workers": workers,
                            "xadd_events_per_s": round(xadd_rate),
                            "drain_events_per_s": round(drain_rate),
                            "xadd_us_per_event": round(1e6 / xadd_rate, 2),
                            "drain_us_per_event_per_worker": round(1e6 * workers / drain_rate, 2),
                            "worker_cpu_us_per_event": round(statistics.median(worker_us), 2),
                            "redis_cpu_us_per_xadd": round(statistics.median(xadd_server_us), 2),
                            "redis_cpu_us_per_read_ack": round(statistics.median(drain_server_us), 2),
                        }
                    )
                    if not args.json:
                        r = table[-1]
                        print(
                            f"{target:8s} shards={shards} workers={workers}  XADD {r['xadd_events_per_s']:>8,}/s "
                            f"({r['xadd_us_per_event']:.2f} us/event)  XREADGROUP+XACK {r['drain_events_per_s']:>8,}/s "
                            f"({r['drain_us_per_event_per_worker']:.2f} us/event/worker); CPU us/event: worker "
                            f"{r['worker_cpu_us_per_event']:.2f}, Redis XADD {r['redis_cpu_us_per_xadd']:.2f} "
                            f"+ read/ack {r['redis_cpu_us_per_read_ack']:.2f}",
                            flush=True,
                        )
            client.close()
    finally:
        for _, server in servers:
            server.close()
    return table


# --- the Council on shards -----------------------------------------------------------------------
COUNCIL_PREFIX = "synctwin:"


def feed_recording(copies: int, hours: int = 40) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """The synthetic feed's events over `hours` (healthy campaigns, a conversion crash, a runaway) and
    its plans, repeated under `copies` sets of new ids."""
    src = fakeredis.FakeRedis(decode_responses=True)
    env = make_environment()
    start_feed(src, env, get_settings(), epoch0=1_780_000_000.0, tick=300.0, seed=0)
    env.run(until=hours * 3600)
    base = [f for _, f in src.xrange(f"{COUNCIL_PREFIX}bids")]
    cids = sorted({e["campaign_id"] for e in base})
    plans = []
    for k in range(copies):
        for cid in cids:
            new = f"k{k}-{cid}"
            raw = {
                what: src.get(f"{COUNCIL_PREFIX}campaign:{cid}:{what}") for what in ("strategy", "projection", "gate")
            }
            plans.append({"campaign_id": new, **{w: json.loads(v) for w, v in raw.items() if v is not None}})
    rows = [
        {**e, "campaign_id": f"k{k}-{e['campaign_id']}", "event_id": f"k{k}-{e['event_id']}"}
        for e in base
        for k in range(copies)
    ]
    return rows, plans


def store_council(client: Any, rows: list[dict[str, str]], plans: list[dict[str, Any]], shards: int) -> None:
    """Plans under each campaign's shard (as `gate --redis --shards N`), events on its shard stream."""
    client.flushall() if not hasattr(client, "get_primaries") else client.flushall(target_nodes=client.PRIMARIES)
    for p in plans:
        cid = p["campaign_id"]
        base = campaign_keys(COUNCIL_PREFIX, cid, shards).prefix + f"campaign:{cid}"
        client.set(f"{base}:strategy", json.dumps({**p["strategy"], "campaign_id": cid}))
        if "projection" in p:
            client.set(f"{base}:projection", json.dumps({**p["projection"], "campaign_id": cid}))
        client.set(f"{base}:gate", json.dumps(p["gate"]))
    for i in range(0, len(rows), 1000):
        pipe = client.pipeline(transaction=False)
        for r in rows[i : i + 1000]:
            pipe.xadd(stream_for(COUNCIL_PREFIX, r["campaign_id"], shards), r)
        pipe.execute()


def council_worker(url: str, shards: int, name: str, batch: int, ready: Any, go: Any, out: Any) -> None:
    """One worker process: the sharded Council (or, N = 1, today's unsharded worker) until drained."""
    import logging

    logging.disable(logging.WARNING)
    client = connect(url)
    settings = get_settings().model_copy(update={"shards": shards})
    if shards == 1:
        worker: Any = redis_council(client, settings, consumer=name, batch=batch, block_ms=None)
    else:
        worker = sharded_council(client, settings, redis_council, worker_id=name, ttl_ms=5000, batch=batch)
        worker.leases.live_workers()  # seen live by the others before anyone takes a shard
    ready.put(name)
    go.wait()
    start, cpu = time.perf_counter(), time.process_time()
    stats = worker.run(lambda: False, once=True)
    out.put((stats.events, time.perf_counter() - start, time.process_time() - cpu, stats.pauses, stats.ignored))
    client.close()


def run_council_grid(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows, plans = feed_recording(args.copies)
    table = []
    servers: list[tuple[str, Any]] = [("redis", OwnRedis())]
    if not args.no_cluster:
        servers.append(("cluster", OwnCluster()))
    ctx = mp.get_context("fork")
    try:
        for target, server in servers:
            client = connect(server.url)
            for shards, workers in ((1, 1), (2, 1), (2, 2), (4, 1), (4, 2)):
                if target == "cluster" and shards == 1:
                    continue  # a cluster needs N >= 2 (check_cluster)
                rates, cpus, pauses = [], [], set()
                for _ in range(args.repeats):
                    store_council(client, rows, plans, shards)
                    ready, go, out = ctx.Queue(), ctx.Event(), ctx.Queue()
                    procs = [
                        ctx.Process(
                            target=council_worker, args=(server.url, shards, f"w{i}", args.batch, ready, go, out)
                        )
                        for i in range(workers)
                    ]
                    for proc in procs:
                        proc.start()
                    for _ in procs:
                        ready.get(timeout=120)
                    go.set()
                    results = [out.get(timeout=1200) for _ in procs]
                    for proc in procs:
                        proc.join()
                    n = sum(r[0] for r in results)
                    assert n == len(rows) and sum(r[4] for r in results) == 0, (n, len(rows), results)
                    rates.append(n / max(r[1] for r in results))
                    cpus.append(statistics.mean(1e6 * r[2] / max(1, r[0]) for r in results))
                    pauses.add(sum(r[3] for r in results))
                table.append(
                    {
                        "target": target,
                        "shards": shards,
                        "workers": workers,
                        "council_events_per_s": round(statistics.median(rates)),
                        "worker_cpu_us_per_event": round(statistics.median(cpus), 1),
                        "pauses": sorted(pauses),
                    }
                )
                if not args.json:
                    r = table[-1]
                    print(
                        f"{target:8s} shards={shards} workers={workers}  Council {r['council_events_per_s']:>7,} "
                        f"events/s; worker CPU {r['worker_cpu_us_per_event']:.1f} us/event; pauses {r['pauses']}",
                        flush=True,
                    )
            client.close()
    finally:
        for _, server in servers:
            server.close()
    return table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--campaigns", type=int, default=100)
    ap.add_argument("--batch", type=int, default=500, help="events per XREADGROUP and per XADD pipeline")
    ap.add_argument("--repeats", type=int, default=3, help="runs per configuration; the median is printed")
    ap.add_argument("--no-cluster", action="store_true", help="one redis-server only")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--council", action="store_true", help="run the Council on the shards (synctwin run --shards N)")
    ap.add_argument("--copies", type=int, default=20, help="--council: copies of the feed's campaigns (5 each)")
    args = ap.parse_args()
    if args.council:
        table = run_council_grid(args)
        base = table[0]  # one stream, one worker, one Redis
        for r in table:
            r["vs_single_stream"] = round(r["council_events_per_s"] / base["council_events_per_s"], 2)
        if args.json:
            print(json.dumps({"copies": args.copies, "batch": args.batch, "repeats": args.repeats, "runs": table}))
        else:
            print("Council throughput relative to one stream on one Redis, one worker (medians; 2 shared cores):")
            for r in table:
                print(f"  {r['target']:8s} shards={r['shards']} workers={r['workers']}: {r['vs_single_stream']:.2f}x")
        return 0
    table = run_grid(args)
    base = next(r for r in table if r["target"] == "redis" and r["shards"] == 1 and r["workers"] == 1)
    for r in table:
        r["drain_vs_single_stream"] = round(r["drain_events_per_s"] / base["drain_events_per_s"], 2)
    if args.json:
        print(json.dumps({"events": args.events, "batch": args.batch, "repeats": args.repeats, "runs": table}))
    else:
        print("drain relative to one stream on one Redis, one worker:")
        for r in table:
            print(f"  {r['target']:8s} shards={r['shards']} workers={r['workers']}: {r['drain_vs_single_stream']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
