"""Translators and the data-quality gate, fed real ib_async/ib_insync Ticker objects."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import ib_async
import ib_insync
import pytest

from trading.broker.translate import (
    BadTick,
    DropReason,
    chain_option_from_contract,
    exchange_time,
    nav_from_ticks,
    option_quote_from_ticker,
    quote_from_ticker,
    receive_time,
)
from trading.bus import ChainOption, decode, encode

CALL = ChainOption(
    con_id=500_123_456, local_symbol="TLT   261218C00090000", expiry="20261218", strike=90.0,
    right="C",
)  # fmt: skip


def greeks(lib=ib_async, **overrides):
    values = dict(
        tickAttrib=0, impliedVol=0.16, delta=0.52, optPrice=2.10, pvDividend=0.0, gamma=0.09,
        vega=0.11, theta=-0.03, undPrice=90.05,
    )  # fmt: skip
    values.update(overrides)
    return lib.OptionComputation(**values)


def make_ticker(lib, contract, values):
    # ib_async's Ticker resets its fields in __post_init__: set them the way the wrapper does.
    ticker = lib.Ticker(contract=contract)
    for name, value in values.items():
        setattr(ticker, name, value)
    return ticker


def stock_ticker(lib=ib_async, **fields):
    values = dict(bid=90.01, ask=90.03, bidSize=300.0, askSize=500.0, last=90.02)
    values.update(fields)
    return make_ticker(lib, lib.Stock("TLT", "SMART", "USD"), values)


def option_ticker(lib=ib_async, model=None, **fields):
    values = dict(bid=2.05, ask=2.15, bidSize=10.0, askSize=12.0)
    values.update(fields)
    ticker = make_ticker(lib, lib.Option("TLT", "20261218", 90.0, "C", "SMART"), values)
    ticker.modelGreeks = greeks(lib) if model is None else model
    return ticker


@pytest.mark.parametrize("lib", [ib_async, ib_insync])
def test_good_stock_ticker_becomes_a_quote_that_round_trips_the_bus(lib):
    quote = quote_from_ticker(stock_ticker(lib), "TLT", 15547841, ts_recv=1_700_000_000.5)
    assert (quote.bid, quote.ask, quote.bid_size, quote.ask_size) == (90.01, 90.03, 300, 500)
    assert quote.last == 90.02
    assert quote.ts_recv == 1_700_000_000.5
    assert quote.ts_exchange == 1_700_000_000.5  # no tick 45: IB gave no time
    assert decode(encode(quote)) == quote


def test_exchange_time_is_ibs_tick_45_when_the_library_kept_it():
    ticker = stock_ticker(lastTimestamp=datetime(2026, 11, 2, 14, 30, tzinfo=UTC))
    assert exchange_time(ticker, 5.0) == datetime(2026, 11, 2, 14, 30, tzinfo=UTC).timestamp()


def test_receive_time_prefers_the_librarys_socket_stamp():
    ticker = stock_ticker()
    assert receive_time(ticker, 7.0) == 7.0
    ticker.time = datetime(2026, 11, 2, 14, 30, tzinfo=UTC)
    assert receive_time(ticker, 7.0) == ticker.time.timestamp()
    ticker.timestamp = 1234.5
    assert receive_time(ticker, 7.0) == 1234.5


@pytest.mark.parametrize(
    ("fields", "reason", "field"),
    [
        ({"bid": math.nan}, DropReason.NAN_PRICE, "bid"),
        ({"ask": math.nan}, DropReason.NAN_PRICE, "ask"),
        ({"bid": -1.0}, DropReason.NON_POSITIVE_PRICE, "bid"),  # ib_async's empty side
        ({"ask": 0.0}, DropReason.NON_POSITIVE_PRICE, "ask"),
        ({"ask": math.inf}, DropReason.NON_POSITIVE_PRICE, "ask"),
        ({"bid": 90.05, "ask": 90.03}, DropReason.CROSSED, "bid"),
        ({"bidSize": 0.0}, DropReason.NON_POSITIVE_SIZE, "bid_size"),
        ({"askSize": math.nan}, DropReason.NAN_PRICE, "ask_size"),
    ],
)
def test_bad_stock_ticks_are_rejected_with_their_reason(fields, reason, field):
    with pytest.raises(BadTick) as caught:
        quote_from_ticker(stock_ticker(**fields), "TLT", 15547841, ts_recv=1.0)
    assert caught.value.reason is reason
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)
    assert "TLT" in str(caught.value) and field in str(caught.value)


@pytest.mark.parametrize("size", [0.0, 10.0])
def test_an_option_bid_at_zero_is_a_quote_a_stock_bid_at_zero_is_not(size):
    """A call far out of the money is bid 0.00 (a real quote, marked at ask/2); refusing it left
    a held call with no mark, and risk could not close it (found by the fault suite)."""
    quote = option_quote_from_ticker(
        option_ticker(bid=0.0, bidSize=size, ask=0.05), CALL, ts_recv=3.0, max_implied_vol=3.0
    )
    assert (quote.bid, quote.bid_size, quote.ask) == (0.0, size, 0.05)
    with pytest.raises(BadTick) as caught:
        option_quote_from_ticker(
            option_ticker(bid=-1.0, ask=0.05), CALL, ts_recv=3.0, max_implied_vol=3.0
        )
    assert caught.value.reason is DropReason.NON_POSITIVE_PRICE  # ib_async's "no bid" at all
    with pytest.raises(BadTick):
        quote_from_ticker(stock_ticker(bid=0.0), "TLT", 15547841, ts_recv=1.0)


def test_locked_quote_is_allowed_and_a_missing_last_is_none():
    quote = quote_from_ticker(stock_ticker(bid=90.0, ask=90.0, last=math.nan), "TLT", 1, 1.0)
    assert quote.bid == quote.ask == 90.0
    assert quote.last is None


@pytest.mark.parametrize("lib", [ib_async, ib_insync])
def test_good_option_ticker_becomes_an_option_quote_with_ibs_greeks(lib):
    quote = option_quote_from_ticker(option_ticker(lib), CALL, ts_recv=3.0, max_implied_vol=3.0)
    assert (quote.con_id, quote.strike, quote.expiry, quote.right) == (
        CALL.con_id,
        90.0,
        "20261218",
        "C",
    )
    assert (quote.implied_vol, quote.delta, quote.gamma) == (0.16, 0.52, 0.09)
    assert (quote.vega_per_point, quote.theta_per_day) == (0.11, -0.03)
    assert (quote.model_price, quote.underlying_price) == (2.10, 90.05)
    assert decode(encode(quote)) == quote


@pytest.mark.parametrize(
    ("model", "reason", "field"),
    [
        (None, DropReason.MISSING_GREEKS, "model_greeks"),
        # The libraries map delta/gamma -2 to None but keep vega/theta at -2.
        (greeks(delta=None), DropReason.MISSING_GREEKS, "delta"),
        (greeks(gamma=None), DropReason.MISSING_GREEKS, "gamma"),
        (greeks(vega=-2.0), DropReason.GREEKS_NOT_COMPUTED, "vega"),
        (greeks(theta=-2.0), DropReason.GREEKS_NOT_COMPUTED, "theta"),
        (greeks(impliedVol=None), DropReason.MISSING_GREEKS, "implied_vol"),
        (greeks(impliedVol=math.nan), DropReason.MISSING_GREEKS, "implied_vol"),
        (greeks(impliedVol=0.0), DropReason.IMPLAUSIBLE_IV, "implied_vol"),
        (greeks(impliedVol=3.5), DropReason.IMPLAUSIBLE_IV, "implied_vol"),
        (greeks(delta=1.2), DropReason.IMPLAUSIBLE_GREEKS, "delta"),
        (greeks(delta=-0.3), DropReason.IMPLAUSIBLE_GREEKS, "delta"),
        (greeks(gamma=-0.01), DropReason.IMPLAUSIBLE_GREEKS, "gamma"),
        (greeks(undPrice=None), DropReason.MISSING_GREEKS, "underlying_price"),
    ],
)
def test_option_ticks_with_missing_or_sentinel_greeks_are_rejected(model, reason, field):
    ticker = option_ticker()
    ticker.modelGreeks = model
    with pytest.raises(BadTick) as caught:
        option_quote_from_ticker(ticker, CALL, ts_recv=3.0, max_implied_vol=3.0)
    assert caught.value.reason is reason
    assert caught.value.field == field


def test_option_ticker_with_crossed_book_is_rejected_before_its_greeks_are_read():
    with pytest.raises(BadTick) as caught:
        option_quote_from_ticker(option_ticker(bid=2.2, ask=2.1), CALL, 3.0, 3.0)
    assert caught.value.reason is DropReason.CROSSED


@pytest.mark.parametrize("lib", [ib_async, ib_insync])
def test_nav_is_the_newest_nav_last_tick_of_the_batch(lib):
    now = datetime(2026, 11, 2, 14, 30, tzinfo=UTC)
    ticks = [
        lib.TickData(now, 96, 24.01, 0.0),
        lib.TickData(now, 1, 24.05, 100.0),
        lib.TickData(now, 92, 23.90, 0.0),  # NAV close, not the live NAV
        lib.TickData(now, 96, 24.02, 0.0),
    ]
    nav = nav_from_ticks(ticks, "TLTW", ts_exchange=9.0, ts_recv=10.0)
    assert nav is not None and nav.nav == 24.02 and nav.symbol == "TLTW"
    assert nav_from_ticks(ticks[1:3], "TLTW", 9.0, 10.0) is None
    with pytest.raises(BadTick) as caught:
        nav_from_ticks([lib.TickData(now, 96, -1.0, 0.0)], "TLTW", 9.0, 10.0)
    assert caught.value.reason is DropReason.BAD_NAV


def test_chain_option_from_a_qualified_contract():
    contract = ib_async.Option("TLT", "20261218", 90.0, "C", "SMART", conId=777,
                               localSymbol="TLT   261218C00090000")  # fmt: skip
    assert chain_option_from_contract(contract) == ChainOption(
        777, "TLT   261218C00090000", "20261218", 90.0, "C"
    )
    with pytest.raises(ValueError, match="conId"):
        chain_option_from_contract(ib_async.Option("TLT", "20261218", 90.0, "C", "SMART"))


def test_every_quote_of_a_batch_is_stamped_with_the_connections_newest_trade_time():
    """Tick 45 is an instrument's last trade: an option last traded hours ago still quotes now.
    The clock is the newest tick 45 on the connection; it never goes back until the next
    connection resets it, and stays unset without tick 45 (ib_insync)."""
    from trading.broker.translate import ExchangeClock

    def at(hour: int, minute: int, second: int = 0) -> datetime:
        return datetime(2026, 11, 2, hour, minute, second, tzinfo=UTC)

    clock = ExchangeClock()
    tlt = ib_async.Ticker(lastTimestamp=at(15, 0, 5))
    option = ib_async.Ticker(lastTimestamp=at(12, 12))
    assert clock.update([option, tlt]) == at(15, 0, 5).timestamp()
    assert clock.update([option]) == at(15, 0, 5).timestamp()  # an old trade: not back
    assert clock.update([ib_async.Ticker(lastTimestamp=at(15, 0, 6))]) == at(15, 0, 6).timestamp()
    clock.reset()
    assert clock.update([ib_insync.Ticker()]) is None
    assert clock.update([option]) == at(12, 12).timestamp()

    ticker = stock_ticker(lastTimestamp=at(12, 12))
    stamped = quote_from_ticker(ticker, "TLT", 15547841, 1.0, ts_exchange=at(15, 0, 6).timestamp())
    assert stamped.ts_exchange == at(15, 0, 6).timestamp()
    assert quote_from_ticker(ticker, "TLT", 15547841, 1.0).ts_exchange == at(12, 12).timestamp()


def test_without_tick_45_the_gateway_clock_stands_in_until_a_trade_time_arrives():
    """ib_insync drops tick 45: the fallback (the gateway's clock) stamps the batch. Once the
    connection shows a trade time, the fallback is no longer used; the clock never goes back."""
    from trading.broker.translate import ExchangeClock

    clock = ExchangeClock()
    assert clock.update([ib_insync.Ticker()], fallback=1000.0) == 1000.0
    assert clock.update([ib_insync.Ticker()], fallback=999.0) == 1000.0  # never back
    assert clock.update([ib_insync.Ticker()], fallback=1060.0) == 1060.0
    trade = datetime.fromtimestamp(1100.0, UTC)
    assert clock.update([ib_async.Ticker(lastTimestamp=trade)], fallback=1050.0) == 1100.0
    assert clock.update([ib_async.Ticker()], fallback=5000.0) == 1100.0  # trade times rule now
    clock.reset()
    assert clock.update([ib_async.Ticker()], fallback=None) is None


def test_gateway_clock_follows_a_real_gateway_from_whole_second_samples():
    """reqCurrentTime answers whole seconds. Sampled every 1.003 s, a gateway at 1x is known
    to within a second between samples, and the rate settles on 1."""
    from trading.broker.translate import GatewayClock

    clock = GatewayClock()
    assert clock.now(0.0) is None
    truth = lambda local: 1_793_631_600.4 + local  # noqa: E731
    for i in range(12):
        local = i * 1.003
        clock.observe(math.floor(truth(local)), local)
    assert clock.rate == pytest.approx(1.0, abs=0.01)
    local = 11 * 1.003 + 0.6
    assert abs(clock.now(local) - truth(local)) < 1.0


def test_gateway_clock_follows_a_simulator_at_60x_across_a_night():
    """A simulator at 60x jumps 17.5 hours at the close: the pair of samples spanning the jump
    does not move the rate, and the stamps carry the jump from the next sample on."""
    from trading.broker.translate import GatewayClock

    clock = GatewayClock()
    origin, night = 1_793_631_600.0, 17.5 * 3600

    def truth(local: float) -> float:
        return origin + 60.0 * local + (night if local >= 5.5 else 0.0)

    assert clock.now(0.0) is None
    clock.observe(math.floor(truth(0.0)), 0.0)
    assert clock.rate == 0.0 and clock.now(0.5) == origin  # no rate yet: the newest sample
    for step in range(1, 10):
        local = step * 1.0
        clock.observe(math.floor(truth(local)), local)
        assert abs(clock.now(local + 0.4) - truth(local + 0.4)) < 2.0 or step < 3, step
    assert clock.rate == pytest.approx(60.0, abs=1.0)
    assert clock.now(9.5) > origin + night


def test_gateway_clock_never_goes_back_and_stops_when_samples_stop():
    from trading.broker.translate import GatewayClock

    clock = GatewayClock(min_pairs=1, max_extrapolation_s=2.0)
    clock.observe(1000.0, 0.0)
    clock.observe(1010.0, 1.0)  # rate 10
    assert clock.now(1.5) == 1015.0
    clock.observe(1012.0, 1.6)  # the gateway was slower than extrapolated: hold, never back
    assert clock.now(1.6) == 1015.0
    assert clock.now(60.0) == clock.now(1.6 + 2.0)  # no samples for a minute: stands still
    with pytest.raises(ValueError, match="gateway_s"):
        clock.observe(float("nan"), 2.0)
    with pytest.raises(ValueError, match="min_pairs"):
        GatewayClock(window=2, min_pairs=3)
