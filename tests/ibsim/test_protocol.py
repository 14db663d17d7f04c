"""Wire format: the placeOrder messages the real clients write parse field for field; the
server's value encoding follows the decoders' type rules; the commission schedule."""

from __future__ import annotations

import importlib
import math
import struct

import numpy as np
import pytest

from trading.ibsim import MarketModel, SimConfig
from trading.ibsim.board import QuoteBoard
from trading.ibsim.broker import Broker
from trading.ibsim.protocol import FrameReader, encode_field, frame, parse_place_order


def _captured_place_order(library: str, contract_kwargs: dict, order_setup) -> list[str]:
    """The fields the real ``library`` client writes for placeOrder at server version 176."""
    ibm = importlib.import_module(library)
    client = ibm.client.Client(ibm.wrapper.Wrapper(ibm.IB()))
    client.connState = client.CONNECTED
    client._serverVersion = 176
    sent: list[bytes] = []
    client.conn.sendMsg = sent.append
    contract = ibm.Contract(**contract_kwargs)
    if contract.secType == "BAG":
        contract.comboLegs = [
            ibm.ComboLeg(conId=15547841, ratio=100, action="BUY", exchange="SMART"),
            ibm.ComboLeg(conId=539256360, ratio=1, action="SELL", exchange="SMART"),
        ]
    order = order_setup(ibm)
    client.placeOrder(42, contract, order)
    (raw,) = sent
    (length,) = struct.unpack(">I", raw[:4])
    fields = raw[4:].decode().split("\0")
    assert length == len(raw) - 4 and fields.pop() == ""
    return fields


STOCK = {
    "conId": 15547841,
    "symbol": "TLT",
    "secType": "STK",
    "exchange": "SMART",
    "currency": "USD",
}
BAG = {"symbol": "TLT", "secType": "BAG", "exchange": "SMART", "currency": "USD"}


def _limit_gtc(ibm):
    order = ibm.LimitOrder("SELL", 250, 91.37, tif="GTC", orderRef="intent-7", outsideRth=True)
    order.ocaGroup = "pair-1"
    return order


def _bag_limit(ibm):
    order = ibm.LimitOrder("BUY", 3, 8960.5)
    order.smartComboRoutingParams = [ibm.TagValue("NonGuaranteed", "1")]
    return order


def _conditional_algo(ibm):
    order = ibm.LimitOrder("BUY", 100, 90.0)
    order.conditions = [ibm.PriceCondition(price=91.5, conId=15547841, exch="SMART")]
    order.algoStrategy = "Adaptive"
    order.algoParams = [ibm.TagValue("adaptivePriority", "Normal")]
    return order


def _peg_mid(ibm):
    order = ibm.Order(action="BUY", totalQuantity=100, orderType="PEG MID")
    order.midOffsetAtWhole = 0.01
    order.midOffsetAtHalf = 0.005
    return order


@pytest.mark.parametrize("library", ["ib_async", "ib_insync"])
@pytest.mark.parametrize(
    ("contract", "setup", "expected"),
    [
        (STOCK, lambda ibm: ibm.MarketOrder("BUY", 100), ("BUY", 100.0, "MKT", None, "", "")),
        (STOCK, _limit_gtc, ("SELL", 250.0, "LMT", 91.37, "GTC", "intent-7")),
        (BAG, _bag_limit, ("BUY", 3.0, "LMT", 8960.5, "", "")),
        (STOCK, _conditional_algo, ("BUY", 100.0, "LMT", 90.0, "", "")),
        (STOCK, _peg_mid, ("BUY", 100.0, "PEG MID", None, "", "")),
    ],
)
async def test_place_order_from_the_real_client_parses_every_field(
    library, contract, setup, expected
):
    fields = _captured_place_order(library, contract, setup)
    request = parse_place_order(fields, 176)  # raises if a field is left over or missing
    action, quantity, order_type, limit, tif, order_ref = expected
    assert request.order_id == 42
    assert (request.action, request.quantity, request.order_type) == (action, quantity, order_type)
    assert request.limit_price == limit
    assert (request.tif, request.order_ref) == (tif, order_ref)
    if contract is BAG:
        assert [(leg.con_id, leg.ratio, leg.action) for leg in request.legs] == [
            (15547841, 100, "BUY"),
            (539256360, 1, "SELL"),
        ]
        assert request.smart_combo_params == (("NonGuaranteed", "1"),)
    if setup is _conditional_algo:
        assert (request.conditions, request.algo_strategy) == (1, "Adaptive")
    if setup is _limit_gtc:
        assert request.oca_group == "pair-1" and request.outside_rth


