"""`synctwin audit verify (FILE | --redis URL) [--expect-head HASH]`: check the audit log's hash chain."""

from __future__ import annotations

import argparse

from synctwin.infra.redis_conn import add_shards_argument, redis_url_arg, with_shards
from synctwin.infra.shards import all_shards
from synctwin.kernel.config import get_settings
from synctwin.kernel.errors import InvalidInput


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    v = sub.add_parser(
        "verify",
        help="check every record's hash and its link to the previous one; "
        "exit 0 intact, 1 tampered (names the first bad record), 2 invalid input",
        description="Check the audit log's chain: every record's hash (an HMAC under SYNCTWIN_AUDIT_KEY when the "
        "log was written with one; a wrong or missing key fails) and its link to the previous record, then that "
        "the log ends on the head kept beside it (FILE.head, or {prefix}audit:head in Redis) and on --expect-head. "
        "Prints the head to keep elsewhere. See docs/audit.md for which attack each option stops.",
    )
    v.add_argument("file", nargs="?", metavar="FILE", help="a JSONL audit log (as written by --audit-log)")
    v.add_argument(
        "--redis",
        metavar="URL",
        help="verify the audit stream in Redis instead (default without FILE: "
        "SYNCTWIN_REDIS_URL, which keeps a password out of the command line)",
    )
    v.add_argument("--key", help="the stream's key (default {prefix}audit; with --shards N, every shard's)")
    add_shards_argument(v)
    v.add_argument(
        "--expect-head",
        metavar="HASH[:N]",
        help="the head printed by an earlier verify (`head HASH (N records)`), kept off the machine: the "
        "log must end on it; catches truncation, an emptied log, appended forgeries and a rewritten tail",
    )


def run(args: argparse.Namespace) -> int:
    from agents.syncshield.cli_verify import run_verify

    redis_url = redis_url_arg(args.redis, default_to_env=not args.file)
    if bool(args.file) == bool(redis_url):
        raise InvalidInput("give exactly one of FILE or --redis URL")
    settings = with_shards(get_settings(), args.shards)
    if args.key or args.file or settings.shards == 1:
        code, text = run_verify(args.file, redis_url, args.key or f"{settings.key_prefix}audit", args.expect_head)
        print(text)
        return code
    if args.expect_head:
        raise InvalidInput("--expect-head names one chain: with --shards N, verify each shard's with --key KEY")
    # one chain per shard: all must hold; the worst verdict is the exit code
    worst = 0
    for shard in all_shards(settings.key_prefix, settings.shards):
        code, text = run_verify(None, redis_url, shard.audit, None)
        print(f"shard {shard.shard} ({shard.audit}): {text}")
        worst = max(worst, code)
    return worst
