"""`synctwin run --redis URL`: the production Council on the bid stream (until SIGTERM/SIGINT)."""

from __future__ import annotations

import argparse
import logging

from synctwin.app.commands._worker import add_worker_arguments, run_worker
from synctwin.infra.redis_conn import add_redis_argument, required_redis_url
from synctwin.kernel.errors import InvalidInput


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Run the Council on the bid stream ({prefix}bids) in a consumer group, on the wall clock: the same agents "
        "`replay --bids --plans` runs in virtual time (SyncTwin's mirror, SyncFlow with MarginGuardian, AutoRollback, "
        "the budget emergency stop and the API circuit breaker, SyncShield, SyncNotify, and shadow mode). Plans are "
        "read from {prefix}campaign:{id}:strategy and :projection (what `gate --redis` stores). A pause is one entry "
        "on {prefix}control (campaign_id, reason, event_id, ts), written exactly once with the batch's "
        "acknowledgement. With --shards N > 1, workers (as many as wanted) share the N shard streams through leases in "
        "Redis, one live worker per shard, one Council per shard held (docs/scale-out.md). SIGTERM or Ctrl-C finishes "
        "the batch in hand, acknowledges it and exits 0."
    )
    add_redis_argument(p, "e.g. redis://127.0.0.1:6379/0 (default SYNCTWIN_REDIS_URL)")
    add_worker_arguments(
        p, group="synctwin-council", metrics_help="events, dead letters, pauses by reason, deviations, the lag"
    )
    p.add_argument(
        "--disable-guard",
        action="append",
        default=[],
        metavar="NAME",
        help="switch a SyncFlow guard off (margin_guardian, budget_emergency, auto_rollback, "
        "api_circuit_breaker); for drills and comparisons, never in production",
    )


def run(args: argparse.Namespace) -> int:
    from agents.council.redis import redis_council
    from agents.syncflow.agent import GUARDS

    url = required_redis_url(args.redis)
    unknown = sorted(set(args.disable_guard) - set(GUARDS))
    if unknown:
        raise InvalidInput(f"unknown guard(s) {', '.join(unknown)}; expected some of {', '.join(GUARDS)}")
    worker, stats = run_worker(args, url, redis_council, "council", disabled_guards=args.disable_guard)
    logging.getLogger("synctwin.council").info(
        "drained and stopped: %d events, %d dead, %d ignored (duplicates/out of order), %d pauses (%d decided "
        "again, not written), %d taken over from dead workers",
        *(getattr(stats, k) for k in ("events", "dead", "ignored", "pauses", "duplicates")),
        worker.rescued,
    )
    return 0
