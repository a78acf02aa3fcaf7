"""`synctwin chaos`: the four chaos drills in virtual time, once or on a cron schedule."""

from __future__ import annotations

import argparse
from typing import Any

from synctwin.app.commands._worker import stop_on_signals
from synctwin.app.console import console, emit, say, table
from synctwin.app.progress import ProgressBar, interactive
from synctwin.app.reports import check_report_path, write_report
from synctwin.infra.redis_conn import add_redis_argument, redis_url_arg
from synctwin.kernel.config import get_settings
from synctwin.kernel.errors import InvalidInput

GUARD_HELP = (
    "margin_guardian (market_shock), auto_rollback (conversion_drop), budget_emergency (budget_burn), "
    "api_circuit_breaker (api_outage)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Run the four chaos drills (market_shock, conversion_drop, api_outage, budget_burn) in virtual time: "
        "each starts a test campaign in a fresh twin, injects its fault six hours in, and checks that the "
        "guard reacts. A failed run sends a CRITICAL alert; every run audits CHAOS_TEST_COMPLETED."
    )
    p.add_argument(
        "--drill",
        action="append",
        metavar="NAME",
        help="run only this drill (repeatable): market_shock, conversion_drop, api_outage, budget_burn",
    )
    p.add_argument(
        "--disable-guard",
        action="append",
        default=[],
        metavar="GUARD",
        choices=("margin_guardian", "budget_emergency", "auto_rollback", "api_circuit_breaker"),
        help=f"switch a guard off to prove its drill catches the regression (the drill must then FAIL): {GUARD_HELP}",
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed of the twins (default 0)")
    p.add_argument("--json", action="store_true", help="print the run's journal (Chaos Toolkit-like) as JSON")
    p.add_argument(
        "--schedule",
        nargs="?",
        const="0 0 * * *",
        metavar="CRON",
        help="run on this cron schedule until stopped (default when given bare: nightly, '0 0 * * *'); "
        "runs never overlap",
    )
    add_redis_argument(
        p,
        "clone the production campaigns stored in Redis into the twin (their strategy and "
        "client history) and drill those too; audit and alerts also go to Redis streams",
    )
    p.add_argument("--audit-log", metavar="FILE", help="append CHAOS_TEST_COMPLETED to this JSONL audit log")
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="P",
        help="with --schedule: serve Prometheus metrics (drills by verdict, last run) on this port",
    )
    p.add_argument(
        "--report",
        metavar="FILE.html",
        help="also write a self-contained HTML page with plots: each drill's spend and revenue around the fault and "
        "the guard's reaction, the results, the verdict (with --schedule: rewritten after every run)",
    )


def run(args: argparse.Namespace) -> int:
    from harness.chaos import DRILLS

    for name in args.drill or []:
        if name not in DRILLS:
            raise InvalidInput(f"unknown drill {name!r}; expected one of {', '.join(DRILLS)}", field="--drill")
    if args.seed < 0:
        raise InvalidInput(f"--seed must be >= 0 (got {args.seed})")
    check_report_path(args.report)
    if args.schedule:
        return _scheduled(args)
    return _once(args)


def _sinks(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """SyncShield and SyncNotify for this run, and a Redis client when --redis is given."""
    from agents.syncnotify import LogSink, RedisStreamSink, SyncNotify
    from agents.syncshield import InMemoryAuditStore, JsonlAuditStore, RedisAuditStore, SyncShield

    prefix = get_settings().key_prefix
    client = None
    stores: list[Any] = []
    sinks: list[Any] = [LogSink()]
    url = redis_url_arg(args.redis, default_to_env=False)
    if url:
        from synctwin.infra.redis_conn import connect_checked, redact_logs

        redact_logs(url)  # --schedule runs for days: its logs never show the password
        client = connect_checked(url)
        stores.append(RedisAuditStore(client, key=f"{prefix}audit"))
        sinks.append(RedisStreamSink(client, key=f"{prefix}alerts"))
    if args.audit_log:
        stores.append(JsonlAuditStore(args.audit_log))
    shield = _FanOutShield([SyncShield(s) for s in stores] or [SyncShield(InMemoryAuditStore())])
    return shield, SyncNotify(sinks), client


class _FanOutShield:
    """Audits one event to every configured store."""

    def __init__(self, shields: list[Any]) -> None:
        self.shields = shields

    def log(self, event_type: str, **fields: Any) -> None:
        for s in self.shields:
            s.log(event_type, **fields)


def _once(args: argparse.Namespace) -> int:
    from harness.chaos import BUILTIN_TEMPLATE, report, run_drills

    shield, notify, client = _sinks(args)
    templates = [BUILTIN_TEMPLATE]
    if client is not None:
        from harness.production import production_templates
        from synctwin.kernel.config import get_settings

        templates += production_templates(client, get_settings().key_prefix)
    with ProgressBar("chaos drills", enabled=interactive(args.json)) as bar:
        chaos = run_drills(
            args.drill,
            seed=args.seed,
            disabled_guards=tuple(args.disable_guard),
            templates=templates,
            progress=bar.update if bar.enabled else None,
        )
    report(chaos, shield, notify)
    from synctwin.infra import metrics

    metrics.record_chaos_run(chaos)
    if args.report:
        from synctwin.app.reports.chaos import build_chaos_page

        write_report(args.report, build_chaos_page(chaos))
    emit(args.json, chaos.to_dict(), lambda _: print_table(chaos), args.report)
    return 0 if not chaos.failures else 1


def print_table(chaos: Any) -> None:
    out = console()
    passed = len(chaos.results) - len(chaos.failures)
    say(
        out,
        f"[bold]Chaos drills[/] (virtual time, seed {chaos.seed}): {passed}/{len(chaos.results)} passed "
        f"in {chaos.wall_s:.2f} s",
        indent=0,
    )
    t = table("drill", "fault", "what happened", "after the fault", "verdict")
    templates = {r.template for r in chaos.results}
    for r in chaos.results:
        row = r.row()
        style = "green" if row["verdict"] == "PASS" else "bold red"
        name = row["drill"] if len(templates) == 1 else f"{row['drill']} ({row['template']})"
        when = row["when"].replace(" after the fault", "")
        t.add_row(name, row["fault"], row["happened"], when, f"[{style}]{row['verdict']}[/]")
    out.print(t)
    for r in chaos.failures:
        say(out, f"[red]{r.drill.name}[/] expected {r.row()['expected']}: " + "; ".join(r.row()["failures"]), indent=0)


def _scheduled(args: argparse.Namespace) -> int:
    """Run on the cron until SIGTERM/SIGINT; runs never overlap (synctwin.infra.scheduling)."""
    from datetime import UTC, datetime

    from synctwin.infra.scheduling import check_cron, run_on_schedule

    check_cron(args.schedule)
    if args.metrics_port is not None:
        from synctwin.infra import metrics

        metrics.start_metrics_server(args.metrics_port)
    print(f"synctwin chaos: scheduled '{args.schedule}' (UTC); stop with SIGTERM or Ctrl-C", flush=True)
    with stop_on_signals() as stop:
        run_on_schedule(
            args.schedule,
            lambda: print(f"run finished: exit {_once(args)}", flush=True),
            stop=stop,
            announce=lambda t: print(f"next run at {datetime.fromtimestamp(t, UTC).isoformat()}", flush=True),
        )
    return 0
