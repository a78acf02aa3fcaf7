"""The service's request and response bodies: the command line's JSON, validated at the edge.

The models reuse Strategy and DailyRecord, so a field means the same in a file, on the command
line and over HTTP, and a bad value is a 422 whose `loc` names it (["body", "strategy", "cvr"],
["body", "history", 3, "spend"])."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from synctwin.kernel.model_names import MODEL_HELP, ModelChoice
from synctwin.kernel.models import DailyRecord, Projection, Strategy


def _example_history(days: int = 28) -> list[dict[str, Any]]:
    """A small, plausible history for the OpenAPI example: four weeks whose daily spend moves
    (so the response curve has something to learn) and whose conversions grow less than in
    proportion to spend. The service must accept its own example (a test posts it)."""
    import datetime as dt

    rows = []
    for d in range(days):
        spend = 800.0 + 150.0 * ((d * 7) % 5 - 2) + (60.0 if d % 7 in (4, 5) else 0.0)
        impressions = round(spend * 110)
        clicks = round(impressions * 0.015)
        conversions = round(0.9 * spend**0.75 / 2.2)
        rows.append(
            {
                "date": (dt.date(2024, 1, 1) + dt.timedelta(days=d)).isoformat(),
                "spend": spend,
                "impressions": impressions,
                "clicks": clicks,
                "conversions": conversions,
                "revenue": round(conversions * 68.0, 2),
            }
        )
    return rows


class SimulateRequest(BaseModel):
    """POST /v1/simulate: a strategy and its client's history (rows or CSV text), as `synctwin gate`
    takes them; with a Redis store configured the history may be left out (read by client_id)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "strategy": {
                        "campaign_id": "spring",
                        "client_id": "acme",
                        "audience_size": 160000,
                        "cvr": 0.02,
                        "daily_budget": 900,
                    },
                    "history": _example_history(),
                    "paths": 10000,
                    "seed": 7,
                }
            ]
        },
    )

    strategy: Strategy
    history: list[DailyRecord] | None = Field(
        None, description="one row per day (date, spend, impressions, clicks, conversions, revenue)"
    )
    history_csv: str | None = Field(None, description="the history CSV text instead of rows")
    paths: int | None = Field(
        None, ge=100, description="paths drawn first (default 10,000; at most the service's SYNCTWIN_SERVICE_MAX_PATHS)"
    )
    max_paths: int | None = Field(None, ge=100, description="cap for adaptive sampling (at most the same limit)")
    seed: int | None = Field(None, ge=0, description="random seed; without it a fresh one is drawn and reported")
    model: ModelChoice | None = Field(None, description=MODEL_HELP)
    threshold: float | None = Field(None, gt=0, lt=1, description="approve when confidence > threshold")
    lookback_days: int | None = Field(
        None,
        ge=14,
        le=3_650,
        description="history window of the baseline in days (default 90; at least 14, the "
        "fewest days a baseline is computed from)",
    )


class CampaignView(BaseModel):
    """GET /v1/campaigns/{id}: what production knows of a campaign."""

    campaign_id: str
    projection: Projection | None = Field(None, description="stored when the gate approved it")
    strategy: dict[str, Any] | None = None
    mirror: dict[str, Any] | None = Field(
        None,
        description="the live mirror's state (status WARMING_UP/OK/GREY/PAUSED, deviation, breaches, "
        "cumulative totals, ...)",
    )
    paused: bool = False
    pauses: list[dict[str, Any]] = Field(default_factory=list, description="PAUSE commands on the control stream")
    decisions: list[dict[str, Any]] = Field(
        default_factory=list, description="the campaign's audit events (gate decisions, rollbacks), newest last"
    )


class Health(BaseModel):
    status: str
    version: str
    redis: str = Field(description="'not configured', 'reachable' or 'unreachable: <why>'")
