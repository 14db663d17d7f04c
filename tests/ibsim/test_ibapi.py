"""IB's own Python client (ibapi, `ibapi-stable` on PyPI) decodes what ibsim sends.

ib_async and ib_insync are the clients the services use; ibapi is the reference they were both
written against, with its own decoder. It runs its reader and message loop in threads, so the
test collects every wrapper callback (name and arguments) and waits for the answers it expects.
A decoder failure ends ibapi's message loop with an exception or logs an error, and either fails
the test.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support import eventually
from trading.ibsim import SimConfig, SimulatedGateway

ibapi = pytest.importorskip("ibapi", reason="ibapi-stable is not installed")
from ibapi.client import EClient  # noqa: E402
from ibapi.contract import ComboLeg, Contract  # noqa: E402
from ibapi.order import Order  # noqa: E402
from ibapi.wrapper import EWrapper  # noqa: E402

CLIENT_IDS = itertools.count(5)
"""A client id per test: the gateway may not have seen the last one's socket close yet."""
TLT_ID = 15547841
TLTW_ID = 545186218


CALLBACKS = frozenset(
    name
    for name, _ in inspect.getmembers(EWrapper, inspect.isfunction)
    if not name.startswith("_") and name != "logAnswer" and not hasattr(EClient, name)
)


