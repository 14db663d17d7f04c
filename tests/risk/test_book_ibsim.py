"""The buy-write's legs from IB's executions to the book: real ib_async against ibsim.

The boundary the e2e test crosses: a BAG order (100 TLT + short call per unit) and a TLTW order
sent by `ExecutionClient`, IB's per-leg and BAG-level executions translated into bus fills,
booked, and compared with IB's own positions (reqPositions). The market is frozen, so every
price is known before the order is sent.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import ib_async
import pytest

from tests.ibsim.clients import connected, eventually, qualified
from trading.broker.execution import ExecutionClient, broker_positions
from trading.broker.orders import orders_for_intent
from trading.bus import Fill, IntentLeg, IntentPurpose, LegKind, OrderIntent, Side, SignalAction
from trading.execution.book import Book
from trading.ibsim import SimConfig, SimulatedGateway

UNITS = 2


@pytest.fixture
def frozen() -> Iterator[SimulatedGateway]:
    """A market that never moves: quotes stay at the 09:30 anchor."""
    gateway = SimulatedGateway(SimConfig(seed=11, speed=1e-9), port=0).start()
    try:
        yield gateway
    finally:
        gateway.stop()


async def test_a_buy_write_bag_books_both_legs_and_agrees_with_ibs_positions(frozen):
    async with connected(ib_async, frozen, client_id=5) as ib:
        tlt, tltw, call = await qualified(
            ib,
            ib_async.Stock("TLT", "SMART", "USD"),
            ib_async.Stock("TLTW", "SMART", "USD"),
            ib_async.Option("TLT", "20261218", 90, "C", "SMART"),
        )
        tlt_quote, tltw_quote, call_quote = await ib.reqTickersAsync(tlt, tltw, call)
        shares = int(min(300, tltw_quote.bidSize))
        assert tlt_quote.askSize >= 100 * UNITS and call_quote.bidSize >= UNITS
        legs = (
            IntentLeg(
                LegKind.BUY_WRITE,
                "TLT",
                Side.BUY,
                UNITS,
                round(100 * tlt_quote.ask - call_quote.bid + 1.0, 2),
                tlt.conId,
                call.conId,
                "20261218",
                90.0,
            ),
            IntentLeg(LegKind.STOCK, "TLTW", Side.SELL, shares, tltw_quote.bid, tltw.conId),
        )
        intent = OrderIntent(
            "bw-1", "p-1", 0.0, IntentPurpose.ENTRY, SignalAction.ENTER_SHORT_SPREAD, legs
        )
        fills: list[Fill] = []
        client = ExecutionClient(ib, ib_async)
        client.on_fill = fills.append
        client.attach()
        for leg_order in orders_for_intent(intent):
            client.place(leg_order)

        def all_filled() -> bool:
            done = {(f.sec_type, f.symbol): f.quantity for f in fills}
            return len(fills) == 4 and done.get(("STK", "TLTW")) == shares

        await eventually(all_filled, 10, what="3 executions of the BAG and 1 of TLTW")

        # the translation: one fill per leg with the leg's own contract, plus the BAG's
        by_type = {(f.sec_type, f.symbol): f for f in fills}
        stock, option = by_type[("STK", "TLT")], by_type[("OPT", "TLT")]
        bag, etf = by_type[("BAG", "TLT")], by_type[("STK", "TLTW")]
        assert (stock.con_id, stock.side, stock.quantity, stock.price) == (
            tlt.conId,
            Side.BUY,
            100 * UNITS,
            tlt_quote.ask,
        )
        assert (option.con_id, option.local_symbol, option.side, option.quantity) == (
            call.conId,
            "TLT   261218C00090000",
            Side.SELL,
            UNITS,
        )
        assert (option.price, option.multiplier) == (call_quote.bid, 100.0)
        assert (bag.side, bag.quantity) == (Side.BUY, UNITS)
        assert bag.price == pytest.approx(100 * tlt_quote.ask - call_quote.bid)
        assert (etf.con_id, etf.side, etf.price) == (tltw.conId, Side.SELL, tltw_quote.bid)
        assert {f.intent_id for f in fills} == {"bw-1"}
        # IB's fixed schedule: 0.005/share with a 1.00 minimum, 0.65 per contract
        assert (stock.commission, option.commission, bag.commission) == (1.00, 1.30, 0.0)
        assert etf.commission == pytest.approx(max(0.005 * shares, 1.0))

        # the book: TLT +100 per unit, the call short under its OCC symbol, TLTW short
        book = Book()
        book.attribute("bw-1", "p-1")
        for fill in fills:
            assert book.apply_fill(fill)
        held = {h.local_symbol: h.quantity for h in book.pair_holdings("p-1")}
        assert held == {"TLT": 100.0 * UNITS, "TLT   261218C00090000": -UNITS, "TLTW": -shares}

        # P&L at the mids, by hand: each leg's (mid - fill price) x signed quantity x multiplier
        mids = {c.conId: (q.bid + q.ask) / 2 for c, q in ((tlt, tlt_quote), (tltw, tltw_quote))}
        mids[call.conId] = (call_quote.bid + call_quote.ask) / 2
        expected = math.fsum(
            [
                (mids[tlt.conId] - tlt_quote.ask) * 100 * UNITS,
                (mids[call.conId] - call_quote.bid) * -UNITS * 100,
                (mids[tltw.conId] - tltw_quote.bid) * -shares,
                -(1.00 + 1.30 + max(0.005 * shares, 1.0)),
            ]
        )
        assert book.pair_pnl("p-1", mids)["total"] == pytest.approx(expected, abs=1e-9)

        # IB's positions (per leg, no BAG) agree with the book; option avgCost is per contract
        await eventually(lambda: len(ib.positions()) == 3, 5, what="three positions at IB")
        broker = broker_positions(ib.positions())
        assert book.differences(broker) == {}
        assert broker[call.conId].multiplier == 100.0
        # IB's average cost carries the commission: (2 x 100 x bid - 1.30) / 200 per share
        assert broker[call.conId].avg_cost == pytest.approx(call_quote.bid - 1.30 / 200)
