"""Bad events on the live stream: what the mirror and the shadow worker make of them.

Starts a redis-server of its own on a free port and, per kind of bad event, publishes one healthy
campaign's on-plan stream (two days, an event every 5 minutes, dated up to now) with the bad
events mixed in mid-stream, under a key prefix of its own. Then it runs a mirror worker and a
shadow worker (in-process, drained with `run(once=True)`; a worker that raises is restarted, up to
three times, after the idle-time reclaim is due, as a supervisor would) and reports per kind:
the bad events, how many were dead-lettered (mirror) or counted invalid (shadow), how many of the
campaign's events the mirror applied, whether a worker crashed, and whether the campaign's state
is right (the mirror's hash: every good event applied, nothing ignored, not paused; the shadow's
totals: the last good event's).

Then two live-stream scenarios with `synctwin mirror` processes and a publisher at a fixed rate:
kill -9 three times mid-stream, each time restarted at once under a new name (events never
applied, i.e. ignored as out of order, and whether the end state is a clean pass's), and two
workers in one group beside one (the share of events ignored, and how much later the deviating
campaigns pause, in campaign time).

    python benchmarks/bad_events.py                       # this tree's code
    python benchmarks/bad_events.py --code /tmp/before    # another checkout's (e.g. an older commit)
    python benchmarks/bad_events.py --json --no-live
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RATE, CPA, AOV, STEP = 40.0, 10.0, 60.0, 300.0  # conversions an hour, cost per conversion, order value, s
HOURS = 48


# ------------------------------------------------------------------------------------ a server
from own_redis import OwnRedis  # noqa: E402  (benchmarks/ is the script's own folder)


# ------------------------------------------------------------------------------------ the corpus
def projection(cid: str, launch: float, days: int = 30) -> dict[str, Any]:
    """A projection growing RATE conversions an hour, with a +-15% band."""
    points = []
    for h in range(days * 24 + 1):
        c = RATE * h
        point: dict[str, float] = {"t_hours": float(h)}
        for metric, v in (("conversions", c), ("spend", c * CPA), ("revenue", c * AOV)):
            point |= {f"{metric}_p10": v * 0.85, f"{metric}_p50": v, f"{metric}_p90": v * 1.15}
        points.append(point)
    return {"campaign_id": cid, "launch_ts": launch, "horizon_days": days, "points": points}


def good_events(cid: str, launch: float, hours: float = HOURS, runaway_at: float | None = None) -> list[dict[str, Any]]:
    out = []
    for i in range(1, int(hours * 3600 / STEP) + 1):
        h = i * STEP / 3600
        conv = math.floor(RATE * h)
        spend = RATE * CPA * (h if runaway_at is None or h <= runaway_at else runaway_at + 10 * (h - runaway_at))
        out.append(
            {
                "event_id": f"{cid}:{i}",
                "campaign_id": cid,
                "ts": launch + i * STEP,
                "spend": spend,
                "impressions": conv * 50,
                "clicks": conv * 2,
                "conversions": conv,
                "revenue": conv * AOV,
            }
        )
    return out


FIELDS = ("event_id", "campaign_id", "ts", "spend", "impressions", "clicks", "conversions", "revenue")


def corpus(now: float) -> list[dict[str, Any]]:
    """Each kind: its campaign's good events, the bad ones (inserted after the 200th good one), the
    projections to publish and what the campaign's mirror must end as."""
    launch = now - HOURS * 3600 - 60
    kinds: list[dict[str, Any]] = []

    def kind(
        name: str,
        bad: Any,
        *,
        projections: dict[str, Any] | None = None,
        good: list[dict[str, Any]] | None = None,
        expect: str = "healthy",
        extra_ignored: int = 0,
        lo: float = launch,
    ) -> None:
        g = good if good is not None else good_events("c", lo)
        b = bad(g) if callable(bad) else bad
        kinds.append(
            {
                "kind": name,
                "good": g,
                "bad": b,
                "projections": projections or {"c": projection("c", lo)},
                "expect": expect,
                "extra_ignored": extra_ignored,
            }
        )

    at = 200
    kind("missing field", lambda g: [{k: v for k, v in g[at].items() if k != "spend"}])
    kind("NaN", lambda g: [g[at] | {"event_id": "bad", "conversions": "nan"}])
    kind("negative", lambda g: [g[at] | {"event_id": "bad", "revenue": -5}])
    kind("not a number", lambda g: [g[at] | {"event_id": "bad", "clicks": "many"}])
    kind("ts zero", lambda g: [g[at] | {"event_id": "bad", "ts": 0}])
    kind("unknown campaign", lambda g: [g[at] | {"event_id": "bad", "campaign_id": "ghost"}])
    kind(
        "bad projection",
        lambda g: [g[at] | {"event_id": "bad", "campaign_id": "broken"}],
        projections={"c": projection("c", launch), "broken": "{not json"},
    )
    for f in FIELDS:
        kind(
            f"non-UTF-8 in {f}",
            lambda g, f=f: [
                {**{k: str(v) for k, v in g[at].items()}, f: str(g[at][f]).encode() + b"\xff"} | {"_raw": True}
            ],
        )
    kind(
        "non-UTF-8 field name",
        lambda g: [
            {**{k: str(v) for k, v in g[at].items() if k != "spend"}, b"sp\xffend": str(g[at]["spend"])}
            | {"_raw": True}
        ],
    )
    kind(
        "ts 3 weeks ahead (x4)",
        lambda g: [g[at] | {"event_id": f"ahead-{i}", "ts": now + 21 * 86_400 + i * 3600} for i in range(4)],
    )
    kind("ts in milliseconds", lambda g: [g[at] | {"event_id": "ms", "ts": g[at]["ts"] * 1000}])
    kind("ts before launch", lambda g: [g[0] | {"event_id": "early", "ts": launch - 3 * 3600}])
    short = now - 3 * 86_400
    kind(
        "ts after the flight",
        lambda g: [g[at] | {"event_id": "late", "ts": short + 2.5 * 86_400}],
        projections={"c": projection("c", short, days=1)},
        good=good_events("c", short, hours=24),
        lo=short,
    )
    kind("spend 1e308", lambda g: [g[at] | {"event_id": "huge", "spend": 1e308}])
    kind("conversions > clicks", lambda g: [g[at] | {"event_id": "conv", "conversions": g[at]["clicks"] + 500}])
    kind("clicks > impressions", lambda g: [g[at] | {"event_id": "clk", "clicks": g[at]["impressions"] + 1}])
    kind("spend jump (a year's budget)", lambda g: [g[at] | {"event_id": "jump", "spend": 2e7}])
    kind("impressions 1e300", lambda g: [g[at] | {"event_id": "imp", "impressions": 1e300}])
    runaway = good_events("c", launch, runaway_at=8.0)
    kind("runaway 10x (real: apply, pause)", [], good=runaway, expect="paused")
    kind("duplicates, out of order", lambda g: list(reversed(g[50:150])), extra_ignored=100)
    return kinds


