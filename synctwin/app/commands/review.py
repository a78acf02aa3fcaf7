"""`synctwin review`: the week's rejected campaigns from the audit log, near-misses first.

The rejections just under the threshold, on top, are where people spot a threshold too strict or
a model too pessimistic. The records are the audit log's CAMPAIGN_REJECTED (metadata: the gate result)."""

from __future__ import annotations

import argparse
import datetime as dt
import math
from typing import Any

from synctwin.app.console import console, emit, say, table
from synctwin.infra.redis_conn import add_redis_argument, add_shards_argument, redis_url_arg
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.formatting import money, percent, plural

DEFAULT_DAYS = 7
REJECTED = "CAMPAIGN_REJECTED"
SHADOW = "SHADOW_OUTCOME"  # written by shadow runs in the twin (a later issue); shown only when present
NEAR_MISS = 0.05  # a rejection within this much confidence of its threshold is a near-miss


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "List the rejected campaigns (CAMPAIGN_REJECTED) in the audit log since a date (default: the last 7 days, by "
        "record time) with their confidence and projected uplift, sorted by confidence, near-misses first; exit 0."
    )
    add_audit_source(p, "the hash-chained JSONL audit log (synctwin gate --audit-log)")
    p.add_argument(
        "--since",
        metavar="DATE",
        help=f"ISO date or date-time (UTC unless it has an offset); default: {DEFAULT_DAYS} days ago",
    )
    p.add_argument("--json", action="store_true", help="print the review as one JSON document")


def add_audit_source(p: argparse.ArgumentParser, audit_log_help: str) -> None:
    """Where `load_records` reads: `--audit-log FILE` or `--redis URL` (with `--shards N`)."""
    src = p.add_mutually_exclusive_group()
    src.add_argument("--audit-log", metavar="FILE", help=audit_log_help)
    add_shards_argument(p)
    add_redis_argument(
        src,
        "read the audit stream {prefix}audit from Redis (the default without --audit-log, "
        "when SYNCTWIN_REDIS_URL is set)",
    )


