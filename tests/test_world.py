"""The discrete-event world: platform delivery, the platform API, faults, generated histories
and the clock (virtual or wall-clock time, with the agents unchanged)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Generator
from typing import Any

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.base import Agent, answer, ask
from harness.runner import campaign_truth, run_scenario
from scenarios.loader import scenario_from_dict
from scenarios.schema import DEFAULT_MARKETS, FaultSpec, GeneratedHistory, PlatformMarket
from synctwin.kernel.messages import BaselineRequest
from world.api import ApiTimeout, PlatformAPI, RateLimited
from world.clock import Clock, make_environment
from world.faults import FaultInjector
from world.history import generate_history
from world.platforms import AdPlatforms, CampaignSetup

DAY = 86_400.0
CALM = {k: m.model_copy(update={"cpm_drift_sd": 0.0}) for k, m in DEFAULT_MARKETS.items()}  # no daily drift


def platforms(*, tick: float = 60.0, seed: int = 0, markets: dict[str, PlatformMarket] | None = None) -> AdPlatforms:
    return AdPlatforms(dict(markets or DEFAULT_MARKETS), np.random.default_rng(seed), tick)


def launch(
    p: AdPlatforms,
    cid: str = "c",
    *,
    platform: str = "meta",
    budget: float = 1_000.0,
    bid: float = 100.0,
    demand: float = 1e9,
    truth: dict[str, float] | None = None,
) -> int:
    p.launch(CampaignSetup(cid, platform, budget, bid, demand, truth or {}))
    return p.index[cid]


def run_days(p: AdPlatforms, days: float, on_tick: Any = None) -> list[float]:
    """Tick through `days` days as the world does (budgets reset at midnight); each day's spend."""
    per_day = round(p.ticks_per_day)
    daily = []
    for _ in range(round(days)):
        before = p.spend.copy()
        for _ in range(per_day):
            p.tick()
            if on_tick is not None:
                on_tick(p)
        daily.append(p.spend - before)
        p.new_day()
    return daily


# --- delivery ------------------------------------------------------------------------------------


def test_spend_follows_the_budgets_pace() -> None:
    """With a bid well above the clearing price the platform buys exactly the budget's pace."""
    p = platforms()
    i = launch(p, budget=1_440.0, bid=1_000.0)
    for k in range(1, 721):
        p.tick()
        assert p.spend[i] == pytest.approx(k * 1.0)  # 1440 a day over 1440 ticks: 1 a tick
    assert p.spend_today[i] == pytest.approx(720.0)


def test_a_bid_below_the_clearing_price_buys_less() -> None:
    p = platforms()
    rich = launch(p, "rich", bid=100.0)
    poor = launch(p, "poor", bid=DEFAULT_MARKETS["meta"].cpm * 0.8)
    run_days(p, 1)
    assert p.spend[poor] < 0.6 * p.spend[rich]


@settings(max_examples=25, deadline=None)
@given(
    budget=st.floats(10.0, 50_000.0),
    bid_share=st.floats(0.5, 3.0),
    tick=st.sampled_from([60.0, 300.0, 900.0]),
    cpm_shock=st.floats(0.5, 3.0),
    seed=st.integers(0, 2**16),
)
def test_no_day_above_the_platform_cap_without_a_runaway(
    budget: float, bid_share: float, tick: float, cpm_shock: float, seed: int
) -> None:
    p = platforms(tick=tick, seed=seed)
    i = launch(p, budget=budget, bid=DEFAULT_MARKETS["google"].cpm * bid_share, platform="google")
    p.scale("cpm_mult", i, cpm_shock)  # price shocks move the share won, never the cap
    cap = (1 + DEFAULT_MARKETS["google"].overdelivery) * budget
    for day in run_days(p, 2):
        assert 0.0 <= day[i] <= cap + 1e-9


def test_a_runaway_breaks_the_platforms_cap_and_a_pause_stops_everything() -> None:
    p = platforms()
    i = launch(p, budget=1_440.0, bid=1_000.0)
    p.scale("spend_mult", i, 10.0)
    for _ in range(200):
        p.tick()
    assert p.spend[i] == pytest.approx(2_000.0)  # 10 a tick: past 110% of the budget in 159 ticks
    assert p.spend[i] > (1 + DEFAULT_MARKETS["meta"].overdelivery) * 1_440.0
    p.pause("c")
    frozen = {k: getattr(p, k)[i] for k in ("spend", "impressions", "clicks", "conversions", "revenue")}
    run_days(p, 1)
    assert not p.is_active("c")
    assert {k: getattr(p, k)[i] for k in frozen} == frozen


