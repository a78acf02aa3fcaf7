"""`synctwin audit verify (FILE | --redis URL)`: check the audit log's hash chain."""

from __future__ import annotations

import argparse

from synctwin.errors import InvalidInput


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    v = sub.add_parser("verify", help="check every record's hash and its link to the previous one; "
                       "exit 0 intact, 1 tampered (names the first bad record)")
    v.add_argument("file", nargs="?", metavar="FILE", help="a JSONL audit log (as written by --audit-log)")
    v.add_argument("--redis", metavar="URL", help="verify the audit stream in Redis instead")
    v.add_argument("--key", help="the stream's key (default {prefix}audit)")


def run(args: argparse.Namespace) -> int:
    from agents.syncshield.cli_verify import run_verify
    from synctwin.config import get_settings

    if bool(args.file) == bool(args.redis):
        raise InvalidInput("give exactly one of FILE or --redis URL")
    key = args.key or f"{get_settings().key_prefix}audit"
    code, text = run_verify(args.file, args.redis, key)
    print(text)
    return code