class Recorder(EWrapper, EClient):
    """Every wrapper callback recorded as (name, args), in arrival order."""

    def __init__(self) -> None:
        EWrapper.__init__(self)
        EClient.__init__(self, self)
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.lock = threading.Lock()
        self.failure: BaseException | None = None

    def __getattribute__(self, name: str) -> Any:
        attribute = object.__getattribute__(self, name)
        if name not in CALLBACKS:
            return attribute

        def record(*args: Any) -> Any:
            with object.__getattribute__(self, "lock"):
                object.__getattribute__(self, "calls").append((name, args))
            return attribute(*args)

        return record

    def of(self, name: str, where: Callable[[tuple[Any, ...]], bool] = lambda a: True) -> list:
        with self.lock:
            return [args for n, args in self.calls if n == name and where(args)]

    def loop(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # reported by the test
            # ibapi's loop compares serverVersion() of a closed connection (None) when messages
            # are still queued at its disconnect: that is the teardown, not a decoding failure.
            if self.serverVersion() is not None:
                self.failure = exc


@pytest.fixture(scope="module")
def gateway() -> Iterator[SimulatedGateway]:
    gw = SimulatedGateway(SimConfig(seed=11, speed=60.0)).start()
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def app(gateway: SimulatedGateway) -> Iterator[Recorder]:
    gateway.reset()
    records: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Capture(logging.INFO)
    logging.getLogger("ibapi").addHandler(handler)
    client = Recorder()
    client.connect("127.0.0.1", gateway.port, clientId=next(CLIENT_IDS))
    thread = threading.Thread(target=client.loop, daemon=True)
    thread.start()
    try:
        eventually(lambda: client.of("nextValidId"), 5, what="nextValidId")
        yield client
    finally:
        client.disconnect()
        thread.join(5)
        logging.getLogger("ibapi").removeHandler(handler)
    bad = [
        r.getMessage()[:300]
        for r in records
        # ibapi.wrapper logs every error callback at ERROR: those are checked below
        if (r.levelno >= logging.ERROR and r.name != "ibapi.wrapper")
        or "BadMessage" in r.getMessage()
    ]
    assert client.failure is None, f"ibapi's message loop died: {client.failure!r}"
    assert not bad, "ibapi could not decode:\n" + "\n".join(bad)
    errors = [a for a in client.of("error") if a[2] not in (2104, 2106, 2158)]
    assert not errors, f"unexpected errors: {errors}"


def stock(symbol: str) -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "STK", "SMART", "USD"
    return c


def test_ibapi_handshakes_and_gets_the_account_and_order_id(app: Recorder) -> None:
    (accounts,) = eventually(lambda: app.of("managedAccounts"), 5)
    assert accounts[0] == "DU1234567"
    ((order_id,),) = app.of("nextValidId")
    assert order_id >= 1


def test_ibapi_decodes_contract_details_and_option_parameters(app: Recorder) -> None:
    app.reqContractDetails(1, stock("TLT"))
    eventually(lambda: app.of("contractDetailsEnd"), 5, what="contractDetailsEnd")
    ((req_id, details),) = app.of("contractDetails")
    assert req_id == 1 and details.contract.conId == TLT_ID and details.contract.symbol == "TLT"
    app.reqSecDefOptParams(2, "TLT", "", "STK", TLT_ID)
    eventually(lambda: app.of("securityDefinitionOptionParameterEnd"), 5)
    params = app.of("securityDefinitionOptionParameter")
    assert params and all(p[0] == 2 for p in params)
    assert len(params[0][5]) > 0 and len(params[0][6]) > 0  # expirations and strikes


def test_ibapi_gets_tltw_nav_ticks_by_their_generic_tick_numbers(app: Recorder) -> None:
    """IB's mapping (ibapi.ticktype): generic 577 -> 96 (NAV last), 578 -> 92/93 (NAV close and
    prior close), 623 -> 97 (frozen NAV last)."""
    tltw = stock("TLTW")
    app.reqMktData(10, tltw, "577,578", False, False, [])
    app.reqMktData(11, tltw, "623", False, False, [])

    def tick_types(req_id: int) -> set[int]:
        return {a[1] for a in app.of("tickPrice", lambda a: a[0] == req_id)}

    eventually(lambda: {92, 93, 96} <= tick_types(10), 5, what="NAV ticks 92, 93, 96")
    eventually(lambda: 97 in tick_types(11), 5, what="frozen NAV tick 97")
    assert 97 not in tick_types(10)
    assert not {92, 93, 96} & tick_types(11)
    navs = {a[1]: a[2] for a in app.of("tickPrice", lambda a: a[0] in (10, 11))}
    assert 20 < navs[96] < 40 and navs[97] == pytest.approx(navs[96], abs=0.05)


def test_ibapi_gets_quotes_and_option_greeks(app: Recorder) -> None:
    app.reqMktData(20, stock("TLT"), "", False, False, [])
    eventually(lambda: {1, 2} <= {a[1] for a in app.of("tickPrice", lambda a: a[0] == 20)}, 5)
    app.reqSecDefOptParams(21, "TLT", "", "STK", TLT_ID)
    eventually(lambda: app.of("securityDefinitionOptionParameterEnd"), 5)
    params = app.of("securityDefinitionOptionParameter")[0]
    bid = next(a[2] for a in app.of("tickPrice", lambda a: a[0] == 20 and a[1] == 1))
    option = Contract()
    option.symbol, option.secType, option.exchange, option.currency = "TLT", "OPT", "SMART", "USD"
    option.lastTradeDateOrContractMonth = sorted(params[5])[0]
    option.strike = min(params[6], key=lambda k: abs(k - bid))
    option.right, option.multiplier = "C", "100"
    app.reqMktData(22, option, "", False, False, [])
    computed = eventually(
        lambda: app.of("tickOptionComputation", lambda a: a[0] == 22 and a[1] == 13), 5
    )
    _, _, _, vol, delta, price, _, gamma, vega, theta, spot = computed[-1]
    assert 0 < vol < 1 and 0 < delta < 1 and price > 0 and gamma > 0 and vega > 0
    assert theta < 0 and spot == pytest.approx(bid, rel=0.01)


def test_ibapi_places_a_combo_and_a_stock_order_and_reads_them_back(app: Recorder) -> None:
    ((order_id,),) = app.of("nextValidId")
    app.reqSecDefOptParams(30, "TLT", "", "STK", TLT_ID)
    eventually(lambda: app.of("securityDefinitionOptionParameterEnd"), 5)
    app.reqMktData(31, stock("TLT"), "", False, False, [])
    bid = eventually(
        lambda: [a[2] for a in app.of("tickPrice", lambda a: a[0] == 31 and a[1] == 1)]
    )[-1]
    params = app.of("securityDefinitionOptionParameter")[0]
    option = Contract()
    option.symbol, option.secType, option.exchange, option.currency = "TLT", "OPT", "SMART", "USD"
    option.lastTradeDateOrContractMonth = sorted(params[5])[0]
    option.strike = min(params[6], key=lambda k: abs(k - bid))
    option.right, option.multiplier = "C", "100"
    app.reqContractDetails(32, option)
    eventually(lambda: app.of("contractDetailsEnd", lambda a: a[0] == 32), 5)
    call_id = app.of("contractDetails", lambda a: a[0] == 32)[0][1].contract.conId

    bag = Contract()
    bag.symbol, bag.secType, bag.exchange, bag.currency = "TLT", "BAG", "SMART", "USD"
    legs = []
    for con_id, ratio, action in ((TLT_ID, 100, "BUY"), (call_id, 1, "SELL")):
        leg = ComboLeg()
        leg.conId, leg.ratio, leg.action, leg.exchange = con_id, ratio, action, "SMART"
        legs.append(leg)
    bag.comboLegs = legs
    buy_write = Order()
    buy_write.action, buy_write.orderType, buy_write.totalQuantity = "BUY", "MKT", 1
    buy_write.orderRef = "ibapi-bw"
    app.placeOrder(order_id, bag, buy_write)
    shares = Order()
    shares.action, shares.orderType, shares.totalQuantity = "SELL", "MKT", 300
    shares.orderRef = "ibapi-tltw"
    app.placeOrder(order_id + 1, stock("TLTW"), shares)

    def filled(oid: int) -> bool:
        return bool(app.of("orderStatus", lambda a: a[0] == oid and a[1] == "Filled"))

    eventually(lambda: filled(order_id) and filled(order_id + 1), 10, what="both orders filled")
    opened = {a[0]: a[2].orderRef for a in app.of("openOrder")}
    assert opened[order_id] == "ibapi-bw" and opened[order_id + 1] == "ibapi-tltw"
    executions = eventually(
        lambda: (
            len(app.of("commissionAndFeesReport")) >= 4
            and app.of("execDetails", lambda a: a[0] == -1)
        ),
        5,
    )
    shares: dict[tuple[int, str], float] = {}
    for e in executions:  # a large order fills in parts (the displayed size)
        key = (e[1].conId, e[2].side)
        shares[key] = shares.get(key, 0.0) + float(e[2].shares)
    assert shares[(TLT_ID, "BOT")] == 100.0 and shares[(call_id, "SLD")] == 1.0
    assert shares[(TLTW_ID, "SLD")] == 300.0

    app.reqPositions()
    eventually(lambda: app.of("positionEnd"), 5, what="positionEnd")
    held = {a[1].conId: float(a[2]) for a in app.of("position")}
    assert held == {TLT_ID: 100.0, call_id: -1.0, TLTW_ID: -300.0}

    app.reqCompletedOrders(False)
    eventually(lambda: app.of("completedOrdersEnd"), 5, what="completedOrdersEnd")
    refs = {a[1].orderRef for a in app.of("completedOrder")}
    assert {"ibapi-bw", "ibapi-tltw"} <= refs

    from ibapi.execution import ExecutionFilter

    app.reqExecutions(33, ExecutionFilter())
    eventually(lambda: app.of("execDetailsEnd", lambda a: a[0] == 33), 5)
    assert len(app.of("execDetails", lambda a: a[0] == 33)) == len(
        app.of("execDetails", lambda a: a[0] == -1)
    )


def test_ibapi_decodes_historical_bars(app: Recorder) -> None:
    app.reqHistoricalData(40, stock("TLT"), "", "2 D", "5 mins", "MIDPOINT", 1, 1, False, [])
    eventually(lambda: app.of("historicalDataEnd"), 10, what="historicalDataEnd")
    bars = [a[1] for a in app.of("historicalData", lambda a: a[0] == 40)]
    days: dict[str, int] = {}
    for bar in bars:
        days[bar.date[:8]] = days.get(bar.date[:8], 0) + 1
    assert days[min(days)] == 78  # the last whole session: 6.5 hours of 5-minute bars
    assert all(b.low <= b.open <= b.high and b.low <= b.close <= b.high for b in bars)


def test_ibapi_account_summary_and_current_time(app: Recorder, gateway: SimulatedGateway) -> None:
    app.reqAccountSummary(50, "All", "NetLiquidation,TotalCashValue")
    eventually(lambda: app.of("accountSummaryEnd"), 5)
    tags = {a[2]: float(a[3]) for a in app.of("accountSummary")}
    assert tags["NetLiquidation"] > 0 and tags["TotalCashValue"] > 0
    app.reqCurrentTime()
    ((stamp,),) = eventually(lambda: app.of("currentTime"), 5)
    assert abs(stamp - gateway.call(lambda: gateway._core.now_epoch())) < 120  # the sim's clock
