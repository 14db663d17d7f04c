"""An order's status as the broker reports it, as plain values.

The IB adapter (`trading.broker.execution.status_update`) makes one from an ib_async/ib_insync
Trade; the backtest's fill model makes them too; the execution engine's tracker applies them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StatusUpdate"]


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """An IB order status (orderStatus / openOrder / cancel / reject): IB's status name
    ("Submitted", "Filled", "Cancelled", ...), the quantity filled and remaining, the average
    fill price (0 before any fill), IB's permanent id and the order's orderRef when known, and
    IB's last message about it."""

    order_id: int
    status: str
    filled: float
    remaining: float
    avg_fill_price: float
    perm_id: int = 0
    order_ref: str = ""
    message: str = ""
