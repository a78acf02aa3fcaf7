"""Read a strategy from JSON with errors that name the file and the field."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from synctwin.kernel.config import get_limits
from synctwin.kernel.errors import InvalidInput, describe_validation_error
from synctwin.kernel.files import load_json
from synctwin.kernel.models import Strategy


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


# Typical share of a targeted audience that converts over a month, by platform (rule of thumb).
PLATFORM_CVR = {"meta": 0.02, "tiktok": 0.012, "google": 0.03}


def strategy_from_request(client_id: str, campaign_params: Mapping[str, Any]) -> Strategy:
    """A strategy from a client's campaign request (SyncBrain's generator and the scenario loader's
    check share these rules, so a scenario is checked as it will be replayed): platform meta and 30
    days by default; `cvr` the request's `expected_cvr`, else the platform's PLATFORM_CVR; `daily_budget`
    given or `monthly_budget` over the days; `campaign_id` given or `{client_id}-{platform}-{audience_size}`.
    The rest of the request passes through."""
    params = dict(campaign_params)
    platform = params.pop("platform", "meta")
    duration = params.pop("duration_days", 30)
    if "daily_budget" not in params:
        if "monthly_budget" not in params:
            raise InvalidInput("the request needs daily_budget or monthly_budget", field="daily_budget")
        monthly = params.pop("monthly_budget")
        if not isinstance(monthly, int | float) or isinstance(monthly, bool):
            raise InvalidInput(f"monthly_budget must be a number (got {monthly!r})", field="monthly_budget")
        params["daily_budget"] = round(monthly / duration, 2)
    else:
        params.pop("monthly_budget", None)
    cvr = params.pop("expected_cvr", None)
    params.setdefault("cvr", cvr if cvr is not None else PLATFORM_CVR.get(str(platform), 0.02))
    params.setdefault("campaign_id", f"{client_id}-{platform}-{params.get('audience_size', 'x')}")
    params.update(client_id=client_id, platform=platform, duration_days=duration)
    return strategy_from_dict(params, source="campaign request")
