"""Durations as people write them in scenario files: 90s, 30m, 2h, 3d, 1d12h, or plain seconds."""

from __future__ import annotations

import math
import re

_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(value: str | float | int) -> float:
    """Seconds from '1d12h', '30m', '45s', 90, '90'. Raises ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0 or value != value:  # negative or NaN
            raise ValueError(f"a duration must be >= 0 seconds (got {value!r})")
        try:
            return _finite(float(value), value)
        except OverflowError:  # an int past a float's range
            raise ValueError(f"a duration must be finite (got an integer of {value.bit_length()} bits)") from None
    text = str(value).strip().lower().replace(" ", "")
    if len(text) > 64:
        raise ValueError(f"not a duration: {len(text)} characters (write e.g. 90s, 30m, 2h, 3d, 1d12h)")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return _finite(float(text), value)
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {value!r} (write e.g. 90s, 30m, 2h, 3d, 1d12h)")
    return _finite(float(sum(float(n) * _UNIT[u] for n, u in parts)), value)


def _finite(seconds: float, value: object) -> float:
    """An infinite duration (.inf, or digits past a float's range) would run a simulation forever."""
    if not math.isfinite(seconds):
        raise ValueError(f"a duration must be finite (got {value!r})")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest readable form: 5400 -> '1h30m'."""
    return "".join(duration_parts(round(seconds))) or "0s"


def duration_parts(seconds: int) -> list[str]:
    """Whole seconds as days, hours, minutes, seconds, largest first, zeros left out: ['1d', '5m']."""
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return parts
