"""`synctwin run --redis URL`: the production Council on the bid stream (until SIGTERM/SIGINT)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from synctwin.app.commands._worker import add_shard_arguments, lease_ttl_ms, serve_metrics, stop_on_signals
from synctwin.kernel.errors import InvalidInput


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Run the Council on the bid stream ({prefix}bids) in a consumer group, on the wall clock: the same agents "
        "`replay --bids --plans` runs in virtual time (SyncTwin's mirror, SyncFlow with MarginGuardian, "
        "AutoRollback, the budget emergency stop and the API circuit breaker, SyncShield, SyncNotify, and shadow "
        "mode). Plans are "
        "read from {prefix}campaign:{id}:strategy and :projection (what `gate --redis` stores). A pause is one "
        "entry on {prefix}control (campaign_id, reason, event_id, ts), written exactly once with the batch's "
        "acknowledgement. With --shards N > 1, workers (as many as wanted) share the N shard streams through "
        "leases in Redis, one live worker per shard, one Council per shard held (docs/scale-out.md). "
        "SIGTERM or Ctrl-C finishes the batch in hand, acknowledges it and exits 0."
    )
    from synctwin.infra.redis_conn import add_redis_argument

    add_redis_argument(p, "e.g. redis://127.0.0.1:6379/0 (default SYNCTWIN_REDIS_URL)")
    p.add_argument("--group", default="synctwin-council", metavar="G", help="consumer group (default synctwin-council)")
    p.add_argument(
        "--consumer",
        metavar="C",
        help="this worker's name in the group (default host-pid); with --shards N > 1, its name in the leases",
    )
    add_shard_arguments(p)
    p.add_argument("--batch", type=int, metavar="N", help="events per read, one Council message (default 500)")
    p.add_argument(
        "--disable-guard",
        action="append",
        default=[],
        metavar="NAME",
        help="switch a SyncFlow guard off (margin_guardian, budget_emergency, auto_rollback, "
        "api_circuit_breaker); for drills and comparisons, never in production",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--metrics-port", type=int, metavar="P", help="serve Prometheus metrics on this port")
    p.add_argument(
        "--metrics-host", default="127.0.0.1", metavar="H", help="address of the metrics server (default 127.0.0.1)"
    )


def run(args: argparse.Namespace) -> int:
    from agents.council.redis import redis_council
    from agents.council.sharded import sharded_council
    from agents.syncflow.agent import GUARDS
    from synctwin.infra.redis_conn import connect_deployment, redact_logs, required_redis_url, with_shards
    from synctwin.kernel.config import get_settings

    settings = with_shards(get_settings(), args.shards)
    ttl = lease_ttl_ms(args.lease_ttl_ms)
    url = required_redis_url(args.redis)
    if args.batch is not None and args.batch <= 0:
        raise InvalidInput(f"--batch must be positive (got {args.batch})")
    if args.metrics_port is not None and not 0 < args.metrics_port <= 65_535:
        raise InvalidInput(f"--metrics-port must be in 1-65535 (got {args.metrics_port})")
    unknown = sorted(set(args.disable_guard) - set(GUARDS))
    if unknown:
        raise InvalidInput(f"unknown guard(s) {', '.join(unknown)}; expected some of {', '.join(GUARDS)}")
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    redact_logs(url)
    client = connect_deployment(url, settings.shards)
    options = {"group": args.group, "batch": args.batch, "disabled_guards": args.disable_guard}
    worker: Any
    if settings.shards == 1:
        worker = redis_council(client, settings, consumer=args.consumer, **options)
        worker.audit.check_appendable()
        where = f"{settings.key_prefix}bids"
    else:
        worker = sharded_council(client, settings, redis_council, worker_id=args.consumer, ttl_ms=ttl, **options)
        worker.check_appendable()
        where = f"{settings.shards} shards ({worker.leases.ttl_ms} ms leases)"
    log = logging.getLogger("synctwin.council")
    if args.metrics_port is not None:
        serve_metrics(client, worker.bids, args.group, args.metrics_host, args.metrics_port, log)
    with stop_on_signals() as stop:
        log.info("council %s in group %s on %s", worker.consumer, args.group, where)
        stats = worker.run(stop)
    log.info(
        "drained and stopped: %d events, %d dead, %d ignored (duplicates/out of order), %d pauses (%d decided "
        "again, not written), %d taken over from dead workers",
        stats.events,
        stats.dead,
        stats.ignored,
        stats.pauses,
        stats.duplicates,
        worker.rescued,
    )
    return 0
