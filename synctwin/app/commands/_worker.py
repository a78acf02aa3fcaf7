"""What the long-running stream workers' commands (`mirror`, `shadow`) share: their metrics server
and their stop on SIGTERM/SIGINT, so both drain and exit 0 the same way."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from synctwin.kernel.errors import InvalidInput


def serve_metrics(client: Any, worker: Any, host: str, port: int, log: logging.Logger) -> None:
    """Prometheus' HTTP server in a daemon thread, with the consumer group's backlog read at scrape time
    (`worker`: a StreamConsumer, for its stream and group)."""
    from synctwin.infra import metrics

    metrics.REGISTRY.register(metrics.MirrorLagCollector(client, worker.bids, worker.group))
    try:
        metrics.start_metrics_server(port, host)
    except OSError as exc:
        raise InvalidInput(f"cannot serve metrics on {host}:{port}: {exc}") from None
    log.info("metrics on http://%s:%d/metrics", host, port)


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
