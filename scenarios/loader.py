"""Finding and reading scenario files: built-ins by name, or any YAML file by path."""

from __future__ import annotations

import re
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from scenarios.schema import Scenario
from scenarios.yaml_guard import load_yaml
from synctwin.kernel.config import get_limits
from synctwin.kernel.errors import InvalidInput, describe_validation_error
from synctwin.kernel.files import read_capped
from synctwin.kernel.strategy_io import strategy_from_request


def builtin_dir() -> Path:
    with as_file(files("scenarios") / "builtin") as p:
        return Path(p)


def builtin_files() -> dict[str, Path]:
    """Built-in scenarios by name (the file's stem), drills included."""
    root = builtin_dir()
    return {p.stem: p for p in sorted([*root.glob("*.yaml"), *root.glob("drills/*.yaml")])}


def list_builtins() -> list[tuple[str, str]]:
    """(name, one-line description) of each built-in, in name order."""
    described = {name: read_yaml(path) or {} for name, path in builtin_files().items()}
    return [(name, " ".join(str(data.get("description", "")).split())) for name, data in described.items()]


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A built-in by name, or a YAML file; errors name the file and the field."""
    builtins = builtin_files()
    path = builtins.get(str(name_or_path)) or Path(name_or_path)
    if not path.exists():
        known = ", ".join(builtins)
        raise InvalidInput(f"no such scenario file or built-in (built-ins: {known})", source=str(name_or_path))
    return scenario_from_dict(read_yaml(path), source=str(path), base_dir=path.parent)


def read_yaml(path: Path) -> Any:
    """A scenario file's YAML, read with the size cap and parsed with the alias, expansion and
    duplicate-key checks (scenarios/yaml_guard.py): errors name the file and the line."""
    limits = get_limits()
    text = read_capped(path, limits.max_scenario_bytes, setting="SYNCTWIN_MAX_SCENARIO_BYTES")
    return load_yaml(text, source=str(path), max_aliases=limits.max_yaml_aliases, max_nodes=limits.max_yaml_nodes)


_PATH_FIRST = re.compile(r"^([A-Za-z_]\w*(?:\[\d+\])?(?:\.[A-Za-z_]\w*(?:\[\d+\])?)*): (.+)$", re.S)
_GOT_TWICE = re.compile(r"(\(got .+\)) \1$")


def _field_and_reason(exc: ValidationError) -> tuple[str | None, str]:
    """The failing field and a reason for people: pydantic's "Value error, " prefix dropped, a
    model-level message's leading path ("campaigns[1].client: ...") made the field, and a value
    our own message already quotes not quoted twice."""
    field, reason = describe_validation_error(exc)
    reason = reason.removeprefix("Value error, ")
    if field is None and (m := _PATH_FIRST.match(reason)):
        field, reason = m.group(1), m.group(2)
    return field, _GOT_TWICE.sub(r"\1", reason)


def scenario_from_dict(data: Any, *, source: str = "scenario", base_dir: Path | None = None) -> Scenario:
    """Validate a scenario; every error is an InvalidInput naming `source` and the field."""
    if not isinstance(data, dict):
        raise InvalidInput(f"expected a mapping at the top, got {type(data).__name__}", source=source)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        field, reason = _field_and_reason(exc)
        raise InvalidInput(reason, source=source, field=field) from None
    _check_strategies(scenario, source)
    return scenario.model_copy(update={"base_dir": base_dir})


def _check_strategies(scenario: Scenario, source: str) -> None:
    """Each campaign's strategy by SyncBrain's rules, as the replay will: a typo in a strategy is a
    bad scenario file (exit 2), not a campaign the gate calls invalid an hour in."""
    for i, c in enumerate(scenario.campaigns):
        try:
            strategy_from_request(c.client, {**c.strategy, "campaign_id": c.id})
        except InvalidInput as exc:
            where = f"campaigns[{i}].strategy" + (f".{exc.field}" if exc.field else "")
            raise InvalidInput(f"{exc.reason} (campaign {c.id})", source=source, field=where) from None
