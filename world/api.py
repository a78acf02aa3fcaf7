"""A platform's API as agents reach it: latency, a rate limit, and outages.

Latency is modelled with `env.timeout`, which is the world's business: in production the real
API's latency takes its place and no agent code changes."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from scenarios.schema import PlatformMarket
from world.platforms import AdPlatforms, CampaignSetup


class ApiError(Exception):
    """A call that did not reach the platform; the caller decides whether to retry."""


class ApiTimeout(ApiError):
    pass


class RateLimited(ApiError):
    pass


class PlatformAPI:
    """One platform's API. `call` is a generator: `result = yield from api.call("pause", ...)`."""

    def __init__(
        self,
        env: simpy.Environment,
        name: str,
        platforms: AdPlatforms,
        market: PlatformMarket,
        truths: dict[str, dict[str, float]] | None = None,
    ) -> None:
        self.env = env
        self.truths = truths if truths is not None else {}  # campaign -> true rate factors (world's secret)
        self.name = name
        self.platforms = platforms
        self.latency = market.api_latency
        self.timeout = market.api_timeout
        self.rate = market.api_rate_limit
        self.tokens = market.api_rate_limit
        self.refilled_at = 0.0
        self.outage_until = -1.0
        self.calls = 0
        self.failures = 0

    def start_outage(self, duration: float) -> None:
        self.outage_until = max(self.outage_until, self.env.now + duration)

    @property
    def down(self) -> bool:
        return self.env.now < self.outage_until

    def _take_token(self) -> bool:
        now = self.env.now
        self.tokens = min(self.rate, self.tokens + (now - self.refilled_at) * self.rate)
        self.refilled_at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def call(self, op: str, **payload: Any) -> Generator[Any, Any, Any]:
        self.calls += 1
        if self.down:
            yield self.env.timeout(self.timeout)
            self.failures += 1
            raise ApiTimeout(f"{self.name} API: {op} timed out after {self.timeout:g}s")
        if not self._take_token():
            self.failures += 1
            raise RateLimited(f"{self.name} API: {op} rate limited ({self.rate:g}/s)")
        yield self.env.timeout(self.latency)
        if self.down:  # the outage began while the call was in flight
            self.failures += 1
            raise ApiTimeout(f"{self.name} API: {op} lost in an outage")
        return self._apply(op, payload)

    def _apply(self, op: str, payload: dict[str, Any]) -> Any:
        if op == "launch":
            cid = payload["campaign_id"]
            truth = self.truths.get(cid, {})
            demand = payload["audience_size"] * payload["cvr"] * truth.get("demand", 1.0) / payload["duration_days"]
            self.platforms.launch(
                CampaignSetup(
                    campaign_id=cid,
                    platform=self.name,
                    daily_budget=payload["daily_budget"],
                    bid_cpm=payload["bid_cpm"],
                    daily_demand=demand,
                    truth=truth,
                )
            )
            return cid
        if op == "set_bids":
            for cid, bid in payload["bids"].items():
                self.platforms.set_bid(cid, bid)
            return len(payload["bids"])
        if op == "pause":
            self.platforms.pause(payload["campaign_id"])
            return payload["campaign_id"]
        raise ValueError(f"unknown API operation {op!r}")
