"""Placing, cancelling and reconciling orders through ib_async, and IB-to-bus translation.

Pure translators (no I/O): `status_update(trade)`, `fill_message(...)`, `leg_index_for(...)`.
The I/O side is `ExecutionClient`, a thin layer over one connected `IB`:

    client = ExecutionClient(ib, lib, account)
    client.on_status = cb(StatusUpdate); client.on_fill = cb(Fill); client.on_error = ...
    client.attach()                       # subscribe to the IB events (once per IB instance)
    order_id = client.place(leg_order)    # placeOrder; the id is IB's next valid id
    client.cancel(order_id); client.cancel_all(); client.cancel_unknown(order_id)
    snapshot = await client.reconcile()   # open + completed orders, executions, positions

Event callbacks run synchronously inside ib_async's reader: they must not block; the service
queues what they produce and writes it to Redis in order.

Fills are reported when their commission report arrives (IB sends the execution first, then the
commission), so every `Fill` on the bus carries its commission. A BAG order produces one fill
per leg (STK, OPT) plus one BAG-level fill; all are reported, with sec_type telling them apart
(the book counts leg fills only).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from types import ModuleType
from typing import Any

import ib_async

from trading.broker.orders import OPTION_MULTIPLIER, LegOrder
from trading.bus import Fill, IntentLeg, LegKind, Side
from trading.domain.orders import StatusUpdate
from trading.execution.book import BrokerPosition

__all__ = [
    "ORDER_REJECT_CODES",
    "ExecutionClient",
    "ReconcileSnapshot",
    "StatusUpdate",
    "fill_message",
    "leg_index_for",
    "status_update",
]

log = logging.getLogger(__name__)

ORDER_REJECT_CODES = frozenset(
    {103, 104, 105, 110, 135, 161, 200, 201, 203, 382, 383, 387, 388, 391, 392, 434, 10147}
)
"""IB error codes that mean an order was refused (duplicate id, rejected, no security, ...)."""
WARNING_CODES = frozenset({165, 321, 329, 399, 404, 492, 10167}) | frozenset(range(2100, 2200))


def status_update(trade: Any) -> StatusUpdate:
    """The status of an ib_async/ib_insync Trade."""
    st = trade.orderStatus
    message = ""
    if trade.log and trade.log[-1].message:
        message = trade.log[-1].message
    avg = st.avgFillPrice if math.isfinite(st.avgFillPrice) else 0.0
    return StatusUpdate(
        order_id=trade.order.orderId,
        perm_id=trade.order.permId or st.permId,
        order_ref=trade.order.orderRef,
        status=st.status,
        filled=float(st.filled),
        remaining=float(st.remaining),
        avg_fill_price=float(avg),
        message=message,
    )


def _side(exec_side: str) -> Side:
    if exec_side in ("BOT", "BUY"):
        return Side.BUY
    if exec_side in ("SLD", "SELL"):
        return Side.SELL
    raise ValueError(f"execution side must be BOT or SLD, got {exec_side!r}")


def _multiplier(contract: Any) -> float:
    if contract.secType == "OPT":
        try:
            return float(contract.multiplier or OPTION_MULTIPLIER)
        except ValueError:
            return float(OPTION_MULTIPLIER)
    return 1.0


def fill_message(contract: Any, execution: Any, commission: float, ts: float) -> Fill:
    """A bus Fill from an IB execution of `contract` and its commission (USD).

    Raises ValueError naming the field for a non-finite or negative price, or a size <= 0.
    """
    # 0 is a real price: IB books an assigned or expired option at 0
    if not math.isfinite(execution.price) or (execution.price < 0 and contract.secType != "BAG"):
        raise ValueError(f"execution {execution.execId}: price must be >= 0, got {execution.price}")
    if not math.isfinite(execution.shares) or execution.shares <= 0:
        raise ValueError(
            f"execution {execution.execId}: shares must be > 0, got {execution.shares}"
        )
    if not math.isfinite(commission):
        commission = 0.0
    return Fill(
        ts=ts,
        exec_id=execution.execId,
        order_id=execution.orderId,
        perm_id=execution.permId,
        intent_id=execution.orderRef,
        symbol=contract.symbol,
        local_symbol=contract.localSymbol or contract.symbol,
        con_id=contract.conId,
        sec_type=contract.secType,
        side=_side(execution.side),
        quantity=float(execution.shares),
        price=float(execution.price),
        multiplier=_multiplier(contract),
        commission=float(commission),
    )


def leg_index_for(legs: tuple[IntentLeg, ...], contract: Any) -> int | None:
    """Which leg of an intent an IB order's contract carries (all legs share the orderRef).

    A BAG matches the BUY_WRITE leg with the same call conId among its combo legs; a stock
    matches the STOCK leg with its conId (or symbol, when IB echoes no conId).
    """
    if contract.secType == "BAG":
        con_ids = {leg.conId for leg in contract.comboLegs}
        for i, leg in enumerate(legs):
            if leg.kind is LegKind.BUY_WRITE and leg.option_con_id in con_ids:
                return i
        bw = [i for i, leg in enumerate(legs) if leg.kind is LegKind.BUY_WRITE]
        return bw[0] if len(bw) == 1 and not con_ids else None
    for i, leg in enumerate(legs):
        if leg.kind is LegKind.STOCK and (
            leg.con_id == contract.conId or (not contract.conId and leg.symbol == contract.symbol)
        ):
            return i
    return None


@dataclass(frozen=True, slots=True)
class ReconcileSnapshot:
    """What IB knows after a (re)connect: trades by orderRef, every fill, positions by conId."""

    trades_by_ref: dict[str, list[Any]]
    fills: list[Any]
    positions: dict[int, tuple[Any, float, float]]  # con_id -> (contract, quantity, avg_cost)

    def known_refs(self) -> frozenset[str]:
        return frozenset(self.trades_by_ref)


@dataclass
class ExecutionClient:
    """Orders through one IB connection; IB events delivered to the callbacks."""

    ib: Any
    lib: ModuleType = ib_async
    account: str = ""
    clock: Callable[[], float] = field(default=lambda: datetime.now().timestamp())
    on_status: Callable[[StatusUpdate, Any], None] = lambda update, trade: None
    on_fill: Callable[[Fill], None] = lambda fill: None
    on_error: Callable[[int, int, str], None] = lambda order_id, code, message: None
    on_position: Callable[[Any], None] = lambda position: None
    _attached: bool = False

    def attach(self) -> None:
        """Subscribe to the IB instance's events (idempotent; they survive reconnects)."""
        if self._attached:
            return
        self.ib.orderStatusEvent += self._order_status
        self.ib.commissionReportEvent += self._commission
        self.ib.errorEvent += self._error
        self.ib.positionEvent += self._position
        self._attached = True

    def detach(self) -> None:
        if not self._attached:
            return
        self.ib.orderStatusEvent -= self._order_status
        self.ib.commissionReportEvent -= self._commission
        self.ib.errorEvent -= self._error
        self.ib.positionEvent -= self._position
        self._attached = False

    # orders ---------------------------------------------------------------------------------

    def place(self, leg_order: LegOrder, order_id: int | None = None) -> int:
        """Send one order; returns its id (IB's next valid id unless one is given).

        Raises ConnectionError when the client is not connected (nothing was sent).
        """
        if not self.ib.isConnected():
            raise ConnectionError("IB is not connected: order not sent")
        order = leg_order.order
        order.orderId = order_id if order_id is not None else self.ib.client.getReqId()
        self.ib.placeOrder(leg_order.contract, order)
        return order.orderId

    def next_order_id(self) -> int:
        """Reserve IB's next valid order id (so it can be recorded before the order is sent)."""
        if not self.ib.isConnected():
            raise ConnectionError("IB is not connected: no order id")
        return self.ib.client.getReqId()

    def cancel(self, order_id: int) -> bool:
        """Request cancellation of one of our orders; False if IB does not know it here."""
        for trade in self.ib.trades():
            if trade.order.orderId == order_id and trade.order.clientId == self.ib.client.clientId:
                if trade.isDone():
                    return False
                self.ib.cancelOrder(trade.order)
                return True
        return False

    def cancel_unknown(self, order_id: int) -> None:
        """cancelOrder for an order id this client has no answer from IB for (IB cancels it
        if it has it after all, or answers 10147: not found)."""
        if self.ib.isConnected():
            self.ib.client.cancelOrder(order_id)

    def cancel_all(self) -> None:
        """Cancel every open order of the account, from any client (IB's global cancel)."""
        self.ib.reqGlobalCancel()

    # reconciliation -------------------------------------------------------------------------

    async def reconcile(self) -> ReconcileSnapshot:
        """Ask IB for every open and completed order, every execution, every position."""
        await self.ib.reqOpenOrdersAsync()
        await self.ib.reqCompletedOrdersAsync(False)
        fills = await self.ib.reqExecutionsAsync()
        by_ref: dict[str, list[Any]] = {}
        for trade in self.ib.trades():
            if trade.order.orderRef:
                by_ref.setdefault(trade.order.orderRef, []).append(trade)
        positions = {
            p.contract.conId: (p.contract, float(p.position), float(p.avgCost))
            for p in self.ib.positions(self.account)
            if not self.account or p.account == self.account
        }
        return ReconcileSnapshot(by_ref, list(fills), positions)

    # event handlers (run inside the client's reader: no blocking) -------------------------------

    def _order_status(self, trade: Any) -> None:
        try:
            self.on_status(status_update(trade), trade)
        except Exception:
            log.exception("order status handling failed", extra={"event.action": "status_error"})

    def _commission(self, trade: Any, fill: Any, report: Any) -> None:
        try:
            ts = fill.time.timestamp() if isinstance(fill.time, datetime) else self.clock()
            self.on_fill(fill_message(fill.contract, fill.execution, report.commission, ts))
        except Exception:
            log.exception("fill handling failed", extra={"event.action": "fill_error"})

    def _error(self, req_id: int, code: int, message: str, contract: Any = None) -> None:
        if req_id <= 0 or code in WARNING_CODES:
            return
        try:
            self.on_error(req_id, code, message)
        except Exception:
            log.exception("error handling failed", extra={"event.action": "error_error"})

    def _position(self, position: Any) -> None:
        try:
            self.on_position(position)
        except Exception:
            log.exception("position handling failed", extra={"event.action": "position_error"})


def broker_positions(positions: list[Any], account: str = "") -> dict[int, BrokerPosition]:
    """IB positions (ib_async/ib_insync `Position`s) as `BrokerPosition`s by conId, average
    cost per share (IB's option avgCost is per contract). Raises ValueError naming the field
    when one cannot be read, so nothing is reconciled on a value that was not checked."""
    out = {}
    for p in positions:
        if account and p.account != account:
            continue
        contract = p.contract
        if not contract.conId:
            raise ValueError(f"position {contract.localSymbol!r}: conId must be set, got 0")
        if contract.secType == "OPT":
            try:
                multiplier = float(contract.multiplier or 100)
            except ValueError:
                raise ValueError(
                    f"position {contract.conId}: multiplier must be a number, "
                    f"got {contract.multiplier!r}"
                ) from None
        else:
            multiplier = 1.0
        if not p.position:
            continue
        out[contract.conId] = BrokerPosition(
            contract.conId,
            contract.symbol,
            contract.localSymbol or contract.symbol,
            contract.secType,
            multiplier,
            float(p.position),
            float(p.avgCost) / multiplier,
        )
    return out
