"""Where client histories live: one small port, three adapters (memory, CSV files, Redis)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol

from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.history import History, load_history, parse_history_csv

_SAFE_ID = re.compile(r"^[A-Za-z0-9_.:\-]+$")


def _check_client_id(client_id: str) -> str:
    if not _SAFE_ID.match(client_id or ""):
        raise InvalidInput(f"client_id {client_id!r} may only hold letters, digits and _ . : -", field="client_id")
    return client_id


class UnknownClient(InvalidInput):
    """No history is stored for this client."""


class HistoryStore(Protocol):
    def get(self, client_id: str) -> History: ...

    def put(self, client_id: str, history: History) -> None: ...


class InMemoryHistoryStore:
    """Histories in a dict: tests, the demo, and callers that already hold the data."""

    def __init__(self, histories: dict[str, History] | None = None) -> None:
        self._histories = dict(histories or {})

    def get(self, client_id: str) -> History:
        try:
            return self._histories[client_id]
        except KeyError:
            raise UnknownClient(f"no history for client {client_id!r}", field="client_id") from None

    def put(self, client_id: str, history: History) -> None:
        self._histories[_check_client_id(client_id)] = history


class CsvHistoryStore:
    """One `{client_id}.csv` per client in a directory (the history CSV contract)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def _path(self, client_id: str) -> Path:
        return self.directory / f"{_check_client_id(client_id)}.csv"

    def get(self, client_id: str) -> History:
        path = self._path(client_id)
        if not path.exists():
            raise UnknownClient(f"no history for client {client_id!r} ({path} does not exist)", field="client_id")
        return load_history(path)

    def put(self, client_id: str, history: History) -> None:
        path = self._path(client_id)
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".csv.tmp")
        tmp.write_text(history.to_csv(), encoding="utf-8")
        tmp.replace(path)  # atomic: a reader never sees half a file


class RedisHistoryStore:
    """The CSV text under `{prefix}client:{id}:history`: one round trip per read."""

    def __init__(self, client: Any, prefix: str = "synctwin:") -> None:
        self.client = client
        self.prefix = prefix

    def _key(self, client_id: str) -> str:
        return f"{self.prefix}client:{_check_client_id(client_id)}:history"

    def get(self, client_id: str) -> History:
        key = self._key(client_id)
        text = self.client.get(key)
        if text is None:
            raise UnknownClient(f"no history for client {client_id!r} (key {key} is empty)", field="client_id")
        return parse_history_csv(text, source=key)

    def put(self, client_id: str, history: History) -> None:
        self.client.set(self._key(client_id), history.to_csv())
