"""Broker engine: orders, fills against the model's quotes, positions, cash, commissions.

Matching: an order executes against the current top of book of every step. A buy takes the
ask (a sell the bid) when it is a market order, a triggered stop, or a limit at or through the
quote; each step fills at most the displayed size, so large orders fill in parts. A BAG buys
its BUY legs at the ask and sells its SELL legs at the bid (reversed for a SELL combo); its
price is IB's combo convention, sum(sign x ratio x leg price) with option prices per share
(a 100-share covered call is about 100 x S - C). Stops trigger on the quote (buy: ask >= aux,
sell: bid <= aux); DAY orders (tif '' or DAY) are cancelled at the session's close, IOC orders
after their first pass.

Money: cash moves by quantity x price x multiplier plus commission. Commissions follow IB's
fixed schedule as configured: stock per share with a per-order minimum, options per contract;
an execution is charged the increase of its order's commission. Average cost (per unit,
including the multiplier, 100 x price for options) includes commissions, as IB's does.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Protocol

from trading.ibsim.board import QuoteBoard
from trading.ibsim.config import SimConfig
from trading.ibsim.instruments import Instrument, InstrumentRegistry
from trading.ibsim.protocol import OrderRequest


class OrderStatus(StrEnum):
    PRE_SUBMITTED = "PreSubmitted"
    SUBMITTED = "Submitted"
    FILLED = "Filled"
    CANCELLED = "Cancelled"
    INACTIVE = "Inactive"


DONE_STATES = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.INACTIVE})
ORDER_TYPES = frozenset({"MKT", "LMT", "STP", "STP LMT"})
DAY_TIFS = frozenset({"", "DAY"})


class OrderRejected(ValueError):
    """An order IB would refuse: ``code`` is the IB error code to send."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Leg:
    instrument: Instrument
    ratio: int
    action: str
    exchange: str


@dataclass(slots=True)
class WorkingOrder:
    request: OrderRequest
    client_id: int
    perm_id: int
    instrument: Instrument | None
    """None for a BAG (see ``legs``)."""
    legs: tuple[Leg, ...]
    status: OrderStatus = OrderStatus.PRE_SUBMITTED
    filled: float = 0.0
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0
    triggered: bool = False
    completed_epoch: float | None = None
    leg_filled: list[float] = field(default_factory=list)
    leg_notional: list[float] = field(default_factory=list)
    commission_usd: list[float] = field(default_factory=list)
    received_wall: float = field(default_factory=time.time)
    """Wall-clock time the gateway received it (tests compare it with their own clock)."""

    @property
    def order_id(self) -> int:
        return self.request.order_id

    @property
    def remaining(self) -> float:
        return max(self.request.quantity - self.filled, 0.0)

    @property
    def done(self) -> bool:
        return self.status in DONE_STATES

    @property
    def is_combo(self) -> bool:
        return self.instrument is None


@dataclass(frozen=True, slots=True)
class Execution:
    exec_id: str
    order_id: int
    client_id: int
    perm_id: int
    order_ref: str
    instrument: Instrument | None
    """None for the BAG-level execution of a combo (``legs`` then describes the combo)."""
    legs: tuple[Leg, ...]
    side: str
    shares: float
    price: float
    epoch: float
    cum_qty: float
    avg_price: float
    exchange: str
    commission: float
    realized_pnl: float


@dataclass(slots=True)
class Position:
    instrument: Instrument
    quantity: float = 0.0
    average_cost: float = 0.0
    realized_pnl: float = 0.0


class BrokerListener(Protocol):
    def order_changed(self, order: WorkingOrder, open_order: bool) -> None: ...

    def order_error(self, client_id: int, order_id: int, code: int, message: str) -> None: ...

    def executed(self, execution: Execution) -> None: ...

    def commission_reported(self, execution: Execution) -> None: ...

    def positions_changed(self, con_ids: list[int]) -> None: ...


