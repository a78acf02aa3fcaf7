"""SyncShield: an append-only, hash-chained audit log of what the Council decided and why.

`chain` holds the rules (pure functions), `backends` the stores (memory, JSONL file, Redis
stream), `service` the SyncShield facade the other agents call, `cli_verify` the check behind
`synctwin audit verify`."""

from .backends import AuditStore, InMemoryAuditStore, JsonlAuditStore, RedisAuditStore, verify_file, verify_redis
from .chain import (
    GENESIS_HASH,
    Malformed,
    VerifyReport,
    canonical_json,
    make_record,
    record_hash,
    to_jsonable,
    verify_chain,
)
from .service import SyncShield

__all__ = [
    "GENESIS_HASH",
    "AuditStore",
    "InMemoryAuditStore",
    "JsonlAuditStore",
    "Malformed",
    "RedisAuditStore",
    "SyncShield",
    "VerifyReport",
    "canonical_json",
    "make_record",
    "record_hash",
    "to_jsonable",
    "verify_chain",
    "verify_file",
    "verify_redis",
]
