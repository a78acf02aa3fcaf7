"""Progress bars for long work (backtests, big gates, long replays, chaos runs).

Drawn with rich on stderr only when a person watches (a terminal, no --json), so a bar can never
corrupt output a program parses; when off, `update` is a no-op and rich is not imported."""

from __future__ import annotations

import sys
from typing import Any


def interactive(json_mode: bool = False) -> bool:
    """True when a bar may be drawn: not --json, and stderr is an interactive terminal."""
    if json_mode:
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class ProgressBar:
    """One task's bar; it starts on the first update whose total reaches `min_total`, so work that
    turns out small (a gate that needs no more paths) shows no flickering bar."""

    def __init__(
        self, description: str, *, enabled: bool, total: float | None = None, min_total: float = 0.0, unit: str = ""
    ) -> None:
        self.description = description
        self.enabled = enabled
        self.total = total
        self.min_total = min_total
        self.unit = unit
        self._progress: Any = None
        self._task: Any = None

    def update(self, completed: float, total: float | None = None) -> None:
        """Set how much is done (and, optionally, the new total)."""
        if not self.enabled:
            return
        if total is not None:
            self.total = total
        if self._progress is None:
            if self.total is None or self.total < self.min_total:
                return
            self._start()
        self._progress.update(self._task, completed=completed, total=self.total)

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
        if self.unit:
            columns.append(TextColumn(self.unit))
        columns.append(TimeElapsedColumn())
        self._progress = Progress(*columns, console=Console(file=sys.stderr), transient=True)
        self._progress.start()
        self._task = self._progress.add_task(self.description, total=self.total)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
