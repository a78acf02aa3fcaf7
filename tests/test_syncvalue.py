"""SyncValue: the baseline and the three history stores behind one interface."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import redis as redis_lib

from agents.syncvalue import (
    CsvHistoryStore,
    InMemoryHistoryStore,
    RedisHistoryStore,
    SyncValue,
    UnknownClient,
    compute_baseline,
)
from synctwin.kernel.errors import InvalidInput
from synctwin.kernel.history import History, load_history, parse_history_csv

HISTORY = Path(__file__).parent / "data" / "history_90d.csv"


def constant_history(days: int, *, returning: float | None = None) -> History:
    rows = "".join(
        f"{np.datetime64('2026-01-01') + i},100,20000,400,20,1200"
        + (f",{returning}" if returning is not None else "")
        + "\n"
        for i in range(days)
    )
    header = "date,spend,impressions,clicks,conversions,revenue" + (",returning_customers" if returning else "")
    return parse_history_csv(header + "\n" + rows)


def test_baseline_of_a_constant_history() -> None:
    b = compute_baseline(constant_history(120))
    assert b.days == 90  # the lookback window, not the whole history
    assert b.daily_revenue == pytest.approx(1200) and b.daily_spend == pytest.approx(100)
    assert b.monthly_revenue == pytest.approx(36_000) and b.monthly_ad_spend == pytest.approx(3_000)
    assert b.avg_order_value == pytest.approx(60) and b.cpm == pytest.approx(5.0)
    assert b.ctr == pytest.approx(0.02) and b.cvr_click == pytest.approx(0.05)
    assert b.cpm_log_sd == pytest.approx(0, abs=1e-12)
    assert b.conversions_per_dollar_log_sd == pytest.approx(0, abs=1e-12)
    assert b.monthly_churn == 0.25 and b.ltv == pytest.approx(60 / 0.25)


def test_churn_from_returning_customers() -> None:
    b = compute_baseline(constant_history(30, returning=15), gross_margin=0.5)
    assert b.monthly_churn == pytest.approx(0.25)  # 15 of 20 buyers return
    assert b.ltv == pytest.approx(60 * 0.5 / 0.25)


def test_spread_of_the_example_history() -> None:
    b = compute_baseline(load_history(HISTORY))
    assert 0.05 < b.conversions_per_dollar_log_sd < 0.5
    assert b.revenue_over(30) == pytest.approx(b.monthly_revenue)


def test_too_short_or_no_spend() -> None:
    with pytest.raises(InvalidInput, match="has 5 day"):
        compute_baseline(constant_history(5))
    h = constant_history(30)
    no_spend = History(h.dates, h.spend * 0, h.impressions, h.clicks, h.conversions, h.revenue)
    with pytest.raises(InvalidInput, match="no ad spend"):
        compute_baseline(no_spend)


def _round_trip(store) -> None:
    h = load_history(HISTORY)
    store.put("acme", h)
    again = store.get("acme")
    assert len(again) == len(h)
    np.testing.assert_allclose(again.revenue, h.revenue)
    assert np.array_equal(again.dates, h.dates)
    with pytest.raises(UnknownClient, match="no history for client 'ghost'"):
        store.get("ghost")
    with pytest.raises(InvalidInput, match="client_id"):
        store.put("../etc/passwd", h)


def test_in_memory_store() -> None:
    _round_trip(InMemoryHistoryStore())


def test_csv_store(tmp_path: Path) -> None:
    _round_trip(CsvHistoryStore(tmp_path))
    assert (tmp_path / "acme.csv").exists() and not list(tmp_path.glob("*.tmp"))


def test_fakeredis_store() -> None:
    import fakeredis

    _round_trip(RedisHistoryStore(fakeredis.FakeRedis(decode_responses=True)))


@pytest.mark.redis
def test_real_redis_store(redis_client: redis_lib.Redis) -> None:
    _round_trip(RedisHistoryStore(redis_client, prefix="t:"))
    assert redis_client.exists("t:client:acme:history")


async def test_service_is_store_agnostic(tmp_path: Path) -> None:
    h = load_history(HISTORY)
    baselines = []
    for store in (InMemoryHistoryStore(), CsvHistoryStore(tmp_path)):
        store.put("acme", h)
        baselines.append(await SyncValue(store).get_baseline("acme", 60))
    assert baselines[0] == baselines[1] and baselines[0].lookback_days == 60