def test_a_shifted_place_order_is_refused():
    fields = _captured_place_order("ib_async", STOCK, lambda ibm: ibm.MarketOrder("BUY", 1))
    with pytest.raises(ValueError, match="trailing"):
        parse_place_order([*fields, "extra"], 176)
    with pytest.raises(ValueError, match="missing field"):
        parse_place_order(fields[:-3], 176)


def test_values_are_encoded_as_the_decoders_read_them():
    assert encode_field(True) == "1" and encode_field(False) == "0"
    assert encode_field(np.bool_(True)) == "1"
    assert encode_field(np.float64(90.01)) == "90.01"
    assert encode_field(np.int64(15547841)) == "15547841"
    assert encode_field(None) == ""
    assert math.isnan(float(encode_field(float("nan"))))
    assert encode_field(math.inf) == "Infinite"
    with pytest.raises(ValueError, match="NUL"):
        encode_field("a\0b")


def test_frames_are_length_prefixed_and_nul_terminated():
    data = frame([9, 1, 12])
    assert data == struct.pack(">I", 7) + b"9\x001\x0012\x00"


def test_reader_splits_the_handshake_and_messages_across_chunks():
    reader = FrameReader()
    handshake = b"API\0" + struct.pack(">I", 9) + b"v157..176"
    stream = handshake + frame([71, 2, 5, ""]) + frame([49, 1])
    received = []
    for i in range(0, len(stream), 3):
        received += reader.feed(stream[i : i + 3])
    assert received == [["v157..176"], ["71", "2", "5", ""], ["49", "1"]]


class _Recorder:
    """Collects the broker's events (the listener interface the gateway implements)."""

    def __init__(self) -> None:
        self.executions = []
        self.errors = []

    def order_changed(self, order, open_order):
        pass

    def order_error(self, client_id, order_id, code, message):
        self.errors.append((order_id, code, message))

    def executed(self, execution):
        self.executions.append(execution)

    def commission_reported(self, execution):
        pass

    def positions_changed(self, con_ids):
        pass


def test_partial_fills_sum_to_the_fixed_schedule_commission():
    model = MarketModel(SimConfig(seed=4, history_days=5))
    recorder = _Recorder()
    broker = Broker(model.config, model.registry, recorder)
    fields = _captured_place_order("ib_async", STOCK, lambda ibm: ibm.MarketOrder("BUY", 20_000))
    tau = model.calendar.anchor_tau
    broker.place(1, parse_place_order(fields, 176), QuoteBoard(model, model.snapshot(tau)))
    steps = 0
    while broker.open_orders():
        steps += 1
        broker.on_step(QuoteBoard(model, model.snapshot(tau + steps)))
    fills = recorder.executions
    assert len(fills) > 1  # no ask shows 20,000 shares
    assert sum(f.shares for f in fills) == 20_000
    assert sum(f.commission for f in fills) == pytest.approx(0.005 * 20_000)
    assert fills[0].commission == pytest.approx(max(0.005 * fills[0].shares, 1.0))
    (position,) = broker.positions.values()
    notional = sum(f.shares * f.price for f in fills)
    assert position.average_cost == pytest.approx((notional + 100.0) / 20_000)
    assert broker.cash_usd == pytest.approx(1_000_000 - notional - 100.0)


def test_unsupported_order_type_is_refused_with_387():
    model = MarketModel(SimConfig(seed=4, history_days=5))
    recorder = _Recorder()
    broker = Broker(model.config, model.registry, recorder)
    fields = _captured_place_order(
        "ib_async", STOCK, lambda ibm: ibm.Order(action="BUY", totalQuantity=1, orderType="TRAIL")
    )
    board = QuoteBoard(model, model.snapshot(model.calendar.anchor_tau))
    broker.place(1, parse_place_order(fields, 176), board)
    assert [(order_id, code) for order_id, code, _ in recorder.errors] == [(42, 387)]
    assert broker.open_orders() == []
