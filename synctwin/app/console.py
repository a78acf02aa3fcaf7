"""Printing for people (rich) and for scripts (plain JSON), chosen once per command."""

from __future__ import annotations

import json
import sys
from typing import Any


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, allow_nan=False) + "\n")


def console() -> Any:
    from rich.console import Console

    # piped output is read by scripts and logs: do not squeeze it into 80 columns
    width = None if sys.stdout.isatty() else 160
    out = Console(highlight=False, soft_wrap=True, width=width)
    out.on_broken_pipe = _reader_left  # type: ignore[method-assign]
    return out


def _reader_left() -> None:
    """rich would exit 1 (a rejection's code) when the reader of a pipe leaves: let cli.main exit 141."""
    raise BrokenPipeError


def money(x: float | None) -> str:
    if x is None:
        return "-"
    sign = "-" if x < 0 else ""
    return f"{sign}${abs(x):,.0f}"
