"""A client's daily history as columns of numpy arrays, and its parsers.

Parsing names the file, the line and the field of the first problem and refuses the whole
input: a baseline computed from half a file is worse than no baseline."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from synctwin.kernel.config import get_limits
from synctwin.kernel.errors import InvalidInput, describe_validation_error
from synctwin.kernel.files import BOM, capped_lines, open_input
from synctwin.kernel.models import DailyRecord

REQUIRED_COLUMNS = ("date", "spend", "impressions", "clicks", "conversions", "revenue")
OPTIONAL_COLUMNS = ("returning_customers",)
_COUNTS = REQUIRED_COLUMNS[1:]  # the daily totals, in History's field order


@dataclass(frozen=True, slots=True)
class History:
    """Daily totals, sorted by date, one row per day (no duplicates)."""

    dates: np.ndarray  # datetime64[D]
    spend: np.ndarray
    impressions: np.ndarray
    clicks: np.ndarray
    conversions: np.ndarray
    revenue: np.ndarray
    returning_customers: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.dates.shape[0])

    def last(self, days: int) -> History:
        """The rows within `days` calendar days of the last date (the lookback window)."""
        if len(self) == 0:
            return self
        start = self.dates[-1] - np.timedelta64(days - 1, "D")
        keep = self.dates >= start
        rc = self.returning_customers
        return History(self.dates[keep], *(getattr(self, c)[keep] for c in _COUNTS), None if rc is None else rc[keep])

    def to_records(self) -> list[dict[str, object]]:
        rows = []
        for i in range(len(self)):
            row: dict[str, object] = {"date": str(self.dates[i]), **{c: float(getattr(self, c)[i]) for c in _COUNTS}}
            if self.returning_customers is not None:
                row["returning_customers"] = float(self.returning_customers[i])
            rows.append(row)
        return rows

    def to_csv(self) -> str:
        out = io.StringIO()
        cols = list(REQUIRED_COLUMNS) + (["returning_customers"] if self.returning_customers is not None else [])
        writer = csv.DictWriter(out, fieldnames=cols, lineterminator="\n")
        writer.writeheader()
        for row in self.to_records():
            writer.writerow({k: (f"{v:.10g}" if isinstance(v, float) else v) for k, v in row.items()})
        return out.getvalue()


class _Rows:
    """Validates rows one at a time, so the first bad one (a duplicate date on line 3 of a million)
    is reported at once, and keeps only their numbers: a history costs ~60 bytes a day."""

    def __init__(self, source: str, max_rows: int) -> None:
        self.source = source
        self.max_rows = max_rows
        self.lines: dict[dt.date, int] = {}
        self.values: list[tuple[float, ...]] = []
        self.dates: list[dt.date] = []
        self.returning: bool | None = None
        self.first_line: int | None = None

    def add(self, row: Mapping[str, object], line: int) -> None:
        source = self.source
        if len(self.values) >= self.max_rows:
            raise InvalidInput(
                f"more than {self.max_rows:,} rows (SYNCTWIN_MAX_HISTORY_ROWS); a baseline needs "
                "at most the last few months",
                source=source,
                line=line,
            )
        clean = {k: v for k, v in row.items() if k is not None and v not in ("", None)}
        try:
            r = DailyRecord.model_validate(clean)
        except ValidationError as exc:
            field, reason = describe_validation_error(exc)
            raise InvalidInput(reason, source=source, line=line, field=field) from None
        has_returning = r.returning_customers is not None
        if self.returning is None:
            self.returning, self.first_line = has_returning, line
        elif has_returning != self.returning:
            given, missing = ("some days", "this one") if self.returning else ("this day", f"line {self.first_line}")
            raise InvalidInput(
                f"returning_customers is given on {given} but not on {missing}",
                source=source,
                line=line,
                field="returning_customers",
            )
        if r.date in self.lines:
            raise InvalidInput(
                f"duplicate date {r.date} (also on line {self.lines[r.date]})", source=source, line=line, field="date"
            )
        self.lines[r.date] = line
        self.dates.append(r.date)
        self.values.append((*(getattr(r, c) for c in _COUNTS), r.returning_customers if has_returning else 0.0))

    def history(self) -> History:
        if not self.values:
            raise InvalidInput("the history has no rows", source=self.source)
        order = np.argsort(np.array(self.dates, dtype="datetime64[D]"), kind="stable")
        table = np.array(self.values, dtype=np.float64)[order]
        return History(
            np.array(self.dates, dtype="datetime64[D]")[order],
            *(table[:, i].copy() for i in range(len(_COUNTS))),
            table[:, len(_COUNTS)].copy() if self.returning else None,
        )


def history_from_records(
    rows: Iterable[Mapping[str, object]], *, source: str = "history", first_line: int = 1
) -> History:
    """Validate rows (dicts of column -> value) into a History; errors name the row's line."""
    acc = _Rows(source, get_limits().max_history_rows)
    for offset, row in enumerate(rows):
        acc.add(row, first_line + offset)
    return acc.history()


def parse_history_csv(text: str, *, source: str = "history.csv") -> History:
    """Parse the history CSV contract: date,spend,impressions,clicks,conversions,revenue."""
    return _parse_lines(io.StringIO(text.removeprefix(BOM), newline=""), source)


def _parse_lines(lines: Iterable[str], source: str) -> History:
    """The CSV from an iterable of lines, validated row by row (the first error stops the read)."""
    try:
        return _parse_csv(lines, source)
    except csv.Error as exc:
        raise InvalidInput(f"malformed CSV: {exc}", source=source) from None


def _parse_csv(lines: Iterable[str], source: str) -> History:
    reader = csv.reader(lines)
    first = next(reader, None)
    while first is not None and not first:  # blank lines before the header
        first = next(reader, None)
    if not first:
        raise InvalidInput("the file is empty (expected a header line)", source=source, line=1)
    header = [h.strip().removeprefix(BOM) for h in first]
    header_line = reader.line_num
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InvalidInput(
            f"missing column(s) {', '.join(missing)}; expected {','.join(REQUIRED_COLUMNS)}",
            source=source,
            line=header_line,
        )
    unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        raise InvalidInput(f"unknown column(s) {', '.join(unknown)}", source=source, line=header_line)
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise InvalidInput(f"duplicate column(s) {', '.join(dupes)}", source=source, line=header_line)
    acc = _Rows(source, get_limits().max_history_rows)
    for values in reader:
        if not values:
            continue
        if len(values) != len(header):
            raise InvalidInput(f"expected {len(header)} values", source=source, line=reader.line_num)
        acc.add({k: v.strip() for k, v in zip(header, values, strict=True)}, reader.line_num)
    return acc.history()


def load_history(path: str | Path) -> History:
    """Read a history CSV file line by line, with the size and row limits (SYNCTWIN_MAX_HISTORY_BYTES,
    SYNCTWIN_MAX_HISTORY_ROWS); every problem becomes an InvalidInput naming the file."""
    source = str(path)
    with open_input(path) as f:
        lines = capped_lines(f, source, max_bytes=get_limits().max_history_bytes, setting="SYNCTWIN_MAX_HISTORY_BYTES")
        return _parse_lines(lines, source)
