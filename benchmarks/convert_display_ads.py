"""Convert the public display-advertising export into SyncTwin history CSVs, one per campaign.

    python benchmarks/convert_display_ads.py online_advertising_performance_data.csv OUT_DIR

The export ("Online Advertising Digital Marketing Data", N. Ruddhan, Kaggle, 2020; see
docs/backtesting.md for where to get it and why it is not shipped) has one row per day,
campaign, banner, placement and engagement level, for April-June 2020, with `month` and `day`
but no year. Each campaign's rows are summed per day into the history contract:

    date        2020-<month>-<day>
    spend       cost
    impressions displays
    clicks      clicks
    conversions post_click_conversions
    revenue     post_click_sales_amount  (the advertiser's sales after a click)

The export's own `revenue` column is not the advertiser's sales (it is about a tenth of them
and tracks clicks): it is left out. Writes OUT_DIR/<campaign>.csv (e.g. camp_1.csv) and prints
one line per campaign: days, first and last date, total spend and sales.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

MONTHS = {
    "january": 1,
    "february": 2,
    "march": 3,
    "april": 4,
    "may": 5,
    "june": 6,
    "july": 7,
    "august": 8,
    "september": 9,
    "october": 10,
    "november": 11,
    "december": 12,
}
YEAR = 2020
COLUMNS = {
    "spend": "cost",
    "impressions": "displays",
    "clicks": "clicks",
    "conversions": "post_click_conversions",
    "revenue": "post_click_sales_amount",
}
REQUIRED = ("month", "day", "campaign_number", *COLUMNS.values())


class ConversionError(ValueError):
    pass


def convert(rows: list[dict[str, str]], source: str = "export") -> dict[str, list[dict[str, str]]]:
    """Daily totals per campaign, as history rows sorted by date (pure: no files)."""
    totals: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0] * len(COLUMNS)))
    for line, row in enumerate(rows, start=2):
        try:
            month = MONTHS[row["month"].strip().lower()]
            date = f"{YEAR}-{month:02d}-{int(row['day']):02d}"
            values = [float(row[c] or 0) for c in COLUMNS.values()]
        except (KeyError, ValueError) as exc:
            raise ConversionError(f"{source}, line {line}: cannot read {exc}") from None
        acc = totals[row["campaign_number"].strip()][date]
        for i, v in enumerate(values):
            acc[i] += v
    out: dict[str, list[dict[str, str]]] = {}
    for campaign, days in sorted(totals.items()):
        out[campaign] = [
            {"date": d, **{k: f"{v:.10g}" for k, v in zip(COLUMNS, days[d], strict=True)}} for d in sorted(days)
        ]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("export", type=Path, help="online_advertising_performance_data.csv")
    p.add_argument("out", type=Path, help="directory for one history CSV per campaign")
    args = p.parse_args(argv)
    try:
        with args.export.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise ConversionError(f"{args.export}: missing column(s) {', '.join(missing)}")
            per_campaign = convert(list(reader), str(args.export))
    except (OSError, ConversionError) as exc:
        print(f"convert_display_ads: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for campaign, rows in per_campaign.items():
        path = args.out / f"{campaign.replace(' ', '_')}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["date", *COLUMNS], lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        spend = sum(float(r["spend"]) for r in rows)
        sales = sum(float(r["revenue"]) for r in rows)
        print(
            f"{path}: {len(rows)} days {rows[0]['date']}..{rows[-1]['date']}, spend ${spend:,.0f}, sales ${sales:,.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