def test_conversions_are_capped_by_the_audiences_demand() -> None:
    """A big budget on a small audience: conversions follow demand, not what the budget buys."""
    p = platforms()
    i = launch(p, budget=20_000.0, demand=50.0)  # the budget alone would buy ~2,600 conversions a day
    run_days(p, 3)
    assert p.clicks[i] > 100_000
    assert 3 * 50.0 <= p.conversions[i] <= 3 * 50.0 + 50.0 / 4  # the steady inflow plus a 6-hour buffer


def test_funnel_means_match_the_markets_rates() -> None:
    """Over ~100k clicks the realized rates agree with the market's within sampling error."""
    m = DEFAULT_MARKETS["meta"]
    p = platforms(seed=7, markets=CALM)
    i = launch(p, budget=5_000.0, bid=1_000.0, truth={"cvr": 1.5, "aov": 0.5})
    run_days(p, 3)
    imp, clicks, conv, rev = p.impressions[i], p.clicks[i], p.conversions[i], p.revenue[i]
    ctr, cvr, aov = m.ctr, m.cvr * 1.5, m.aov * 0.5
    # CPM noise is mean-one and lognormal, so impressions per dollar carry E[1/x] = exp(sd^2)
    assert imp / p.spend[i] == pytest.approx(1000 * np.exp(m.cpm_noise_sd**2) / m.cpm, rel=0.01)
    assert abs(clicks / imp - ctr) < 4 * np.sqrt(ctr / imp)
    assert abs(conv / clicks - cvr) < 4 * np.sqrt(cvr * (1 - cvr) / clicks)
    assert abs(rev / conv - aov) < 4 * aov * m.aov_cv / np.sqrt(conv)


def test_a_launched_campaign_cannot_be_launched_twice() -> None:
    p = platforms()
    launch(p)
    with pytest.raises(ValueError, match="already live"):
        launch(p)


# --- the API ---------------------------------------------------------------------------------------


def api(env: simpy.Environment, **market: Any) -> PlatformAPI:
    spec = PlatformMarket(**{**DEFAULT_MARKETS["meta"].model_dump(), **market})
    return PlatformAPI(env, "meta", platforms(), spec)


def call(env: simpy.Environment, a: PlatformAPI, op: str, results: list[Any], **payload: Any) -> None:
    def proc() -> Generator[Any, Any, None]:
        started = env.now
        try:
            value = yield from a.call(op, **payload)
            results.append(("ok", value, env.now - started))
        except Exception as exc:  # the test inspects which
            results.append((type(exc).__name__, str(exc), env.now - started))

    env.process(proc())


def test_api_calls_take_the_platforms_latency() -> None:
    env = simpy.Environment()
    a = api(env, api_latency=0.25)
    a.platforms.launch(CampaignSetup("c", "meta", 100.0, 5.0, 10.0, {}))
    out: list[Any] = []
    call(env, a, "set_bids", out, bids={"c": 7.5})
    env.run()
    assert out == [("ok", 1, 0.25)]
    assert a.platforms.bid[0] == 7.5


def test_api_rate_limit() -> None:
    env = simpy.Environment()
    a = api(env, api_rate_limit=3.0)
    out: list[Any] = []
    for _ in range(5):
        call(env, a, "pause", out, campaign_id="x")  # no campaign needed: rate limiting comes first
    env.run(until=0.01)
    assert [r[0] for r in out] == ["RateLimited"] * 2  # the 4th and 5th; the first three are in flight
    assert all(r[2] == 0 for r in out) and a.failures == 2
    assert issubclass(RateLimited, Exception)


