"""Distributions in risk's book across a restart: the service rebuilds its book from the fill
stream and data-ingestion's distribution history (real Redis), and books each one once."""

from __future__ import annotations

import logging

import pytest

from tests.risk.helpers import NOW, TLT_ID, TLTW_ID, fill, quote
from trading.bus import Dividends, Keys, Side, Streams
from trading.services.risk import RiskRuntime
from trading.services.shell import ServiceContext
from trading.settings import load_settings

DAY = 86_400.0


async def restored(bus, redis_url) -> RiskRuntime:
    """A fresh risk service, restored from Redis as at start (no IB needed for this)."""
    settings = load_settings(redis={"url": redis_url})
    runtime = RiskRuntime(ServiceContext("risk-management", settings, bus, logging.getLogger("t")))
    await runtime.restore()
    return runtime


async def test_a_restarted_risk_service_books_each_distribution_once(bus, redis_url):
    # Short 1,000 TLTW and long 100 TLT on 2026-11-02; both go ex on 2026-11-03.
    await bus.append(Streams.FILLS, fill("e1", TLTW_ID, Side.SELL, 1000, 24.00, symbol="TLTW"))
    await bus.append(Streams.FILLS, fill("e2", TLT_ID, Side.BUY, 100, 90.00))
    for amount in (0.29, 0.30):  # announced, then revised: the latest counts
        tltw = Dividends("TLTW", 3.5, 3.6, "20261103", amount, NOW - 3 * DAY)
        await bus.append(Streams.dividends_history("TLTW"), tltw)
        await bus.set_latest(Keys.dividends("TLTW"), tltw)
    tlt = Dividends("TLT", 3.3, 3.4, "20261103", 0.28, NOW - 3 * DAY)
    await bus.append(Streams.dividends_history("TLT"), tlt)
    await bus.set_latest(Keys.dividends("TLT"), tlt)
    ex_day = NOW + DAY
    await bus.set_latest(Keys.quote("TLT"), quote("TLT", TLT_ID, 89.99, 90.01, ts=ex_day))
    await bus.set_latest(Keys.quote("TLTW"), quote("TLTW", TLTW_ID, 23.69, 23.71, ts=ex_day))

    first = (await restored(bus, redis_url)).engine
    # The ticker re-reads the latest announcements every few seconds: nothing changes.
    first.on_market(tltw)
    first.on_market(tlt)
    again = (await restored(bus, redis_url)).engine  # a restart: the same book again

    for engine in (first, again):
        pnl = engine.pnl(ex_day)
        assert pnl.distributions == pytest.approx(-1000 * 0.30 + 100 * 0.28)  # -300 + 28
        assert pnl.distributions_accrued == pytest.approx(-272.0)
        # TLTW fell 0.30 with the distribution and TLT is unchanged: the short's gain on the
        # price is paid away, the long's distribution is earned.
        assert pnl.unrealized == pytest.approx(300.0)
        assert pnl.total == pytest.approx(28.0)
