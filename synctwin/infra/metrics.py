"""Prometheus metrics of the service, the workers and the chaos drills: every `synctwin_` metric is
defined here (the dashboard's test checks against this list), and callers record through the
`record_*` functions, so what a gate or a batch means as numbers is decided once.

With several processes (`serve --workers N`), PROMETHEUS_MULTIPROC_DIR set before import switches
on prometheus-client's multiprocess mode; `render()` then aggregates every worker's files."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from synctwin.kernel.model_names import MODEL_ALIASES
from synctwin.kernel.models import Decision, RiskProfile

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REGISTRY = CollectorRegistry(auto_describe=True)
if not os.environ.get(MULTIPROC_ENV):  # per-process figures make no sense summed over workers
    ProcessCollector(registry=REGISTRY)
    PlatformCollector(registry=REGISTRY)

# Latency buckets (seconds) around the gate's figures: tens of ms at 10k paths, seconds at 1M.
_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)
_METRICS: list[Any] = []  # every metric defined below, for metric_names()


def _new(kind: Any, name: str, doc: str, labels: tuple[str, ...] = (), **kw: Any) -> Any:
    """A metric of SyncTwin's registry (`kind` Counter, Gauge or Histogram)."""
    metric = kind(name, doc, labels, registry=REGISTRY, **kw)
    _METRICS.append(metric)
    return metric


def _latest(name: str, doc: str, label: str) -> Any:
    """A labelled gauge whose value, over several processes, is the most recently set one."""
    return _new(Gauge, name, doc, (label,), multiprocess_mode="mostrecent")


# --- the gate (service) ---------------------------------------------------------------------------
GATE_LATENCY = _new(
    Histogram,
    "synctwin_gate_latency_seconds",
    "Time to compute one gate decision (baseline + Monte Carlo), without queueing",
    ("model",),
    buckets=_LATENCY_BUCKETS,
)
GATE_DECISIONS = _new(
    Counter, "synctwin_gate_decisions", "Gate decisions by outcome and risk profile", ("decision", "risk_profile")
)
GATE_PATHS = _new(Counter, "synctwin_gate_paths", "Monte Carlo paths drawn (adaptive rounds included)", ("model",))
GATE_IN_FLIGHT = _new(
    Gauge,
    "synctwin_gate_in_flight",
    "Gate requests accepted and not yet answered (computing or queued)",
    multiprocess_mode="livesum",
)
HTTP_REQUESTS = _new(
    Counter,
    "synctwin_http_requests",
    "HTTP requests by route template, method and status code",
    ("route", "method", "status"),
)
HTTP_LATENCY = _new(
    Histogram,
    "synctwin_http_request_duration_seconds",
    "HTTP request time seen by the service, queueing included",
    ("route", "method"),
    buckets=_LATENCY_BUCKETS,
)

# --- the live mirror ------------------------------------------------------------------------------
MIRROR_PROCESSED = _new(
    Counter,
    "synctwin_mirror_events_processed",
    "Bid events the mirror read and processed, whatever the outcome (a batch retried after a Redis error counts again)",
)
MIRROR_DEAD = _new(
    Counter,
    "synctwin_mirror_events_dead_lettered",
    "Bid events sent to the dead-letter stream (invalid, unknown campaign, poison)",
)
MIRROR_IGNORED = _new(
    Counter, "synctwin_mirror_events_ignored", "Bid events that changed nothing (duplicates, out of order)"
)
MIRROR_GREY = _new(Counter, "synctwin_mirror_grey_alerts", "Grey-zone alerts (deviating, watched, not paused)")
MIRROR_BATCHES = _new(Counter, "synctwin_mirror_batches", "Batches the mirror processed")
MIRROR_REDIS_ERRORS = _new(
    Counter, "synctwin_mirror_redis_errors", "Times Redis was unavailable to the mirror (it backs off and retries)"
)
MIRROR_DEVIATION = _latest(
    "synctwin_mirror_deviation",
    "A campaign's deviation from its projection at its last evaluation "
    "(the largest practical shortfall or overspend, 0.15 = 15%)",
    "campaign_id",
)
PAUSES = _new(Counter, "synctwin_pauses", "Campaign pauses by reason", ("reason",))
DEVIATION_STALE_S = 6 * 3600.0  # a campaign not evaluated for this long (paused, ended, gone) loses its series
_deviation_seen: dict[str, float] = {}  # campaign -> monotonic time of its last evaluation

