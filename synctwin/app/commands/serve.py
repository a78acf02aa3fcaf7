"""`synctwin serve`: the HTTP service (FastAPI on uvicorn) until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from typing import Any

from synctwin.infra.redis_conn import add_shards_argument, with_shards
from synctwin.kernel.config import get_settings
from synctwin.kernel.errors import InvalidInput


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Serve POST /v1/simulate (the gate, the same JSON in and out as `synctwin gate --json`), "
        "GET /v1/campaigns/{id} (projection, mirror state, pauses; needs Redis), GET /healthz, GET /metrics "
        "(Prometheus) and the OpenAPI docs at /docs. With SYNCTWIN_API_KEY set, /v1/* requires the header "
        "X-API-Key. Limits: SYNCTWIN_SERVICE_MAX_PATHS, SYNCTWIN_MAX_BODY_BYTES. SIGTERM or Ctrl-C finishes "
        "the requests in hand and exits 0."
    )
    p.add_argument("--host", metavar="H", help="address to bind (default 127.0.0.1; SYNCTWIN_HOST)")
    p.add_argument("--port", type=int, metavar="P", help="port (default 8000; 0 picks a free one; SYNCTWIN_PORT)")
    p.add_argument(
        "--redis",
        metavar="URL",
        help="Redis for campaign state, audit, publishing approvals and stored histories (default SYNCTWIN_REDIS_URL, "
        "which keeps a password out of the command line and `ps`; none: /v1/campaigns answers 503)",
    )
    add_shards_argument(p)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes (default 1); each computes gates on its own CPUs, /metrics sums them",
    )
    p.add_argument(
        "--log-level",
        default="warning",
        choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn's log level (default warning: no line per request)",
    )


def run(args: argparse.Namespace) -> int:
    settings = with_shards(get_settings(), args.shards)
    if args.workers < 1:
        raise InvalidInput(f"--workers must be at least 1 (got {args.workers})")
    if args.port is not None and not 0 <= args.port <= 65_535:
        raise InvalidInput(f"--port must be in 0-65535 (got {args.port})")
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    _check_can_listen(host, port)
    from agents.syncshield.anchors import configured_key

    configured_key()  # a bad SYNCTWIN_AUDIT_KEY is one line now, not a 500 on the first audited request
    redis_url = args.redis or settings.redis_url
    if redis_url:
        from synctwin.infra.redis_conn import EMBEDDED_URL, connect_deployment

        if redis_url != EMBEDDED_URL:  # an unreachable server is one clear line now, not 503s later
            connect_deployment(redis_url, settings.shards).close()
    from synctwin.kernel.redact import redact

    print(
        f"synctwin serve: http://{host}:{port} (docs at /docs; redis: {redact(redis_url)}; "
        f"workers: {args.workers}; API key {'required' if settings.api_key else 'off'})",
        flush=True,
    )
    if args.workers == 1:
        from synctwin.app.http import create_app

        app = create_app(settings.model_copy(update={"redis_url": redis_url}))
        _serve_one(app, host, port, args.log_level, redis_url)
        return 0
    # Several processes: each builds its app from the environment, and Prometheus' multiprocess mode
    # lets any of them answer /metrics for all (a directory they share, removed at exit).
    if redis_url:
        os.environ["SYNCTWIN_REDIS_URL"] = redis_url
    os.environ["SYNCTWIN_SHARDS"] = str(settings.shards)
    # Each worker keeps a gate per CPU: keep-alive connections stay with the worker that accepted them,
    # and that is often one worker for most of them, which must then be able to use every CPU.
    own_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = tempfile.mkdtemp(prefix="synctwin-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    try:
        _serve_many(host, port, args.workers, args.log_level)
    finally:
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)
    return 0


def _serve_one(app: Any, host: str, port: int, log_level: str, redis_url: str | None = None) -> None:
    """uvicorn's server in this process; after a graceful shutdown on SIGTERM/SIGINT it exits 0 (as
    `synctwin mirror` does) instead of re-raising the signal at itself as uvicorn >= 0.29 does.
    uvicorn's log handlers, set up by its Config, get the filter that masks the Redis password."""
    import uvicorn

    from synctwin.kernel.redact import redact_logs

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False)
    redact_logs(redis_url)
    Server(config).run()


def _serve_many(host: str, port: int, workers: int, log_level: str) -> None:
    """uvicorn's multiprocess supervisor on a listening socket with TCP_NODELAY: uvicorn's own socket
    leaves it off, and every keep-alive request after the first then waits ~40 ms for a delayed ACK
    (uvicorn issue #3149); Linux copies it to accepted sockets (64 ms -> 24 ms per 20 ms gate)."""
    import inspect
    import socket

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        "synctwin.app.http:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
    )
    sock = config.bind_socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if "target" in inspect.signature(Multiprocess).parameters:  # uvicorn < 0.30
        Multiprocess(config, target=uvicorn.Server(config).run, sockets=[sock]).run()  # type: ignore[call-arg]
    else:
        Multiprocess(config, sockets=[sock]).run()


def _check_can_listen(host: str, port: int) -> None:
    """A port in use or an address not ours is one clear line (exit 2), not uvicorn's log and exit 3."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc}") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as exc:
            raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
