"""Reading input files with bounds: a size cap, a line-length cap, text decoding and JSON limits.

/dev/zero, an endless FIFO or a 10 GB export fail fast with InvalidInput naming the file instead of
exhausting memory. A UTF-8 byte-order mark (spreadsheets write one) is dropped."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from synctwin.kernel.errors import InvalidInput

BOM = "\ufeff"
MAX_LINE_BYTES = 65_536  # a history line is ~60 bytes; anything this long is not a history
MAX_INT_DIGITS = 100  # JSON integers longer than this are refused before they are converted


def _size(n: int) -> str:
    return f"{n / 2**20:g} MB" if n >= 2**20 else f"{n:,} bytes"


@contextmanager
def open_input(path: str | Path) -> Iterator[IO[bytes]]:
    """The file opened for binary reading, or InvalidInput naming it (missing, a directory, unreadable)."""
    p = Path(path)
    try:
        f = open(p, "rb")  # noqa: SIM115 - closed below; open errors must become InvalidInput
    except FileNotFoundError:
        raise InvalidInput("no such file", source=str(p)) from None
    except IsADirectoryError:
        raise InvalidInput("is a directory, not a file", source=str(p)) from None
    except OSError as exc:
        raise InvalidInput(f"cannot read: {exc.strerror or exc}", source=str(p)) from None
    try:
        yield f
    finally:
        f.close()


def read_capped(path: str | Path, max_bytes: int, *, setting: str) -> str:
    """The whole file as text, refused once it exceeds `max_bytes` (read at most one byte more)."""
    with open_input(path) as f:
        try:
            data = f.read(max_bytes + 1)
        except OSError as exc:
            raise InvalidInput(f"cannot read: {exc.strerror or exc}", source=str(path)) from None
    if len(data) > max_bytes:
        raise InvalidInput(f"larger than {_size(max_bytes)} ({setting}); not read further", source=str(path))
    return decode(data, str(path))


def decode(data: bytes, source: str, line: int | None = None) -> str:
    """UTF-8 text without a byte-order mark; an undecodable byte is named by its position."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})", source=source, line=line
        ) from None
    return text.removeprefix(BOM) if line in (None, 1) else text


def capped_lines(
    f: IO[bytes], source: str, *, max_bytes: int, setting: str, max_line: int = MAX_LINE_BYTES
) -> Iterator[str]:
    """The file's lines as text, one at a time: each at most `max_line` bytes, all at most `max_bytes`.

    A parser reading from this sees the first bad line at once, without the rest of the file read."""
    total = 0
    number = 0
    while True:
        try:
            raw = f.readline(max_line + 1)
        except OSError as exc:
            raise InvalidInput(f"cannot read: {exc.strerror or exc}", source=source) from None
        if not raw:
            return
        number += 1
        total += len(raw)
        if len(raw) > max_line:
            raise InvalidInput(f"a line longer than {_size(max_line)}; not a history file", source=source, line=number)
        if total > max_bytes:
            raise InvalidInput(
                f"larger than {_size(max_bytes)} ({setting}); not read further", source=source, line=number
            )
        yield decode(raw, source, number)


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def json_depth(text: str) -> int:
    """The deepest nesting of [ and { in JSON text, outside strings (no recursion, ~10 ms a MB)."""
    depth = deepest = 0
    for ch in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def parse_json(text: str, source: str, *, max_depth: int) -> Any:
    """JSON with limits: nesting (checked before parsing: the parser recurses), integer length
    (before conversion: 10**400 overflows a float later), no NaN or Infinity."""
    if "[" * (max_depth + 1) in text or json_depth(text) > max_depth:
        raise InvalidInput(f"JSON nested deeper than {max_depth} levels (SYNCTWIN_MAX_JSON_DEPTH)", source=source)
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_int=_int)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON: {exc.msg} (column {exc.colno})", source=source, line=exc.lineno) from None
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(str(exc) or "malformed JSON", source=source) from None


def load_json(path: str | Path, *, max_bytes: int, max_depth: int, setting: str) -> Any:
    """A JSON file read with a size cap and parsed with `parse_json`'s limits."""
    return parse_json(read_capped(path, max_bytes, setting=setting), str(path), max_depth=max_depth)
