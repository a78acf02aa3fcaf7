"""`synctwin mirror --redis URL`: the Council with the mirror alone on the bid stream (until SIGTERM/SIGINT)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from synctwin.app.commands._worker import add_shard_arguments, lease_ttl_ms, serve_metrics, stop_on_signals
from synctwin.kernel.errors import InvalidInput


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "The Council with the mirror alone (`synctwin run` without SyncFlow's guards): consume the bid stream "
        "({prefix}bids) in a consumer group, keep each campaign's mirror state in "
        "{prefix}campaign:{id}:mirror, compare it with its projection at the same elapsed time, and pause a "
        "campaign that departs from it: one PAUSE on {prefix}control (reason SYNCTWIN_DEVIATION_THRESHOLD), one "
        "WARNING alert, one AUTO_ROLLBACK_TRIGGERED audit event, exactly once. Several workers may share a group; "
        "with --shards N > 1 they share the N shard streams through leases, one live worker per shard. "
        "SIGTERM or Ctrl-C finishes the batch in hand, acknowledges it and exits 0."
    )
    from synctwin.infra.redis_conn import add_redis_argument

    add_redis_argument(p, "e.g. redis://127.0.0.1:6379/0 (default SYNCTWIN_REDIS_URL)")
    p.add_argument("--group", default="synctwin-mirror", metavar="G", help="consumer group (default synctwin-mirror)")
    p.add_argument(
        "--consumer",
        metavar="C",
        help="this worker's name in the group (default host-pid); with --shards N > 1, its name in the leases",
    )
    add_shard_arguments(p)
    p.add_argument("--batch", type=int, metavar="N", help="events per read (default 500)")
    p.add_argument("--quiet", action="store_true", help="no periodic progress lines on stderr")
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="P",
        help="serve Prometheus metrics on this port "
        "(events processed/dead-lettered/ignored, deviation per campaign, pauses, the group's lag)",
    )
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="H",
        help="address of the metrics server (default 127.0.0.1; 0.0.0.0 for a remote Prometheus)",
    )


def run(args: argparse.Namespace) -> int:
    from agents.council.redis import redis_mirror
    from agents.council.sharded import sharded_council
    from synctwin.infra.redis_conn import connect_deployment, redact_logs, required_redis_url, with_shards
    from synctwin.kernel.config import get_settings

    settings = with_shards(get_settings(), args.shards)
    ttl = lease_ttl_ms(args.lease_ttl_ms)
    url = required_redis_url(args.redis)
    if args.batch is not None and args.batch <= 0:
        raise InvalidInput(f"--batch must be positive (got {args.batch})")
    if args.metrics_port is not None and not 0 < args.metrics_port <= 65_535:
        raise InvalidInput(f"--metrics-port must be in 1-65535 (got {args.metrics_port})")
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    redact_logs(url)
    client = connect_deployment(url, settings.shards)
    worker: Any
    if settings.shards == 1:
        worker = redis_mirror(client, settings, group=args.group, consumer=args.consumer, batch=args.batch)
        worker.audit.check_appendable()  # a damaged audit stream, or a keyed one and no key: say so now
        where = f"{settings.key_prefix}bids"
    else:
        worker = sharded_council(
            client, settings, redis_mirror, worker_id=args.consumer, ttl_ms=ttl, group=args.group, batch=args.batch
        )
        worker.check_appendable()
        where = f"{settings.shards} shards ({worker.leases.ttl_ms} ms leases)"
    log = logging.getLogger("synctwin.mirror")
    if args.metrics_port is not None:
        serve_metrics(client, worker.bids, args.group, args.metrics_host, args.metrics_port, log)
    with stop_on_signals() as stop:
        log.info("mirror %s in group %s on %s", worker.consumer, args.group, where)
        stats = worker.run(stop)
    log.info(
        "drained and stopped: %d events, %d applied, %d ignored (duplicates/out of order), %d dead, "
        "%d pauses, %d taken over from dead workers",
        stats.events,
        stats.applied,
        stats.ignored,
        stats.dead,
        stats.pauses,
        worker.rescued,
    )
    return 0
