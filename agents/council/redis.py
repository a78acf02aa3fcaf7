"""The Council's Redis ports: the worker of `synctwin run` (every agent), `synctwin mirror` (the mirror
alone) and `synctwin shadow --redis` on the `{prefix}bids` stream. The consumer-group mechanics
(claims, poison, dead letters, backoff) are synctwin/infra/stream_consumer.py's. Per batch:
- an entry that is not a bid event, of a campaign without a plan (`{prefix}campaign:{id}:strategy`
  with its `:projection` and `:gate`, as `gate --redis` stores them; the mirror alone: the
  `:projection`) or impossible (`Council.screen`) is a dead letter;
- a plan is checked again every `plan_ttl_s` by a fingerprint of its keys, and at once when its
  mirror hash was reset or an event falls outside its limits: a re-published plan replaces the old;
- the mirror states (`{prefix}campaign:{id}:mirror`: `MirrorState.to_hash`, `launch_ts`, revision
  `rev`) are WATCHed and read afresh when another worker wrote them, so every batch is judged on
  the latest state; the batch is one message to the Council (agents/council/build.py);
- its decisions go in ONE MULTI/EXEC with the batch's XACK: the changed states, per PAUSE the marker
  `{prefix}campaign:{id}:paused` and the `{prefix}control` entry, the alerts (`{prefix}alerts`) and
  the audit records chained onto `{prefix}audit`. A campaign marked already gets no second PAUSE (nor
  its alerts and records). On a WATCH conflict the moved states are read again, the batch's events
  of them applied on top (idempotently) and the write retried; a worker killed before EXEC wrote
  nothing, and whoever claims its batch decides it again;
- every `trim_every_s` the stream is trimmed (XTRIM MINID) below what any group still needs.
SyncFlow's guard states live in the shard's `{prefix}guards` hash, a field per campaign (JSON of
agents/syncflow/persist.py's fields), written in the batch's MULTI and read at adopt and when a
mirror hash moved under this worker: a worker that takes a campaign over pauses at the event the
uninterrupted worker would.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import logging
import operator
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.exceptions import WatchError

from agents.council.build import (
    ControlPort,
    Council,
    OutboxAuditStore,
    OutboxSink,
    Plan,
    Ports,
    build_council,
    plan_from_parts,
)
from agents.syncflow import persist
from agents.syncnotify.alerts import Alert
from agents.syncshield.backends import RedisAuditStore
from agents.syncshield.chain import make_record
from agents.synctwin.mirror.agent import PAUSE_REASON, MirrorBook, event_limits
from agents.synctwin.mirror.deviation import MirrorState
from agents.synctwin.mirror.stream_events import parse_entries
from agents.synctwin.shadow.store import RedisShadowStore
from synctwin.infra import metrics
from synctwin.infra.keyed_writes import KeyedWrites, hget_many, scripting
from synctwin.infra.stream_consumer import DeadLetter, Entry, StreamConsumer, id_key
from synctwin.kernel.config import Settings
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.messages import LiveEvents, PauseCommand, pause_fields
from world.clock import make_environment

log = logging.getLogger("synctwin.council")

_TRIM_LIMIT = 100_000  # entries one XTRIM may remove (whole nodes: about a millisecond of Redis's time)
_PREFIX_BYTES = 256  # a plan key's fingerprint: its length and these first bytes
_GC_YOUNG = 50_000  # allocations between young collections while a worker runs (CPython's default: 700)
_SCALARS = tuple(n for n in MirrorState.__dataclass_fields__ if n not in ("campaign_id", "snapshots"))
_scalar_values = operator.attrgetter(*_SCALARS)  # a state's scalars as one tuple, in C


@dataclass(slots=True)
class CouncilStats:
    events: int = 0
    dead: int = 0
    pauses: int = 0
    duplicates: int = 0  # pauses decided again for a campaign already paused (not written)
    batches: int = 0
    reclaimed: int = 0
    redis_errors: int = 0
    conflicts: int = 0  # commits retried because another worker wrote a campaign of the batch meanwhile
    applied: int = 0  # events the mirror applied
    ignored: int = 0  # events the mirror ignored (duplicates, out of order)
    greys: int = 0
    stuck_alerts: int = 0
    replans: int = 0  # re-published plans picked up
    trimmed: int = 0
    pause_latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


def _next_rev(rev: int) -> int:
    """The revision a write leaves: the next one, or for a new hash a random start, so a hash that
    was deleted and written again never repeats a revision a worker may still hold."""
    return rev + 1 if rev else random.randrange(1, 2**40)


def _snapshot_sig(state: MirrorState) -> tuple[float, ...]:
    """Changes whenever the snapshots do: an evaluation appends one (a new last) and drops old ones
    (a new first); a snapshot never changes once taken."""
    snaps = state.snapshots
    return (len(snaps), snaps[0][0], snaps[-1][0]) if snaps else (0,)


def _fingerprint(raw: str | None) -> tuple[int, str] | None:
    if raw is None:
        return None
    b = raw.encode("utf-8")
    return len(b), b[:_PREFIX_BYTES].decode("utf-8", "replace")


@contextlib.contextmanager
def _worker_gc() -> Iterator[None]:
    """The cyclic collector tuned for a draining worker, restored after: a batch allocates and frees
    (by reference counting) hundreds of thousands of objects, and at CPython's default threshold the
    collector walked everything the process holds about five times a batch. Young collections every
    `_GC_YOUNG` allocations, with what exists at start frozen out: a tenth of a batch's CPU saved."""
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(old[0], _GC_YOUNG), *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


