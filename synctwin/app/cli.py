"""The `synctwin` command line: one subcommand per job, each in synctwin/app/commands/.

Imports are lazy, so `synctwin gate` does not pay for SimPy or Redis it does not use.
Exit statuses follow DESIGN.md; any invalid input ends with one line on stderr and exit 2."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from importlib import import_module

from synctwin.kernel.errors import InvalidInput

EXIT_INVALID = 2

COMMANDS: dict[str, str] = {  # name (its module in synctwin.app.commands): one-line help
    "demo": "run the main job on embedded defaults (no server needed), with a readable summary",
    "gate": "pre-launch gate: simulate a strategy; exit 0 approved, 1 rejected, 2 invalid input",
    "backtest": "gate decisions against campaigns with known outcomes: confusion matrix, FN/FP rates",
    "replay": (
        "run a scenario in virtual time (`replay --list` shows the built-ins); "
        "exit 1 when an expectation fails, 2 when the scenario is invalid"
    ),
    "mirror": "production real-to-sim sync on a Redis bid stream; runs until SIGTERM/SIGINT, drains, exits 0",
    "run": (
        "the production Council on a Redis bid stream (mirror, SyncFlow's guards, audit, alerts): the "
        "agents `replay --bids --plans` runs in virtual time; until SIGTERM/SIGINT, drains, exits 0"
    ),
    "shadow": (
        "shadow mode in production: re-simulate rejected campaigns under the market live campaigns "
        "met (SHADOW_OUTCOME) and audit approved campaigns' realized outcomes (CAMPAIGN_OUTCOME); "
        "--redis URL (until SIGTERM, or --once) or --market FILE --audit-log FILE"
    ),
    "shard": (
        "where a campaign's bid events go with --shards N (`CAMPAIGN_ID STREAM_KEY` per line), or the "
        "control stream keys (--control): CRC32(UTF-8 id) mod N, so producers in any language can route"
    ),
    "feed": "publish a synthetic live bid stream to Redis (healthy and deviating campaigns) to try the mirror",
    "sweep": (
        "one scenario over many seeds (--seeds A-B) and its sweep.grid of market parameters: "
        "each expectation's pass rate with a 95% interval, the failing seeds and points; --ray/--workers "
        "to fan out; exit 0 all pass, 1 any fail"
    ),
    "chaos": (
        "the four chaos drills in virtual time (margin_guardian, budget_emergency, auto_rollback, "
        "api_circuit_breaker); exit 0 all pass, 1 any fail"
    ),
    "review": "the week's rejected campaigns from the audit log (confidence, projected uplift), near-misses first",
    "tune": (
        "the confidence threshold from backtests and shadow outcomes: FN/FP rates per threshold, "
        "reliability, the default pick (FN <= 5%, then fewest FP); --apply writes it"
    ),
    "kpis": (
        "the success metrics from the audit log (rejection share, FN, FP, auto-rollbacks, "
        "chaos pass rate), each with its count and goal"
    ),
    "audit": (
        "the SyncShield audit log: `audit verify (FILE | --redis URL) [--expect-head HASH]` checks "
        "its hash chain (HMAC with SYNCTWIN_AUDIT_KEY) and its head"
    ),
    "serve": (
        "the HTTP service: POST /v1/simulate (the gate), GET /v1/campaigns/{id}, /healthz, "
        "/metrics, /docs; runs until SIGTERM"
    ),
}


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line (it already does) and names the command."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_INVALID, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="synctwin",
        description="SyncTwin: a digital twin that protects ad budgets. It simulates every campaign "
        "before launch and blocks the ones likely to lose money.",
        epilog="Configuration: SYNCTWIN_* environment variables (e.g. SYNCTWIN_THRESHOLD=0.9). "
        "Run `synctwin COMMAND --help` for a command's options.",
    )
    from synctwin import __version__

    parser.add_argument("--version", action="version", version=f"synctwin {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, help_text in COMMANDS.items():
        # argparse expands %-formats in help texts: a literal percent sign must be doubled
        # help strings are %-formatted by argparse, descriptions are not (only "%(prog)" is expanded there)
        cmd = sub.add_parser(name, help=help_text.replace("%", "%%"), description=help_text)
        import_module(f"synctwin.app.commands.{name}").add_arguments(cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    run: Callable[[argparse.Namespace], int] = import_module(f"synctwin.app.commands.{args.command}").run
    try:
        return run(args)
    except InvalidInput as exc:
        print(f"synctwin {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `synctwin gate ... | head`: the reader left; say nothing more (Python would print a traceback
        # while flushing stdout at exit) and exit as a pipe-killed command does
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
