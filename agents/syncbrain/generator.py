"""Turning a client's campaign request into a strategy, behind a small interface.

The rule-based generator is deterministic (same request, same strategy) so simulations and
tests are reproducible; an LLM-backed generator can implement the same Protocol later.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from synctwin.errors import InvalidInput
from synctwin.models import Strategy
from synctwin.strategy_io import strategy_from_dict

# Typical share of a targeted audience that converts over a month, by platform (rule of thumb).
PLATFORM_CVR = {"meta": 0.02, "tiktok": 0.012, "google": 0.03}


class StrategyGenerator(Protocol):
    def generate(self, client_id: str, campaign_params: Mapping[str, Any]) -> Strategy: ...


class RuleBasedStrategyGenerator:
    """Fills a strategy from the request with documented rules.

    - `platform` defaults to meta; `duration_days` to 30;
    - `cvr`: the request's `expected_cvr`, else the platform's rule of thumb (PLATFORM_CVR);
    - `daily_budget`: the request's `daily_budget`, else `monthly_budget` spread over the days;
    - `campaign_id`: the request's, else `{client_id}-{platform}-{audience_size}`.
    Everything else in the request (cpm, ctr, aov, gross_margin, new_audience, ...) passes through.
    """

    def generate(self, client_id: str, campaign_params: Mapping[str, Any]) -> Strategy:
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
