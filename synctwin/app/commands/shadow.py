"""`synctwin shadow`: shadow mode and live outcomes in production (the learning loop).

Two ways in:
- `--redis URL`: the Council with shadow mode alone on the bid stream (agents/council/redis.py
  `redis_shadow`; the agent and its store: agents/synctwin/shadow/agent.py, shadow_store.py):
  learns each platform's daily market from live campaigns, re-simulates pending rejections day by
  day under it (SHADOW_OUTCOME), and writes one CAMPAIGN_OUTCOME per approved campaign when its
  flight ends or it is paused. Until SIGTERM/SIGINT (drains, exits 0), or `--once`.
- `--market FILE --audit-log FILE`: no Redis; the rejections of a JSONL audit log (recorded with
  their strategy) over a market CSV, appended to the same log as final SHADOW_OUTCOME records."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from synctwin.app.commands._worker import add_worker_arguments, run_worker
from synctwin.app.console import emit, print_json
from synctwin.infra.redis_conn import add_redis_argument, redis_url_arg
from synctwin.kernel.config import get_settings
from synctwin.kernel.durations import parse_duration
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.formatting import money


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Shadow mode in production. With --redis: consume the bid stream ({prefix}bids) in its own consumer "
        "group, learn each platform's daily market (CPM, CTR, conversions per click, order value) from live "
        "campaigns, re-simulate each pending rejection's would-be flight day by day under it (SHADOW_OUTCOME "
        "audit records, each campaign-day once), and audit one CAMPAIGN_OUTCOME per approved campaign when its "
        "flight ends or it is paused. Runs until SIGTERM/SIGINT (exit 0) or, with --once, until the stream is "
        "drained. With --market FILE --audit-log FILE (no Redis): re-simulate the log's rejections under a "
        "market CSV (date,platform,cpm,ctr,cvr,aov) and append their final SHADOW_OUTCOME records to the log."
    )
    add_redis_argument(
        p,
        "e.g. redis://127.0.0.1:6379/0: run the worker (the default without --market, when SYNCTWIN_REDIS_URL is set)",
    )
    add_worker_arguments(
        p, group="synctwin-shadow", metrics_help="events processed/ignored, outcomes recorded, the group's lag"
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="stop when the stream is drained, after recording every closed day (the days before the newest event)",
    )
    p.add_argument(
        "--grace",
        default="1h",
        metavar="D",
        help="event time a day stays open after its end, for late "
        "events (default 1h; --once settles without it at the end)",
    )
    p.add_argument(
        "--claim-idle-ms",
        type=int,
        metavar="MS",
        help="reclaim events a dead worker held this long (default SYNCTWIN_MIRROR_CLAIM_IDLE_MS, 30000)",
    )
    p.add_argument(
        "--market",
        metavar="FILE",
        help="a market CSV date,platform,cpm,ctr,cvr,aov (cvr: conversions per click), instead of Redis",
    )
    p.add_argument(
        "--audit-log",
        metavar="FILE",
        help="with --market: the JSONL audit log to read rejections from and append SHADOW_OUTCOME records to",
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON document")


def run(args: argparse.Namespace) -> int:
    args.redis = redis_url_arg(args.redis, default_to_env=not (args.market or args.audit_log))
    if args.redis and (args.market or args.audit_log):
        raise InvalidInput("give either --redis URL (the worker) or --market FILE --audit-log FILE, not both")
    if args.redis:
        return _run_worker(args)
    if args.market and args.audit_log:
        return _run_market(args)
    raise InvalidInput("give --redis URL (the worker), or --market FILE with --audit-log FILE")


# --- the worker -------------------------------------------------------------------------------------
def _run_worker(args: argparse.Namespace) -> int:
    from agents.council.redis import redis_shadow

    if args.claim_idle_ms is not None and args.claim_idle_ms < 0:
        raise InvalidInput(f"--claim-idle-ms must be >= 0 (got {args.claim_idle_ms})")
    try:
        grace = parse_duration(args.grace)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="--grace") from None
    idle = get_settings().mirror_claim_idle_ms if args.claim_idle_ms is None else args.claim_idle_ms
    worker, _stats = run_worker(
        args, args.redis, redis_shadow, "shadow", once=args.once, grace_s=grace, claim_idle_ms=idle
    )
    sharded = hasattr(worker, "shadow_summary")
    summary = worker.shadow_summary() if sharded else worker.shadow.stats.to_dict()
    if args.json:
        print_json({"group": args.group, "consumer": worker.consumer, **summary})
    elif args.once:
        print(_summary_line(summary))
    logging.getLogger("synctwin.shadow").info("drained and stopped: %s", _summary_line(summary))
    return 0


def _summary_line(s: dict[str, int]) -> str:
    return (
        f"{s['events']} events ({s['applied']} applied, {s['unknown']} of unknown campaigns, "
        f"{s['before_launch']} before their launch, {s['invalid']} invalid, {s['poison']} poison); "
        f"{s['shadow_outcomes']} SHADOW_OUTCOME, {s['campaign_outcomes']} CAMPAIGN_OUTCOME recorded"
    )


# --- a market file ----------------------------------------------------------------------------------
def _run_market(args: argparse.Namespace) -> int:
    """Every rejection still owed a final shadow outcome whose flight the market file covers; all
    computed (and validated) before the first record is appended."""
    from agents.syncshield.backends import JsonlAuditStore
    from agents.synctwin.shadow.agent import load_market, rejections_from_audit, shadow_outcomes_from_market

    market = load_market(args.market)
    if not Path(args.audit_log).is_file():
        raise InvalidInput("no such audit log file", source=args.audit_log)
    store = JsonlAuditStore(args.audit_log)
    rejections, no_strategy = rejections_from_audit(store.records(), source=args.audit_log)
    last = {}
    for platform, day in market.days:
        last[platform] = max(day, last.get(platform, day))
    ready, in_progress = [], []
    for rej in rejections:
        end = rej.start.toordinal() + rej.strategy.duration_days - 1
        platform_last = last.get(rej.strategy.platform)
        if platform_last is not None and end > platform_last.toordinal():
            in_progress.append(rej.strategy.campaign_id)  # its flight is not over in the file yet
        else:
            ready.append(rej)
    outcomes = shadow_outcomes_from_market(ready, market)
    for rec in outcomes:
        store.append(
            rec["event_type"], **{k: rec[k] for k in ("client_id", "campaign_id", "metadata")}, reason="SHADOW_MODE"
        )
    result = {
        "audit_log": args.audit_log,
        "market": args.market,
        "appended": outcomes,
        "in_progress": in_progress,
        "without_strategy": no_strategy,
    }
    emit(args.json, result, _print_market_result)
    return 0


def _print_market_result(r: dict[str, Any]) -> None:
    for rec in r["appended"]:
        m = rec["metadata"]
        print(
            f"{rec['campaign_id']}: would have spent {money(m['spend'])} for {money(m['revenue'])} over "
            f"{m['days']:g} days: net profit uplift {money(m['net_profit_uplift'])} "
            f"({'profitable' if m['profitable'] else 'a loss'}; gate confidence {m['confidence_score']:.3f})"
        )
    print(f"{len(r['appended'])} SHADOW_OUTCOME appended to {r['audit_log']}")
    if r["in_progress"]:
        print(f"flights not over in {r['market']}: {', '.join(r['in_progress'])}")
    if r["without_strategy"]:
        print(
            f"rejections recorded without their strategy (cannot be re-simulated): {', '.join(r['without_strategy'])}"
        )