_escape = json.encoder.encode_basestring_ascii  # a str as JSON text (what json.dumps writes for it)


_key = functools.cache(_escape)  # a field's name as JSON text: the few names, escaped once


class RedisGuardStore:
    """The Council's guards port on Redis: one hash per shard, `{prefix}guards`, a field per campaign
    (its guard state's fields as JSON), read at adopt and after a conflict; what changed is written
    in the commit's MULTI as ONE HSET for the batch (a hash per campaign cost a third of the drain)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client, self.prefix = client, prefix
        self.key = f"{prefix}guards"
        self.pending: dict[str, dict[str, str]] = {}  # campaign -> fields to write at the next commit
        self._stored: dict[str, dict[str, str]] = {}  # campaign -> its state as last read or written
        self._escaped: dict[str, dict[str, str]] = {}  # campaign -> its fields' values as JSON text, as stored
        self._queued: dict[str, dict[str, str]] = {}  # the same, as the pending commit writes them

    def load(self, campaign_ids: Iterable[str]) -> dict[str, dict[str, str]]:
        cids = list(campaign_ids)
        out: dict[str, dict[str, str]] = {}
        if not cids:
            return out
        for cid, raw in zip(cids, self.client.hmget(self.key, cids), strict=True):
            self.pending.pop(cid, None)  # what is stored is newer than what this worker had
            try:
                data = json.loads(raw) if raw else {}
            except ValueError:
                data = {}  # unreadable: its guards start afresh (decode would refuse it too)
            data = data if isinstance(data, dict) else {}
            self._stored[cid] = data
            self._escaped[cid] = {k: _escape(v) if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
            if data:
                out[cid] = data
        return out

    def save(self, states: dict[str, dict[str, Any]]) -> None:
        for cid, state in states.items():
            stored = self._stored.get(cid, {})
            changes = {k: v for k, v in persist.encode(state).items() if stored.get(k) != v}
            if changes:
                self.pending.setdefault(cid, {}).update(changes)

    def forget(self, campaign_ids: Iterable[str]) -> None:
        for cid in campaign_ids:
            for by_campaign in (self.pending, self._stored, self._escaped):
                by_campaign.pop(cid, None)

    def queue(self, pipe: Any) -> None:
        """A campaign's field is its fields as one JSON object (of JSON strings), assembled from each
        field's escaped text as last written: only the fields that changed are escaped again."""
        self._queued = {}
        if not self.pending:
            return
        mapping = {}
        for cid, changes in self.pending.items():
            escaped = self._escaped.get(cid, {}) | {k: _escape(v) for k, v in changes.items()}
            self._queued[cid] = escaped
            mapping[cid] = "{" + ", ".join(f"{_key(k)}: {v}" for k, v in escaped.items()) + "}"
        pipe.hset(self.key, mapping=mapping)

    def committed(self) -> None:
        for cid, changes in self.pending.items():
            self._stored.setdefault(cid, {}).update(changes)
        self._escaped.update(self._queued)
        self.pending.clear()
        self._queued.clear()


