"""The HTTP service: SyncBrain (or anyone) calls the gate over HTTP, operators read a campaign's state.

The CPU-bound gate and the synchronous Redis calls run in worker threads (the gate's behind a
limiter sized to the CPUs), so the event loop keeps answering /healthz and /metrics. Bad input is
a 422 whose `loc` names the field, never a traceback; a body over the limit is a 413 unread."""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import asdict
from typing import Any

import anyio
import redis
from fastapi import APIRouter, FastAPI, HTTPException, Path, Request, Security
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException as StarletteHTTPException

from agents.syncshield.backends import RedisAuditStore
from agents.synctwin.mirror.deviation import MirrorState
from agents.syncvalue.stores import RedisHistoryStore
from synctwin import __version__
from synctwin.app.commands.kpis import kpis
from synctwin.app.http.schemas import CampaignView, Health, SimulateRequest
from synctwin.infra import metrics
from synctwin.infra.shards import campaign_keys
from synctwin.kernel.config import Settings, get_settings
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.history import history_from_records, parse_history_csv
from synctwin.kernel.models import GateResult, Projection, Strategy
from synctwin.kernel.redact import scrub
from synctwin.services.gate import GateRequest, decide

log = logging.getLogger("synctwin.app.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CAMPAIGN_ID_PATTERN = r"^[A-Za-z0-9_.:\-]+$"  # Strategy.campaign_id's
STREAM_SCAN_LIMIT = 10_000  # newest control/audit entries a campaign view reads (bounded work per request)

_api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="required when the service is started with SYNCTWIN_API_KEY"
)


class BadInput(Exception):
    """Input the parsers or the gate refused after pydantic accepted it: a 422 naming the field."""

    def __init__(
        self,
        loc: Sequence[str | int],
        msg: str,
        *,
        type_: str = "value_error",
        ctx: dict[str, Any] | None = None,
        input_: Any = None,
    ) -> None:
        super().__init__(msg)
        self.error: dict[str, Any] = {"type": type_, "loc": list(loc), "msg": msg}
        if input_ is not None:
            self.error["input"] = input_
        if ctx:
            self.error["ctx"] = ctx


