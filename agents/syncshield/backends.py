"""Where audit records live: in memory, in a JSONL file, or in a Redis stream.

Every store appends through `chain.make_record`, so the chaining rule exists once. Each store
reads the current head and writes the next record as one atomic step (a lock, an exclusive
`flock`, or WATCH/MULTI/EXEC), so several writers, threads or processes, still build ONE chain.
The file and Redis stores also keep the new head beside the log in that same step (`anchors`),
and chain with HMAC-SHA256 when SYNCTWIN_AUDIT_KEY is set (or `hmac_key` is given)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, Unpack, runtime_checkable

from synctwin.kernel.errors import InvalidInput

from .anchors import (
    FROM_ENV,
    StoredHead,
    append_problem,
    check_beside,
    head_key,
    read_head_file,
    resolve_key,
    write_head_file,
)
from .chain import (
    RECORD_KEYS,
    Head,
    Malformed,
    RecordFields,
    VerifyReport,
    canonical_json,
    is_hmac,
    make_record,
    verify_chain,
)

Clock = Callable[[], float]


@runtime_checkable
class AuditStore(Protocol):
    """The port SyncShield writes to; adapters decide where the records go."""

    def append(self, event_type: str, **fields: Unpack[RecordFields]) -> dict[str, Any]:
        """Chain a new record after the current head, store it and return it."""
        ...

    def records(self) -> list[dict[str, Any]]:
        """Every record, oldest first."""
        ...


class InMemoryAuditStore:
    """A list: for tests, the demo and virtual-time runs that need no persistence."""

    def __init__(self, clock: Clock = time.time, *, hmac_key: bytes | str | None = FROM_ENV) -> None:
        self._clock = clock
        self._key = resolve_key(hmac_key)
        self._records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def append(self, event_type: str, **fields: Unpack[RecordFields]) -> dict[str, Any]:
        """Chain onto the last record under a lock, so threads cannot fork the chain."""
        with self._lock:
            prev = self._records[-1] if self._records else None
            rec = make_record(prev, event_type, ts=self._clock(), key=self._key, **fields)
            self._records.append(rec)
            return dict(rec)

    def records(self) -> list[dict[str, Any]]:
        """Copies, so a caller cannot edit the stored log by accident."""
        with self._lock:
            return [json.loads(canonical_json(r)) for r in self._records]

    def verify(self) -> VerifyReport:
        """Check the chain held in memory."""
        with self._lock:
            return verify_chain(list(self._records), key=self._key)


# ---------------------------------------------------------------------------------------- JSONL
def _shape_error(obj: Any) -> str | None:
    """Why a parsed line cannot be chained onto (the stricter checks are verify's job)."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    missing = [k for k in RECORD_KEYS if k not in obj]
    if missing:
        return f"not an audit record (missing {', '.join(missing)})"
    if isinstance(obj["seq"], bool) or not isinstance(obj["seq"], int):
        return f"seq is not an integer (got {obj['seq']!r})"
    if not isinstance(obj["hash"], str):
        return f"hash is not a string (got {obj['hash']!r})"
    return None


def _decode(raw: bytes) -> tuple[Any, str | None]:
    """(the line's JSON, None) or (None, why it is not JSON)."""
    try:
        return json.loads(raw.decode("utf-8")), None
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 ({exc.reason} at byte {exc.start})"
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at column {exc.colno})"