class Broker:
    """The account's state machine; every method runs on the server loop."""

    def __init__(
        self, config: SimConfig, registry: InstrumentRegistry, listener: BrokerListener
    ) -> None:
        self.config = config
        self.registry = registry
        self.listener = listener
        self._next_perm_id = 1_000_000_001
        self._exec_counter = 0
        self.reset()

    def reset(self) -> None:
        """Forget orders, executions and positions (perm and exec ids keep counting)."""
        self.orders: dict[tuple[int, int], WorkingOrder] = {}
        self.executions: list[Execution] = []
        self.positions: dict[int, Position] = {}
        self.cash_usd = self.config.initial_cash_usd
        self.reject_next: str | None = None
        self.held_symbols: frozenset[str] = frozenset()
        """Orders on these symbols (a BAG: on any of its legs) rest unfilled until released."""

    # ----------------------------------------------------------------------------------------
    # Orders

    def place(self, client_id: int, request: OrderRequest, board: QuoteBoard) -> None:
        key = (client_id, request.order_id)
        existing = self.orders.get(key)
        try:
            if self.reject_next is not None:
                reason, self.reject_next = self.reject_next, None
                raise OrderRejected(201, f"Order rejected - reason:{reason}")
            if existing is not None and existing.done:
                raise OrderRejected(103, f"Duplicate order id {request.order_id}")
            today = self.registry.calendar.dates[board.snapshot.session]
            instrument, legs = self.resolve(request, today)
            self._validate(request)
        except OrderRejected as rejection:
            self.listener.order_error(client_id, request.order_id, rejection.code, str(rejection))
            return
        if existing is not None:
            existing.request = request
            existing.status = self._resting_status(existing)
            self.listener.order_changed(existing, True)
            self._match(existing, board)
            return
        order = WorkingOrder(
            request=request,
            client_id=client_id,
            perm_id=self._new_perm_id(),
            instrument=instrument,
            legs=legs,
            leg_filled=[0.0] * max(len(legs), 1),
            leg_notional=[0.0] * max(len(legs), 1),
            commission_usd=[0.0] * max(len(legs), 1),
        )
        self.orders[key] = order
        self.listener.order_changed(order, True)
        order.status = self._resting_status(order)
        if order.status == OrderStatus.SUBMITTED:
            self.listener.order_changed(order, True)
        self._match(order, board)
        if not order.done and request.tif == "IOC":
            self._cancel(order, board.snapshot.epoch)

    def _resting_status(self, order: WorkingOrder) -> OrderStatus:
        """Stops wait untriggered and children wait for their parent as PreSubmitted."""
        parent = self.orders.get((order.client_id, order.request.parent_id))
        waiting_parent = order.request.parent_id and (
            parent is None or parent.status != OrderStatus.FILLED
        )
        waiting_stop = order.request.order_type.startswith("STP") and not order.triggered
        return (
            OrderStatus.PRE_SUBMITTED if waiting_parent or waiting_stop else OrderStatus.SUBMITTED
        )

    def _new_perm_id(self) -> int:
        self._next_perm_id += 1
        return self._next_perm_id

    def resolve(
        self, request: OrderRequest, today: date
    ) -> tuple[Instrument | None, tuple[Leg, ...]]:
        """The order's instrument (None for a BAG) and its combo legs; OrderRejected if unknown."""
        if request.contract.sec_type.upper() == "BAG":
            if not request.legs:
                raise OrderRejected(201, "Order rejected - reason:a BAG order needs combo legs")
            legs = []
            for leg in request.legs:
                instrument = self.registry.by_con_id(leg.con_id)
                if instrument is None:
                    raise OrderRejected(
                        200, f"No security definition has been found for combo leg {leg.con_id}"
                    )
                if leg.ratio <= 0 or leg.action not in ("BUY", "SELL"):
                    raise OrderRejected(
                        201,
                        f"Order rejected - reason:invalid combo leg ratio {leg.ratio} "
                        f"or action {leg.action!r}",
                    )
                legs.append(Leg(instrument, leg.ratio, leg.action, leg.exchange or "SMART"))
            return None, tuple(legs)
        matches = self.registry.match(request.contract, today)
        if len(matches) != 1:
            raise OrderRejected(200, "No security definition has been found for the request")
        return matches[0], ()

    def _validate(self, request: OrderRequest) -> None:
        if request.action not in ("BUY", "SELL"):
            raise OrderRejected(201, f"Order rejected - reason:invalid action {request.action!r}")
        if not math.isfinite(request.quantity) or request.quantity <= 0:
            raise OrderRejected(
                201, f"Order rejected - reason:invalid totalQuantity {request.quantity!r}"
            )
        if request.order_type not in ORDER_TYPES:
            raise OrderRejected(
                387,
                f"Unsupported order type {request.order_type!r} "
                "for this exchange and security type.",
            )
        combo = request.contract.sec_type.upper() == "BAG"
        limit = request.limit_price
        limit_ok = limit is not None and math.isfinite(limit) if combo else _valid_price(limit)
        if request.order_type in ("LMT", "STP LMT") and not limit_ok:
            raise OrderRejected(
                201, f"Order rejected - reason:invalid lmtPrice {request.limit_price!r}"
            )
        if request.order_type.startswith("STP") and not _valid_price(request.aux_price, True):
            raise OrderRejected(
                201, f"Order rejected - reason:invalid auxPrice {request.aux_price!r}"
            )
        if request.conditions or request.algo_strategy:
            raise OrderRejected(
                201, "Order rejected - reason:conditions and algos are not simulated"
            )
        if request.account not in ("", self.config.account):
            raise OrderRejected(
                321, f"Error validating request:-'account' {request.account!r} is unknown"
            )

    def cancel(self, client_id: int, order_id: int, epoch: float) -> None:
        order = self.orders.get((client_id, order_id))
        if order is None:
            self.listener.order_error(
                client_id,
                order_id,
                10147,
                f"OrderId {order_id} that needs to be cancelled is not found.",
            )
        elif order.done:
            self.listener.order_error(
                client_id,
                order_id,
                10148,
                f"OrderId {order_id} that needs to be cancelled cannot be cancelled, "
                f"state: {order.status}.",
            )
        else:
            self._cancel(order, epoch)
            self.listener.order_error(client_id, order_id, 202, "Order Canceled - reason:")

    def cancel_all(self, epoch: float) -> None:
        for order in list(self.orders.values()):
            if not order.done:
                self.cancel(order.client_id, order.order_id, epoch)

    def _cancel(self, order: WorkingOrder, epoch: float) -> None:
        order.status = OrderStatus.CANCELLED
        order.completed_epoch = epoch
        self.listener.order_changed(order, False)
        for child in self.orders.values():
            is_child = child.request.parent_id == order.order_id
            if is_child and child.client_id == order.client_id and not child.done:
                self._cancel(child, epoch)

    def end_of_session(self, day: date, spot: float, epoch: float) -> None:
        """The close of ``day``: DAY orders are cancelled, options expiring on or before it
        are exercised or assigned against ``spot`` (see :meth:`settle`)."""
        for order in list(self.orders.values()):
            if not order.done and order.request.tif in DAY_TIFS:
                self._cancel(order, epoch)
        for held in list(self.positions.values()):
            option = held.instrument
            if option.is_option and held.quantity and option.expiry_date <= day:
                self.settle(option, held.quantity, spot, epoch)

    def open_orders(self, client_id: int | None = None) -> list[WorkingOrder]:
        return [o for o in self.orders.values() if not o.done and client_id in (None, o.client_id)]

    def completed_orders(self) -> list[WorkingOrder]:
        return [o for o in self.orders.values() if o.done]

    # ----------------------------------------------------------------------------------------
    # Matching

    def on_step(self, board: QuoteBoard) -> None:
        for order in list(self.orders.values()):
            if not order.done:
                self._match(order, board)

    def _match(self, order: WorkingOrder, board: QuoteBoard) -> None:
        if order.done or order.remaining <= 0 or self._held(order):
            return
        parent_id = order.request.parent_id
        if parent_id:
            parent = self.orders.get((order.client_id, parent_id))
            if parent is None or parent.status != OrderStatus.FILLED:
                return
        buying = order.request.action == "BUY"
        single = order.instrument
        sides = [(leg.instrument, leg.ratio, (leg.action == "BUY") == buying) for leg in order.legs]
        if not sides:
            assert single is not None  # None only for a BAG, which has legs
            sides = [(single, 1, buying)]
        prices, units = [], math.inf
        for instrument, ratio, leg_buys in sides:
            quote = board.quote(instrument)
            price, size = (quote.ask, quote.ask_size) if leg_buys else (quote.bid, quote.bid_size)
            if not (math.isfinite(price) and price > 0 and size > 0):
                return
            prices.append(price)
            units = min(units, size // ratio)
        if order.is_combo:
            net = sum(
                (1 if leg.action == "BUY" else -1) * leg.ratio * price
                for leg, price in zip(order.legs, prices, strict=True)
            )
        else:
            net = prices[0]
        if not self._marketable(order, net, buying, board):
            return
        quantity = min(order.remaining, units)
        if quantity <= 0:
            return
        self._fill(order, quantity, net, sides, prices, board)

    def _held(self, order: WorkingOrder) -> bool:
        if not self.held_symbols:
            return False
        instruments: list[Instrument | None] = [leg.instrument for leg in order.legs] or [
            order.instrument
        ]
        return any(i is not None and i.symbol in self.held_symbols for i in instruments)

    def _marketable(self, order: WorkingOrder, net: float, buying: bool, board) -> bool:
        request = order.request
        if request.order_type.startswith("STP") and not order.triggered:
            single = order.instrument
            quote = board.quote(single) if single is not None else None
            bid = quote.bid if quote else net
            ask = quote.ask if quote else net
            stop = request.aux_price
            assert stop is not None  # a stop without one is rejected when placed
            if (buying and ask >= stop) or (not buying and bid <= stop):
                order.triggered = True
                order.status = OrderStatus.SUBMITTED
                self.listener.order_changed(order, True)
            else:
                return False
        if request.order_type in ("MKT", "STP"):
            return True
        limit = request.limit_price
        assert limit is not None  # a limit order without one is rejected when placed
        return net <= limit if buying else net >= limit

    def _fill(self, order, quantity, net, sides, prices, board: QuoteBoard) -> None:
        epoch = board.snapshot.epoch
        previous = order.filled
        order.filled += quantity
        order.avg_fill_price = (order.avg_fill_price * previous + net * quantity) / order.filled
        order.last_fill_price = net
        executions = []
        changed = []
        for index, ((instrument, ratio, leg_buys), price) in enumerate(
            zip(sides, prices, strict=True)
        ):
            shares = quantity * ratio
            commission = self._commission(order, index, instrument, shares)
            realized = self._apply(instrument, shares if leg_buys else -shares, price, commission)
            order.leg_notional[index] += shares * price
            changed.append(instrument.con_id)
            cumulative = order.leg_filled[index]
            executions.append(
                self._execution(
                    order,
                    instrument,
                    "BOT" if leg_buys else "SLD",
                    (shares, price, cumulative, order.leg_notional[index] / cumulative),
                    epoch,
                    commission,
                    realized,
                )
            )
        if order.is_combo:
            side = "BOT" if order.request.action == "BUY" else "SLD"
            fill = (quantity, net, order.filled, order.avg_fill_price)
            executions.append(self._execution(order, None, side, fill, epoch, 0.0, 0.0))
        for execution in executions:
            self.executions.append(execution)
            self.listener.executed(execution)
        if order.remaining <= 1e-9:
            order.status = OrderStatus.FILLED
            order.completed_epoch = epoch
            self.listener.order_changed(order, False)
            self.listener.order_changed(order, True)
        else:
            order.status = OrderStatus.SUBMITTED
            self.listener.order_changed(order, False)
        for execution in executions:
            self.listener.commission_reported(execution)
        self.listener.positions_changed(changed)
        if order.status == OrderStatus.FILLED:
            self._after_fill(order, board)

    def _after_fill(self, order: WorkingOrder, board: QuoteBoard) -> None:
        """Cancel the rest of an OCA group; release children of a filled parent."""
        group = order.request.oca_group
        for other in list(self.orders.values()):
            if other is order or other.done or other.client_id != order.client_id:
                continue
            if group and other.request.oca_group == group:
                self._cancel(other, board.snapshot.epoch)
            elif other.request.parent_id == order.order_id:
                other.status = self._resting_status(other)
                self.listener.order_changed(other, True)
                self._match(other, board)

    def _execution(
        self,
        order: WorkingOrder,
        instrument: Instrument | None,
        side: str,
        fill: tuple[float, float, float, float],
        epoch: float,
        commission: float,
        realized: float,
    ) -> Execution:
        """``fill`` is (shares, price, cumulative shares, average price) of this leg or BAG."""
        shares, price, cumulative, average = fill
        self._exec_counter += 1
        return Execution(
            exec_id=f"{order.perm_id:08x}.{self._exec_counter:08x}.01.01",
            order_id=order.order_id,
            client_id=order.client_id,
            perm_id=order.perm_id,
            order_ref=order.request.order_ref,
            instrument=instrument,
            legs=order.legs,
            side=side,
            shares=shares,
            price=price,
            epoch=epoch,
            cum_qty=cumulative,
            avg_price=average,
            exchange="CBOE" if instrument is not None and instrument.is_option else "ISLAND",
            commission=commission,
            realized_pnl=realized,
        )

    def _commission(self, order: WorkingOrder, leg: int, instrument: Instrument, units: float):
        """The increase of the order's commission for this leg (IB fixed schedule)."""
        c = self.config
        before = order.leg_filled[leg]
        after = before + units
        order.leg_filled[leg] = after
        if instrument.is_option:
            charge = c.option_commission_per_contract_usd * units
        else:
            total = max(c.stock_commission_per_share_usd * after, c.stock_commission_minimum_usd)
            charge = total - order.commission_usd[leg]
        order.commission_usd[leg] += charge
        return round(charge, 10)

    # ----------------------------------------------------------------------------------------
    # Positions and cash

    def _apply(self, instrument: Instrument, signed: float, price: float, commission: float):
        """Book a trade of ``signed`` units at ``price``; return the realized P&L."""
        multiplier = instrument.multiplier
        position = self.positions.setdefault(instrument.con_id, Position(instrument))
        self.cash_usd -= signed * price * multiplier + commission
        cost = price * multiplier
        held = position.quantity
        realized = 0.0
        if held == 0 or (held > 0) == (signed > 0):
            total = position.average_cost * abs(held) + cost * abs(signed)
            total += commission if signed > 0 else -commission
            position.quantity = held + signed
            position.average_cost = total / abs(position.quantity)
        else:
            closed = min(abs(signed), abs(held))
            realized = (cost - position.average_cost) * closed * (1 if held > 0 else -1)
            realized -= commission
            position.quantity = held + signed
            if abs(position.quantity) < 1e-9:
                position.quantity = 0.0
            elif (position.quantity > 0) != (held > 0):
                position.average_cost = cost
        position.realized_pnl += realized
        return realized

    def settle(
        self, option: Instrument, quantity: float, spot: float, epoch: float, force: bool = False
    ) -> None:
        """Exercise (long) or assignment (short) of ``quantity`` contracts at ``spot``.

        In the money (by at least a cent) or when ``force``d (early assignment) the option
        becomes 100 shares per contract at the strike; otherwise it expires worthless.
        Reported as executions with order id 0.
        """
        position = self.positions.get(option.con_id)
        if position is None or position.quantity == 0:
            return
        intrinsic = spot - option.strike if option.right == "C" else option.strike - spot
        long_option = quantity > 0
        changed = [option.con_id]
        executions = []
        realized = self._apply(option, -quantity, 0.0, 0.0)
        executions.append(
            self._settlement(
                option, "SLD" if long_option else "BOT", abs(quantity), 0.0, epoch, realized
            )
        )
        if intrinsic >= 0.01 or force:
            stock = self.registry.underlying
            buys = (option.right == "C") == long_option
            shares = abs(quantity) * option.multiplier
            realized = self._apply(stock, shares if buys else -shares, option.strike, 0.0)
            executions.append(
                self._settlement(
                    stock, "BOT" if buys else "SLD", shares, option.strike, epoch, realized
                )
            )
            changed.append(stock.con_id)
        for execution in executions:
            self.executions.append(execution)
            self.listener.executed(execution)
            self.listener.commission_reported(execution)
        self.listener.positions_changed(changed)

    def _settlement(self, instrument, side, shares, price, epoch, realized) -> Execution:
        self._exec_counter += 1
        return Execution(
            exec_id=f"{0:08x}.{self._exec_counter:08x}.01.01",
            order_id=0,
            client_id=0,
            perm_id=self._new_perm_id(),
            order_ref="",
            instrument=instrument,
            legs=(),
            side=side,
            shares=shares,
            price=price,
            epoch=epoch,
            cum_qty=shares,
            avg_price=price,
            exchange="",
            commission=0.0,
            realized_pnl=realized,
        )

    def truth(self) -> BrokerTruth:
        """What the account holds and did, as the broker knows it (for tests to check against)."""
        return BrokerTruth(
            orders=tuple(_order_truth(o) for o in self.orders.values()),
            executions=tuple(_execution_truth(e) for e in self.executions),
            positions=tuple(
                PositionTruth(
                    p.instrument.con_id, p.instrument.local_symbol, p.quantity, p.average_cost
                )
                for p in self.positions.values()
                if p.quantity
            ),
        )

    def credit(self, amount_usd: float) -> None:
        self.cash_usd += amount_usd

    def account_values(self, board: QuoteBoard) -> dict[str, float]:
        """IB account tags in USD (margins are a rough Reg-T-like estimate)."""
        market_value = stock_value = option_value = unrealized = realized = 0.0
        margin = 0.0
        for position in self.positions.values():
            realized += position.realized_pnl
            if position.quantity == 0:
                continue
            instrument = position.instrument
            value = position.quantity * board.mark(instrument) * instrument.multiplier
            market_value += value
            unrealized += value - position.quantity * position.average_cost
            if instrument.is_option:
                option_value += value
                if position.quantity < 0:
                    margin += (
                        0.2
                        * board.snapshot.tlt_mid
                        * instrument.multiplier
                        * abs(position.quantity)
                    )
            else:
                stock_value += value
                margin += 0.25 * abs(value)
        net = self.cash_usd + market_value
        return {
            "NetLiquidation": net,
            "TotalCashValue": self.cash_usd,
            "CashBalance": self.cash_usd,
            "GrossPositionValue": abs(stock_value) + abs(option_value),
            "StockMarketValue": stock_value,
            "OptionMarketValue": option_value,
            "UnrealizedPnL": unrealized,
            "RealizedPnL": realized,
            "InitMarginReq": margin,
            "MaintMarginReq": margin,
            "AvailableFunds": net - margin,
            "ExcessLiquidity": net - margin,
            "EquityWithLoanValue": net,
            "BuyingPower": 4.0 * (net - margin),
        }


@dataclass(frozen=True, slots=True)
class OrderTruth:
    """One order as the broker holds it; ``con_ids`` are the contract's (a BAG: its legs')."""

    client_id: int
    order_id: int
    perm_id: int
    order_ref: str
    con_ids: tuple[int, ...]
    action: str
    quantity: float
    status: str
    filled: float
    received_wall: float


@dataclass(frozen=True, slots=True)
class ExecutionTruth:
    exec_id: str
    client_id: int
    order_id: int
    perm_id: int
    order_ref: str
    con_id: int
    """0 for the BAG-level execution of a combo."""
    side: str
    shares: float
    price: float
    epoch: float


@dataclass(frozen=True, slots=True)
class PositionTruth:
    con_id: int
    local_symbol: str
    quantity: float
    average_cost: float


@dataclass(frozen=True, slots=True)
class LostOrder:
    """A placeOrder the gateway never acted on (the connection dropped while it arrived)."""

    client_id: int
    order_id: int
    order_ref: str
    con_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class BrokerTruth:
    orders: tuple[OrderTruth, ...]
    executions: tuple[ExecutionTruth, ...]
    positions: tuple[PositionTruth, ...]
    lost: tuple[LostOrder, ...] = ()


def _order_truth(order: WorkingOrder) -> OrderTruth:
    instruments: list[Instrument | None] = [leg.instrument for leg in order.legs] or [
        order.instrument
    ]
    return OrderTruth(
        order.client_id,
        order.order_id,
        order.perm_id,
        order.request.order_ref,
        tuple(i.con_id for i in instruments if i is not None),
        order.request.action,
        order.request.quantity,
        str(order.status),
        order.filled,
        order.received_wall,
    )


def _execution_truth(execution: Execution) -> ExecutionTruth:
    return ExecutionTruth(
        execution.exec_id,
        execution.client_id,
        execution.order_id,
        execution.perm_id,
        execution.order_ref,
        execution.instrument.con_id if execution.instrument is not None else 0,
        execution.side,
        execution.shares,
        execution.price,
        execution.epoch,
    )


def _valid_price(value: float | None, allow_zero: bool = False) -> bool:
    if value is None or not math.isfinite(value):
        return False
    return value >= 0 if allow_zero else value > 0