# --- shadow mode and live outcomes (`synctwin shadow`) ---------------------------------------------
SHADOW_EVENTS = _new(
    Counter,
    "synctwin_shadow_events_processed",
    "Bid events the shadow worker read and folded into the daily market (or ignored), whatever the outcome",
)
SHADOW_IGNORED = _new(
    Counter,
    "synctwin_shadow_events_ignored",
    "Bid events the shadow worker acknowledged without using them, by why "
    "(invalid, unknown_campaign, before_launch, poison)",
    ("why",),
)
SHADOW_OUTCOMES = _new(
    Counter,
    "synctwin_shadow_outcomes_recorded",
    "Audit records the shadow worker wrote, by event type (SHADOW_OUTCOME: "
    "a rejected campaign's day re-simulated; CAMPAIGN_OUTCOME: an approved campaign's realized outcome)",
    ("event_type",),
)
SHADOW_REDIS_ERRORS = _new(
    Counter,
    "synctwin_shadow_redis_errors",
    "Times Redis was unavailable to the shadow worker (it backs off and retries)",
)

# --- chaos drills ---------------------------------------------------------------------------------
CHAOS_DRILLS = _new(
    Counter, "synctwin_chaos_drills", "Chaos drills run, by drill and verdict (PASS/FAIL)", ("drill", "verdict")
)
# labelled by runner, so a process that never ran a drill (serve, mirror) exports no 0
CHAOS_LAST_RUN = _latest(
    "synctwin_chaos_last_run_timestamp_seconds", "When the last chaos run finished (epoch seconds)", "runner"
)
CHAOS_LAST_RUN_PASSED = _latest(
    "synctwin_chaos_last_run_passed", "1 when every drill of the last chaos run passed, else 0", "runner"
)
CHAOS_LAST_RUN_DURATION = _latest(
    "synctwin_chaos_last_run_duration_seconds", "Wall time of the last chaos run", "runner"
)

# --- the seed's success metrics (`synctwin kpis` sets them from the audit log) -----------------------
KPI_VALUE = _latest(
    "synctwin_kpi_value",
    "A success metric as a share (rejection_share, false_negative_rate, "
    "false_positive_rate, auto_rollback_share, chaos_pass_rate); absent when there is no data",
    "kpi",
)
KPI_COUNT = _latest("synctwin_kpi_count", "What a success metric counted (its numerator)", "kpi")
KPI_MET = _latest("synctwin_kpi_goal_met", "1 when a success metric meets its goal, 0 when not", "kpi")

# Names of the series a collector below exports (not Counter/Gauge objects, so listed here).
MIRROR_STREAM_LAG = "synctwin_mirror_stream_lag"
MIRROR_PENDING = "synctwin_mirror_pending_events"


def metric_names() -> set[str]:
    """Every series name this module can export (with the _total/_bucket/... suffixes), for the
    dashboard's test."""
    names = {MIRROR_STREAM_LAG, MIRROR_PENDING}
    for collector in _METRICS:
        for family in collector.describe():
            kind = family.type
            base = family.name
            if kind == "counter":
                names |= {f"{base}_total", f"{base}_created"}
            elif kind == "histogram":
                names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count", f"{base}_created"}
            else:
                names.add(base)
    return names


# Every series whose label values are known in advance exists from the start at 0: Prometheus's
# increase() and rate() need a sample before the first event, or a series' first event is lost
# (a dashboard showing 1 pause of 2). Campaign ids and routes are not known in advance.
PAUSE_REASONS = ("SYNCTWIN_DEVIATION_THRESHOLD", "MARGIN_GUARDIAN", "AUTO_ROLLBACK", "BUDGET_EMERGENCY")
for _reason in PAUSE_REASONS:
    PAUSES.labels(reason=_reason)
for _decision in get_args(Decision):
    for _risk in get_args(RiskProfile):
        GATE_DECISIONS.labels(decision=_decision, risk_profile=_risk)
for _event_type in ("SHADOW_OUTCOME", "CAMPAIGN_OUTCOME"):
    SHADOW_OUTCOMES.labels(event_type=_event_type)
