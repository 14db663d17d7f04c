"""The recorded tape read back from a real Redis: the warm-up and live parts, in time order."""

from __future__ import annotations

from tests.support import RECORDED_CALL as CALL
from tests.support import recorded_option, recorded_quote
from trading import bus as b
from trading.backtest.recorded import read_tape
from trading.backtest.run import backtest_recorded
from trading.settings import load_settings

BAR_S = 60.0
T0 = 1_793_631_600.0  # 2026-11-02 10:00 ET: a minute boundary in a session


def _point(ts: float) -> b.SpreadPoint:
    return b.SpreadPoint(
        ts=ts, index_value=90.0, tltw=24.0, beta=1.0, alpha=0.0, spread=0.001, mean=0.0,
        std=0.001, z=1.0, entry_z=2.0, exit_z=0.5, stop_z=4.0, hedge_method="delta",
        state="FLAT", call_con_id=CALL, call_strike=92.0, call_expiry="20261120",
    )  # fmt: skip


async def _record(bus: b.Bus) -> None:
    """Four bars of TLT, TLTW and one call; NAV each bar; one distribution announcement; the
    live strategy's first published point ends bar 2 (so bars 0-1 closed in its warm-up)."""
    for i in range(4):
        ts = T0 + i * BAR_S + 0.5
        await bus.append(b.Streams.history("TLT"), recorded_quote("TLT", 15547841, ts, 90.0 + i))
        await bus.append(b.Streams.history("TLTW"), recorded_quote("TLTW", 545186218, ts, 24.0 + i))
        await bus.append(b.Streams.history(str(CALL)), recorded_option(ts))
        await bus.append(b.Streams.nav_history("TLTW"), b.EtfNav("TLTW", 23.9 + i, ts, ts))
    await bus.append(
        b.Streams.dividends_history("TLTW"),
        b.Dividends("TLTW", 1.0, 1.2, "20261201", 0.1, T0 + 0.25),
    )
    chain = b.OptionChain("TLT", 15547841, ("20261120",), (92.0,), (), 90.0, T0)
    await bus.set_latest(b.Keys.CHAIN, chain)
    await bus.append(b.Streams.SPREAD, _point(T0 + 2 * BAR_S))
    await bus.append(b.Streams.SPREAD, _point(T0 + 3 * BAR_S))


async def test_tape_splits_at_the_first_live_bar_with_nav_in_the_warm_up(bus):
    await _record(bus)

    tape = await read_tape(bus)

    assert tape.first_live_bar_end_ts == T0 + 2 * BAR_S
    assert isinstance(tape.warm_up[0], b.OptionChain)
    warm_ticks = [m for m in tape.warm_up if isinstance(m, b.Quote | b.OptionQuote | b.EtfNav)]
    assert [m.ts_exchange for m in warm_ticks] == [T0 + 0.5] * 4 + [T0 + 60.5] * 4
    assert [m.nav for m in warm_ticks if isinstance(m, b.EtfNav)] == [23.9, 23.9 + 1]
    # The service replays quotes and NAV, then seeds the latest distributions from their key.
    assert isinstance(tape.warm_up[-1], b.Dividends)
    live_times = [m.ts_exchange for m in tape.live]
    assert live_times == sorted(live_times)
    assert live_times[0] == T0 + 120.5
    assert len(tape.live) == 2 * 4  # two bars of TLT, TLTW, the call and NAV
    assert tape.messages == tape.warm_up + tape.live


async def test_tape_without_a_live_bar_is_all_live(bus):
    await _record(bus)
    await bus.redis.delete(b.Streams.SPREAD)

    tape = await read_tape(bus)

    assert tape.first_live_bar_end_ts is None
    assert tape.warm_up == (await bus.get_latest(b.Keys.CHAIN, b.OptionChain),)
    assert len(tape.live) == 4 * 4 + 1


async def test_a_recorded_replay_leaves_the_last_bar_open_as_the_live_strategy_did(bus):
    """The live strategy closes a bar on the first message past its end; the tape's end is
    no such message. Bars 0-1 close in the warm-up, bar 2 on bar 3's first tick, bar 3 never
    (a replay that closed it at the end of the tape closed it on prices the live strategy had
    not finished reading: the parity test found it on a tape read while the stack ran)."""
    await _record(bus)
    tape = await read_tape(bus)

    run = backtest_recorded(load_settings(), tape)

    assert run.result.bars == 3
