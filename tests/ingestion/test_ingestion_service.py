"""data-ingestion end to end: ibsim + a real redis-server + the real ib_async/ib_insync client.

Every fault is injected while the service runs; none of them needs a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date

import data_ingestion
import pytest

from tests.ingestion.pacing_rules import pacing_violations
from tests.support import async_eventually
from trading.aio import stop_tasks
from trading.broker.connection import IBConnection
from trading.broker.marketdata import BACKFILL_REQUESTS, RESUBSCRIPTIONS
from trading.broker.pacing import PacingGate, PacingRules
from trading.bus import (
    Bus,
    Channels,
    DataHealth,
    DataStatus,
    Dividends,
    EtfNav,
    Keys,
    OptionChain,
    OptionQuote,
    Position,
    Quote,
    Streams,
)
from trading.ibsim.config import SimConfig
from trading.ibsim.gateway import SimulatedGateway
from trading.ibsim.instruments import option_con_id
from trading.services.ingestion import DROPS, MarketDataFeed
from trading.services.shell import ServiceContext, serve
from trading.settings import load_settings

SERVICE = data_ingestion.SERVICE
SILENCE_S = 1.0


@pytest.fixture
def gateway():
    gw = SimulatedGateway(SimConfig(seed=1, speed=1.0)).start()
    try:
        yield gw
    finally:
        gw.stop()


def make_settings(gateway, redis_url, library="ib_async", **ingestion):
    overrides = {"silence_s": SILENCE_S, "backfill_retry_s": 0.2, **ingestion}
    return load_settings(
        redis={"url": redis_url},
        ib={"port": gateway.port, "library": library, "connect_timeout_s": 5},
        ingestion=overrides,
    )


@dataclass
class Running:
    connection: IBConnection
    feed: MarketDataFeed
    bus: Bus


@contextlib.asynccontextmanager
async def ingestion(
    gateway, redis_url, library="ib_async", prepare=None, **settings
) -> AsyncIterator[Running]:
    bus = await Bus.connect(redis_url, SERVICE, attempts=20)
    ctx = ServiceContext(SERVICE, make_settings(gateway, redis_url, library, **settings), bus,
                         logging.getLogger(SERVICE))  # fmt: skip
    connection, feed = data_ingestion.build(ctx)
    running = Running(connection, feed, bus)
    if prepare is not None:
        prepare(running)
    task = asyncio.create_task(data_ingestion.run(connection, feed))
    try:
        yield running
    finally:
        await stop_tasks([task])
        await bus.close()


async def health_of(bus: Bus) -> dict[str, DataHealth]:
    return await bus.hget_all(Keys.HEALTH, DataHealth)


async def wait_health(bus: Bus, names, status: DataStatus, timeout_s: float = 5.0):
    async def reached():
        health = await health_of(bus)
        return all(n in health and health[n].status is status for n in names) and health

    return await async_eventually(reached, timeout_s, what=f"{names} {status}")


async def fresh_quote(bus: Bus, symbol: str, after: float, timeout_s: float = 5.0) -> Quote:
    async def arrived():
        quote = await bus.get_latest(Keys.quote(symbol), Quote)
        return quote if quote is not None and quote.ts_recv > after else None

    return await async_eventually(arrived, timeout_s, what=f"{symbol} quote after {after}")


async def all_healthy(running: Running) -> dict[str, DataHealth]:
    await async_eventually(lambda: _lines_ready(running), 5, what="16 lines")
    names = [line.name for line in running.feed.md.lines.values()]
    return await wait_health(running.bus, names, DataStatus.OK)


async def _lines_ready(running: Running) -> bool:
    return len(running.feed.md.lines) == 16


def counter(metric, *labels) -> float:
    return metric.labels(*labels)._value.get()


@pytest.mark.parametrize("library", ["ib_async", "ib_insync"])
async def test_quotes_greeks_and_nav_land_in_redis_within_a_second_of_start(
    gateway, redis_url, bus, library
):
    settings = make_settings(gateway, redis_url, library)
    published: list = []

    async def listen():
        async for _channel, msg in bus.subscribe(Channels.QUOTES, Channels.OPTIONS):
            published.append(msg)

    listener = asyncio.create_task(listen())
    start = time.monotonic()
    service = asyncio.create_task(
        serve(SERVICE, data_ingestion.main, settings, redis_url, metrics_port=0)
    )
    try:

        async def everything_there():
            tlt = await bus.get_latest(Keys.quote("TLT"), Quote)
            tltw = await bus.get_latest(Keys.quote("TLTW"), Quote)
            nav = await bus.get_latest(Keys.nav("TLTW"), EtfNav)
            div = await bus.get_latest(Keys.dividends("TLTW"), Dividends)
            options = await bus.hget_all(Keys.OPTION_INDEX, OptionQuote)
            ready = tlt and tltw and nav and div and len(options) == 14
            return ready and (tlt, tltw, nav, div, options)

        tlt, tltw, nav, div, options = await async_eventually(
            everything_there, 1.0, what="all data"
        )
        elapsed = time.monotonic() - start
        chain = await bus.get_latest(Keys.CHAIN, OptionChain)
    finally:
        await stop_tasks([service, listener])
    assert elapsed < 1.0
    assert tlt.con_id == 15547841 and 0 < tlt.bid <= tlt.ask
    assert tltw.symbol == "TLTW" and 0 < tltw.bid <= tltw.ask
    assert 0.9 < tltw.bid / nav.nav < 1.1  # TLTW trades near its NAV
    # TLTW's next distribution (IB's dividend tick): the first session of December, a twelfth
    # of ibsim's 12% yield on NAV.
    assert div.next_ex_date == "20261201"
    assert div.next_amount == pytest.approx(0.12 / 12 * nav.nav, rel=0.01)
    # ibsim's clock is in its own past: tick 45 (ib_async) or the gateway clock (ib_insync).
    assert tlt.ts_exchange < tlt.ts_recv - 86_400
    # Front monthly and the next, 3 strikes each side of the money: 2 x 7 calls.
    assert sorted({o.expiry for o in chain.subscribed}) == ["20261120", "20261218"]
    assert len(chain.subscribed) == 14
    assert {str(o.con_id) for o in chain.subscribed} == set(options)
    strikes = sorted({o.strike for o in chain.subscribed})
    assert strikes == [87.0, 88.0, 89.0, 90.0, 91.0, 92.0, 93.0] and abs(chain.spot - 90) < 0.5
    for quote in options.values():
        assert 0 < quote.bid <= quote.ask
        assert 0.05 < quote.implied_vol < 0.5 and 0 < quote.delta < 1 and quote.gamma > 0
        assert quote.vega_per_point > 0 and quote.theta_per_day < 0
    deltas = {o.strike: o.delta for o in options.values() if o.expiry == "20261120"}
    assert [deltas[k] for k in strikes] == sorted(deltas.values(), reverse=True)
    assert any(isinstance(m, Quote) for m in published)
    assert any(isinstance(m, OptionQuote) for m in published)


async def test_backfill_fills_the_history_streams_within_the_pacing_rules(gateway, redis_url):
    sent: list[tuple[float, tuple]] = []

    def spy_on_history_requests(running: Running) -> None:
        ib = running.connection.ib
        request = ib.reqHistoricalDataAsync

        async def recorded(contract, end, duration, bar_size, what, *args, **kwargs):
            sent.append((time.monotonic(), (contract.conId, end, duration, bar_size, what)))
            return await request(contract, end, duration, bar_size, what, *args, **kwargs)

        ib.reqHistoricalDataAsync = recorded  # a spy: the real request still goes to ibsim

    async with ingestion(gateway, redis_url, prepare=spy_on_history_requests) as running:

        async def backfilled():
            lengths = [
                await running.bus.redis.xlen(Streams.history(line.name))
                for line in list(running.feed.md.lines.values())
            ]
            return len(lengths) == 16 and min(lengths) >= 390 and not running.feed._backfill_queue

        await async_eventually(backfilled, 30, interval_s=0.2, what="16 instruments backfilled")
        history = await running.bus.read_after(Streams.history("TLT"), count=100_000)
        option = next(ln for ln in running.feed.md.lines.values() if ln.option is not None)
        option_history = await running.bus.read_after(Streams.history(option.name), count=2000)
    assert len({key for _, key in sent}) == len(sent) == 16
    assert pacing_violations(sent) == []
    times = [entry.message.ts_exchange for entry in history]
    assert times == sorted(times)  # bars first, then the live entries held meanwhile
    assert times[0] < times[-1] - 6 * 3600  # a session of one-minute bars
    assert all(isinstance(e.message, Quote) for e in history)
    backfilled_options = [e.message for e in option_history if e.message.bid_size == 0]
    assert len(backfilled_options) >= 390
    assert all(0 < q.implied_vol < 1 and 0 < q.delta < 1 for q in backfilled_options)


async def test_pacing_violation_on_a_backfill_request_is_retried(gateway, redis_url):
    def quick_identical_retry(running: Running) -> None:
        # IB forbids an identical request within 15 s even after a failure; the feed keeps to
        # that, so the test shortens the window rather than waiting it out.
        running.feed.md.pacing = PacingGate(PacingRules(identical_window_s=0.5))

    errors = counter(BACKFILL_REQUESTS, "error")
    gateway.faults.pacing_violation_next_historical()
    async with ingestion(gateway, redis_url, prepare=quick_identical_retry) as running:

        async def tlt_backfilled():
            return await running.bus.redis.xlen(Streams.history("TLT")) >= 390

        await async_eventually(tlt_backfilled, 5, interval_s=0.1, what="TLT backfilled")
    assert counter(BACKFILL_REQUESTS, "error") == errors + 1


async def test_silent_instruments_go_stale_and_recover_when_ticks_resume(gateway, redis_url):
    async with ingestion(gateway, redis_url) as running:
        healthy = await all_healthy(running)
        gateway.faults.stop_market_data()
        stale = await wait_health(running.bus, healthy, DataStatus.STALE)
        assert "no good tick" in stale["TLT"].reason
        assert running.feed.status["state"] == "degraded"
        gateway.faults.resume_market_data()
        await wait_health(running.bus, healthy, DataStatus.OK)
        assert running.connection.reconnects == 0
        # every change is in the history, in order, and its last word is the hash's
        history = [e.message for e in await running.bus.read_after(
            Streams.HEALTH_HISTORY, "0", count=10_000, expect=DataHealth)]  # fmt: skip
        tlt = [h.status for h in history if h.symbol == "TLT"]
        assert tlt == [DataStatus.OK, DataStatus.STALE, DataStatus.OK]
        latest = {h.symbol: h for h in history}
        assert latest == await health_of(running.bus)


async def test_connectivity_lost_marks_everything_stale_and_data_lost_resubscribes(
    gateway, redis_url
):
    async with ingestion(gateway, redis_url) as running:
        healthy = await all_healthy(running)
        before = counter(RESUBSCRIPTIONS, "restored_data_lost")
        gateway.faults.send_error(1100)
        stale = await wait_health(running.bus, healthy, DataStatus.STALE)
        assert "1100" in stale["TLT"].reason
        restored_at = time.time()
        gateway.faults.send_error(1101)  # ibsim drops every stream, as IB does
        await wait_health(running.bus, healthy, DataStatus.OK)
        await fresh_quote(running.bus, "TLT", restored_at)
        assert counter(RESUBSCRIPTIONS, "restored_data_lost") == before + 16
        assert running.connection.reconnects == 0


async def test_connectivity_restored_with_data_kept_clears_stale_without_resubscribing(
    gateway, redis_url
):
    async with ingestion(gateway, redis_url) as running:
        healthy = await all_healthy(running)
        gateway.faults.send_error(1100)
        await wait_health(running.bus, healthy, DataStatus.STALE)
        restored_at = time.time()
        gateway.faults.send_error(1102)
        await wait_health(running.bus, healthy, DataStatus.OK)
        await fresh_quote(running.bus, "TLT", restored_at)
        await asyncio.sleep(SILENCE_S)  # past the subscription check after 1102
        assert counter(RESUBSCRIPTIONS, "check_after_1102") == 0


async def test_data_farm_down_is_stale_until_the_farm_is_back_then_resubscribed(gateway, redis_url):
    async with ingestion(gateway, redis_url) as running:
        healthy = await all_healthy(running)
        before = counter(RESUBSCRIPTIONS, "data_farm_ok")
        gateway.faults.send_error(2103)
        stale = await wait_health(running.bus, healthy, DataStatus.STALE)
        assert "2103" in stale["TLTW"].reason
        gateway.faults.send_error(2104)
        await wait_health(running.bus, healthy, DataStatus.OK)
        assert counter(RESUBSCRIPTIONS, "data_farm_ok") == before + 16


@pytest.mark.parametrize("code", [10167, 354])
async def test_unsubscribed_market_data_falls_back_to_delayed_and_flags_it(
    gateway, redis_url, code
):
    async with ingestion(gateway, redis_url) as running:
        healthy = await all_healthy(running)
        switched_at = time.time()
        gateway.faults.send_error(code)
        await wait_health(running.bus, healthy, DataStatus.DELAYED)
        quote = await fresh_quote(running.bus, "TLT", switched_at + 0.3)
        assert quote.delayed
        tickers = [t for t in running.connection.ib.tickers() if t.contract.symbol == "TLT"]
        assert any(t.marketDataType == 3 for t in tickers)  # ibsim really sends delayed data

        async def delayed_option():
            options = await running.bus.hget_all(Keys.OPTION_INDEX, OptionQuote)
            return any(o.delayed and o.ts_recv > switched_at + 0.3 for o in options.values())

        await async_eventually(delayed_option, 5, what="a delayed option quote")
        assert running.feed.status["delayed"] is True


@pytest.mark.parametrize("library", ["ib_async", "ib_insync"])
async def test_dropped_socket_reconnects_and_resubscribes_without_a_restart(
    gateway, redis_url, library
):
    async with ingestion(gateway, redis_url, library) as running:
        healthy = await all_healthy(running)
        dropped_at = time.time()
        gateway.faults.drop_connections()
        await wait_health(running.bus, ["TLT"], DataStatus.STALE)
        await async_eventually(lambda: _reconnected(running), 10, what="reconnected after the drop")
        await fresh_quote(running.bus, "TLT", dropped_at, timeout_s=10)
        await wait_health(running.bus, healthy, DataStatus.OK, timeout_s=10)

        async def options_fresh_again():
            # Health and the quotes' batch are separate writes: poll, do not read once.
            options = await running.bus.hget_all(Keys.OPTION_INDEX, OptionQuote)
            assert len(options) == 14
            assert sum(o.ts_recv > dropped_at for o in options.values()) >= 7
            return True

        await async_eventually(options_fresh_again, 10, what="options quoted again")


async def _reconnected(running: Running) -> bool:
    return running.connection.reconnects >= 1 and running.connection.connected


async def test_bad_ticks_from_ibsim_are_never_published_as_good(gateway, redis_url, bus):
    published: list = []

    async def listen():
        async for _channel, msg in bus.subscribe(Channels.QUOTES, Channels.OPTIONS):
            published.append(msg)

    listener = asyncio.create_task(listen())
    try:
        async with ingestion(gateway, redis_url) as running:
            await all_healthy(running)
            option = next(ln.option for ln in running.feed.md.lines.values() if ln.option)
            crossed = counter(DROPS, "crossed")
            nan = counter(DROPS, "nan_price")
            for symbol in ("TLT", "TLTW", option.local_symbol):
                gateway.faults.bad_quote(symbol, "crossed")
            await async_eventually(
                lambda: _counter_above(DROPS, "crossed", crossed + 2), 5, what="crossed drops"
            )
            gateway.faults.bad_quote("TLT", "nan")
            await async_eventually(
                lambda: _counter_above(DROPS, "nan_price", nan), 5, what="nan drops"
            )
            after = time.time()
            await fresh_quote(running.bus, "TLT", after)  # good ticks flow again
            latest = await running.bus.get_latest(Keys.quote("TLT"), Quote)
    finally:
        await stop_tasks([listener])
    assert latest.bid <= latest.ask
    assert published
    for msg in published:
        assert math.isfinite(msg.bid) and math.isfinite(msg.ask) and 0 < msg.bid <= msg.ask


async def test_a_refused_quote_flags_the_instrument_at_once_and_a_good_one_clears_it(
    gateway, redis_url
):
    """NaN ticks for TLTW: flagged stale within a tick round, not `silence_s` (30 s here) after
    its last good quote, which is no longer its price; ok again with the next good quote."""
    async with ingestion(gateway, redis_url, silence_s=30.0) as running:
        await all_healthy(running)
        struck = time.time()
        gateway.faults.bad_quote("TLTW", "nan")
        stale = await wait_health(running.bus, ["TLTW"], DataStatus.STALE)
        assert stale["TLTW"].reason == "IB's latest quote refused (nan_price)"
        assert stale["TLTW"].ts - struck < 2.0
        assert stale["TLT"].status is DataStatus.OK
        await wait_health(running.bus, ["TLTW"], DataStatus.OK)  # the next batch is clean


async def _counter_above(metric, label, value) -> bool:
    return counter(metric, label) > value


async def test_option_subscriptions_follow_tlt_when_it_moves_a_strike(gateway, redis_url):
    async with ingestion(gateway, redis_url, max_market_data_lines=14) as running:
        await async_eventually(lambda: _lines(running, 14), 5, what="14 lines")
        chain = await async_eventually(lambda: running.bus.get_latest(Keys.CHAIN, OptionChain))
        assert sorted({o.strike for o in chain.subscribed}) == [88.0, 89.0, 90.0, 91.0, 92.0, 93.0]
        # The feed believes TLT is at 93.4: the calls move up and the ones far below go.
        running.feed._recentring = True  # hold the tick-driven re-centre while we move it
        await running.feed._recentre(93.4)

        async def moved_up():
            chain = await running.bus.get_latest(Keys.CHAIN, OptionChain)
            return sorted({o.strike for o in chain.subscribed}) == [
                91.0, 92.0, 93.0, 94.0, 95.0, 96.0,
            ]  # fmt: skip

        await async_eventually(moved_up, 2, what="chain moved up")
        index = await running.bus.hget_all(Keys.OPTION_INDEX, OptionQuote)
        assert {o.strike for o in index.values()} <= {91.0, 92.0, 93.0, 94.0, 95.0, 96.0}
        assert len(running.feed.md.lines) == 14  # 2 stocks + 12 calls: the budget holds
        # TLT's own ticks (near 90) bring the calls back around the money.
        running.feed._recentring = False

        async def back_around_90():
            chain = await running.bus.get_latest(Keys.CHAIN, OptionChain)
            return sorted({o.strike for o in chain.subscribed}) == [
                88.0, 89.0, 90.0, 91.0, 92.0, 93.0,
            ]  # fmt: skip

        await async_eventually(back_around_90, 5, what="calls re-centred on TLT")

        async def new_calls_quoted():
            index = await running.bus.hget_all(Keys.OPTION_INDEX, OptionQuote)
            return {o.strike for o in index.values()} == {88.0, 89.0, 90.0, 91.0, 92.0, 93.0}

        await async_eventually(new_calls_quoted, 5, what="quotes of the re-centred calls")


async def _lines(running: Running, n: int) -> bool:
    return len(running.feed.md.lines) == n


def held_call(con_id: int, quantity: float) -> Position:
    return Position("TLT", "TLT   270115C00100000", con_id, "OPT", quantity, 0.4, 100.0, None,
                    0.0, 0.0, time.time())  # fmt: skip


def streamed_con_ids(gateway) -> set[int]:
    """The conIds ibsim is streaming to its clients (what IB sees, not what the feed thinks)."""

    def read():
        return {
            sub.instrument.con_id for session in gateway._core.sessions
            for sub in session.market_data.values() if sub.instrument is not None
        }  # fmt: skip

    return gateway.call(read)


async def test_a_held_call_outside_the_window_stays_quoted_until_its_position_is_flat(
    gateway, redis_url, bus
):
    # The third monthly (Jan 2027), strike 100 with TLT near 90: neither its expiry nor its
    # strike is in the window (front two monthlies, 87-93), and the feed's chain lacks it.
    held_id = option_con_id(date(2027, 1, 15), 100.0, "C")
    await bus.hset_latest(Keys.POSITIONS, str(held_id), held_call(held_id, -1.0))

    def quick_refresh(running: Running) -> None:
        running.feed.held_refresh_s = 0.1

    async with ingestion(
        gateway, redis_url, prepare=quick_refresh, max_market_data_lines=14
    ) as running:

        async def held_quoted():
            quote = await running.bus.get_latest(Keys.option(held_id), OptionQuote)
            index = await running.bus.hget_all(Keys.OPTION_INDEX, OptionQuote)
            return quote is not None and str(held_id) in index and quote

        quote = await async_eventually(held_quoted, 5, what="the held call quoted")
        assert (quote.expiry, quote.strike, quote.right) == ("20270115", 100.0, "C")
        assert 0 < quote.bid <= quote.ask and 0 < quote.delta < 0.5  # far out of the money
        assert held_id in streamed_con_ids(gateway)
        # Budget 14 = 2 stocks + 12 options: the held call takes one, the window keeps 11,
        # and the held call is not offered to the strategy as a strike to write.
        chain = await running.bus.get_latest(Keys.CHAIN, OptionChain)
        assert len(running.feed.md.lines) == 14 and running.feed.md.held_lines == (held_id,)
        assert len(chain.subscribed) == 11
        assert held_id not in {o.con_id for o in chain.subscribed}
        await wait_health(running.bus, [str(held_id)], DataStatus.OK)
        # Its history is backfilled like a window call's (live entries wait for the bars).
        history = await running.bus.redis.xlen(Streams.history(str(held_id)))
        assert history >= 1 or running.feed._history_held.get(str(held_id))
        assert running.feed.status["held_lines"] == 1

        # Flat: the line goes back to the window.
        await bus.hset_latest(Keys.POSITIONS, str(held_id), held_call(held_id, 0.0))

        async def released():
            chain = await running.bus.get_latest(Keys.CHAIN, OptionChain)
            index = await running.bus.hget_all(Keys.OPTION_INDEX, OptionQuote)
            return (
                held_id not in running.feed.md.lines and str(held_id) not in index
                and len(chain.subscribed) == 12 and len(running.feed.md.lines) == 14
            )  # fmt: skip

        await async_eventually(released, 5, what="the held call's line released")
        assert held_id not in streamed_con_ids(gateway)
        assert str(held_id) not in await health_of(running.bus)
        assert running.feed.md.held_lines == () and running.feed.held_unquoted == ()


async def test_a_held_contract_ibsim_does_not_know_is_reported_and_the_window_is_unharmed(
    gateway, redis_url, bus
):
    unknown_id = 999_999_999
    await bus.hset_latest(Keys.POSITIONS, str(unknown_id), held_call(unknown_id, -1.0))
    async with ingestion(gateway, redis_url) as running:
        await all_healthy(running)
        chain = await async_eventually(lambda: running.bus.get_latest(Keys.CHAIN, OptionChain))
        assert len(chain.subscribed) == 14
        assert running.feed.held_unquoted == (unknown_id,)
        assert running.feed.status["held_unquoted"] == [unknown_id]


async def test_the_calls_roll_to_the_next_expiry_once_the_front_one_has_expired(redis_url):
    """The service runs for months: once IB's date passes the front monthly expiry, its calls
    are dropped and the next expiry's subscribed, without a reconnect (found by the fault
    suite: the expired calls stayed subscribed, silent, and the feed degraded for good)."""
    from datetime import datetime

    from trading.ibsim.config import ET

    # 20 s of wall time before the close of 2026-11-20 (a monthly expiry), at 60x
    config = SimConfig(seed=1, speed=60.0, start=datetime(2026, 11, 20, 15, 40, tzinfo=ET))
    with SimulatedGateway(config, port=0) as gw:
        async with ingestion(gw, redis_url, silence_s=30.0) as running:
            chain = await async_eventually(
                lambda: running.bus.get_latest(Keys.CHAIN, OptionChain), 10, what="the chain"
            )
            assert min(o.expiry for o in chain.subscribed) == "20261120"

            async def rolled():
                chain = await running.bus.get_latest(Keys.CHAIN, OptionChain)
                return {o.expiry for o in chain.subscribed} == {"20261218", "20270115"}

            await async_eventually(rolled, 60, what="calls of December and January only")
            assert sorted(running.feed.md.chain.calls) == ["20261218", "20270115"]

            async def backfilled():  # an expired call has no bars: it is not asked forever
                return not running.feed._backfill_queue

            await async_eventually(backfilled, 30, what="the backfill queue drained")
