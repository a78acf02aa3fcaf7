"""Plain JSON from whatever a caller hands us (numpy, pydantic, dataclasses, datetimes...).

Shared by every agent that stores or sends structured data (audit records, alerts, Redis
messages), so all of them serialise the same way."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import uuid
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np


def canonical_json(obj: Any) -> str:
    """The one serialisation that is hashed and stored: sorted keys, no spaces, no NaN (not JSON:
    another reader would reject or re-serialise it, breaking the hash)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def utf8_safe(text: str) -> str:
    """Lone surrogates cannot be written as UTF-8; escape them rather than fail to log."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _key(key: Any) -> str:
    if isinstance(key, str):
        return utf8_safe(key)
    if isinstance(key, enum.Enum):
        return str(key.value)
    if isinstance(key, np.generic):
        return str(key.item())
    return str(key)


def to_jsonable(obj: Any) -> Any:
    """Anything a caller may put in `metadata` as plain JSON values (numpy, containers, pydantic,
    dataclasses, enums, datetimes, Decimal, UUID, paths); NaN and infinities become None, anything
    else its `str()`, so logging an event never fails because of what is in it."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, float):  # also numpy.float64, a float subclass
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, int) and not isinstance(obj, enum.Enum):
        return int(obj)
    if isinstance(obj, str) and not isinstance(obj, enum.Enum):
        return utf8_safe(str.__str__(obj))
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, Mapping):
        return {_key(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, set | frozenset):
        items = [to_jsonable(v) for v in obj]
        return sorted(items, key=canonical_json)  # sets have no order; the hash needs one
    if not isinstance(obj, type):
        dump = getattr(obj, "model_dump", None)
        if callable(dump):  # a pydantic v2 model
            return to_jsonable(dump(mode="json"))
        if dataclasses.is_dataclass(obj):
            return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, dt.datetime | dt.date | dt.time):
        return obj.isoformat()
    if isinstance(obj, dt.timedelta):
        return obj.total_seconds()
    if isinstance(obj, decimal.Decimal):
        return to_jsonable(float(obj))
    if isinstance(obj, bytes | bytearray):
        return bytes(obj).decode("utf-8", "backslashreplace")
    if isinstance(obj, uuid.UUID | PurePath):
        return str(obj)
    if isinstance(obj, BaseException):
        return f"{type(obj).__name__}: {obj}"
    return utf8_safe(str(obj))
