"""The audit trail's anchors, attacked from the outside: `synctwin audit verify` in a subprocess.

The attacker can write every file on the machine (the log and the head file beside it) but has
neither SYNCTWIN_AUDIT_KEY nor the head kept elsewhere. Four attacks, each against each option:
- truncation (drop the last record), a forged record appended with a recomputed hash, a rewritten
  tail (the last two records replaced, re-chained), an emptied log;
- the plain chain alone, the head file beside the log, `--expect-head` kept elsewhere, the key.
Where an option cannot catch an attack, the test asserts that it says intact: the documented limit
(docs/audit.md), which must not silently change.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis

from agents.syncshield import JsonlAuditStore, RedisAuditStore, canonical_json, verify_file, verify_redis
from agents.syncshield.anchors import head_path
from agents.syncshield.chain import GENESIS_HASH, HMAC_SCHEME, parse_head
from synctwin.kernel.errors import InvalidInput

REPO = Path(__file__).resolve().parents[1]
KEY = "k3y-for-the-audit-trail-tests-0123456789"
WRONG_KEY = "an0ther-key-that-is-long-enough-9876543210"
N = 5


def verify(*args: str, key: str | None = None) -> tuple[int, str]:
    """`synctwin audit verify ARGS` in a fresh process; (exit code, stdout + stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCTWIN_")}
    env["SYNCTWIN_CONFIG_FILE"] = os.devnull
    if key is not None:
        env["SYNCTWIN_AUDIT_KEY"] = key
    proc = subprocess.run(
        [sys.executable, "-m", "synctwin.app.cli", "audit", "verify", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout + proc.stderr


def write_log(path: Path, key: str | None, n: int = N) -> list[dict[str, Any]]:
    """A log written the way every command writes one (the store), with a deterministic clock."""
    ticks = iter(range(1_767_225_600, 1_767_225_600 + 1000))
    store = JsonlAuditStore(path, clock=lambda: float(next(ticks)), hmac_key=key)
    return [
        store.append("CAMPAIGN_APPROVED", client_id="acme", campaign_id=f"c{i}", metadata={"i": i}) for i in range(n)
    ]


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def put(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(canonical_json(r) + "\n" for r in records))


def forge(prev: dict[str, Any] | None, what: str, attacker_key: bytes | None = None) -> dict[str, Any]:
    """A record as an attacker builds it: chained on `prev` with a freshly computed SHA-256 (or an
    HMAC under a key of the attacker's own, marked as the real ones are)."""
    rec: dict[str, Any] = {
        "seq": (prev["seq"] + 1) if prev else 1,
        "ts": 1_767_230_000.0,
        "event_type": "CAMPAIGN_APPROVED",
        "client_id": "mallory",
        "campaign_id": what,
        "reason": None,
        "metadata": {"forged": True},
        "prev_hash": prev["hash"] if prev else GENESIS_HASH,
    }
    if attacker_key is not None:
        rec["chain"] = HMAC_SCHEME
    body = canonical_json(rec).encode()
    rec["hash"] = (
        hmac.new(attacker_key, body, hashlib.sha256).hexdigest() if attacker_key else hashlib.sha256(body).hexdigest()
    )
    return rec


# ----------------------------------------------------------------------------------- the attacks
def truncate(path: Path) -> None:
    put(path, lines(path)[:-1])


def forged_append(path: Path) -> None:
    recs = lines(path)
    put(path, [*recs, forge(recs[-1], "forged-append")])


def rewritten_tail(path: Path) -> None:
    recs = lines(path)[:-2]
    first = forge(recs[-1], "rewritten-1")
    put(path, [*recs, first, forge(first, "rewritten-2")])


def emptied(path: Path) -> None:
    path.write_text("")


ATTACKS: dict[str, Callable[[Path], None]] = {
    "truncation": truncate,
    "forged append": forged_append,
    "rewritten tail": rewritten_tail,
    "emptied": emptied,
}


def recompute_head(path: Path) -> None:
    """What an attacker does to the head file after the attack: make it agree with the log
    (delete it when the log is empty: no append ever writes a head of 0 records)."""
    recs = lines(path) if path.read_text() else []
    if not recs:
        head_path(path).unlink(missing_ok=True)
        return
    head_path(path).write_text(json.dumps({"head": recs[-1]["hash"], "records": len(recs)}))


# ------------------------------------------------------------------------------- before: the limit
@pytest.mark.parametrize("attack", ATTACKS)
def test_the_plain_chain_alone_cannot_see_these_attacks(tmp_path: Path, attack: str) -> None:
    """The documented limit of a hash chain: with no head kept anywhere (a log from before heads,
    or its head file deleted), each of these attacks leaves a log that verifies."""
    log = tmp_path / "audit.jsonl"
    write_log(log, key=None)
    head_path(log).unlink()
    ATTACKS[attack](log)
    code, out = verify(str(log))
    assert code == 0 and out.startswith("intact: "), out
    assert "no head kept to check against" in out


@pytest.mark.parametrize("attack", ATTACKS)
def test_the_head_file_beside_the_log_catches_each_attack_it_is_not_rewritten_for(tmp_path: Path, attack: str) -> None:
    log = tmp_path / "audit.jsonl"
    write_log(log, key=None)
    ATTACKS[attack](log)
    code, out = verify(str(log))
    assert code == 1 and out.startswith("tampered: "), out
    expected = {
        "truncation": f"truncated by 1 record(s): the log ends at record {N - 1}",
        "forged append": f"record {N + 1} and after: 1 extra record(s) after the head in head file",
        "rewritten tail": f"record {N}: a different history",
        "emptied": f"truncated by {N} record(s)",
    }[attack]
    assert expected in out, out
    assert "Traceback" not in out


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_head_file_rewritten_by_the_attacker_hides_each_attack(tmp_path: Path, attack: str) -> None:
    """The head file lives beside the log: whoever can rewrite the log can rewrite it too. It
    catches accidents and careless tampering, not a deliberate attacker (the documented limit)."""
    log = tmp_path / "audit.jsonl"
    write_log(log, key=None)
    ATTACKS[attack](log)
    recompute_head(log)
    code, out = verify(str(log))
    assert code == 0 and out.startswith("intact: "), out


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("head_file", ["rewritten", "deleted"])
def test_expect_head_kept_elsewhere_catches_each_attack(tmp_path: Path, attack: str, head_file: str) -> None:
    log = tmp_path / "audit.jsonl"
    write_log(log, key=None)
    code, out = verify(str(log))
    kept = out.strip().splitlines()[-1]  # "head HASH (N records)": what the operator keeps elsewhere
    assert code == 0 and kept.startswith("head ") and kept.endswith(f"({N} records)"), out
    anchor = f"{kept.split()[1]}:{N}"
    ATTACKS[attack](log)
    if head_file == "rewritten":
        recompute_head(log)
    else:
        head_path(log).unlink(missing_ok=True)
    code, out = verify(str(log), "--expect-head", anchor)
    assert code == 1 and out.startswith("tampered: "), out
    expected = {
        "truncation": "truncated by 1 record(s)",
        "forged append": "1 extra record(s) after the head in --expect-head",
        "rewritten tail": f"record {N}: a different history",
        "emptied": f"truncated by {N} record(s)",
    }[attack]
    assert expected in out, out
    # the hash alone (without :N) still catches it, with a vaguer reason for the shorter logs
    code, out = verify(str(log), "--expect-head", anchor.split(":")[0])
    assert code == 1, out


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("head_file", ["rewritten", "deleted"])
def test_the_hmac_key_catches_what_nobody_without_it_can_redo(tmp_path: Path, attack: str, head_file: str) -> None:
    """With SYNCTWIN_AUDIT_KEY: a forged or rewritten record cannot get a valid HMAC (plain, or
    under the attacker's own key), and the head beside the log carries a MAC, so a truncation
    cannot be covered by rewriting it or by deleting it. An emptied log with its head deleted
    looks like a log never written: only --expect-head catches that (the documented limit)."""
    log = tmp_path / "audit.jsonl"
    write_log(log, key=KEY)
    assert all(r["chain"] == HMAC_SCHEME for r in lines(log))
    assert KEY not in log.read_text() + head_path(log).read_text()  # the key is never stored
    ATTACKS[attack](log)
    if head_file == "rewritten":
        recompute_head(log)
    else:
        head_path(log).unlink(missing_ok=True)
    code, out = verify(str(log), key=KEY)
    if attack == "emptied":
        assert code == 0 and "intact: 0 records" in out, out  # the limit: nothing left to check
        return
    assert code == 1 and out.startswith("tampered: "), out
    if attack in ("forged append", "rewritten tail"):
        assert "without SYNCTWIN_AUDIT_KEY" in out, out  # a plain record after HMAC ones
    else:
        assert ("missing" if head_file == "deleted" else "has no MAC") in out, out


def test_a_forged_record_under_another_key_fails_as_an_hmac_mismatch(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    write_log(log, key=KEY)
    recs = lines(log)
    put(log, [*recs, forge(recs[-1], "forged", attacker_key=WRONG_KEY.encode())])
    recompute_head(log)
    code, out = verify(str(log), key=KEY)
    assert code == 1 and f"record {N + 1} (seq {N + 1}): content does not match its HMAC" in out, out


def test_a_replayed_old_log_and_head_pass_the_key_but_not_expect_head(tmp_path: Path) -> None:
    """Rollback: the attacker kept a copy of the log and its head from earlier and puts both back.
    Both are genuine, so the key cannot tell; the head kept elsewhere can."""
    log = tmp_path / "audit.jsonl"
    write_log(log, key=KEY, n=3)
    old_log, old_head = log.read_bytes(), head_path(log).read_bytes()
    store = JsonlAuditStore(log, hmac_key=KEY)
    store.append("CAMPAIGN_REJECTED", campaign_id="late")
    code, out = verify(str(log), key=KEY)
    anchor = out.strip().splitlines()[-1].split()[1]
    log.write_bytes(old_log)
    head_path(log).write_bytes(old_head)
    assert verify(str(log), key=KEY)[0] == 0
    code, out = verify(str(log), "--expect-head", anchor, key=KEY)
    assert code == 1 and "is not in the log of 3 records" in out, out


# --------------------------------------------------------------------------------------- keys
def test_verify_with_a_wrong_key_or_none_fails_at_the_first_record(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    write_log(log, key=KEY)
    code, out = verify(str(log), key=KEY)
    assert code == 0 and "HMAC-SHA256 chain" in out, out
    for key in (WRONG_KEY, None):
        code, out = verify(str(log), key=key)
        assert (
            code == 1
            and out.startswith("tampered: record 1 (seq 1): ")
            and "wrong or missing SYNCTWIN_AUDIT_KEY" in out
        ), (key, out)
        assert KEY not in out and WRONG_KEY not in out


def test_a_short_key_is_refused_without_showing_it(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    write_log(log, key=None)
    code, out = verify(str(log), key="hunter2")
    assert code == 2 and "SYNCTWIN_AUDIT_KEY is too short" in out and "hunter2" not in out, out


def test_a_plain_log_verifies_as_before_and_the_key_rejects_it(tmp_path: Path) -> None:
    """Backward compatible: a log written without a key verifies without one. With a key set, a
    log with no HMAC record is refused: it may be a keyed log rewritten by someone without the key."""
    log = tmp_path / "audit.jsonl"
    write_log(log, key=None)
    head_path(log).unlink()  # as written before heads existed
    assert verify(str(log))[0] == 0
    code, out = verify(str(log), key=KEY)
    assert code == 1 and "no record is HMAC-chained although SYNCTWIN_AUDIT_KEY is set" in out, out


def test_a_plain_log_moves_to_a_key_and_its_plain_prefix_stays_protected(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    write_log(log, key=None, n=3)
    JsonlAuditStore(log, hmac_key=KEY).append("KEY_INTRODUCED")
    code, out = verify(str(log), key=KEY)
    assert code == 0 and "HMAC-SHA256 chain from record 4" in out, out
    recs = lines(log)
    recs[1]["metadata"] = {"i": 99}  # edit a plain record and recompute its hash and the next link:
    recs[1]["hash"] = hashlib.sha256(
        canonical_json({k: v for k, v in recs[1].items() if k != "hash"}).encode()
    ).hexdigest()
    recs[2]["prev_hash"] = recs[1]["hash"]
    recs[2]["hash"] = hashlib.sha256(
        canonical_json({k: v for k, v in recs[2].items() if k != "hash"}).encode()
    ).hexdigest()
    put(log, recs)
    code, out = verify(str(log), key=KEY)
    assert code == 1 and out.startswith("tampered: record 4 (seq 4): prev_hash does not match"), out


def test_appending_without_the_key_to_a_keyed_log_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    write_log(log, key=KEY, n=2)
    before = log.read_bytes()
    with pytest.raises(InvalidInput, match="HMAC-chained: set SYNCTWIN_AUDIT_KEY"):
        JsonlAuditStore(log, hmac_key=None).append("E")
    assert log.read_bytes() == before


# ------------------------------------------------------------------------ the writers keep heads
def test_an_append_after_a_truncation_is_refused_instead_of_hiding_it(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    write_log(log, key=None)
    truncate(log)
    before = log.read_bytes()
    with pytest.raises(InvalidInput, match="holds 4 records but its head says 5"):
        JsonlAuditStore(log, hmac_key=None).append("E")
    assert log.read_bytes() == before
    rewritten_tail(log)  # same length as the head says, another history
    recompute = lines(log)
    head_path(log).write_text(json.dumps({"head": recompute[-2]["hash"], "records": len(recompute)}))
    with pytest.raises(InvalidInput, match="rewritten"):
        JsonlAuditStore(log, hmac_key=None).append("E")


def test_a_head_behind_the_log_is_tolerated_and_caught_up(tmp_path: Path) -> None:
    """A writer that died between its record and its head leaves the head one behind: verify
    flags the extra record, and the next append writes the right head again."""
    log = tmp_path / "audit.jsonl"
    recs = write_log(log, key=None, n=3)
    head_path(log).write_text(json.dumps({"head": recs[1]["hash"], "records": 2}))
    assert "1 extra record(s)" in verify(str(log))[1]
    JsonlAuditStore(log, hmac_key=None).append("E")
    assert verify(str(log))[0] == 0


def test_a_damaged_or_zero_head_file_is_tampering(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    write_log(log, key=None)
    for text in (
        "not json",
        json.dumps({"head": "xyz", "records": 3}),
        json.dumps({"head": GENESIS_HASH, "records": 0}),
    ):
        head_path(log).write_text(text)
        code, out = verify(str(log))
        assert code == 1 and out.startswith("tampered: ") and ".head" in out, out


def test_a_deleted_log_whose_head_remains_is_tampering(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    write_log(log, key=None)
    log.unlink()
    code, out = verify(str(log))
    assert code == 1 and "the log is missing, but its head file says 5 records" in out, out
    head_path(log).unlink()
    assert verify(str(log))[0] == 2  # nothing at all: invalid input, as before
    code, out = verify(str(log), "--expect-head", f"{'a' * 64}:5")
    assert code == 1 and "the log is missing, but --expect-head expects 5 records" in out, out


@pytest.mark.parametrize("bad", ["abc", "0" * 63, "g" * 64, f"{'a' * 64}:x", f"{'a' * 64}:-1", f"{'a' * 64}:0"])
def test_a_malformed_expect_head_is_invalid_input(tmp_path: Path, bad: str) -> None:
    log = tmp_path / "audit.jsonl"
    write_log(log, key=None)
    code, out = verify(str(log), "--expect-head", bad)
    assert code == 2 and "--expect-head" in out, out


def test_expect_head_of_the_right_head_passes_and_of_the_empty_log_catches_any_record(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    recs = write_log(log, key=None)
    assert verify(str(log), "--expect-head", f"{recs[-1]['hash']}:{N}")[0] == 0
    assert verify(str(log), "--expect-head", recs[-1]["hash"].upper())[0] == 0
    code, out = verify(str(log), "--expect-head", GENESIS_HASH)
    assert code == 1 and f"{N} record(s) after the head in --expect-head, which is the empty log" in out, out
    assert parse_head(f"{recs[2]['hash']}:3").records == 3


# ------------------------------------------------------------------------------------------ Redis
def _redis_url(server: Any) -> str:
    return str(server.url)


@pytest.mark.redis
def test_redis_head_catches_truncation_forgery_and_emptying(redis_server: Any, redis_client: redis.Redis) -> None:
    stream = "synctwin:audit"
    store = RedisAuditStore(redis_client, key=stream, hmac_key=None)
    for i in range(N):
        store.append("E", metadata={"i": i})
    url = _redis_url(redis_server)
    code, out = verify("--redis", url)
    assert code == 0 and "checked against Redis key synctwin:audit:head" in out, out
    assert redis_client.hgetall(f"{stream}:head")["records"] == str(N)
    ids = [eid for eid, _ in redis_client.xrange(stream)]
    saved = redis_client.xrange(stream)
    redis_client.xdel(stream, ids[-1])  # truncation
    code, out = verify("--redis", url)
    assert code == 1 and "truncated by 1 record(s)" in out, out
    last = json.loads(saved[-2][1]["record"])
    rec = forge(last, "forged")
    redis_client.xadd(
        stream,
        {
            "seq": str(rec["seq"]),
            "event_type": rec["event_type"],
            "hash": rec["hash"],
            "prev_hash": rec["prev_hash"],
            "record": canonical_json(rec),
        },
    )
    code, out = verify("--redis", url)  # a forged record where the real one was: another history
    assert code == 1 and f"record {N}: a different history" in out, out
    redis_client.delete(stream)  # emptied
    code, out = verify("--redis", url)
    assert code == 1 and f"truncated by {N} record(s)" in out, out
    redis_client.delete(f"{stream}:head")  # and the head too: the plain chain alone sees nothing
    assert verify("--redis", url)[0] == 0


@pytest.mark.redis
def test_redis_hmac_chain_and_head_mac(redis_server: Any, redis_client: redis.Redis) -> None:
    stream = "synctwin:audit"
    store = RedisAuditStore(redis_client, key=stream, hmac_key=KEY)
    recs = [store.append("E", metadata={"i": i}) for i in range(3)]
    url = _redis_url(redis_server)
    assert verify("--redis", url, key=KEY)[0] == 0
    code, out = verify("--redis", url, key=WRONG_KEY)
    assert code == 1 and "wrong or missing SYNCTWIN_AUDIT_KEY" in out, out
    # truncation covered by a head rewritten without the key: its MAC gives it away
    redis_client.xdel(stream, redis_client.xrevrange(stream, count=1)[0][0])
    redis_client.hset(f"{stream}:head", mapping={"head": recs[1]["hash"], "records": "2", "mac": "0" * 64})
    code, out = verify("--redis", url, key=KEY)
    assert code == 1 and "MAC does not check out" in out, out
    redis_client.hdel(f"{stream}:head", "mac")
    code, out = verify("--redis", url, key=KEY)
    assert code == 1 and "has no MAC" in out, out


def test_the_prepare_path_keeps_the_head_and_the_hmac_in_the_callers_transaction() -> None:
    """`prepare` + `queue` (how the mirror, shadow and gate write an audit record beside their own
    writes): the record is HMAC-chained and the head moves in the same MULTI."""
    fake = fakeredis.FakeRedis(decode_responses=True)
    store = RedisAuditStore(fake, key="p:audit", hmac_key=KEY)
    store.append("FIRST")
    with fake.pipeline(transaction=True) as pipe:
        rec, _fields = store.prepare(pipe, "AUTO_ROLLBACK_TRIGGERED", campaign_id="c1", metadata={"d": 0.3})
        pipe.multi()
        pipe.set("p:campaign:c1:status", "PAUSED")
        store.queue(pipe, rec)
        pipe.execute()
    assert rec["chain"] == HMAC_SCHEME and fake.hgetall("p:audit:head")["head"] == rec["hash"]
    assert verify_redis(fake, "p:audit", hmac_key=KEY).ok
    report = verify_redis(fake, "p:audit", hmac_key=None)
    assert not report.ok and "wrong or missing SYNCTWIN_AUDIT_KEY" in str(report.problem)


def test_store_verify_uses_its_key_and_an_expected_head(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    store = JsonlAuditStore(log, hmac_key=KEY)
    recs = [store.append("E") for _ in range(3)]
    assert store.verify().ok and store.verify().hmac_from == 1
    assert not store.verify(expect=parse_head(recs[1]["hash"])).ok
    assert not verify_file(log, key=None).ok


@pytest.mark.redis
@pytest.mark.parametrize("command", ["mirror", "shadow"])
def test_a_worker_refuses_to_start_on_a_keyed_stream_without_the_key(
    redis_server: Any, redis_client: redis.Redis, command: str
) -> None:
    """Without the check the worker would run and stop at its first audited decision, hours later."""
    store = RedisAuditStore(redis_client, key="synctwin:audit", hmac_key=KEY)
    store.append("CAMPAIGN_APPROVED", campaign_id="c1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCTWIN_")}
    env |= {"SYNCTWIN_CONFIG_FILE": os.devnull}
    args = [sys.executable, "-m", "synctwin.app.cli", command, "--redis", _redis_url(redis_server), "--consumer", "w"]
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "HMAC-chained: set SYNCTWIN_AUDIT_KEY" in proc.stderr and "Traceback" not in proc.stderr
    redis_client.xdel("synctwin:audit", redis_client.xrange("synctwin:audit")[0][0])  # emptied under its head
    proc = subprocess.run(
        args, cwd=REPO, env=env | {"SYNCTWIN_AUDIT_KEY": KEY}, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "holds 0 records but its head says 1" in proc.stderr, proc.stderr
