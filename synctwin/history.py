"""A client's daily history as columns of numpy arrays, and its parsers.

Parsing names the file, the line and the field of the first problem and refuses the whole
input: a baseline computed from half a file is worse than no baseline.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from synctwin.errors import InvalidInput, describe_validation_error
from synctwin.models import DailyRecord

REQUIRED_COLUMNS = ("date", "spend", "impressions", "clicks", "conversions", "revenue")
OPTIONAL_COLUMNS = ("returning_customers",)


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
        return History(
            self.dates[keep], self.spend[keep], self.impressions[keep], self.clicks[keep],
            self.conversions[keep], self.revenue[keep], None if rc is None else rc[keep],
        )

    def to_records(self) -> list[dict[str, object]]:
        rows = []
        for i in range(len(self)):
            row: dict[str, object] = {
                "date": str(self.dates[i]),
                "spend": float(self.spend[i]),
                "impressions": float(self.impressions[i]),
                "clicks": float(self.clicks[i]),
                "conversions": float(self.conversions[i]),
                "revenue": float(self.revenue[i]),
            }
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


def history_from_records(rows: Iterable[Mapping[str, object]], *, source: str = "history",
                         first_line: int = 1) -> History:
    """Validate rows (dicts of column -> value) into a History; errors name the row's line."""
    records: list[DailyRecord] = []
    for offset, row in enumerate(rows):
        line = first_line + offset
        clean = {k: v for k, v in row.items() if k is not None and v not in ("", None)}
        try:
            records.append(DailyRecord.model_validate(clean))
        except ValidationError as exc:
            field, reason = describe_validation_error(exc)
            raise InvalidInput(reason, source=source, line=line, field=field) from None
    if not records:
        raise InvalidInput("the history has no rows", source=source)
    has_returning = [r.returning_customers is not None for r in records]
    if any(has_returning) and not all(has_returning):
        first = has_returning.index(False)
        raise InvalidInput("returning_customers is given on some days but not on this one",
                           source=source, line=first_line + first, field="returning_customers")
    order = sorted(range(len(records)), key=lambda i: records[i].date)
    for a, b in pairwise(order):
        if records[a].date == records[b].date:
            raise InvalidInput(f"duplicate date {records[b].date} (also on line {first_line + a})",
                               source=source, line=first_line + b, field="date")
    ordered = [records[i] for i in order]

    def col(name: str) -> np.ndarray:
        return np.fromiter((getattr(r, name) for r in ordered), dtype=np.float64, count=len(ordered))

    return History(
        dates=np.array([r.date for r in ordered], dtype="datetime64[D]"),
        spend=col("spend"),
        impressions=col("impressions"),
        clicks=col("clicks"),
        conversions=col("conversions"),
        revenue=col("revenue"),
        returning_customers=col("returning_customers") if all(has_returning) else None,
    )


def parse_history_csv(text: str, *, source: str = "history.csv") -> History:
    """Parse the history CSV contract: date,spend,impressions,clicks,conversions,revenue."""
    try:
        return _parse_csv(text, source)
    except csv.Error as exc:
        raise InvalidInput(f"malformed CSV: {exc}", source=source) from None


def _parse_csv(text: str, source: str) -> History:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames
    if not header:
        raise InvalidInput("the file is empty (expected a header line)", source=source, line=1)
    header = [h.strip() for h in header]
    reader.fieldnames = header
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InvalidInput(f"missing column(s) {', '.join(missing)}; expected {','.join(REQUIRED_COLUMNS)}",
                           source=source, line=1)
    unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        raise InvalidInput(f"unknown column(s) {', '.join(unknown)}", source=source, line=1)
    rows = []
    for row in reader:
        if None in row or any(v is None for v in row.values()):
            raise InvalidInput(f"expected {len(header)} values", source=source, line=reader.line_num)
        rows.append({k: v.strip() for k, v in row.items()})
    return history_from_records(rows, source=source, first_line=2)


def load_history(path: str | Path) -> History:
    """Read a history CSV file; every problem becomes an InvalidInput naming the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput("no such file", source=str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read: {exc}", source=str(p)) from None
    return parse_history_csv(text, source=str(p))
