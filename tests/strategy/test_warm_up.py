"""The strategy service's warm-up from the history streams on a real Redis, while data-ingestion
goes on writing them: the warm-up is one snapshot of every stream (`Bus.stream_cut`), and what
is past it comes through the subscription, as a replay of the tape has it."""

from __future__ import annotations

import logging

import pytest

from tests.support import RECORDED_CALL as CALL
from tests.support import recorded_option, recorded_quote
from trading import bus as b
from trading.services.shell import ServiceContext
from trading.services.strategy import StrategyService
from trading.settings import load_settings
from trading.strategy.engine import StrategyEngine

BAR_S = 60.0
T0 = 1_793_631_600.0  # 2026-11-02 10:00 ET: a minute boundary in a session
TLT, TLTW = 15547841, 545186218


async def test_warm_up_reads_every_stream_at_one_moment_while_they_are_written(bus, monkeypatch):
    """Bars 0-2 are recorded. While the warm-up reads, ingestion records a late TLT tick of
    bar 2 and TLTW's first tick of bar 3, after the TLT stream was read and before TLTW's was.
    Read stream by stream to their ends, the warm-up saw TLTW's bar-3 tick and closed bar 2
    without TLT's last tick of it (which then came through the subscription into bar 3): a
    bar whose spread no replay of the tape reproduces. Read at one cut, bar 2 stays open and
    both ticks are left to the subscription, to be applied in time order."""
    for i in range(3):
        ts = T0 + i * BAR_S + 0.5
        await bus.append(b.Streams.history("TLT"), recorded_quote("TLT", TLT, ts, 90.0 + i))
        await bus.append(b.Streams.history("TLTW"), recorded_quote("TLTW", TLTW, ts, 24.0 + i))
        await bus.append(b.Streams.history(str(CALL)), recorded_option(ts))
        await bus.append(b.Streams.nav_history("TLTW"), b.EtfNav("TLTW", 23.9 + i, ts, ts))
    chain = b.OptionChain("TLT", TLT, ("20261120",), (92.0,), (), 90.0, T0)
    late_tlt = recorded_quote("TLT", TLT, T0 + 2 * BAR_S + 30.0, 95.0)
    next_tltw = recorded_quote("TLTW", TLTW, T0 + 3 * BAR_S + 0.5, 30.0)

    read_after = bus.read_after
    written: list[b.Quote] = []

    async def ingestion_writes_meanwhile(stream, *args, **kwargs):
        entries = await read_after(stream, *args, **kwargs)
        if stream == b.Streams.history("TLT") and not written:
            written.extend([late_tlt, next_tltw])
            await bus.append(b.Streams.history("TLT"), late_tlt)
            await bus.append(b.Streams.history("TLTW"), next_tltw)
        return entries

    monkeypatch.setattr(bus, "read_after", ingestion_writes_meanwhile)
    settings = load_settings()
    engine = StrategyEngine.from_settings(settings)
    service = StrategyService(
        ServiceContext("strategy", settings, bus, logging.getLogger()), engine
    )
    service.apply(chain)

    await service.warm_up(chain)

    assert written, "the warm-up read the TLT stream"
    assert engine.current_bar == engine.bar_of(T0 + 2 * BAR_S + 0.5)  # bar 2 is open
    assert engine.market.stocks["TLT"].mid == pytest.approx(
        92.005
    )  # bar 2's first tick, not the late one
    assert engine.market.stocks["TLTW"].mid == pytest.approx(26.005)
    # Through the subscription, in time order: the late tick is bar 2's, then bar 3 closes it.
    for tick in written:
        assert not service.inbox.already_applied(tick)
    service.apply(late_tlt)
    assert engine.market.stocks["TLT"].mid == pytest.approx(95.005)
    assert engine.current_bar == engine.bar_of(late_tlt.ts_exchange)
    service.apply(next_tltw)
    assert engine.current_bar == engine.bar_of(next_tltw.ts_exchange)