def _parse_line(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """(record, None) or (None, what is wrong with the line)."""
    obj, problem = _decode(raw)
    problem = problem or _shape_error(obj)
    return (None, problem) if problem else (obj, None)


class JsonlAuditStore:
    """One canonical-JSON record per line, appended under an exclusive `flock` after re-reading the
    head, so processes sharing the file keep one chain; only lines written since the last read (per
    inode) are parsed. A line that does not parse stops the append (InvalidInput naming file and
    line): chaining onto garbage would hide it. Each record's head then replaces FILE.head under the
    lock; an append refuses when it shows lost or rewritten records. `fsync=True`: each append
    survives a power cut, at a few milliseconds."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        clock: Clock = time.time,
        *,
        fsync: bool = False,
        hmac_key: bytes | str | None = FROM_ENV,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._fsync = fsync
        self._key = resolve_key(hmac_key)
        self._mutex = threading.Lock()
        self._ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the file read so far
        self._offset = 0  # bytes already read and parsed
        self._lines = 0  # lines already read and parsed
        self._last: dict[str, Any] | None = None
        self._missing_newline = False  # the last line read has no "\n" (a writer died mid-line?)

    def _catch_up(self, fd: int) -> tuple[dict[str, Any] | None, bool]:
        """(head record, file lacks a final newline) after reading the lines added since the last call;
        from the start when the file was replaced, shrank or was rewritten, so errors name the right line."""
        st = os.fstat(fd)
        ident = (st.st_dev, st.st_ino)
        if ident == self._ident and st.st_size >= self._offset:
            try:
                return self._read_from(fd, self._offset, self._lines, self._last, self._missing_newline)
            except InvalidInput:
                if self._offset == 0:
                    raise
        self._ident = None
        result = self._read_from(fd, 0, 0, None, False)
        self._ident = ident
        return result

    def _read_from(
        self, fd: int, offset: int, lines: int, last: dict[str, Any] | None, missing_newline: bool
    ) -> tuple[dict[str, Any] | None, bool]:
        with open(os.dup(fd), "rb") as fh:  # the dup shares the lock; closing it keeps the lock
            fh.seek(offset)
            for raw in fh:
                lines += 1
                rec, problem = _parse_line(raw)
                if problem:
                    raise InvalidInput(
                        f"{problem}; refusing to append to a damaged audit log", source=str(self.path), line=lines
                    )
                last = rec
                offset += len(raw)
                missing_newline = not raw.endswith(b"\n")
        self._offset, self._lines, self._last, self._missing_newline = offset, lines, last, missing_newline
        return last, missing_newline

    def append(self, event_type: str, **fields: Unpack[RecordFields]) -> dict[str, Any]:
        """Lock the file, read its head, write the next record with one write(), then its head file, unlock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._mutex:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                prev, missing_newline = self._catch_up(fd)
                problem = append_problem(read_head_file(self.path), prev, self._key)
                if problem:
                    raise InvalidInput(problem, source=str(self.path))
                rec = make_record(prev, event_type, ts=self._clock(), key=self._key, **fields)
                data = (b"\n" if missing_newline else b"") + canonical_json(rec).encode("utf-8") + b"\n"
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self._fsync:
                    os.fsync(fd)
                self._offset += len(data)
                self._lines += 1
                self._last, self._missing_newline = rec, False
                write_head_file(self.path, StoredHead.of(rec, self._key), fsync=self._fsync)
                return dict(rec)
            finally:
                os.close(fd)  # also releases the flock

    def records(self) -> list[dict[str, Any]]:
        """Every record; raises InvalidInput (file, line) for a line that is not a record."""
        out: list[dict[str, Any]] = []
        with _locked(self.path) as fh:
            for lineno, raw in enumerate(fh or (), start=1):
                rec, problem = _parse_line(raw)
                if problem:
                    raise InvalidInput(problem, source=str(self.path), line=lineno)
                out.append(rec)
        return out

    def verify(self, expect: Head | None = None) -> VerifyReport:
        """Check the file's chain and head (see `verify_file`) with this store's key."""
        return verify_file(self.path, key=self._key, expect=expect)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[Any]:
    """The file open for reading under a shared flock (None when missing), so no half-written
    append, and no head file out of step with the log, is seen."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        yield None
        return
    except IsADirectoryError:
        raise InvalidInput("is a directory, not an audit log file", source=str(path)) from None
    except OSError as exc:
        raise InvalidInput(f"cannot read ({exc.strerror})", source=str(path)) from None
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
        yield fh


def _file_entries(fh: Any) -> Iterator[dict[str, Any] | Malformed]:
    for lineno, raw in enumerate(fh, start=1):
        obj, problem = _decode(raw)
        yield Malformed(f"line {lineno} is {problem}") if problem else obj


def _tampered(checked: int, problem: str) -> VerifyReport:
    return VerifyReport(ok=False, checked=checked, first_bad=checked + 1, problem=problem)


def verify_file(
    path: str | os.PathLike[str], *, key: bytes | str | None = FROM_ENV, expect: Head | None = None
) -> VerifyReport:
    """Verify a JSONL audit log (`key`: SYNCTWIN_AUDIT_KEY); a line that is not a record is tampered,
    and so is a missing log whose head file remains, or with `expect`. It must end on FILE.head when
    there is one, and on `expect`. InvalidInput only when the file itself cannot be read."""
    log, hmac_key = Path(path), resolve_key(key)
    heads = [expect] if expect is not None else []
    with _locked(log) as fh:
        try:
            stored = read_head_file(log)
        except InvalidInput as exc:  # the head is part of the audit trail: a damaged one is tampering
            return _tampered(0, str(exc))
        if fh is None:
            if stored is not None:
                return _tampered(
                    0, f"the log is missing, but its head file says {stored.records} records: it was deleted"
                )
            if expect is not None:
                count = "its records" if expect.records is None else f"{expect.records} records"
                return _tampered(0, f"the log is missing, but --expect-head expects {count}: it was deleted")
            raise InvalidInput("no such audit log file", source=str(log))
        where = f"head file {log}.head"
        gen = _file_entries(fh)
        try:
            report = verify_chain(gen, key=hmac_key, heads=heads + ([stored.as_head(where)] if stored else []))
        finally:
            gen.close()
        return check_beside(report, stored, where, hmac_key)


# ---------------------------------------------------------------------------------------- Redis
def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else str(value)


def _entry_fields(fields: Mapping[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in fields.items()}


def _stream_fields(rec: Mapping[str, Any]) -> dict[str, str]:
    """XADD fields: a few for XRANGE readers and filters, plus the whole record."""
    seq, named = str(rec["seq"]), {k: rec[k] for k in ("event_type", "hash", "prev_hash")}
    return {"seq": seq, **named, "record": canonical_json(rec)}


def _entry_to_record(entry_id: str, fields: dict[str, str]) -> dict[str, Any] | Malformed:
    """The record stored in one stream entry, or Malformed saying what is wrong with it."""
    if "record" not in fields:
        return Malformed(f"stream entry {entry_id} has no 'record' field")
    try:
        rec = json.loads(fields["record"])
    except json.JSONDecodeError as exc:
        return Malformed(f"stream entry {entry_id}: 'record' is not valid JSON ({exc.msg})")
    if not isinstance(rec, dict):
        return Malformed(f"stream entry {entry_id}: 'record' is not a JSON object")
    seq = rec.get("seq") if isinstance(rec.get("seq"), int) else None
    for name in ("seq", "event_type", "hash", "prev_hash"):
        if name in fields and name in rec and fields[name] != str(rec[name]):
            return Malformed(
                f"stream entry {entry_id}: field '{name}' ({fields[name]!r}) disagrees "
                f"with the stored record ({rec[name]!r})",
                seq=seq,
            )
    return rec


def _iter_stream(client: Any, key: str, last: str = "+") -> Iterator[tuple[str, dict[str, str]]]:
    """All entries of a stream up to id `last`, oldest first, in batches (one huge XRANGE would block Redis)."""
    import redis

    start = "-"
    while True:
        try:
            entries = client.xrange(key, min=start, max=last, count=1000)
        except redis.exceptions.ResponseError as exc:
            if "WRONGTYPE" in str(exc):
                kind = _text(client.type(key))
                raise InvalidInput(f"holds a {kind}, not a stream", source=f"Redis key {key}") from None
            raise
        for entry_id, fields in entries:
            yield _text(entry_id), _entry_fields(fields)
        if len(entries) < 1000:
            return
        start = "(" + _text(entries[-1][0])


class RedisAuditStore:
    """Records in a Redis stream (never trimmed), chained with optimistic concurrency: WATCH, read
    the head (XREVRANGE COUNT 1), XADD in MULTI/EXEC, retried on the new head after a WatchError, so
    concurrent writers keep one chain. The same MULTI replaces `{key}:head`; an append refuses when
    it shows lost or rewritten records. `hmac_key` defaults to SYNCTWIN_AUDIT_KEY."""

    MAX_ATTEMPTS = 1000  # before an append gives up on WatchErrors

    def __init__(
        self,
        client: Any,
        key: str = "synctwin:audit",
        clock: Clock = time.time,
        *,
        hmac_key: bytes | str | None = FROM_ENV,
    ) -> None:
        self.client = client
        self.key = key
        self.head_key = head_key(key)
        self._hmac_key = resolve_key(hmac_key)
        self._clock = clock
        self.retries = 0  # WatchError retries so far: a measure of contention

    def _prev(self, conn: Any) -> dict[str, Any] | None:
        """The head record to chain on; InvalidInput when it is not a record, or when the head kept
        beside the stream shows records were removed or rewritten. The kept head is read first: a
        writer committing in between then leaves it behind (tolerated, and EXEC fails on the WATCH),
        never ahead, which would look like a truncation."""
        raw = conn.hgetall(self.head_key)
        entries = conn.xrevrange(self.key, count=1)
        prev = None
        if entries:
            rec = _entry_to_record(_text(entries[0][0]), _entry_fields(entries[0][1]))
            problem = rec.reason if isinstance(rec, Malformed) else _shape_error(rec)
            if problem:
                raise InvalidInput(
                    f"the head of the audit stream is not a valid record ({problem}); refusing to append",
                    source=f"Redis key {self.key}",
                )
            prev = rec
        stored = StoredHead.parse(_entry_fields(raw), f"Redis key {self.head_key}") if raw else None
        problem = append_problem(stored, prev, self._hmac_key)
        if problem:
            raise InvalidInput(problem, source=f"Redis key {self.key}")
        return prev

    def check_appendable(self) -> None:
        """Raise now the InvalidInput the next append would (a damaged head, a keyed stream and no key),
        so a long-running worker says so at startup, not at its first audited decision hours later."""
        prev = self._prev(self.client)
        if prev is not None and self._hmac_key is None and is_hmac(prev):
            raise InvalidInput(
                "the audit stream is HMAC-chained: set SYNCTWIN_AUDIT_KEY to append to it",
                source=f"Redis key {self.key}",
            )

    def queue(self, pipe: Any, rec: Mapping[str, Any]) -> None:
        """In a caller's MULTI: XADD the record prepared by `prepare` and replace the head with it."""
        pipe.xadd(self.key, _stream_fields(rec))
        pipe.hset(self.head_key, mapping=StoredHead.of(rec, self._hmac_key).fields())

    def append(self, event_type: str, **fields: Unpack[RecordFields]) -> dict[str, Any]:
        """WATCH, read head, MULTI/XADD/EXEC; retry on WatchError with a little jitter."""
        from redis.exceptions import WatchError

        for attempt in range(self.MAX_ATTEMPTS):
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    rec, _ = self.prepare(pipe, event_type, **fields)
                    pipe.multi()
                    self.queue(pipe, rec)
                    pipe.execute()
                    return rec
                except WatchError:
                    self.retries += 1
            if attempt >= 2:  # back off a little so a crowd of writers stops colliding
                time.sleep(random.uniform(0, min(0.02, 0.0005 * 2 ** min(attempt, 10))))
        raise RuntimeError(
            f"could not append to {self.key} after {self.MAX_ATTEMPTS} attempts (too many concurrent writers)"
        )

    def prepare(
        self, pipe: Any, event_type: str, **fields: Unpack[RecordFields]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """For a caller's own transaction: WATCH the stream and its head on `pipe` (immediate mode) and
        return the next record with its XADD fields; the caller then calls `pipe.multi()`,
        `store.queue(pipe, rec)` beside its own writes and `execute()` (WatchError: start again)."""
        pipe.watch(self.key, self.head_key)
        rec = make_record(self._prev(pipe), event_type, ts=self._clock(), key=self._hmac_key, **fields)
        return rec, _stream_fields(rec)

    def records(self) -> list[dict[str, Any]]:
        """Every record, oldest first; InvalidInput names the first entry that is not one."""
        out: list[dict[str, Any]] = []
        for entry_id, fields in _iter_stream(self.client, self.key):
            rec = _entry_to_record(entry_id, fields)
            if isinstance(rec, Malformed):
                raise InvalidInput(rec.reason, source=f"Redis key {self.key}")
            out.append(rec)
        return out

    def verify(self, expect: Head | None = None) -> VerifyReport:
        """Check the stream's chain and head (see `verify_redis`) with this store's key."""
        return verify_redis(self.client, self.key, hmac_key=self._hmac_key, expect=expect)


def verify_redis(
    client: Any, key: str = "synctwin:audit", *, hmac_key: bytes | str | None = FROM_ENV, expect: Head | None = None
) -> VerifyReport:
    """Verify the chain in a Redis stream (missing: an empty log); garbage entries are tampered
    records, and so are stream fields (`seq`, `event_type`, `hash`, `prev_hash`) that disagree with
    the stored `record`. It must end on `{key}:head` when there is one, and on `expect`. The head and
    the last entry's id are read in one MULTI, the stream up to it: appends meanwhile are no forgery."""
    hkey = resolve_key(hmac_key)
    import redis

    with client.pipeline(transaction=True) as pipe:
        pipe.hgetall(head_key(key))
        pipe.xrevrange(key, count=1)
        try:
            raw_head, last = pipe.execute()
        except redis.exceptions.ResponseError as exc:
            if "WRONGTYPE" not in str(exc):
                raise
            kind = _text(client.type(key))
            if kind not in ("stream", "none"):
                raise InvalidInput(f"holds a {kind}, not a stream", source=f"Redis key {key}") from None
            kind = _text(client.type(head_key(key)))
            raise InvalidInput(
                f"holds a {kind}, not an audit head (a hash)", source=f"Redis key {head_key(key)}"
            ) from None
    try:
        stored = StoredHead.parse(_entry_fields(raw_head), f"Redis key {head_key(key)}") if raw_head else None
    except InvalidInput as exc:  # the head is part of the audit trail: a damaged one is tampering
        return _tampered(0, str(exc))
    where = f"Redis key {head_key(key)}"
    last_id = _text(last[0][0]) if last else None
    heads = ([expect] if expect is not None else []) + ([stored.as_head(where)] if stored else [])
    entries = (_entry_to_record(eid, f) for eid, f in _iter_stream(client, key, last=last_id)) if last_id else ()
    return check_beside(verify_chain(entries, key=hkey, heads=heads), stored, where, hkey)
