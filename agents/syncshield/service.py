"""SyncShield: the Council's audit trail, a thin service over one AuditStore.

The service adds nothing to the records; it exists so callers depend on `log`/`log_audit_event`
(the seed's call shape) rather than on where the log is kept."""

from __future__ import annotations

from typing import Any, cast

from synctwin.kernel.errors import InvalidInput

from .backends import AuditStore, InMemoryAuditStore
from .chain import RecordFields, VerifyReport, verify_chain


class SyncShield:
    """Append audit events to a hash-chained store and check it."""

    def __init__(self, store: AuditStore | None = None) -> None:
        self.store: AuditStore = store if store is not None else InMemoryAuditStore()

    def log(self, event_type: str, **fields: Any) -> dict[str, Any]:
        """Append one event (`fields`: RecordFields); unknown names are refused, not dropped: an entry
        that lost part of what the caller meant to record is worse than a loud error."""
        unknown = sorted(set(fields) - RecordFields.__annotations__.keys())
        if unknown:
            raise InvalidInput(f"unknown audit field(s): {', '.join(unknown)}", field=unknown[0])
        return self.store.append(event_type, **fields)

    async def log_audit_event(
        self,
        event_type: str,
        client_id: str | None = None,
        reason: str | None = None,
        metadata: Any = None,
        campaign_id: str | None = None,
    ) -> dict[str, Any]:
        """The seed's `await syncshield.log_audit_event(...)`, run inline (one short write or round
        trip), which keeps events in the order the caller produced them."""
        return self.log(event_type, client_id=client_id, campaign_id=campaign_id, reason=reason, metadata=metadata)

    def records(self) -> list[dict[str, Any]]:
        """Every record in the store, oldest first."""
        return self.store.records()

    def verify(self) -> VerifyReport:
        """Check the store's chain, with the store's own lenient reader when it has one."""
        verify = getattr(self.store, "verify", None)
        if callable(verify):
            return cast(VerifyReport, verify())
        return verify_chain(self.store.records())
