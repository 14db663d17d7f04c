"""The risk service on ibsim with a real Redis, and what IB did (through its own client).

The marks come from the real data-ingestion service running against the same gateway; intents
are written to the intent stream as the strategy would; what IB did is read back through a
separate ib_async client (its own client id), never from the service under test.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import data_ingestion
import risk_management
from ib_async import IB

from tests.support import async_eventually
from trading.aio import stop_tasks
from trading.bus import (
    Alert,
    Bus,
    Fill,
    IntentLeg,
    IntentPurpose,
    Keys,
    LegKind,
    OptionQuote,
    OrderIntent,
    Position,
    Quote,
    RiskDecision,
    Side,
    SignalAction,
    Streams,
)
from trading.services.shell import serve
from trading.settings import load_settings

TLT_ID = 15547841
TLTW_ID = 545186218
OBSERVER_CLIENT_ID = 77


def settings_for(gateway, redis_url, **risk):
    return load_settings(
        redis={"url": redis_url},
        ib={"port": gateway.port, "connect_timeout_s": 5},
        risk=risk,
    )


@contextlib.asynccontextmanager
async def running(name, main, settings, redis_url) -> AsyncIterator[asyncio.Task]:
    task = asyncio.create_task(serve(name, main, settings, redis_url, metrics_port=0))
    try:
        yield task
    finally:
        await stop_tasks([task])


@contextlib.asynccontextmanager
async def market(gateway, redis_url, bus) -> AsyncIterator[None]:
    """data-ingestion publishing quotes; returns once TLT, TLTW and some calls are in Redis."""
    settings = settings_for(gateway, redis_url)
    async with running(data_ingestion.SERVICE, data_ingestion.main, settings, redis_url):

        async def ready():
            tlt = await bus.get_latest(Keys.quote("TLT"), Quote)
            tltw = await bus.get_latest(Keys.quote("TLTW"), Quote)
            options = await bus.hget_all(Keys.OPTION_INDEX, OptionQuote)
            return tlt and tltw and len(options) >= 4

        await async_eventually(ready, 15, what="quotes in Redis")
        yield


@contextlib.asynccontextmanager
async def risk_service(gateway, redis_url, **risk) -> AsyncIterator[asyncio.Task]:
    settings = settings_for(gateway, redis_url, **risk)
    async with running(risk_management.SERVICE, risk_management.main, settings, redis_url) as t:
        yield t


@contextlib.asynccontextmanager
async def observer(gateway) -> AsyncIterator[IB]:
    """An independent client that sees every order and position of the account."""
    ib = IB()
    await ib.connectAsync("127.0.0.1", gateway.port, clientId=OBSERVER_CLIENT_ID, timeout=5)
    try:
        yield ib
    finally:
        ib.disconnect()


async def front_call(bus: Bus) -> OptionQuote:
    """The call whose strike is nearest spot in the nearest expiry quoted."""
    tlt = await bus.get_latest(Keys.quote("TLT"), Quote)
    spot = 0.5 * (tlt.bid + tlt.ask)
    options = [o for o in (await bus.hget_all(Keys.OPTION_INDEX, OptionQuote)).values()]
    expiry = min(o.expiry for o in options if o.right == "C")
    calls = [o for o in options if o.expiry == expiry and o.right == "C"]
    return min(calls, key=lambda o: (abs(o.strike - spot), o.strike))


async def entry_intent(
    bus: Bus,
    intent_id: str,
    units: int = 1,
    shares: int = 375,
    tltw_offset: float = -0.02,
    pair_id: str = "p-1",
    bw_side: Side = Side.BUY,
    purpose: IntentPurpose = IntentPurpose.ENTRY,
) -> OrderIntent:
    """Buy the buy-write, sell TLTW (a short spread), at marketable prices unless offset."""
    tlt = await bus.get_latest(Keys.quote("TLT"), Quote)
    tltw = await bus.get_latest(Keys.quote("TLTW"), Quote)
    call = await front_call(bus)
    bw_mid = 100 * 0.5 * (tlt.bid + tlt.ask) - 0.5 * (call.bid + call.ask)
    bw_sign = 1 if bw_side is Side.BUY else -1
    tltw_side = Side.SELL if bw_side is Side.BUY else Side.BUY
    tltw_price = (tltw.bid if tltw_side is Side.SELL else tltw.ask) + tltw_offset * (
        1 if tltw_side is Side.SELL else -1
    )
    legs = (
        IntentLeg(
            LegKind.BUY_WRITE,
            "TLT",
            bw_side,
            units,
            round(bw_mid + bw_sign * 10.0, 2),
            TLT_ID,
            call.con_id,
            call.expiry,
            call.strike,
        ),
        IntentLeg(LegKind.STOCK, "TLTW", tltw_side, shares, round(tltw_price, 2), TLTW_ID),
    )
    action = (
        SignalAction.ENTER_SHORT_SPREAD if purpose is IntentPurpose.ENTRY else SignalAction.EXIT
    )
    return OrderIntent(intent_id, pair_id, tlt.ts_recv, purpose, action, legs, {"test": True})


async def decision_of(bus: Bus, intent_id: str, timeout_s: float = 10.0) -> RiskDecision:
    async def found():
        for entry in await bus.read_range(Streams.DECISIONS, 100, RiskDecision):
            if entry.message.intent_id == intent_id:
                return entry.message
        return None

    return await async_eventually(found, timeout_s, what=f"decision of {intent_id}")


async def orders_at_ib(ib: IB) -> list:
    """Every order of the account, open or completed, from any client."""
    await ib.reqAllOpenOrdersAsync()
    await ib.reqCompletedOrdersAsync(False)
    return ib.trades()


async def open_at_ib(ib: IB) -> list:
    """The account's orders that are open now, from any client (IB's answer, not a cache)."""
    return [t for t in await ib.reqAllOpenOrdersAsync() if not t.isDone()]


def positions_of(ib: IB) -> dict[int, float]:
    return {p.contract.conId: p.position for p in ib.positions() if p.position}


async def fills_of(bus: Bus) -> list[Fill]:
    return [e.message for e in await bus.read_after(Streams.FILLS, "0", expect=Fill)]


async def alerts_of(bus: Bus) -> list[Alert]:
    return [e.message for e in await bus.read_after(Streams.ALERTS, "0", expect=Alert)]


async def booked_positions(bus: Bus, since: float = 0.0) -> dict[int, float] | None:
    """The non-zero quantities risk last published, if published after `since`."""
    positions = await bus.hget_all(Keys.POSITIONS, Position)
    if not positions or min(p.ts for p in positions.values()) <= since:
        return None
    return {int(k): p.quantity for k, p in positions.items() if p.quantity}


def holds(condition):
    """An async condition for async_eventually from a plain one (IB's state is in memory)."""

    async def check():
        return condition()

    return check


def with_call(intent: OrderIntent, entry_leg: IntentLeg) -> OrderIntent:
    """Exit with the call the entry sold (the index may have moved to another strike)."""
    bw = intent.legs[0]
    leg = IntentLeg(
        bw.kind,
        bw.symbol,
        bw.side,
        bw.quantity,
        bw.limit_price,
        bw.con_id,
        entry_leg.option_con_id,
        entry_leg.option_expiry,
        entry_leg.option_strike,
    )
    return OrderIntent(
        intent.intent_id,
        intent.pair_id,
        intent.ts,
        intent.purpose,
        intent.action,
        (leg, intent.legs[1]),
        intent.why,
    )
