"""agents/syncflow/persist.py writes a state's fields with the C iterator json.dumps builds per call,
made once: its text must be json.dumps's byte for byte (a stored field compared with a new one
would otherwise differ, and a worker would rewrite every campaign), with or without the C module."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.syncflow import persist

# what a guard state holds: numbers (non-finite too), None, strings (any text), lists and objects
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
STATES = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(), kids, max_size=5))


@given(STATES)
def test_dumps_is_json_dumps(value: Any) -> None:
    assert persist._dumps(value) == json.dumps(value, separators=(",", ":"))


@given(STATES)
def test_dumps_without_the_c_iterator_is_json_dumps(value: Any) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(persist, "_ITERENCODE", None)
        assert persist._dumps(value) == json.dumps(value, separators=(",", ":"))


def test_dumps_refuses_what_json_refuses() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        persist._dumps({"x": object()})
