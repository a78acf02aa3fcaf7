"""A recorded bid stream through the Council in virtual time (`synctwin replay --bids --plans`).

EVENTS.jsonl: one bid event per line, the stream's fields (event_id, campaign_id, ts, spend,
impressions, clicks, conversions, revenue). PLANS.jsonl: one plan per line (campaign_id,
strategy, projection or null, optional baseline). Events are fed in batches of `batch` (the
worker's read size); an event of a campaign without a plan is a dead letter, as on the stream."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agents.council.build import ControlPort, LiveEvent, Plan, Ports, build_council, pause_record, plan_from_parts
from agents.syncnotify.sinks import MemorySink
from agents.syncshield.backends import InMemoryAuditStore
from agents.synctwin.mirror.deviation import InvalidEvent, parse_raw_event
from synctwin.kernel.config import Settings
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.messages import LiveEvents
from world.clock import make_environment


def _lines(path: str | Path) -> Iterable[tuple[int, Any]]:
    try:
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield n, json.loads(line)
                except ValueError as exc:
                    raise InvalidInput(f"not JSON ({exc})", source=f"{path}, line {n}") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read it ({exc.strerror})", source=str(path)) from None
    except UnicodeDecodeError:
        raise InvalidInput("not UTF-8 text", source=str(path)) from None


def event_from_dict(data: Any, *, source: str) -> LiveEvent:
    """A recorded bid event, checked as the stream's worker checks an entry (the same parser)."""
    if not isinstance(data, dict):
        raise InvalidInput(f"expected a JSON object, got {type(data).__name__}", source=source)
    try:
        return parse_raw_event({str(k).encode(): str(v).encode() for k, v in data.items()})
    except InvalidEvent as exc:
        raise InvalidInput(str(exc), source=source) from None


def load_events(path: str | Path) -> list[LiveEvent]:
    return [event_from_dict(d, source=f"{path}, line {n}") for n, d in _lines(path)]


def load_plans(path: str | Path) -> dict[str, Plan]:
    plans: dict[str, Plan] = {}
    for n, d in _lines(path):
        where = f"{path}, line {n}"
        if not isinstance(d, dict) or not isinstance(d.get("campaign_id"), str) or not d["campaign_id"]:
            raise InvalidInput("expected an object with a campaign_id", source=where)
        if "strategy" not in d or "projection" not in d:
            raise InvalidInput("a plan needs `strategy` and `projection` (an object or null)", source=where)
        if d["campaign_id"] in plans:
            raise InvalidInput(f"campaign {d['campaign_id']!r} has a plan already", source=where)
        plans[d["campaign_id"]] = plan_from_parts(
            d["campaign_id"], d["strategy"], d["projection"], d.get("baseline"), source=where
        )
    return plans


def replay_recording(
    events: list[LiveEvent],
    plans: dict[str, Plan],
    settings: Settings,
    *,
    batch: int = 500,
    disabled_guards: Iterable[str] = (),
) -> dict[str, Any]:
    """The Council over a recording in virtual time: its pauses (campaign_id, reason, event_id, ts),
    dead letters, alerts and audit records."""
    env = make_environment(initial_time=events[0][2] if events else 0.0)
    control, audit, sink = ControlPort(), InMemoryAuditStore(clock=lambda: env.now), MemorySink()
    council = build_council(env, settings, Ports(control, audit, [sink]), disabled_guards=disabled_guards)
    dead: list[dict[str, Any]] = []
    for start in range(0, len(events), max(1, batch)):
        chunk = events[start : start + batch]
        fresh = {e[1] for e in chunk if not council.knows(e[1])}
        council.adopt([(plans[c], False) for c in sorted(fresh) if c in plans], at=env.now)
        live = []
        for e in chunk:
            if e[1] in plans:
                live.append(e)
            else:
                dead.append({"event_id": e[0], "campaign_id": e[1], "reason": f"unknown campaign {e[1]}: no plan"})
        rows = LiveEvents.of(live)
        kept, bad = council.screen(rows, math.inf)  # a recording has no clock to be ahead of
        dead += [{"event_id": rows.event_ids[j], "campaign_id": rows.campaign_ids[j], "reason": why} for j, why in bad]
        council.feed(rows.take(kept), at=max(env.now, chunk[-1][2]))
    return {
        "events": len(events),
        "campaigns": len(plans),
        "pauses": [pause_record(p) for p in control.pauses],
        "dead": dead,
        "alerts": len(sink.alerts),
        "audit_records": len(audit.records()),
        "guards": {cid: r["guards"] for cid, r in council.flow.report().items()},
    }