def publish(client: Any, prefix: str, k: dict[str, Any]) -> None:
    for cid, proj in k["projections"].items():
        client.set(f"{prefix}campaign:{cid}:projection", proj if isinstance(proj, str) else json.dumps(proj))
        client.set(f"{prefix}campaign:{cid}:strategy", json.dumps({"platform": "meta"}))
    evs = k["good"][:200] + k["bad"] + k["good"][200:]
    pipe = client.pipeline(transaction=False)
    for e in evs:
        fields = {kk: (v if isinstance(v, bytes) else str(v)) for kk, v in e.items() if kk != "_raw"}
        pipe.xadd(f"{prefix}bids", fields)
    pipe.execute()


# ------------------------------------------------------------------------------------ the workers
def drain_with_restarts(make: Any, claim_idle_ms: int, tries: int = 3) -> tuple[int, str]:
    """Run a worker until the stream is drained; one that raises is restarted under a new name
    (after the idle-time reclaim is due), at most `tries` times. (crashes, last error)"""
    crashes, last = 0, ""
    for attempt in range(tries):
        worker = make(f"w{attempt}")
        try:
            worker.run(lambda: False, once=True)
            return crashes, last
        except Exception as exc:  # a crash: what the issue is about
            crashes += 1
            last = f"{type(exc).__name__}: {str(exc)[:60]}"
            time.sleep(claim_idle_ms / 1000 + 0.05)
    return crashes, last


