"""How each kind of number reaches a person, terminal and HTML report alike: money with `$` and
thousands separators, durations in days/hours/minutes, shares as percentages, counts with their
noun in the right number. One helper per idea: reuse them, do not format the same idea twice.
(`durations.format_duration` is the other direction's form, the one a scenario file accepts.)"""

from __future__ import annotations

import math
from typing import Any

from synctwin.kernel.durations import duration_parts


def money(x: float | None) -> str:
    """$12,345 and -$2,443: whole dollars, a sign before the $."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    sign = "-" if x < 0 else ""
    return f"{sign}${abs(x):,.0f}"


def short_money(x: float | None, _pos: Any = None) -> str:
    """Money in at most 7 characters (axis labels, narrow columns): $950, $2.23k, -$1.25M; None -> '-'."""
    if x is None:
        return "-"
    sign = "-" if x < 0 else ""
    a = abs(x)
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{sign}${a / div:.3g}{suffix}"
    return f"{sign}${a:.0f}"


def duration(seconds: float | None) -> str:
    """A duration as people say it, its two largest units: '2d 3h', '9h 1m', '4m', '5m 15s', '12s'."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    parts = duration_parts(round(abs(seconds)))
    return ("-" if seconds < 0 else "") + (" ".join(parts[:2]) if parts else "0s")


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
