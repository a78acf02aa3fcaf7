"""What the Council's worker commands (`run`, `mirror`, `shadow --redis`) share: their options, their
start-up (settings, connection, one worker or a sharded set), their metrics server and their stop
on SIGTERM/SIGINT, so all three drain and exit 0 the same way. Each command says only which
agents its Council has and how it reports."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from synctwin.infra.redis_conn import add_shards_argument, connect_deployment, redact_logs, with_shards
from synctwin.kernel.config import get_settings
from synctwin.kernel.errors import InvalidInput


def serve_metrics(client: Any, streams: str | list[str], group: str, host: str, port: int, log: logging.Logger) -> None:
    """Prometheus' HTTP server in a daemon thread, with the consumer group's backlog on `streams` (a
    sharded deployment's: summed) read at scrape time."""
    from synctwin.infra import metrics

    metrics.REGISTRY.register(metrics.MirrorLagCollector(client, streams, group))
    try:
        metrics.start_metrics_server(port, host)
    except OSError as exc:
        raise InvalidInput(f"cannot serve metrics on {host}:{port}: {exc}") from None
    log.info("metrics on http://%s:%d/metrics", host, port)


def add_worker_arguments(p: Any, *, group: str, metrics_help: str) -> None:
    """The options every Council worker takes (after `--redis`, which each command words itself)."""
    p.add_argument("--group", default=group, metavar="G", help=f"consumer group (default {group})")
    p.add_argument(
        "--consumer",
        metavar="C",
        help="this worker's name in the group (default host-pid); with --shards N > 1, its name in the leases",
    )
    add_shard_arguments(p)
    p.add_argument("--batch", type=int, metavar="N", help="events per read, one Council message (default 2000)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument(
        "--metrics-port", type=int, metavar="P", help=f"serve Prometheus metrics on this port ({metrics_help})"
    )
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="H",
        help="address of the metrics server (default 127.0.0.1; 0.0.0.0 for a remote Prometheus)",
    )


def run_worker(
    args: Any, url: str, factory: Callable[..., Any], name: str, *, once: bool = False, **options: Any
) -> tuple[Any, Any]:
    """Start the Council `factory` builds (redis_council, redis_mirror, redis_shadow) on one stream, or
    on the shards this worker leases with --shards N > 1, run it until SIGTERM/SIGINT (or drained,
    with `once`) and return the worker and its stats. Bad options are InvalidInput (exit 2)."""
    from agents.council.sharded import sharded_council

    settings = with_shards(get_settings(), args.shards)
    ttl = lease_ttl_ms(args.lease_ttl_ms)
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
    options = {"group": args.group, "batch": args.batch, **options}
    if settings.shards == 1:
        worker = factory(client, settings, consumer=args.consumer, **options)
        worker.audit.check_appendable()  # a damaged audit stream, or a keyed one and no key: say so now
        where = f"{settings.key_prefix}bids"
    else:
        worker = sharded_council(client, settings, factory, worker_id=args.consumer, ttl_ms=ttl, **options)
        worker.check_appendable()
        where = f"{settings.shards} shards ({worker.leases.ttl_ms} ms leases)"
    log = logging.getLogger(f"synctwin.{name}")
    if args.metrics_port is not None:
        serve_metrics(client, worker.bids, args.group, args.metrics_host, args.metrics_port, log)
    with stop_on_signals() as stop:
        log.info("%s %s in group %s on %s", name, worker.consumer, args.group, where)
        stats = worker.run(stop, once=once)
    return worker, stats


def add_shard_arguments(p: Any) -> None:
    """`--shards N` and the lease TTL of a sharded worker."""
    add_shards_argument(p)
    p.add_argument(
        "--lease-ttl-ms",
        type=int,
        metavar="MS",
        help="with --shards N > 1: a shard lease's time to live; a killed worker's shards move to the others "
        "after it (default SYNCTWIN_LEASE_TTL_MS, 5000)",
    )


def lease_ttl_ms(value: int | None) -> int | None:
    """`--lease-ttl-ms`, checked (None: the setting)."""
    if value is not None and value < 100:
        raise InvalidInput(f"--lease-ttl-ms must be >= 100 (got {value})")
    return value


@contextmanager
def stop_on_signals() -> Iterator[Callable[[], bool]]:
    """A `stop()` for a worker's run loop that turns true on SIGTERM or SIGINT (the worker then
    finishes the batch in hand); the caller's handlers come back on exit, for in-process callers."""
    stop = {"now": False}

    def _stop(*_: Any) -> None:
        stop["now"] = True

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield lambda: stop["now"]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