def run_kind(client: Any, k: dict[str, Any], i: int) -> dict[str, Any]:
    from agents.council.redis import redis_mirror, redis_shadow
    from agents.synctwin.mirror.deviation import MirrorState
    from synctwin.kernel.config import get_settings

    prefix = f"bad{i}:"
    publish(client, prefix, k)
    idle = 200
    m_crashes, m_err = drain_with_restarts(
        lambda name: redis_mirror(
            client, get_settings(), prefix=prefix, consumer=name, block_ms=None, claim_idle_ms=idle
        ),
        idle,
    )
    stats: dict[str, int] = {}

    def shadow(name: str) -> Any:
        w = redis_shadow(client, get_settings(), prefix=prefix, consumer=name, block_ms=None, claim_idle_ms=idle)
        stats["w"] = w  # type: ignore[assignment]
        return w

    s_crashes, s_err = drain_with_restarts(shadow, idle)
    good, bad = k["good"], k["bad"]
    state = MirrorState.from_hash("c", client.hgetall(f"{prefix}campaign:c:mirror"))
    dead = client.xlen(f"{prefix}bids:dead")
    last = good[-1]
    paused = state.status == "PAUSED"
    correct = (
        state.events == len(good)
        and state.ignored == k["extra_ignored"]
        and state.last_event_id == last["event_id"]
        and state.spend == float(last["spend"])
        and paused == (k["expect"] == "paused")
    )
    sw = stats["w"]
    s = sw.shadow.stats  # type: ignore[attr-defined]
    counted = s.invalid + s.unknown + getattr(s, "implausible", 0) + s.before_launch
    totals = {m.partition("|")[2]: v for m, v in client.zrange(f"{prefix}campaign:c:totals", 0, -1, withscores=True)}
    s_correct = all(math.isclose(totals.get(m, -1.0), float(last[m])) for m in ("spend", "conversions", "revenue"))
    return {
        "kind": k["kind"],
        "events": len(bad),
        "dead_lettered": dead,
        "applied": state.events,
        "good": len(good),
        "ignored": state.ignored,
        "mirror_crashes": m_crashes,
        "mirror_error": m_err,
        "status": state.status,
        "mirror_correct": correct,
        "shadow_counted": counted,
        "shadow_crashes": s_crashes,
        "shadow_error": s_err,
        "shadow_correct": s_correct,
    }


