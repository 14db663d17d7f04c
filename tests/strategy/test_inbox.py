"""The live strategy's conflating inbox (trading.strategy.inbox): what it keeps, what it
replaces, the order it hands ticks to the engine in, and which ticks it drops as already
applied. Bars here are whole minutes of exchange time (the engine's are session-aligned; the
inbox only asks for a bar number)."""

from __future__ import annotations

from trading.bus import DataHealth, DataStatus, EtfNav, OptionQuote, Quote, RiskStatus
from trading.domain.risk import TradingState
from trading.strategy.inbox import Inbox, inbox_key

T0 = 1_700_000_040.0  # a whole minute: bar T0 // 60


def minute(ts: float) -> int:
    return int(ts // 60)


def quote(symbol: str, ts: float, bid: float = 90.0, recv: float | None = None) -> Quote:
    return Quote(symbol, 1, bid, bid + 0.02, 100.0, 100.0, None, ts, ts if recv is None else recv)


def nav(ts: float, value: float, recv: float | None = None) -> EtfNav:
    return EtfNav("TLTW", value, ts, ts if recv is None else recv)


def option(con_id: int, ts: float, bid: float = 1.0) -> OptionQuote:
    return OptionQuote(
        "TLT", con_id, "TLT  270115C00090000", "20270115", 90.0, "C", bid, bid + 0.05,
        10.0, 10.0, 0.15, 0.5, 0.05, 0.1, -0.02, 90.0, bid + 0.025, ts, ts,
    )  # fmt: skip


def test_ticks_of_one_instrument_in_one_bar_replace_each_other():
    inbox = Inbox(minute)
    assert inbox.put(quote("TLT", T0 + 1, bid=90.00), 1.0) is False
    assert inbox.put(quote("TLT", T0 + 30, bid=90.10), 2.0) is True
    assert inbox.take() == [(quote("TLT", T0 + 30, bid=90.10), 2.0)]
    assert inbox.take() == []  # taken: the inbox is empty


def test_a_tick_of_the_next_bar_does_not_replace_the_last_of_its_bar():
    """The bar must close on its own prices: both ticks reach the engine, in time order."""
    inbox = Inbox(minute)
    inbox.put(quote("TLT", T0 + 59, bid=90.00), 1.0)
    assert inbox.put(quote("TLT", T0 + 61, bid=91.00), 2.0) is False
    assert [msg.bid for msg, _ in inbox.take()] == [90.00, 91.00]


def test_instruments_are_kept_apart_and_handed_over_in_exchange_time_order():
    inbox = Inbox(minute)
    inbox.put(quote("TLTW", T0 + 20), 1.0)
    inbox.put(option(501, T0 + 5), 2.0)
    inbox.put(option(502, T0 + 10), 3.0)
    inbox.put(quote("TLT", T0 + 15), 4.0)
    inbox.put(nav(T0 + 1, 25.0), 5.0)
    inbox.put(option(501, T0 + 25, bid=1.2), 6.0)  # replaces 501's first quote
    taken = inbox.take()
    assert [arrived for _, arrived in taken] == [5.0, 3.0, 4.0, 1.0, 6.0]
    assert [msg.ts_exchange - T0 for msg, _ in taken] == [1, 10, 15, 20, 25]


def test_health_and_risk_status_keep_only_their_latest_whatever_their_time():
    inbox = Inbox(minute)
    inbox.put(DataHealth("TLT", DataStatus.STALE, "no tick", T0), 1.0)
    assert inbox.put(DataHealth("TLT", DataStatus.OK, "", T0 + 600), 2.0) is True
    assert inbox.put(DataHealth("TLTW", DataStatus.OK, "", T0), 3.0) is False
    inbox.put(RiskStatus(T0, TradingState.ACTIVE, ""), 4.0)
    assert inbox.put(RiskStatus(T0 + 900, TradingState.HALTED, "kill"), 5.0) is True
    kept = [msg for msg, _ in inbox.take()]
    assert len(kept) == 3
    assert RiskStatus(T0 + 900, TradingState.HALTED, "kill") in kept
    assert DataHealth("TLT", DataStatus.OK, "", T0 + 600) in kept


def test_the_key_names_the_instrument_in_its_first_two_parts():
    assert inbox_key(quote("TLT", T0), minute) == ("quote", "TLT", minute(T0))
    assert inbox_key(option(501, T0 + 61), minute) == ("option_quote", 501, minute(T0) + 1)
    assert inbox_key(nav(T0, 25.0), minute)[:2] == ("etf_nav", "TLTW")


def test_a_tick_no_newer_than_the_newest_applied_is_already_applied():
    inbox = Inbox(minute)
    applied = quote("TLT", T0 + 10, recv=T0 + 10.5)
    inbox.applied(applied)
    assert inbox.already_applied(applied)  # the same tick again (the subscription overlap)
    assert inbox.already_applied(quote("TLT", T0 + 9))  # older
    assert inbox.already_applied(quote("TLT", T0 + 10, recv=T0 + 10.1))  # same ts, older recv
    assert not inbox.already_applied(quote("TLT", T0 + 10, recv=T0 + 10.6))  # newer recv
    assert not inbox.already_applied(quote("TLT", T0 + 11))
    assert not inbox.already_applied(quote("TLTW", T0 + 1))  # another instrument: none yet
    assert not inbox.already_applied(DataHealth("TLT", DataStatus.OK, "", T0))  # not a tick


def test_a_tick_with_equal_stamps_is_a_duplicate_only_if_it_is_the_same_tick():
    """A NAV read without a new quote keeps the ticker's stamps: the value is what differs."""
    inbox = Inbox(minute)
    inbox.applied(nav(T0 + 5, 25.00))
    assert inbox.already_applied(nav(T0 + 5, 25.00))
    assert not inbox.already_applied(nav(T0 + 5, 25.01))


def test_an_older_tick_applied_later_does_not_move_the_newest_back():
    inbox = Inbox(minute)
    inbox.applied(quote("TLT", T0 + 30))
    inbox.applied(quote("TLT", T0 + 5))
    assert inbox.already_applied(quote("TLT", T0 + 20))
    inbox.applied(quote("TLT", T0 + 30, bid=90.5))  # equal stamps: the later one is the newest
    assert inbox.already_applied(quote("TLT", T0 + 30, bid=90.5))
    assert not inbox.already_applied(quote("TLT", T0 + 30))


def test_the_first_tick_of_a_later_bar_opens_it_whatever_its_instrument():
    """The service lets the engine run at once on such a tick (it closes the bar before)."""
    inbox = Inbox(minute)
    health = DataHealth("TLT", DataStatus.OK, "", T0)
    assert inbox.opens_bar(health) is False  # not a tick: no bar
    assert inbox.opens_bar(quote("TLT", T0 + 1)) is True  # the first tick seen
    assert inbox.opens_bar(option(7, T0 + 2)) is False  # same bar
    assert inbox.opens_bar(nav(T0 + 59, 25.0)) is False
    assert inbox.opens_bar(option(7, T0 + 60)) is True  # the next bar, an option's tick
    assert inbox.opens_bar(quote("TLTW", T0 + 61)) is False  # the rest of its burst
    assert inbox.opens_bar(quote("TLT", T0 + 30)) is False  # late, an older bar
    assert inbox.opens_bar(nav(T0 + 180, 25.0)) is True  # bars can be skipped
    assert inbox.newest_bar == minute(T0 + 180)
