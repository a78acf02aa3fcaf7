"""Read a strategy from JSON with errors that name the file and the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from synctwin.errors import InvalidInput, describe_validation_error
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
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput("no such file", source=str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read: {exc}", source=str(p)) from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON: {exc.msg} (column {exc.colno})", source=str(p), line=exc.lineno) from None
    except ValueError as exc:
        raise InvalidInput(str(exc), source=str(p)) from None
    return strategy_from_dict(data, source=str(p))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")
