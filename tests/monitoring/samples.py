"""Hand-built messages for the monitoring tests (times in epoch seconds around NOW)."""

from __future__ import annotations

from trading.bus import (
    DataHealth,
    DataStatus,
    Heartbeat,
    IntentLeg,
    IntentPurpose,
    LegKind,
    OrderEvent,
    OrderIntent,
    PnL,
    Position,
    Quote,
    RiskDecision,
    RiskStatus,
    Side,
    SignalAction,
    SpreadPoint,
)

NOW = 1_800_000_000.0
TLT_CON_ID = 15547841
TLTW_CON_ID = 561000001


def quote(symbol: str, ts_recv: float, bid: float = 99.0, ask: float = 101.0) -> Quote:
    con_id = TLT_CON_ID if symbol == "TLT" else TLTW_CON_ID
    return Quote(symbol, con_id, bid, ask, 100.0, 100.0, None, ts_recv, ts_recv)


def heartbeat(service: str, ts: float, status: str = "ok") -> Heartbeat:
    return Heartbeat(service, ts, status, {})


def health(symbol: str, status: DataStatus, reason: str = "", ts: float = NOW) -> DataHealth:
    return DataHealth(symbol, status, reason, ts)


def intent(
    intent_id: str,
    ts: float,
    pair_id: str = "pair-1",
    purpose: IntentPurpose = IntentPurpose.ENTRY,
    why: dict | None = None,
    units: int = 2,
    shares: int = 500,
) -> OrderIntent:
    legs = (
        IntentLeg(
            LegKind.BUY_WRITE, "TLT", Side.SELL, units, 9_700.0, TLT_CON_ID, 1, "20270115", 97.0
        ),
        IntentLeg(LegKind.STOCK, "TLTW", Side.BUY, shares, 25.0, TLTW_CON_ID),
    )
    return OrderIntent(
        intent_id, pair_id, ts, purpose, SignalAction.ENTER_LONG_SPREAD, legs, why or {}
    )


def decision(intent_id: str, ts: float, approved: bool = True) -> RiskDecision:
    return RiskDecision(intent_id, ts, approved, ())


def order_event(
    intent_id: str,
    leg: LegKind,
    ts: float,
    status: str,
    quantity: float,
    filled: float = 0.0,
    order_id: int = 1,
) -> OrderEvent:
    symbol = "TLT" if leg is LegKind.BUY_WRITE else "TLTW"
    return OrderEvent(
        ts=ts,
        intent_id=intent_id,
        order_id=order_id,
        perm_id=order_id + 1000,
        leg=leg.value,
        symbol=symbol,
        side=Side.BUY,
        quantity=quantity,
        order_type="LMT",
        limit_price=25.0,
        status=status,
        filled=filled,
        remaining=quantity - filled,
        avg_fill_price=25.0 if filled else 0.0,
    )


def risk_status(state: str = "ACTIVE", usage: dict | None = None, ts: float = NOW) -> RiskStatus:
    return RiskStatus(ts, state, "" if state == "ACTIVE" else "daily loss limit", usage or {})


def pnl(total: float, ts: float = NOW) -> PnL:
    return PnL(
        ts, realized=total, unrealized=0.0, commissions=0.0, total=total, per_pair={"pair-1": total}
    )


def position(symbol: str, quantity: float, price: float, multiplier: float = 1.0) -> Position:
    con_id = TLT_CON_ID if symbol == "TLT" else TLTW_CON_ID
    return Position(
        symbol, symbol, con_id, "STK", quantity, price, multiplier, price, 12.5, -3.0, NOW
    )


def spread_point(z: float, ts: float = NOW, state: str = "FLAT") -> SpreadPoint:
    return SpreadPoint(
        ts=ts, index_value=95.0, tltw=25.0, beta=1.1, alpha=0.01, spread=0.002, mean=0.001,
        std=0.0005, z=z, entry_z=2.0, exit_z=0.5, stop_z=4.0, hedge_method="ols", state=state,
        call_con_id=1, call_strike=97.0, call_expiry="20270115",
    )  # fmt: skip