# --- the app ----------------------------------------------------------------------------------------
def create_app(settings: Settings | None = None, redis_client: Any = None) -> FastAPI:
    """The FastAPI app. `redis_client` (a decoded-string redis or fakeredis client) wins over
    `settings.redis_url`; with neither, /v1/simulate needs the history in the body and
    /v1/campaigns answers 503."""
    settings = settings or get_settings()
    if redis_client is None and settings.redis_url:
        from synctwin.infra.redis_conn import connect

        kwargs = (
            {}
            if settings.redis_url.startswith("memory://")
            else {"socket_connect_timeout": 2.0, "socket_timeout": 10.0, "health_check_interval": 30}
        )
        redis_client = connect(settings.redis_url, **kwargs)
    if settings.redis_url:
        from synctwin.kernel.redact import redact_logs

        redact_logs(settings.redis_url)  # whatever logs a connection error never shows its password
    app = FastAPI(
        title="SyncTwin",
        version=__version__,
        description="The pre-launch gate as a service, and what production knows of a campaign (projection, live "
        "mirror state, pauses). Errors: 422 names the field (`loc`), 413 for a body over the limit, 401 without the "
        "API key when one is configured, 503 when a route needs Redis and none is configured.",
    )
    key = settings.api_key.get_secret_value() if settings.api_key is not None else ""
    app.state.settings = settings
    app.state.redis = redis_client
    app.state.kpis_at = -math.inf  # the first scrape computes the success metrics
    app.state.api_key = key or None
    app.state.gate_limiter = anyio.CapacityLimiter(settings.service_gate_concurrency or os.cpu_count() or 1)

    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(BadInput, _bad_input)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    for redis_down in (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        app.add_exception_handler(redis_down, _redis_unavailable)
    app.add_exception_handler(Exception, _internal_error)
    app.add_middleware(_BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(_RequireKey)  # before the body is read or parsed: no key, no 4xx about the body
    app.add_middleware(_Instrument)

    app.include_router(_v1)
    ops = {"methods": ["GET"], "tags": ["operations"]}
    app.add_api_route(
        "/healthz", healthz, response_model=Health, summary="liveness, and whether Redis is reachable", **ops
    )
    app.add_api_route(
        "/metrics",
        prometheus_metrics,
        summary="Prometheus metrics (text exposition format)",
        response_class=Response,
        **ops,
    )
    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn's worker processes (`serve --workers N`): settings from SYNCTWIN_*."""
    return create_app(Settings())


# --- auth -------------------------------------------------------------------------------------------
def require_api_key(request: Request, api_key: str | None = Security(_api_key_header)) -> None:
    """With an API key configured, /v1/* needs it in X-API-Key (constant-time compare)."""
    expected: str | None = request.app.state.api_key
    if expected is None:
        return
    if not api_key or not secrets.compare_digest(api_key.encode("utf-8"), expected.encode("utf-8")):
        raise HTTPException(401, "missing or invalid X-API-Key header", headers={"WWW-Authenticate": "ApiKey"})


_v1 = APIRouter(
    prefix="/v1",
    dependencies=[Security(require_api_key)],
    responses={401: {"description": "missing or invalid X-API-Key (only when a key is configured)"}},
)


# --- POST /v1/simulate ---------------------------------------------------------------------------------
@_v1.post(
    "/simulate",
    tags=["gate"],
    response_model=None,
    summary="the pre-launch gate",
    responses={
        200: {"model": GateResult, "description": "the gate's result, as `synctwin gate --json`"},
        413: {"description": "request body over the limit"},
        422: {"description": "invalid input; `loc` names the field"},
    },
)
async def simulate(body: SimulateRequest, request: Request) -> JSONResponse:
    """Simulate the strategy against its client's history and decide, exactly as `synctwin gate`:
    the same seed gives the same result. With Redis configured the decision is audited and an
    approval publishes the projection (and strategy, history) for the live mirror."""
    settings: Settings = request.app.state.settings
    limit = settings.service_max_paths
    for name in ("paths", "max_paths"):
        value = getattr(body, name)
        if value is not None and value > limit:
            raise BadInput(
                ["body", name],
                f"Input should be less than or equal to {limit}",
                type_="less_than_equal",
                ctx={"le": limit},
                input_=value,
            )
    if body.history is not None and body.history_csv is not None:
        raise BadInput(["body"], "give either history (rows) or history_csv, not both")
    client = request.app.state.redis
    if body.history is None and body.history_csv is None and client is None:
        raise BadInput(
            ["body", "history"],
            "history or history_csv is required (this service has no Redis store to read the client's history from)",
            type_="missing",
        )
    metrics.GATE_IN_FLIGHT.inc()
    try:
        result, seconds = await anyio.to_thread.run_sync(
            _gate, body, settings, client, limiter=request.app.state.gate_limiter
        )
    finally:
        metrics.GATE_IN_FLIGHT.dec()
    metrics.record_gate(result, seconds)
    return JSONResponse(result.to_dict())


def _gate(body: SimulateRequest, settings: Settings, client: Any) -> tuple[GateResult, float]:
    """The CPU-bound part (history, baseline, Monte Carlo, advice) and the Redis writes, in a worker thread."""
    started = time.perf_counter()
    history, source, where = _history(body, settings, client)
    request = GateRequest(
        body.strategy,
        history,
        source=source,
        model=body.model,
        threshold=body.threshold,
        seed=body.seed,
        paths=body.paths,
        max_paths=body.max_paths or min(settings.max_paths, settings.service_max_paths),
        lookback_days=body.lookback_days,
    )
    try:  # errors come before anything is audited: a retry of a bad request audits nothing
        result = decide(request, settings, client=client).result
    except InvalidInput as exc:
        loc = where if exc.source == source else _gate_error_loc(exc, where)
        raise BadInput(loc, str(exc) if exc.source == source else exc.reason) from None
    return result, time.perf_counter() - started


def _gate_error_loc(exc: InvalidInput, history_loc: list[str | int]) -> list[str | int]:
    """Where a gate error points: a strategy field (an overflowed simulation names the largest),
    the history (what it cannot estimate, e.g. a CPM from no impressions), or a request field."""
    if exc.field in Strategy.model_fields:
        return ["body", "strategy", exc.field]
    return ["body", exc.field] if exc.field else history_loc


def _history(body: SimulateRequest, settings: Settings, client: Any) -> tuple[Any, str, list[str | int]]:
    """The History, a name for messages, and the `loc` its baseline errors point at."""
    if body.history is not None:
        rows = [r.model_dump(exclude_none=True) for r in body.history]
        try:
            return history_from_records(rows, source="history", first_line=0), "history", ["body", "history"]
        except InvalidInput as exc:  # `line` is the row's index here
            loc: list[str | int] = ["body", "history"]
            if exc.line is not None:
                loc.append(exc.line)
                if exc.field:
                    loc.append(exc.field)
            raise BadInput(loc, exc.reason.replace("also on line", "also in row")) from None
    if body.history_csv is not None:
        try:
            return parse_history_csv(body.history_csv, source="history_csv"), "history_csv", ["body", "history_csv"]
        except InvalidInput as exc:
            ctx = {k: v for k, v in (("line", exc.line), ("field", exc.field)) if v is not None}
            raise BadInput(["body", "history_csv"], str(exc), ctx=ctx or None) from None
    try:
        history = RedisHistoryStore(client, settings.key_prefix).get(body.strategy.client_id)
    except InvalidInput as exc:
        raise BadInput(["body", "strategy", "client_id"], f"{exc} (send history or history_csv)") from None
    return history, f"history of {body.strategy.client_id} in Redis", ["body", "strategy", "client_id"]


# --- GET /v1/campaigns/{id} -------------------------------------------------------------------------------
@_v1.get(
    "/campaigns/{campaign_id}",
    tags=["campaigns"],
    response_model=CampaignView,
    summary="a campaign's projection, live mirror state and pauses",
    responses={404: {"description": "unknown campaign"}, 503: {"description": "no Redis configured"}},
)
async def campaign(
    request: Request, campaign_id: str = Path(max_length=200, pattern=CAMPAIGN_ID_PATTERN)
) -> CampaignView:
    """What production knows of a campaign: the projection stored at approval, the live mirror's
    state (status, deviation, totals), its PAUSE commands and its audit events."""
    client = request.app.state.redis
    if client is None:
        raise HTTPException(
            503,
            "campaign state lives in Redis and this service has none configured "
            "(start it with --redis URL or SYNCTWIN_REDIS_URL)",
        )
    settings = request.app.state.settings
    prefix = campaign_keys(settings.key_prefix, campaign_id, settings.shards).prefix
    view = await anyio.to_thread.run_sync(_campaign_view, client, prefix, campaign_id)
    if view is None:
        raise HTTPException(404, f"unknown campaign {campaign_id!r}: no projection, mirror state, pause or audit event")
    return view


def _campaign_view(client: Any, prefix: str, cid: str) -> CampaignView | None:
    pipe = client.pipeline(transaction=False)
    pipe.get(f"{prefix}campaign:{cid}:projection")
    pipe.get(f"{prefix}campaign:{cid}:strategy")
    pipe.hgetall(f"{prefix}campaign:{cid}:mirror")
    raw_projection, raw_strategy, raw_mirror = pipe.execute()
    projection = strategy = mirror = None
    if raw_projection:
        try:
            projection = Projection.model_validate_json(raw_projection)
        except ValueError:
            log.warning("campaign %s: the stored projection does not parse", cid)
    if raw_strategy:
        strategy = _json(raw_strategy)
    if raw_mirror:
        try:
            state = asdict(MirrorState.from_hash(cid, raw_mirror))
            state.pop("campaign_id", None)
            state["launch_ts"] = float(raw_mirror["launch_ts"]) if raw_mirror.get("launch_ts") else None
            mirror = state
        except (ValueError, TypeError, KeyError):
            mirror = dict(raw_mirror)  # as stored, rather than nothing
    pauses = [  # oldest first, as the decisions
        dict(f, entry_id=i)
        for i, f in reversed(_scan(client, f"{prefix}control"))
        if f.get("campaign_id") == cid and f.get("command") == "PAUSE"
    ]
    records = ((i, _json(f.get("record", "null"))) for i, f in reversed(_scan(client, f"{prefix}audit")))
    decisions = [
        {"entry_id": i, **{k: rec.get(k) for k in ("seq", "ts", "event_type", "reason", "client_id", "metadata")}}
        for i, rec in records
        if isinstance(rec, dict) and rec.get("campaign_id") == cid
    ]
    if projection is None and strategy is None and mirror is None and not pauses and not decisions:
        return None
    paused = bool(pauses) or (mirror is not None and mirror.get("status") == "PAUSED")
    return CampaignView(
        campaign_id=cid,
        projection=projection,
        strategy=strategy,
        mirror=mirror,
        paused=paused,
        pauses=pauses,
        decisions=decisions,
    )


def _json(text: str) -> Any:
    """The JSON value of `text`, or None when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def _scan(client: Any, key: str) -> list[tuple[str, dict[str, str]]]:
    """The newest STREAM_SCAN_LIMIT entries of a stream, newest first, in pages."""
    out: list[tuple[str, dict[str, str]]] = []
    end = "+"
    while len(out) < STREAM_SCAN_LIMIT:
        page = client.xrevrange(key, max=end, count=min(1000, STREAM_SCAN_LIMIT - len(out)))
        if not page:
            break
        out += page
        end = "(" + page[-1][0]
        if len(page) < 1000:
            break
    return out


# --- operations -----------------------------------------------------------------------------------------
async def healthz(request: Request) -> Health:
    """Always 200 while the process serves: the gate works without Redis (history in the body)."""
    client = request.app.state.redis
    if client is None:
        redis = "not configured"
    else:
        try:
            await anyio.to_thread.run_sync(client.ping)
            redis = "reachable"
        except Exception as exc:  # redis raises several connection error types
            redis = f"unreachable: {exc}"
    return Health(status="ok", version=__version__, redis=redis)


async def prometheus_metrics(request: Request) -> Response:
    await anyio.to_thread.run_sync(_refresh_kpis, request.app)
    content, content_type = metrics.render()
    return Response(content, media_type=content_type)


KPI_REFRESH_S = 15.0  # a scrape recomputes the success metrics from the audit stream at most this often


def _refresh_kpis(app: FastAPI) -> None:
    """The success metrics row of the dashboard: `synctwin kpis` over the audit stream, set on the
    KPI gauges at scrape time (at most every KPI_REFRESH_S), so a long-running service exports them
    without anyone running the one-shot command. Without Redis, or with Redis down, nothing changes."""
    client = app.state.redis
    if client is None or time.monotonic() - app.state.kpis_at < KPI_REFRESH_S:
        return
    app.state.kpis_at = time.monotonic()
    try:
        records = RedisAuditStore(client, key=f"{app.state.settings.key_prefix}audit").records()
    except (redis.exceptions.RedisError, ValueError) as exc:
        log.warning("kpis: cannot read the audit stream: %s", exc)
        return
    metrics.record_kpis(kpis(records))


# --- errors ------------------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """A scalar fit for a JSON error body (NaN and infinities become strings), or None to drop it."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value if len(value) <= 200 else value[:200] + "..."
    return None


def _clean(error: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": error.get("type", "value_error"),
        "loc": list(error.get("loc", ())),
        "msg": str(error.get("msg", "")).removeprefix("Value error, "),
    }
    if "input" in error and (value := _plain(error["input"])) is not None:
        out["input"] = value
    if error.get("ctx"):
        out["ctx"] = {k: (_plain(v) if _plain(v) is not None else str(v)) for k, v in error["ctx"].items()}
    return out


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": [_clean(e) for e in exc.errors()]}, status_code=422)


async def _bad_input(_request: Request, exc: BadInput) -> JSONResponse:
    return JSONResponse({"detail": [_clean(exc.error)]}, status_code=422)


BODY_NOT_PARSED = "There was an error parsing the body"  # FastAPI's 400 for a body it cannot decode


async def _http_error(request: Request, exc: StarletteHTTPException) -> Any:
    """A body FastAPI cannot decode (not UTF-8) is one more kind of invalid JSON: the documented 422
    naming the body, as for any other malformed JSON; every other HTTP error as FastAPI sends it."""
    if exc.status_code == 400 and exc.detail == BODY_NOT_PARSED:
        error = {"type": "json_invalid", "loc": ["body"], "msg": "the body is not JSON text in UTF-8"}
        return JSONResponse({"detail": [error]}, status_code=422)
    return await http_exception_handler(request, exc)


async def _redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """Redis down: the decision cannot be audited (nor campaign state read); say so, and retry later.
    The error text is scrubbed of the Redis password: a client must never see it."""
    why = scrub(str(exc), request.app.state.settings.redis_url)
    log.warning("Redis unavailable: %s", why)
    return JSONResponse(
        {"detail": f"Redis is unavailable ({why}); the request was not completed, retry later"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def _internal_error(_request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return JSONResponse({"detail": f"internal error ({type(exc).__name__}); see the service log"}, status_code=500)


# --- middleware ---------------------------------------------------------------------------------------------
class _BodyLimit:
    """413 for a body over `max_bytes`: at once from Content-Length, or as soon as a streamed body
    crosses the limit, so a huge body is never buffered."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_large = int(value) > self.max_bytes
                except ValueError:
                    too_large = False
                if too_large:
                    await _send_json(send, 413, {"detail": f"request body over {self.max_bytes} bytes"})
                    return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:  # FastAPI turns this into the response
                    raise HTTPException(413, f"request body over {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)


class _RequireKey:
    """With an API key configured, /v1/* without the right X-API-Key is a 401 before anything reads
    the body: an unauthenticated client learns nothing about the schema (no 400/422 on its body)
    and costs no parsing. The router's Security dependency keeps documenting the header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        expected: str | None = getattr(scope.get("app"), "state", None) and scope["app"].state.api_key
        if scope["type"] != "http" or not expected or not scope.get("path", "").startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", ()) if k == b"x-api-key"), b"")
        if not secrets.compare_digest(given, expected.encode("utf-8")):
            await _send_json(
                send, 401, {"detail": "missing or invalid X-API-Key header"}, extra=[(b"www-authenticate", b"ApiKey")]
            )
            return
        await self.app(scope, receive, send)


HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _Instrument:
    """Request count and duration by route template (bounded label values, never the raw path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "other"  # docs, 404s, 413s: never the raw path
            method = scope.get("method", "GET")  # any client can send any method: bounded label values only
            metrics.record_http(
                path, method if method in HTTP_METHODS else "other", status, time.perf_counter() - started
            )


async def _send_json(
    send: Send, status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = json.dumps(body).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


__all__ = ["BadInput", "create_app", "create_app_from_env"]
