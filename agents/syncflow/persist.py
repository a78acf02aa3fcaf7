"""SyncFlow's per-campaign guard state as a flat hash of JSON strings, versioned.

Flat, so a store writes only the fields that changed (the budget stop's on a runaway tick, the
slow guards' at their checks, the bookkeeping at every event) and reads the hash whole at a takeover.
Fields: `v` (the version below), `launched_at` (another launch's state is not continued), `flow`
(the bookkeeping the guards are fed from) and one per guard, by its name.
"""

from __future__ import annotations

import json
from typing import Any

VERSION = 1


def encode(state: dict[str, Any]) -> dict[str, str]:
    """`SyncFlow.guard_state`'s dict as hash fields."""
    out = {"v": str(state["v"]), "launched_at": repr(float(state["launched_at"])), "flow": _dumps(state["flow"])}
    return out | {name: _dumps(guard) for name, guard in state["guards"].items()}


def decode(fields: dict[str, str]) -> dict[str, Any]:
    """Hash fields back to `SyncFlow.guard_state`'s dict; ValueError naming what is wrong."""
    try:
        version = int(fields["v"])
        if version != VERSION:
            raise ValueError(f"version {version}, this worker reads version {VERSION}")
        guards = {k: json.loads(v) for k, v in fields.items() if k not in ("v", "launched_at", "flow")}
        return {
            "v": version,
            "launched_at": float(fields["launched_at"]),
            "flow": json.loads(fields["flow"]),
            "guards": guards,
        }
    except KeyError as exc:
        raise ValueError(f"no field {exc}") from None
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(str(exc)) from None


_ENCODER = json.JSONEncoder(separators=(",", ":"))
# json.dumps makes an encoder and its C iterator per call: most of what a small state's text costs a
# worker (every touched campaign, every batch). This is that iterator, made once (states are trees:
# no circular check); json.dumps's text, byte for byte.
_ITERENCODE = json.encoder.c_make_encoder and json.encoder.c_make_encoder(
    None, _ENCODER.default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True
)


def _dumps(value: Any) -> str:
    return "".join(_ITERENCODE(value, 0)) if _ITERENCODE else _ENCODER.encode(value)
