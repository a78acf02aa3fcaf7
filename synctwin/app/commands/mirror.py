"""`synctwin mirror --redis URL`: the Council with the mirror alone on the bid stream (until SIGTERM/SIGINT)."""

from __future__ import annotations

import argparse
import logging

from synctwin.app.commands._worker import add_worker_arguments, run_worker
from synctwin.infra.redis_conn import add_redis_argument, required_redis_url


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
    add_redis_argument(p, "e.g. redis://127.0.0.1:6379/0 (default SYNCTWIN_REDIS_URL)")
    add_worker_arguments(
        p, group="synctwin-mirror", metrics_help="events processed/dead-lettered/ignored, deviations, pauses, the lag"
    )


def run(args: argparse.Namespace) -> int:
    from agents.council.redis import redis_mirror

    worker, stats = run_worker(args, required_redis_url(args.redis), redis_mirror, "mirror")
    logging.getLogger("synctwin.mirror").info(
        "drained and stopped: %d events, %d applied, %d ignored (duplicates/out of order), %d dead, "
        "%d pauses, %d taken over from dead workers",
        *(getattr(stats, k) for k in ("events", "applied", "ignored", "dead", "pauses")),
        worker.rescued,
    )
    return 0
