"""What the long-running stream workers' commands (`mirror`, `shadow`) share: their metrics server
and their stop on SIGTERM/SIGINT, so both drain and exit 0 the same way."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

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


def add_shard_arguments(p: Any) -> None:
    """`--shards N` and the lease TTL of a sharded worker."""
    from synctwin.infra.redis_conn import add_shards_argument

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
