"""Printing for people (rich) and for scripts (plain JSON), chosen once per command.

The formatting helpers below are the one way each kind of number reaches a person (terminal and
HTML reports alike): money with `$` and thousands separators, durations in days/hours/minutes,
shares as percentages, counts with their noun in the right number. Reuse them; do not format
the same idea twice.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

# continuation lines of a wrapped paragraph start under its first word, not at column 0
INDENT = 3


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, allow_nan=False) + "\n")


def console() -> Any:
    """A rich console as wide as the terminal, or as COLUMNS says; piped output without COLUMNS is
    read by scripts and logs, so it is not squeezed into 80 columns (160)."""
    from rich.console import Console

    width = _columns() or (None if sys.stdout.isatty() else 160)
    return Console(highlight=False, width=width)


def _columns() -> int | None:
    try:
        n = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        return None
    return n if n > 0 else None


def say(out: Any, text: str, indent: int = INDENT) -> None:
    """A paragraph wrapped at the console's width, every line indented (rich markup allowed)."""
    from rich.text import Text

    show(out, Text.from_markup(text), indent)


def show(out: Any, renderable: Any, indent: int = INDENT) -> None:
    """Any rich renderable (a table) indented, and wrapped to the width that is left."""
    from rich.padding import Padding

    out.print(Padding(renderable, (0, 0, 0, indent), expand=False))


def money(x: float | None) -> str:
    """$12,345 and -$2,443: whole dollars, a sign before the $."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    sign = "-" if x < 0 else ""
    return f"{sign}${abs(x):,.0f}"


def duration(seconds: float | None) -> str:
    """A duration as people say it, its two largest units: '2d 3h', '9h 1m', '4m', '5m 15s', '12s'."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    sign, s = ("-" if seconds < 0 else ""), round(abs(seconds))
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
    return sign + (" ".join(parts[:2]) if parts else "0s")


def percent(share: float | None, digits: int = 0, missing: str = "no data") -> str:
    """A share of 1 as a percentage: 0.8734 -> '87%' (digits=1: '87.3%'); None -> `missing`."""
    if share is None or not math.isfinite(share):
        return missing
    return f"{share * 100:.{digits}f}%"


def plural(n: int, noun: str, many: str | None = None) -> str:
    """'1 record', '2 records', '1,024 bid events' (many: an irregular plural)."""
    return f"{n:,} {noun if n == 1 else many or noun + 's'}"


def number(x: float | None, digits: int = 3) -> str:
    """A plain float rounded for a reader (0.9774499999999999 -> '0.977'); None -> '-'."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.{digits}f}"


def table(*columns: str, right: tuple[str, ...] = (), title: str | None = None) -> Any:
    """A borderless table whose first column (a name) is never cut: it folds onto a second line
    when the terminal is too narrow, and the other columns wrap first."""
    from rich.table import Table

    t = Table(box=None, pad_edge=False, title=title, title_justify="left", title_style="bold")
    for i, col in enumerate(columns):
        t.add_column(col, justify="right" if col in right else "left", overflow="fold" if i == 0 else "ellipsis")
    return t


def fit_names(t: Any, names: list[str], width: int) -> None:
    """Keep the name column as wide as its longest name while the table still has room for the
    other columns (at least a third of the width), so names are shortened only when unavoidable."""
    if names:
        t.columns[0].min_width = min(max(len(n) for n in names), max(width * 2 // 3, 10))
