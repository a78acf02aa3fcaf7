"""Read a strategy from JSON with errors that name the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from synctwin.config import get_limits
from synctwin.errors import InvalidInput, describe_validation_error
from synctwin.files import load_json
from synctwin.models import Strategy


def strategy_from_dict(data: Any, *, source: str = "strategy") -> Strategy:
    if not isinstance(data, dict):
        raise InvalidInput(f"expected a JSON object, got {type(data).__name__}", source=source)
    try:
        return Strategy.model_validate(data)
    except ValidationError as exc:
        field, reason = describe_validation_error(exc)
        raise InvalidInput(reason, source=source, field=field) from None


def load_strategy(path: str | Path) -> Strategy:
    """A strategy JSON file, read with the size and nesting limits (SYNCTWIN_MAX_STRATEGY_BYTES,
    SYNCTWIN_MAX_JSON_DEPTH): /dev/zero or a 200k-deep array fail at once, naming the file."""
    limits = get_limits()
    data = load_json(
        path,
        max_bytes=limits.max_strategy_bytes,
        max_depth=limits.max_json_depth,
        setting="SYNCTWIN_MAX_STRATEGY_BYTES",
    )
    return strategy_from_dict(data, source=str(path))