class RedisCouncil(StreamConsumer[CouncilStats]):
    """The Council fed by a consumer group; its decisions and mirror states written with the
    batch's acknowledgement."""

    log = log

    def __init__(
        self,
        client: Any,
        council: Council,
        *,
        prefix: str = "synctwin:",
        group: str = "synctwin-council",
        clock: Any = time.time,
        plan_ttl_s: float = 60.0,
        trim_every_s: float = 5.0,
        **options: Any,  # the consumer's (StreamConsumer: consumer, batch, block_ms, ...)
    ) -> None:
        super().__init__(client, prefix=prefix, group=group, **options)
        if not isinstance(council.ports.audit, OutboxAuditStore):
            raise TypeError("RedisCouncil needs a Council built with an OutboxAuditStore")
        self.council = council
        self.book: MirrorBook | None = council.book
        self.shadow: RedisShadowStore | None = None if council.shadow is None else council.shadow.store
        guards = council.ports.guards
        self.guards: RedisGuardStore | None = guards if isinstance(guards, RedisGuardStore) else None
        self.judging = council.flow is not None or council.mirror is not None  # not shadow mode alone
        self.outbox_audit: OutboxAuditStore = council.ports.audit
        self.outbox_alerts = next(s for s in council.ports.alerts if isinstance(s, OutboxSink))
        self.clock = clock
        self.plan_ttl_s = plan_ttl_s  # a re-published plan (a new gate) is picked up this soon
        self.trim_every_s = trim_every_s  # 0: never trim the bid stream
        self.control, self.alerts = f"{prefix}control", f"{prefix}alerts"
        self.audit = RedisAuditStore(client, key=f"{prefix}audit", clock=clock)
        self.stats, self._reported = CouncilStats(), CouncilStats()  # the counters, and as last reported
        self._written_reasons: Counter[str] = Counter()  # pauses written since the last report, by reason
        self._no_plan: dict[str, tuple[str, float]] = {}  # campaign -> why it has no usable plan, since when
        self._prints: dict[str, tuple[float, tuple[Any, ...]]] = {}  # campaign -> (checked at, its keys' fingerprints)
        self._revs: dict[str, int] = {}  # campaign -> the mirror hash's revision as this worker last read/wrote it
        self._stored: dict[str, dict[str, str]] = {}  # campaign -> the mirror hash's fields as stored
        self._snap_sigs: dict[str, tuple[float, ...]] = {}  # campaign -> its stored snapshots' signature
        self._snap_texts: dict[str, list[tuple[list[float], str]]] = {}  # campaign -> (snapshot, its JSON text)
        self._written: dict[str, tuple[Any, ...]] = {}  # campaign -> the scalar values this worker wrote last
        self._evaluated: set[str] = set()  # campaigns whose state was written since the last report (gauges)
        self._tx: Any = None  # the pipeline WATCHing this batch's mirror hashes
        self._next_trim = 0.0
        self.scripted = scripting(client)  # per-campaign writes and reads as one command each (keyed_writes)

    def marker(self, campaign_id: str) -> str:
        return f"{self.prefix}campaign:{campaign_id}:paused"

    def mirror_key(self, campaign_id: str) -> str:
        return f"{self.prefix}campaign:{campaign_id}:mirror"

    # --- plans ---------------------------------------------------------------------------------
    def _plan_keys(self, cid: str) -> list[str]:
        parts = ("projection",) if self.council.flow is None else ("strategy", "projection", "gate")
        return [f"{self.prefix}campaign:{cid}:{part}" for part in parts]

    def _plans(self, campaign_ids: list[str]) -> dict[str, tuple[Plan, bool] | str]:
        """Each campaign's plan and whether it is paused already, or why it has no plan."""
        pipe = self.client.pipeline(transaction=False)
        for cid in campaign_ids:
            for key in self._plan_keys(cid):
                pipe.get(key)
            pipe.exists(self.marker(cid))
        replies = pipe.execute()
        out: dict[str, tuple[Plan, bool] | str] = {}
        n = len(self._plan_keys("x")) + 1
        now = time.monotonic()
        for k, cid in enumerate(campaign_ids):
            *raw, paused = replies[n * k : n * k + n]
            base, alone = f"{self.prefix}campaign:{cid}", self.council.flow is None  # the mirror alone
            if raw[0] is None:  # its strategy (the mirror alone: its projection)
                what = "projection" if alone else "plan"
                out[cid] = f"unknown campaign {cid}: no {what} at {self._plan_keys(cid)[0]}"
                continue
            raw_s, raw_p, raw_g = (None, raw[0], None) if alone else raw
            try:
                gate = json.loads(raw_g) if raw_g else {}
                baseline = gate.get("baseline") if isinstance(gate, dict) else None
                strategy = json.loads(raw_s) if raw_s is not None else None
                projection = json.loads(raw_p) if raw_p else None
                baseline = baseline if isinstance(baseline, dict) else None
                plan = plan_from_parts(cid, strategy, projection, baseline, source=base)
            except (ValueError, InvalidInput) as exc:
                out[cid] = f"campaign {cid}: {'the projection' if alone else 'its plan'} at {base} is invalid ({exc})"
                continue
            self._prints[cid] = (now, tuple(_fingerprint(r) for r in raw))
            out[cid] = (plan, bool(paused))
        return out

    def _recheck(self, campaign_ids: Iterable[str], *, force: bool = False) -> set[str]:
        """Campaigns whose plan keys changed since they were read (checked every `plan_ttl_s`, or
        now with `force`) get their new plan; the ids of those re-adopted."""
        now = time.monotonic()
        due = [c for c in campaign_ids if c in self._prints and (force or now - self._prints[c][0] >= self.plan_ttl_s)]
        if not due:
            return set()
        pipe = self.client.pipeline(transaction=False)
        for cid in due:
            for key in self._plan_keys(cid):
                pipe.strlen(key)
                pipe.getrange(key, 0, _PREFIX_BYTES - 1)
        try:
            replies = pipe.execute()
        except UnicodeDecodeError:  # the first bytes cut a character in two: read them whole
            replies = None
        n = 2 * len(self._plan_keys("x"))
        changed = []
        for k, cid in enumerate(due):
            prints = self._prints[cid][1]
            if replies is not None:
                got = replies[n * k : n * k + n]
                now_prints = tuple(None if not got[2 * j] else (int(got[2 * j]), got[2 * j + 1]) for j in range(n // 2))
                if now_prints == prints:
                    self._prints[cid] = (now, prints)
                    continue
            changed.append(cid)
        if not changed:
            return set()
        adopt = []
        for cid, got in self._plans(changed).items():
            if isinstance(got, str):  # gone or broken since: keep guarding under the plan it has
                log.warning("%s; %s keeps its previous plan", got, cid)
                self._prints[cid] = (now, self._prints[cid][1])
                continue
            adopt.append(got)
        if adopt:
            self.stats.replans += len(adopt)
            self.council.adopt(adopt, at=self._now())
            if self.shadow is not None:
                self.shadow.forget([p.campaign_id for p, _ in adopt])
        return {p.campaign_id for p, _ in adopt}

    # --- mirror states -------------------------------------------------------------------------
    def _watch_states(self, campaign_ids: Iterable[str]) -> list[str]:
        """WATCH the mirror hashes of these campaigns (and any left unwritten) and read again those
        another worker (or `gate --redis`: a new plan) changed since this worker's copy; their ids."""
        book = self.book
        if book is None:
            return []
        cids = [c for c in dict.fromkeys([*campaign_ids, *book.touched]) if c in book.curves]
        if not cids:
            return []
        if self._tx is None:
            self._tx = self.client.pipeline(transaction=True)
        self._tx.watch(*[self.mirror_key(c) for c in cids])
        return self._refresh(cids)

    def _refresh(self, cids: list[str]) -> list[str]:
        """Read the revisions of these mirror hashes (after WATCH); load those that moved. The ids loaded."""
        book = self.book
        assert book is not None
        revs = hget_many(self.client, [self.mirror_key(c) for c in cids], "rev", scripted=self.scripted)
        moved = [cid for cid, rev in zip(cids, revs, strict=True) if int(rev or 0) != self._revs.get(cid, -1)]
        if not moved:
            return []
        pipe = self.client.pipeline(transaction=False)
        for cid in moved:
            pipe.hgetall(self.mirror_key(cid))
        reset = []
        again = [cid for cid in moved if cid in self._revs]  # known before: another worker wrote it since
        for cid, data in zip(moved, pipe.execute(), strict=True):
            if not data and self._revs.get(cid, 0):
                reset.append(cid)  # our hash is gone: `gate --redis` published a new plan, or it was reset
            self._revs[cid] = int(data.get("rev", 0) or 0)
            self._stored[cid] = dict(data)
            self._snap_sigs.pop(cid, None)
            self._written.pop(cid, None)
            book.states[cid] = MirrorState.from_hash(cid, data)
            launch = data.get("launch_ts")
            book.launches[cid] = float(launch) if launch else book.curves[cid].launch_ts
            book.touched.discard(cid)
        if reset:
            self._recheck(reset, force=True)
        for cid in moved:
            if book.launches[cid] != book.curves[cid].launch_ts:  # another launch's state: is our plan current?
                self._recheck([cid], force=True)
            book.state(cid)  # a state of another launch starts afresh
        self.council.reload_guards(again)  # ... and its guards continue from its writer's
        return moved

    def _state_writes(self) -> list[tuple[str, int, dict[str, str], tuple[float, ...], tuple[Any, ...]]]:
        """(campaign, new revision, changed fields, snapshots' signature, scalar values) per state to write;
        scalars compared as values with what was written (as text with what was read), few formatted."""
        book = self.book
        if book is None:
            return []
        out = []
        for cid in book.touched:
            state = book.states.get(cid)
            if state is None:
                continue
            stored = self._stored.get(cid, {})
            values = _scalar_values(state)
            last = self._written.get(cid)
            if last is not None:
                changes = {
                    name: v if type(v) is str else str(v)
                    for name, v, w in zip(_SCALARS, values, last, strict=True)
                    if v != w or type(v) is not type(w)
                }
            else:
                texts = (v if type(v) is str else str(v) for v in values)
                changes = {name: s for name, s in zip(_SCALARS, texts, strict=True) if stored.get(name) != s}
            if stored.get("campaign_id") != cid:
                changes["campaign_id"] = cid
            sig = _snapshot_sig(state)
            if self._snap_sigs.get(cid) != sig or "snapshots" not in stored:
                changes["snapshots"] = self._snapshots_json(cid, state.snapshots)
            launch = repr(book.launches[cid])
            if stored.get("launch_ts") != launch:
                changes["launch_ts"] = launch
            rev = _next_rev(self._revs.get(cid, 0))
            changes["rev"] = str(rev)
            out.append((cid, rev, changes, sig, values))
        return out

    def _snapshots_json(self, cid: str, snapshots: list[list[float]]) -> str:
        """`json.dumps(snapshots)`, each snapshot's text made once: an evaluation appends one and drops
        the oldest, and formatting the whole window again was a tenth of a commit. A snapshot is
        known by identity (never changed once taken; a state read from Redis is all new ones)."""
        cached = self._snap_texts.get(cid, [])
        k = next((i for i, (snap, _) in enumerate(cached) if snapshots and snap is snapshots[0]), len(cached))
        kept = cached[k:]
        if len(kept) > len(snapshots) or (kept and kept[-1][0] is not snapshots[len(kept) - 1]):
            kept = []
        texts = kept + [(snap, json.dumps(snap)) for snap in snapshots[len(kept) :]]
        self._snap_texts[cid] = texts
        return "[" + ", ".join([text for _, text in texts]) + "]"

    # --- one batch -----------------------------------------------------------------------------
    def process(self, entries: list[Entry]) -> int:
        self.stats.batches += 1
        self.stats.events += len(entries)
        council = self.council
        rows, events, bad = parse_entries([f for _, f in entries])
        dead: list[DeadLetter] = [(*entries[k], why) for k, why in bad]
        if not self.judging:  # shadow mode alone counts what it cannot read (the mirror's group dead-letters it)
            council.observe(events, len(dead), at=self._now())
            self._commit([entry_id for entry_id, _ in entries], events)
            self._report_metrics()
            return len(entries)
        cids = list(dict.fromkeys(events.campaign_ids))
        fresh = [c for c in cids if not council.knows(c)]
        self._recheck([c for c in cids if council.knows(c)])
        if fresh:
            now = time.monotonic()
            ask = [c for c in fresh if c not in self._no_plan or now - self._no_plan[c][1] > 60.0]  # a minute on
            found = self._plans(ask) if ask else {}
            adopt = []
            for cid, got in found.items():
                if isinstance(got, str):
                    self._no_plan[cid] = (got, now)
                else:
                    self._no_plan.pop(cid, None)
                    adopt.append(got)
            council.adopt(adopt, at=self._now())
        if all(council.knows(c) for c in cids):
            known = events
        else:
            keep = []
            for j, (k, cid) in enumerate(zip(rows, events.campaign_ids, strict=True)):
                if council.knows(cid):
                    keep.append(j)
                else:
                    why = self._no_plan.get(cid)
                    dead.append((*entries[k], why[0] if why else f"unknown campaign {cid}: no plan"))
            rows, known = [rows[j] for j in keep], events.take(keep)
        self._watch_states([c for c in cids if council.knows(c)])
        passed, refused = council.screen(known, self.clock())
        if refused and self._recheck({known.campaign_ids[j] for j, _ in refused}, force=True):
            passed, refused = council.screen(known, self.clock())  # a new launch: judge by its plan
        dead += [(*entries[rows[j]], why) for j, why in refused]
        judged = known.take(passed)
        council.feed(judged, at=self._now())
        council.observe(judged, 0, at=self._now(), screened=True)  # shadow mode learns from what was judged
        self._commit([entries[rows[j]][0] for j in passed], judged)
        if dead:
            self._dead_letters(dead)
        self._report_metrics()
        return len(entries)

    def _now(self) -> float:
        return max(self.council.env.now, self.clock())

    def _commit(self, ids: list[str], events: LiveEvents) -> None:
        """The batch's decisions, mirror states and XACK in one transaction; a campaign whose pause
        marker is set already loses this batch's pause, and its alerts and audit records with it."""
        control = self.council.ports.control
        pauses: list[PauseCommand] = control.pauses
        audits, alerts = self.outbox_audit.pending, self.outbox_alerts.alerts
        control.pauses, self.outbox_audit.pending, self.outbox_alerts.alerts = [], [], []
        try:
            touched = self.book is not None and self.book.touched
            pending = any(store is not None and store.pending for store in (self.shadow, self.guards))
            if ids or pauses or audits or alerts or touched or pending:
                self._write(ids, pauses, audits, alerts, events)
                for store in (self.shadow, self.guards):
                    if store is not None:
                        store.committed()
        except BaseException:  # nothing was written: keep the decisions (and the states) for the next commit
            control.pauses[:0] = pauses
            self.outbox_audit.pending[:0] = audits
            self.outbox_alerts.alerts[:0] = alerts
            raise
        finally:
            if self._tx is not None:
                self._tx.reset()

    def _write(
        self,
        ids: list[str],
        pauses: list[PauseCommand],
        audits: list[dict[str, Any]],
        alerts: list[Any],
        events: LiveEvents,
    ) -> None:
        if self._tx is None:
            self._tx = self.client.pipeline(transaction=True)
        pipe = self._tx
        for _attempt in range(100):
            try:
                first: dict[str, PauseCommand] = {}
                for p in pauses:
                    first.setdefault(p.campaign_id, p)  # one PAUSE a campaign, whatever decided it again
                taken: set[str] = set()
                if first:
                    cids = list(first)
                    pipe.watch(*[self.marker(c) for c in cids])
                    check = self.client.pipeline(transaction=False)
                    for c in cids:
                        check.exists(self.marker(c))
                    taken = {c for c, n in zip(cids, check.execute(), strict=True) if n}
                keep_p = [p for p in first.values() if p.campaign_id not in taken]
                keep_a = [a for a in audits if a["campaign_id"] not in taken]
                keep_n = [a for a in alerts if (a.details or {}).get("campaign_id") not in taken]
                recs = self._chain(pipe, keep_a)
                states = self._state_writes()
                if self.owner is not None:
                    self.owner.fence(pipe)  # a worker that lost its shard's lease writes and acknowledges nothing
                pipe.multi()
                writes = KeyedWrites(self.scripted)
                for cid, _rev, changes, _sig, _values in states:
                    writes.add("HSET", self.mirror_key(cid), *[x for kv in changes.items() for x in kv])
                if self.guards is not None:
                    self.guards.queue(pipe)
                for p in keep_p:
                    fields = pause_fields(p)
                    pipe.hset(self.marker(p.campaign_id), mapping=fields)
                    pipe.xadd(self.control, fields, maxlen=self.maxlen, approximate=True)
                for a in keep_n:
                    details = json.dumps(a.details, separators=(",", ":"), default=str)
                    fields = {"severity": a.severity, "title": a.title, "message": a.message, "details": details}
                    pipe.xadd(self.alerts, fields | {"ts": repr(a.ts)}, maxlen=self.maxlen, approximate=True)
                for rec in recs:
                    self.audit.queue(pipe, rec)
                if self.shadow is not None:
                    self.shadow.queue(pipe, writes)
                writes.queue(pipe)
                for k in range(0, len(ids), 10_000):
                    pipe.xack(self.bids, self.group, *ids[k : k + 10_000])
                pipe.execute()
            except WatchError:
                self.stats.conflicts += 1
                self._merge(events, pauses, audits, alerts)
                continue
            for cid, rev, changes, sig, values in states:
                self._revs[cid] = rev
                self._stored.setdefault(cid, {}).update(changes)
                self._snap_sigs[cid] = sig
                self._written[cid] = values
                self._evaluated.add(cid)
            if self.book is not None:
                self.book.touched.clear()
            self.stats.pauses += len(keep_p)
            self._written_reasons.update(p.reason for p in keep_p)
            self.stats.duplicates += len(pauses) - len(keep_p)
            now = self.clock()
            self.stats.pause_latencies_ms.extend((now - p.ts) * 1000.0 for p in keep_p if p.ts is not None)
            return
        raise RuntimeError("the batch's campaigns kept changing under us (100 conflicts)")

    def _chain(self, pipe: Any, audits: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The audit records of the batch, chained onto the stream's head (WATCHed on `pipe`)."""
        recs: list[dict[str, Any]] = []
        for a in audits:
            meta = {"client_id": a["client_id"], "campaign_id": a["campaign_id"], "reason": a["reason"]}
            if not recs:
                rec, _ = self.audit.prepare(pipe, a["event_type"], metadata=a["metadata"], **meta)
            else:
                rec = make_record(
                    recs[-1], a["event_type"], ts=self.clock(), metadata=a["metadata"], key=self.audit._hmac_key, **meta
                )
            recs.append(rec)
        return recs

    def _merge(
        self, events: LiveEvents, pauses: list[PauseCommand], audits: list[dict[str, Any]], alerts: list[Any]
    ) -> None:
        """After a WatchError: WATCH again and apply this batch's events on the states that moved (older
        ones change nothing); a PAUSE only the merged state reaches joins the batch's, alert and record."""
        self._tx.reset()
        moved = set(self._watch_states(events.campaign_ids))
        book = self.book
        if not moved or book is None:
            return
        counters, threshold = (book.applied, book.ignored, book.greys, book.stuck_alerts), book.cfg.threshold
        paused = {p.campaign_id for p in pauses}
        for _event_id, cid, ts, values in (e for e in events.rows() if e[1] in moved):
            outcome = book.apply(cid, _event_id, ts, values)
            if outcome is None or not outcome.pause or cid in paused:
                continue
            paused.add(cid)
            pauses.append(outcome.command())
            severity, title, message, details = outcome.alert()
            alerts.append(Alert(severity=severity, title=title, message=message, details=details, ts=self.clock()))
            meta = {"client_id": None, "campaign_id": cid, "reason": PAUSE_REASON}
            audits.append({"event_type": "AUTO_ROLLBACK_TRIGGERED", **meta, "metadata": outcome.audit(threshold)})
        book.applied, book.ignored, book.greys, book.stuck_alerts = counters

    # --- the loop's hooks ----------------------------------------------------------------------
    def run(self, stop: Callable[[], bool], *, once: bool = False) -> CouncilStats:
        """The consumer's loop (synctwin/infra/stream_consumer.py), with the collector tuned for it."""
        with _worker_gc():
            return super().run(stop, once=once)

    def _after_error(self) -> None:
        """Re-read our own pending entries; the mirror states are checked against their revisions
        at the next batch anyway (what this worker applied but could not write stays to be written)."""
        super()._after_error()
        if self._tx is not None:
            with contextlib.suppress(redis.exceptions.RedisError):
                self._tx.reset()
            self._tx = None

    def _on_group_ready(self) -> None:
        """A (re)start settles what came due while no worker ran."""
        if self.shadow is not None:
            self.shadow.settle()

    def _after_step(self) -> None:
        if self.shadow is not None and self.shadow.due():
            self.shadow.settle()

    def _on_drained(self) -> None:
        """`run(once=True)`: the stream is drained, so every day before the newest event is closed."""
        if self.shadow is not None:
            self.shadow.settle(final=True)

    def _before_read(self, now: float) -> None:
        """Trim the bid stream every `trim_every_s` (0: never)."""
        if self.trim_every_s and now >= self._next_trim:
            self._next_trim = now + self.trim_every_s
            self.trim()

    def _count_dead(self, n: int) -> None:
        self.stats.dead += n
        if not self.judging and self.shadow is not None:
            self.shadow.stats.poison += n  # shadow mode alone dead-letters only poison

    def trim(self) -> int:
        """XTRIM MINID the bid stream below the oldest entry any group has not yet acknowledged
        (its first pending entry, or past its last delivered one). Never loses an event."""
        try:
            marks = []
            for g in self.client.xinfo_groups(self.bids):
                mark = id_key(g["last-delivered-id"])
                first = self.client.xpending(self.bids, g["name"])["min"] if g["pending"] else None
                marks.append(min(mark, id_key(first)) if first else mark)
            floor = min(marks, default=(0, 0))
            if floor == (0, 0):
                return 0
            # approximate: whole stream nodes only (cheap); Redis caps one call at 100 nodes by
            # default, too few to keep up with a busy stream, so ask for more, a bounded few times
            n, minid = 0, f"{floor[0]}-{floor[1]}"
            for _ in range(10):
                done = int(self.client.xtrim(self.bids, minid=minid, approximate=True, limit=_TRIM_LIMIT) or 0)
                n += done
                if done < _TRIM_LIMIT // 2:
                    break
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" in str(exc) or "no such key" in str(exc).lower():
                return 0
            log.warning("cannot trim %s (%s); trimming switched off", self.bids, exc)
            self.trim_every_s = 0.0
            return 0
        self.stats.trimmed += n
        return n

    def _report_metrics(self) -> None:
        if not self.judging:  # shadow mode alone: its store reports the counters, with the loop's
            if self.shadow is not None:
                shadow = self.shadow.stats
                shadow.reclaimed, shadow.redis_errors = self.stats.reclaimed, self.stats.redis_errors
                self.shadow._report_metrics()
            return
        book = self.book
        deviations: list[tuple[str, float]] = []
        if book is not None:
            s = self.stats
            s.applied, s.ignored, s.greys, s.stuck_alerts = book.applied, book.ignored, book.greys, book.stuck_alerts
            deviations = [(c, book.states[c].deviation) for c in self._evaluated if c in book.states]
            self._evaluated.clear()
        delta = {  # pauses are counted by reason below, as they are written
            name: getattr(self.stats, name) - getattr(self._reported, name)
            for name in ("events", "dead", "ignored", "greys", "batches", "redis_errors")
        }
        for name in delta:
            setattr(self._reported, name, getattr(self.stats, name))
        metrics.record_mirror(delta, deviations)
        for reason, n in self._written_reasons.items():
            metrics.PAUSES.labels(reason=reason).inc(n)
        self._written_reasons.clear()


def redis_council(
    client: Any,
    settings: Settings,
    *,
    group: str = "synctwin-council",
    consumer: str | None = None,
    batch: int | None = None,
    disabled_guards: Any = (),
    block_ms: int | None = 1000,
    flow: bool = True,
    mirror: bool = True,
    shadow: bool = True,
    grace_s: float = 3600.0,
    clock: Any = time.time,
    guard_state: bool = True,
    **options: Any,
) -> RedisCouncil:
    """`synctwin run`'s worker: the Council with the Redis ports, on the wall clock (or another `clock`,
    a test's or the demo's world: then the environment is virtual and follows it). `guard_state` False:
    SyncFlow's guard states stay in this worker's memory (a takeover starts them afresh)."""
    env = make_environment(realtime=clock is time.time, initial_time=clock())
    prefix = options.pop("prefix", settings.key_prefix)
    guards = RedisGuardStore(client, prefix) if guard_state else None
    ports = Ports(ControlPort(), OutboxAuditStore(), [OutboxSink()], guards=guards)
    store = None
    if shadow:
        store = RedisShadowStore(client, prefix=prefix, grace_s=grace_s, limits=event_limits(settings), clock=clock)
    council = build_council(
        env, settings, ports, disabled_guards=disabled_guards, flow=flow, mirror=mirror, shadow=store, clock=clock
    )
    kwargs: dict[str, Any] = {"group": group, "consumer": consumer, "batch": batch or settings.mirror_batch}
    kwargs |= {"block_ms": block_ms, "claim_idle_ms": settings.mirror_claim_idle_ms, "clock": clock}
    kwargs |= {"max_deliveries": settings.mirror_max_deliveries, "heartbeat_ms": settings.mirror_heartbeat_ms}
    return RedisCouncil(client, council, prefix=prefix, **(kwargs | options))


def redis_mirror(client: Any, settings: Settings, *, group: str = "synctwin-mirror", **options: Any) -> RedisCouncil:
    """`synctwin mirror`'s worker: the Council with the mirror alone (and SyncShield, SyncNotify)."""
    return redis_council(client, settings, group=group, flow=False, shadow=False, **options)


def redis_shadow(client: Any, settings: Settings, *, group: str = "synctwin-shadow", **options: Any) -> RedisCouncil:
    """`synctwin shadow --redis`'s worker: the Council with shadow mode alone."""
    return redis_council(client, settings, group=group, flow=False, mirror=False, **options)