def test_an_outage_times_out_after_the_timeout_then_recovers() -> None:
    env = simpy.Environment()
    a = api(env, api_timeout=10.0, api_latency=0.1)
    a.platforms.launch(CampaignSetup("c", "meta", 100.0, 5.0, 10.0, {}))
    a.start_outage(300.0)
    out: list[Any] = []
    call(env, a, "pause", out, campaign_id="c")
    env.run(until=20)
    assert out == [("ApiTimeout", "meta API: pause timed out after 10s", 10.0)]
    assert a.down and a.platforms.is_active("c")
    env.run(until=300)
    call(env, a, "pause", out, campaign_id="c")
    env.run(until=301)
    assert not a.down
    assert out[-1] == ("ok", "c", pytest.approx(0.1)) and not a.platforms.is_active("c")
    assert issubclass(ApiTimeout, Exception)


def test_an_outage_that_starts_during_a_call_loses_it() -> None:
    env = simpy.Environment()
    a = api(env, api_latency=1.0)
    out: list[Any] = []
    call(env, a, "pause", out, campaign_id="c")
    env.run(until=0.5)
    a.start_outage(60.0)
    env.run(until=2)
    assert out[0][0] == "ApiTimeout" and "lost in an outage" in out[0][1]


# --- faults ------------------------------------------------------------------------------------------


def test_faults_apply_at_their_time_and_undo_at_their_end() -> None:
    env = simpy.Environment()
    p = platforms()
    apis = {k: PlatformAPI(env, k, p, DEFAULT_MARKETS[k]) for k in DEFAULT_MARKETS}
    launch(p, "a")
    log: list[tuple[str, str, float]] = []
    faults = [
        FaultSpec(id="shock", kind="cpm_shock", at=100, duration=50, campaign="a", multiplier=1.5),
        FaultSpec(id="tiktok", kind="cvr_drop", at=10, duration=20, platform="tiktok"),
        FaultSpec(id="down", kind="api_outage", at=5, duration=30, platform="google"),
        FaultSpec(id="ghost", kind="runaway_spend", at=1, campaign="nobody-live"),
    ]
    FaultInjector(env, p, apis, faults, lambda what, f, t: log.append((what, f.id or "", t)))
    env.run(until=99)
    assert p.cpm_mult[0] == 1.0 and p.platform_cvr_mult[1] == 1.0 and not apis["google"].down
    launch(p, "b")  # a launch during the shock replaces the columns: the fault must still end
    env.run(until=101)
    assert list(p.cpm_mult) == [1.5, 1.0]
    env.run(until=151)
    assert list(p.cpm_mult) == [1.0, 1.0] and p.platform_cvr_mult[1] == 1.0
    assert log == [
        ("skipped", "ghost", 1),
        ("start", "down", 5),
        ("start", "tiktok", 10),
        ("end", "tiktok", 30),
        ("end", "down", 35),
        ("start", "shock", 100),
        ("end", "shock", 150),
    ]


def test_a_fault_changes_delivery_while_it_lasts() -> None:
    p = platforms(markets=CALM)
    i = launch(p, budget=10_000.0)
    p.scale("cpm_mult", i, 2.0)
    run_days(p, 1)
    shocked = p.impressions[i] / p.spend[i]
    p.scale("cpm_mult", i, 2.0, undo=True)
    before = p.impressions[i], p.spend[i]
    run_days(p, 1)
    normal = (p.impressions[i] - before[0]) / (p.spend[i] - before[1])
    assert shocked == pytest.approx(normal / 2, rel=0.02)
    with pytest.raises(ValueError):
        p.scale("spend", i, 2.0)


# --- generated histories ------------------------------------------------------------------------------


def test_a_generated_history_ends_at_the_price_the_world_starts_at() -> None:
    """The CPM walk runs backwards from the market's level: the last day is at the world's price
    (up to the daily noise), whatever the seed, while early days wander."""
    m = DEFAULT_MARKETS["tiktok"]
    spec = GeneratedHistory(platform="tiktok", daily_spend=500.0)
    last, first = [], []
    for seed in range(60):
        h = generate_history(m, spec, np.random.default_rng(seed), dt.date(2026, 1, 5))
        cpm = h.spend / h.impressions * 1000
        last.append(np.log(cpm[-1] / m.cpm))
        first.append(np.log(cpm[0] / m.cpm))
        assert str(h.dates[-1]) == "2026-01-04" and len(h.dates) == 90
    assert abs(np.mean(last)) < 0.03 and np.std(last) < 0.08  # the daily noise (0.05) and rounding
    assert np.std(first) > 0.12  # 89 days of drift (0.02 a day) before