# the built-in drills (agents/synctwin/chaos.py's DRILLS; a test keeps the two lists equal): a
# scheduled chaos run's first PASS is counted by increase() only if its series existed before
CHAOS_DRILL_NAMES = ("market_shock", "conversion_drop", "api_outage", "budget_burn")
for _drill in CHAOS_DRILL_NAMES:
    for _verdict in ("PASS", "FAIL"):
        CHAOS_DRILLS.labels(drill=_drill, verdict=_verdict)
SHADOW_IGNORED_WHY = ("invalid", "unknown_campaign", "before_launch", "implausible", "poison")
for _why in SHADOW_IGNORED_WHY:
    SHADOW_IGNORED.labels(why=_why)


# --- recording --------------------------------------------------------------------------------------
def record_gate(result: Any, seconds: float) -> None:
    """One gate decision (a GateResult) that took `seconds` to compute."""
    model = MODEL_ALIASES.get(result.model, result.model)  # one series per model, whatever name was asked
    GATE_LATENCY.labels(model=model).observe(seconds)
    GATE_DECISIONS.labels(decision=result.decision, risk_profile=result.risk_profile).inc()
    GATE_PATHS.labels(model=model).inc(result.simulation_details.total_simulations)


def record_http(route: str, method: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(route=route, method=method, status=str(status)).inc()
    HTTP_LATENCY.labels(route=route, method=method).observe(seconds)


_MIRROR_COUNTERS: dict[str, tuple[Any, dict[str, str]]] = {
    "events": (MIRROR_PROCESSED, {}),
    "dead": (MIRROR_DEAD, {}),
    "ignored": (MIRROR_IGNORED, {}),
    "greys": (MIRROR_GREY, {}),
    "batches": (MIRROR_BATCHES, {}),
    "redis_errors": (MIRROR_REDIS_ERRORS, {}),
}


def _count(delta: Mapping[str, int], counters: Mapping[str, tuple[Any, dict[str, str]]]) -> None:
    """Add a worker's counter growth (stat -> n) to its Prometheus counters (stat -> counter, labels);
    a series is created only once it has something to count."""
    for stat, (counter, labels) in counters.items():
        if n := delta.get(stat, 0):
            (counter.labels(**labels) if labels else counter).inc(n)


def record_mirror(
    delta: Mapping[str, int],
    deviations: Iterable[tuple[str, float]] = (),
    pause_reason: str | None = None,
    *,
    now: float | None = None,
) -> None:
    """What a mirror worker did since it last reported: the growth of its MirrorStats counters, the
    latest deviation of each campaign it evaluated, pauses under `pause_reason`. A campaign's deviation
    series is dropped after DEVIATION_STALE_S without an evaluation, or the series would grow forever."""
    _count(delta, _MIRROR_COUNTERS)
    if (n := delta.get("pauses", 0)) and pause_reason:
        PAUSES.labels(reason=pause_reason).inc(n)
    now = time.monotonic() if now is None else now
    for campaign_id, deviation in deviations:
        MIRROR_DEVIATION.labels(campaign_id=campaign_id).set(deviation)
        _deviation_seen[campaign_id] = now
    for campaign_id in [c for c, seen in _deviation_seen.items() if now - seen > DEVIATION_STALE_S]:
        del _deviation_seen[campaign_id]
        with contextlib.suppress(KeyError):  # already gone (a test reset the registry)
            MIRROR_DEVIATION.remove(campaign_id)


_SHADOW_COUNTERS: dict[str, tuple[Any, dict[str, str]]] = {
    "events": (SHADOW_EVENTS, {}),
    "invalid": (SHADOW_IGNORED, {"why": "invalid"}),
    "unknown": (SHADOW_IGNORED, {"why": "unknown_campaign"}),
    "before_launch": (SHADOW_IGNORED, {"why": "before_launch"}),
    "implausible": (SHADOW_IGNORED, {"why": "implausible"}),
    "poison": (SHADOW_IGNORED, {"why": "poison"}),
    "shadow_outcomes": (SHADOW_OUTCOMES, {"event_type": "SHADOW_OUTCOME"}),
    "campaign_outcomes": (SHADOW_OUTCOMES, {"event_type": "CAMPAIGN_OUTCOME"}),
    "redis_errors": (SHADOW_REDIS_ERRORS, {}),
}


def record_shadow(delta: Mapping[str, int]) -> None:
    """What a shadow worker did since it last reported: the growth of its ShadowStats counters
    (events, invalid, unknown, before_launch, poison, shadow_outcomes, campaign_outcomes, redis_errors)."""
    _count(delta, _SHADOW_COUNTERS)


def record_chaos_run(chaos_run: Any, *, finished_at: float | None = None) -> None:
    """A finished chaos run (harness.chaos.ChaosRun): each drill's verdict, when it ran,
    whether all passed and how long it took. Duck-typed so importing metrics pulls in no SimPy."""
    results = list(chaos_run.results)
    for r in results:
        CHAOS_DRILLS.labels(drill=r.drill.name, verdict="PASS" if r.passed else "FAIL").inc()
    CHAOS_LAST_RUN.labels(runner="chaos").set(time.time() if finished_at is None else finished_at)
    CHAOS_LAST_RUN_PASSED.labels(runner="chaos").set(1.0 if all(r.passed for r in results) else 0.0)
    CHAOS_LAST_RUN_DURATION.labels(runner="chaos").set(float(chaos_run.wall_s))


def record_kpis(kpis: Mapping[str, Any]) -> None:
    """The success metrics of `synctwin kpis` (synctwin/app/commands/kpis.py's dict): value, count, goal met."""
    for name, m in kpis.items():
        if not isinstance(m, Mapping) or "goal" not in m:
            continue
        KPI_COUNT.labels(kpi=name).set(m["count"])
        if m["value"] is not None:
            KPI_VALUE.labels(kpi=name).set(m["value"])
            KPI_MET.labels(kpi=name).set(1.0 if m["met"] else 0.0)


# --- exposition -------------------------------------------------------------------------------------
class MirrorLagCollector(Collector):
    """The consumer group's backlog, read from Redis at scrape time (XINFO GROUPS): `lag`, entries
    not yet delivered to the group (Redis >= 7), and `pending`, delivered but not acknowledged.
    Together with the processed rate they say whether the mirror keeps up with the bid stream.
    `stream` may be the list of a sharded deployment's streams: their sums are exported."""

    def __init__(self, client: Any, stream: str | list[str], group: str) -> None:
        self.client = client
        self.streams = [stream] if isinstance(stream, str) else list(stream)
        self.group = group

    def describe(self) -> list[Any]:
        return []  # dynamic: never read Redis at registration

    def collect(self) -> Iterator[Any]:
        lag = GaugeMetricFamily(
            MIRROR_STREAM_LAG, "Bid events not yet delivered to the mirror's consumer group", labels=["group"]
        )
        pending = GaugeMetricFamily(
            MIRROR_PENDING, "Bid events delivered to the mirror and not yet acknowledged", labels=["group"]
        )
        lags: list[float] = []
        pendings: list[float] = []
        for stream in self.streams:
            try:
                groups = self.client.xinfo_groups(stream)
            except Exception:  # Redis down or no stream yet: export nothing rather than fail the scrape
                groups = []
            for g in groups:
                name = g.get("name")
                if isinstance(name, bytes):
                    name = name.decode()
                if name != self.group:
                    continue
                if g.get("lag") is not None:
                    lags.append(float(g["lag"]))
                pendings.append(float(g.get("pending") or 0))
        if lags:
            lag.add_metric([self.group], sum(lags))
        if pendings:
            pending.add_metric([self.group], sum(pendings))
        yield lag
        yield pending


def render() -> tuple[bytes, str]:
    """The exposition text and its content type; with several worker processes, all of theirs."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def start_metrics_server(port: int, host: str = "127.0.0.1") -> Any:
    """Serve /metrics on host:port from a daemon thread (for the mirror worker and the chaos
    scheduler, which have no HTTP server of their own). Returns (server, thread)."""
    from prometheus_client import start_http_server

    return start_http_server(port, addr=host, registry=REGISTRY)


def sample(name: str, labels: Mapping[str, str] | None = None) -> float | None:
    """One sample's current value in this process (tests and the benchmark read it)."""
    return REGISTRY.get_sample_value(name, dict(labels or {}))