def parse_since(text: str | None, now: dt.datetime) -> dt.datetime:
    """`--since`: a date (midnight UTC) or a date-time; naive times are UTC."""
    if text is None:
        return now - dt.timedelta(days=DEFAULT_DAYS)
    try:
        if len(text.strip()) == 10:
            d = dt.date.fromisoformat(text.strip())
            return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC)
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"not a date: {text!r} (write e.g. 2025-03-01 or 2025-03-01T12:00)", field="--since"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def load_records(args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    """Every audit record, and a name for where they came from."""
    url = redis_url_arg(args.redis, default_to_env=not args.audit_log)
    if url:
        from agents.syncshield.backends import RedisAuditStore
        from synctwin.infra.redis_conn import connect_deployment, with_shards
        from synctwin.infra.shards import all_shards
        from synctwin.kernel.config import get_settings

        settings = with_shards(get_settings(), args.shards)
        client = connect_deployment(url, settings.shards)
        keys = [s.audit for s in all_shards(settings.key_prefix, settings.shards)]
        # one chain per shard; their records, merged by time, are the deployment's log
        records = sorted(
            (r for key in keys for r in RedisAuditStore(client, key=key).records()),
            key=lambda r: r.get("ts") if isinstance(r.get("ts"), int | float) else 0.0,
        )
        where = f"Redis key {keys[0]}" if len(keys) == 1 else f"Redis keys {keys[0]} .. {keys[-1]} ({len(keys)} shards)"
        return records, where
    if not args.audit_log:
        raise InvalidInput("give the audit log: --audit-log FILE or --redis URL")
    return read_audit_log(args.audit_log), args.audit_log


def read_audit_log(path: str) -> list[dict[str, Any]]:
    """The records of a JSONL audit log; InvalidInput naming the file when there is none."""
    from pathlib import Path

    from agents.syncshield.backends import JsonlAuditStore

    if not Path(path).is_file():
        raise InvalidInput("no such audit log file", source=path)
    return JsonlAuditStore(path).records()


def finite_number(value: Any) -> float | None:
    return (
        float(value)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        else None
    )


def _near_miss(r: dict[str, Any]) -> bool:
    return r["confidence"] is not None and r["threshold"] is not None and r["threshold"] - r["confidence"] <= NEAR_MISS


def review(records: list[dict[str, Any]], since: dt.datetime, until: dt.datetime | None = None) -> dict[str, Any]:
    """The review as a plain dict: one row per rejection since `since`, near-misses first, and totals."""
    start = since.timestamp()
    end = until.timestamp() if until is not None else math.inf
    shadows: dict[str, dict[str, Any]] = {}
    for rec in records:  # the latest shadow outcome per campaign, whenever it was recorded
        if rec.get("event_type") == SHADOW and rec.get("campaign_id"):
            shadows[rec["campaign_id"]] = rec
    rows = []
    for rec in records:
        ts = finite_number(rec.get("ts"))
        if rec.get("event_type") != REJECTED or ts is None or not start <= ts <= end:
            continue
        meta = rec.get("metadata") or {}
        details = meta.get("simulation_details") or {}
        row: dict[str, Any] = {
            "seq": rec.get("seq"),
            "ts": ts,
            "time": dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds"),
            "client_id": rec.get("client_id") or meta.get("client_id"),
            "campaign_id": rec.get("campaign_id") or meta.get("campaign_id"),
            "confidence": finite_number(meta.get("confidence_score")),
            "threshold": finite_number(meta.get("threshold")),
            "projected_uplift": finite_number(meta.get("projected_net_profit_uplift")),
            "p10_uplift": finite_number(details.get("p10_uplift")),
            "p90_uplift": finite_number(details.get("p90_uplift")),
            "risk_profile": meta.get("risk_profile"),
            "model": meta.get("model"),
            "reason": rec.get("reason"),
        }
        shadow = shadows.get(row["campaign_id"] or "")
        if shadow is not None:
            row["shadow_outcome"] = {"seq": shadow.get("seq"), "ts": shadow.get("ts"), **(shadow.get("metadata") or {})}
        rows.append(row)
    rows.sort(key=lambda r: (-(r["confidence"] if r["confidence"] is not None else -1.0), r["ts"]))
    uplifts = [r["projected_uplift"] for r in rows if r["projected_uplift"] is not None]
    confidences = [r["confidence"] for r in rows if r["confidence"] is not None]
    near = [r for r in rows if _near_miss(r)]
    out: dict[str, Any] = {"since": since.isoformat(timespec="seconds")}
    if until is not None:
        out["until"] = until.isoformat(timespec="seconds")
    return {
        **out,
        "rejections": rows,
        "totals": {
            "rejections": len(rows),
            "campaigns": len({r["campaign_id"] for r in rows}),
            "clients": len({r["client_id"] for r in rows}),
            "near_misses": len(near),
            "projected_uplift": round(sum(uplifts), 2),
            "projected_loss": round(sum(u for u in uplifts if u < 0), 2),
            "mean_confidence": round(sum(confidences) / len(confidences), 4) if confidences else None,
            "with_shadow_outcome": sum("shadow_outcome" in r for r in rows),
        },
    }


def run(args: argparse.Namespace) -> int:
    now = dt.datetime.now(dt.UTC)
    since = parse_since(args.since, now)  # before reading anything: a bad date changes nothing
    records, source = load_records(args)
    result = {"source": source, **review(records, since)}
    emit(args.json, result, print_review)
    return 0


def print_review(d: dict[str, Any]) -> None:
    out = console()
    rows, totals = d["rejections"], d["totals"]
    say(out, f"[bold]Rejected campaigns[/] since {d['since']} ({d['source']}), near-misses first", indent=0)
    if not rows:
        out.print("  no rejections in this period")
        return
    shadow = any("shadow_outcome" in r for r in rows)
    cols = ["campaign", "confidence", "threshold", "p10", "median", "p90", "risk"]
    t = table(*cols, *(["shadow outcome"] if shadow else []), right=("confidence", "threshold", "p10", "median", "p90"))
    for r in rows:
        conf = percent(r["confidence"], 1, missing="-")
        cells = [
            f"{r['campaign_id']}\n[dim]{r['client_id']}, {str(r['time'])[:16].replace('T', ' ')}[/]",
            f"[bold yellow]{conf}[/]" if _near_miss(r) else conf,
            percent(r["threshold"], 1, missing="-"),
            money(r["p10_uplift"]),
            money(r["projected_uplift"]),
            money(r["p90_uplift"]),
            str(r["risk_profile"] or "-"),
        ]
        if shadow:
            cells.append(_shadow_text(r.get("shadow_outcome")))
        t.add_row(*cells)
    out.print(t)
    say(
        out,
        f"{plural(totals['rejections'], 'rejection')} of {plural(totals['campaigns'], 'campaign')} from "
        f"{plural(totals['clients'], 'client')}; {plural(totals['near_misses'], 'near-miss', 'near-misses')} "
        f"(within {NEAR_MISS * 100:.0f} points of the threshold)"
        + (
            f"; mean confidence {percent(totals['mean_confidence'], 1)}"
            if totals["mean_confidence"] is not None
            else ""
        ),
        indent=0,
    )
    say(
        out,
        f"projected uplift of the rejected campaigns: {money(totals['projected_uplift'])} in total, "
        f"of which projected losses {money(totals['projected_loss'])}",
        indent=0,
    )


def _shadow_text(shadow: dict[str, Any] | None) -> str:
    """A shadow run's outcome, as far as its record says (its format belongs to a later issue)."""
    if shadow is None:
        return ""

    value = finite_number(shadow.get("net_profit_uplift"))
    return money(value) if value is not None else f"recorded (audit seq {shadow.get('seq')})"