def test_a_campaign_inherits_its_clients_rate_factors() -> None:
    scenario = scenario_from_dict(
        {
            "name": "t",
            "duration": "1d",
            "clients": [
                {
                    "id": "k",
                    "history": {
                        "generate": {"platform": "meta", "daily_spend": 100, "rate_factors": {"aov": 0.5, "cvr": 2.0}}
                    },
                }
            ],
            "campaigns": [
                {
                    "id": "same",
                    "client": "k",
                    "strategy": {"platform": "meta", "audience_size": 1000, "cvr": 0.1, "daily_budget": 10},
                    "truth": {"cvr": 1.5},
                },
                {
                    "id": "other",
                    "client": "k",
                    "strategy": {"platform": "google", "audience_size": 1000, "cvr": 0.1, "daily_budget": 10},
                },
            ],
        }
    )
    assert campaign_truth(scenario, scenario.campaigns[0]) == {"aov": 0.5, "cvr": 1.5}
    assert campaign_truth(scenario, scenario.campaigns[1]) == {}  # another platform's rates are not the client's


# --- the clock --------------------------------------------------------------------------------------


class Echo(Agent):
    """A minimal Council member: answers each request after a modelled second."""

    name = "echo"

    def handle(self, message: Any) -> Generator[Any, Any, None]:
        yield self.env.timeout(1.0)
        answer(message, (message.client_id, self.env.now))


def test_the_wall_clock_runs_an_agent_unchanged() -> None:
    out: dict[str, list[Any]] = {}
    for mode in ("virtual", "wall"):
        env = make_environment(realtime=mode == "wall", factor=0.001)
        echo = Echo(env)
        got: list[Any] = []

        def asker(env: simpy.Environment = env, box: simpy.Store = echo.mailbox, got: list[Any] = got) -> Generator:
            for k in range(3):
                yield env.timeout(100.0)
                got.append((yield from ask(env, box, BaselineRequest(f"c{k}"))))

        env.process(asker())
        t0 = time.perf_counter()
        env.run(until=400)
        out[mode] = [*got, time.perf_counter() - t0]
    assert out["virtual"][:3] == out["wall"][:3] == [("c0", 101.0), ("c1", 202.0), ("c2", 303.0)]
    assert out["wall"][3] >= 0.4 * 0.95  # 400 virtual seconds at 1 ms each
    assert out["virtual"][3] < 0.1
    assert isinstance(make_environment(realtime=True, factor=0.001), simpy.rt.RealtimeEnvironment)


def test_a_scenario_in_wall_clock_time_gives_the_virtual_time_trace() -> None:
    """The whole Council on simpy.rt (0.5 ms per scenario second): same trace as in virtual time."""
    scenario = scenario_from_dict(
        {
            "name": "wall",
            "duration": "20m",
            "world": {"tick": "1m"},
            "clients": [{"id": "k", "history": {"generate": {"platform": "meta", "daily_spend": 500}}}],
            "campaigns": [
                {
                    "id": "c",
                    "client": "k",
                    "launch_at": "1m",
                    "strategy": {"platform": "meta", "audience_size": 200000, "cvr": 0.03, "daily_budget": 900},
                }
            ],
            "faults": [{"id": "f", "kind": "api_outage", "at": "5m", "duration": "2m", "platform": "meta"}],
        }
    )
    t0 = time.perf_counter()
    wall = run_scenario(scenario, 3, realtime_factor=0.0005)
    elapsed = time.perf_counter() - t0
    virtual = run_scenario(scenario, 3)
    a, b = wall.to_dict(), virtual.to_dict()
    a.pop("wall_s"), b.pop("wall_s")
    assert a == b
    assert wall.campaigns["c"].status == "LIVE" and wall.campaigns["c"].final["spend"] > 0
    assert elapsed >= 1200 * 0.0005 * 0.95


def test_the_clock_maps_environment_seconds_to_epoch_seconds() -> None:
    env = simpy.Environment()
    clock = Clock(env, epoch0=1_000.0)
    env.run(until=DAY * 2 + 5)
    assert clock.now() == 1_000.0 + DAY * 2 + 5
    assert clock.day_index() == 2 and clock.day_index(DAY - 1) == 0