# ------------------------------------------------------------------------------------ live scenarios
def _cli(code: Path, url: str, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("SYNCTWIN_")}
    e |= {"PYTHONPATH": str(code), "PYTHONUNBUFFERED": "1"} | env
    return subprocess.Popen(
        [sys.executable, "-m", "synctwin.app.cli", "mirror", "--redis", url, "--quiet", *args],
        cwd=code,
        env=e,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _live_corpus(now: float, campaigns: int, deviating: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    launch = now - 30 * 3600 - 60
    projs, evs = {}, []
    for n in range(campaigns):
        cid = f"live-{n}"
        projs[cid] = projection(cid, launch, days=3)
        evs += good_events(cid, launch, hours=30, runaway_at=8.0 if n < deviating else None)
    evs.sort(key=lambda e: (e["ts"], e["campaign_id"]))
    return projs, evs


def _groups(client: Any) -> dict[str, Any]:
    return {g["name"]: g for g in client.xinfo_groups("live:bids")}


def _live(
    code: Path,
    client: Any,
    url: str,
    *,
    now: float,
    workers: int,
    kills: int,
    rate: float,
    campaigns: int,
    deviating: int,
    env: dict[str, str],
) -> dict[str, Any]:
    """Publish at `rate` events/s while `workers` mirror processes consume; kill -9 `kills` times
    (one worker, restarted at once under a new name); drain; the mirror hashes' verdict."""
    for key in client.scan_iter(match="live:*", count=1000):
        client.unlink(key)
    projs, evs = _live_corpus(now, campaigns, deviating)
    for cid, p in projs.items():
        client.set(f"live:campaign:{cid}:projection", json.dumps(p))
    env = {"SYNCTWIN_KEY_PREFIX": "live:"} | env
    procs = [_cli(code, url, "--batch", "100", env=env) for _ in range(workers)]
    published = {"n": 0}

    def produce() -> None:
        t0 = time.monotonic()
        for j in range(0, len(evs), 50):
            pipe = client.pipeline(transaction=False)
            for e in evs[j : j + 50]:
                pipe.xadd("live:bids", {k: str(v) for k, v in e.items()})
            pipe.execute()
            published["n"] = j + 50
            time.sleep(max(0.0, t0 + (j + 50) / rate - time.monotonic()))

    pub = threading.Thread(target=produce)
    pub.start()
    left: list[int] = []
    for kill in range(kills):
        target = (kill + 1) * len(evs) // (kills + 2)
        deadline = time.monotonic() + 60
        while (
            time.monotonic() < deadline
            and int((_groups(client).get("synctwin-mirror") or {}).get("entries-read") or 0) < target
        ):
            time.sleep(0.01)
        deadline = time.monotonic() + 5  # and while it holds a batch (unacknowledged), as a crash would find it
        while time.monotonic() < deadline and not int(client.xpending("live:bids", "synctwin-mirror")["pending"]):
            time.sleep(0.001)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].communicate(timeout=10)
        left.append(int(client.xpending("live:bids", "synctwin-mirror")["pending"]))
        procs[0] = _cli(code, url, "--batch", "100", env=env)  # at once, under a new name (host-pid)
    pub.join()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        g = _groups(client).get("synctwin-mirror")
        last = client.xinfo_stream("live:bids")["last-generated-id"]
        if g and g["pending"] == 0 and g["last-delivered-id"] == last:
            break
        time.sleep(0.05)
    for p in procs:
        p.send_signal(signal.SIGTERM)
    errs = [p.communicate(timeout=30)[1] for p in procs]
    crashed = sum(1 for p, e in zip(procs, errs, strict=True) if p.returncode != 0 or "Traceback" in e)
    hashes = {cid: client.hgetall(f"live:campaign:{cid}:mirror") for cid in projs}
    ignored = sum(int(h.get("ignored", 0)) for h in hashes.values())
    applied = sum(int(h.get("events", 0)) for h in hashes.values())
    paused_at = {cid: float(h["paused_at"]) / 3600 for cid, h in hashes.items() if h.get("status") == "PAUSED"}
    return {
        "workers": workers,
        "kills": kills,
        "events": len(evs),
        "pending_at_kills": left,
        "applied": applied,
        "ignored": ignored,
        "ignored_share": round(ignored / len(evs), 4),
        "paused": len(paused_at),
        "paused_at_h": paused_at,
        "crashed": crashed,
        "hashes": hashes,
    }


def _same_state(a: dict[str, dict[str, str]], b: dict[str, dict[str, str]]) -> bool:
    strip = ("rev",)
    return {c: {k: v for k, v in h.items() if k not in strip} for c, h in a.items()} == {
        c: {k: v for k, v in h.items() if k not in strip} for c, h in b.items()
    }


def live_scenarios(code: Path, client: Any, url: str, rate: float) -> dict[str, Any]:
    env = {"SYNCTWIN_MIRROR_CLAIM_IDLE_MS": "2000"}  # the idle-time reclaim soon (default 30 s)
    kw = {"now": time.time(), "rate": rate, "campaigns": 20, "deviating": 5, "env": env}  # one corpus for all three
    one = _live(code, client, url, workers=1, kills=0, **kw)  # type: ignore[arg-type]
    killed = _live(code, client, url, workers=1, kills=3, **kw)  # type: ignore[arg-type]
    two = _live(code, client, url, workers=2, kills=0, **kw)  # type: ignore[arg-type]
    later = [two["paused_at_h"][c] - one["paused_at_h"][c] for c in one["paused_at_h"] if c in two["paused_at_h"]]
    out = {
        "one_worker": one,
        "kill_9_x3": killed | {"same_state_as_one_worker": _same_state(killed["hashes"], one["hashes"])},
        "two_workers": two | {"pause_later_min_mean": round(60 * sum(later) / len(later), 1) if later else None},
    }
    for v in out.values():
        v.pop("hashes")
    return out


# ------------------------------------------------------------------------------------ main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--code", type=Path, default=ROOT, help="the checkout whose workers to run (default this one)")
    ap.add_argument("--no-live", action="store_true", help="skip the kill -9 and two-worker scenarios")
    ap.add_argument("--rate", type=float, default=3000.0, help="live scenarios: events a second (default 3000)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    code = args.code.resolve()
    sys.path.insert(0, str(code))
    logging.getLogger("synctwin").setLevel(logging.ERROR)  # the workers' per-event warnings: the table says it
    import redis

    import agents.council.redis as mr

    own = OwnRedis()
    try:
        client = redis.Redis.from_url(own.url, decode_responses=True)
        rows = [run_kind(client, k, i) for i, k in enumerate(corpus(time.time()))]
        live = None if args.no_live else live_scenarios(code, client, own.url, args.rate)
    finally:
        own.close()
    out = {"code": str(Path(mr.__file__).resolve().parent.parent), "kinds": rows, "live": live}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"code under test: {out['code']}")
    head = (
        f"{'kind':<34} {'events':>6} {'dead':>5} {'applied':>9} {'mirror crashed':>15} {'status':>10} "
        f"{'state ok':>8}  {'shadow invalid':>14} {'shadow crashed':>15} {'totals ok':>9}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        mc = f"yes ({r['mirror_crashes']}/3)" if r["mirror_crashes"] else "no"
        sc = f"yes ({r['shadow_crashes']}/3)" if r["shadow_crashes"] else "no"
        print(
            f"{r['kind']:<34} {r['events']:>6} {r['dead_lettered']:>5} {r['applied']:>4}/{r['good']:<4} {mc:>15} "
            f"{r['status']:>10} {'yes' if r['mirror_correct'] else 'NO':>8}  {r['shadow_counted']:>14} {sc:>15} "
            f"{'yes' if r['shadow_correct'] else 'NO':>9}"
        )
    ok = sum(
        r["mirror_correct"] and r["shadow_correct"] and not r["mirror_crashes"] and not r["shadow_crashes"]
        for r in rows
    )
    print(f"handled cleanly (no crash, both states right): {ok}/{len(rows)} kinds")
    if live:
        for name, v in live.items():
            extra = ""
            if "same_state_as_one_worker" in v:
                extra = (
                    f", pending at the kills {v['pending_at_kills']}, end state = one worker's: "
                    f"{v['same_state_as_one_worker']}"
                )
            if v.get("pause_later_min_mean") is not None:
                extra = f", pauses {v['pause_later_min_mean']:+.1f} min (campaign time) vs one worker"
            print(
                f"{name}: {v['events']} events, {v['applied']} applied, {v['ignored']} ignored as out of order "
                f"({v['ignored_share']:.1%}), {v['paused']} paused, workers crashed {v['crashed']}{extra}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
