"""Printing for people (rich) and for scripts (plain JSON), chosen once per command. Numbers are
formatted by synctwin/kernel/formatting.py (money, duration, percent, plural, number)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

# continuation lines of a wrapped paragraph start under its first word, not at column 0
INDENT = 3


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, allow_nan=False) + "\n")


def emit(as_json: bool, data: Any, human: Callable[[Any], None], report: str | None = None) -> None:
    """`--json`: `data` as one document; else `human` prints it for people, then where `report` went."""
    if as_json:
        print_json(data)
        return
    human(data)
    if report:
        print(f"report: {report}")


def console() -> Any:
    """A rich console as wide as the terminal, or as COLUMNS says; piped output without COLUMNS is
    read by scripts and logs, so it is not squeezed into 80 columns (160)."""
    from rich.console import Console

    width = _columns() or (None if sys.stdout.isatty() else 160)
    out = Console(highlight=False, width=width)
    out.on_broken_pipe = _reader_left  # type: ignore[method-assign]
    return out


def _reader_left() -> None:
    """rich would exit 1 (a rejection's code) when the reader of a pipe leaves: let cli.main exit 141."""
    raise BrokenPipeError


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
