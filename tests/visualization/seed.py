"""A known state of the system, written through the Bus as the services would write it.

Every number is chosen by hand so the tests can state what the dashboard must show; values
avoid exact halves at the displayed precision so JavaScript's toFixed and Python's format agree.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

from trading import bus as b
from trading.bus import Bus, Channels, Keys, Streams
from trading.domain.pair import PairSpec

T0 = 1_764_000_000.0  # exchange/bar time of the first spread point (epoch s): Mon 11:00 ET
BAR_S = 60.0
POINTS = 240
CALL_CON_ID = 700_000_123
OLD_CALL_CON_ID = 700_000_124  # a call whose last quote is 122 s old
PAIR = PairSpec(underlying_con_id=15547841, etf_con_id=640000001)
"""The pair the seed writes unless told another: the default pair's names."""


def risk_problems(pair_id: str) -> tuple[str, ...]:
    """Why risk-management's heartbeat says degraded (as trading/execution/runtime.py words it)."""
    return (
        f"1 orders not acknowledged by IB after 5 s ({pair_id}-entry-1): looking them up",
        f"pair {pair_id}: 12 intents rejected in the last minute",
    )


RISK_PROBLEMS = risk_problems(PAIR.pair_id)
NEXT_SESSION = T0 + 22.5 * 3600  # Tuesday 09:30 ET: the next session's first bar


def spread_point(i: int) -> b.SpreadPoint:
    """Point i of a hand-made pair: z follows a sine of amplitude 2.5 (crosses the entry band)."""
    z = 2.5 * math.sin(i / 20.0)
    mean, std = 0.01, 0.002
    return b.SpreadPoint(
        ts=T0 + i * BAR_S,
        index_value=88.0 + 0.01 * i,
        tltw=23.4 + 0.002 * i,
        beta=0.97 + 0.0001 * i,
        alpha=0.011,
        spread=mean + z * std,
        mean=mean,
        std=std,
        z=z,
        entry_z=2.0,
        exit_z=0.5,
        stop_z=4.0,
        hedge_method="kalman",
        state="SHORT_SPREAD" if z > 2.0 else "FLAT",
        call_con_id=CALL_CON_ID,
        call_strike=90.0,
        call_expiry="20261218",
    )


@dataclass(frozen=True, slots=True)
class Seeded:
    points: tuple[b.SpreadPoint, ...]
    signals: tuple[b.Signal, ...]
    quotes: dict[str, b.Quote]
    navs: dict[str, b.EtfNav]
    option: b.OptionQuote
    positions: tuple[b.Position, ...]
    pnl: b.PnL
    risk: b.RiskStatus
    open_orders: tuple[b.OrderEvent, ...]
    fills: tuple[b.Fill, ...]
    health: tuple[b.DataHealth, ...]
    alerts: tuple[b.Alert, ...]
    now: float


def local_symbol(underlying: str, strike: int) -> str:
    """The OCC symbol of the underlying's 2026-12-18 call at a whole-dollar strike."""
    return f"{underlying:<6}261218C{strike * 1000:08d}"


async def seed(bus: Bus, points: int = POINTS, pair: PairSpec = PAIR) -> Seeded:
    """The known state, for ``pair`` (its names and its stocks' con ids; the default pair's
    names unless told another)."""
    u, e = pair.underlying, pair.etf
    u_id, e_id = pair.underlying_con_id, pair.etf_con_id
    assert u_id is not None and e_id is not None, "the seed writes the stocks' con ids"
    now = time.time()
    spread = tuple(spread_point(i) for i in range(points))
    for p in spread:
        await bus.append(Streams.SPREAD, p)
    await bus.set_latest(Keys.SPREAD_LATEST, spread[-1])
    signals = (
        b.Signal(T0 + 32 * BAR_S, b.SignalAction.ENTER_SHORT_SPREAD, "SHORT_SPREAD", 2.4331,
                 0.0149, "z above entry"),
        b.Signal(T0 + 40 * BAR_S, b.SignalAction.NONE, "SHORT_SPREAD", 2.2, 0.014, "hold"),
        b.Signal(T0 + 61 * BAR_S, b.SignalAction.EXIT, "FLAT", 0.4401, 0.0109, "z inside exit"),
    )  # fmt: skip
    for s in signals:
        await bus.append(Streams.SIGNALS, s)
    quotes = {
        u: b.Quote(u, u_id, 90.01, 90.03, 500.0, 700.0, 90.02, T0, now - 1.0),
        e: b.Quote(e, e_id, 23.41, 23.43, 900.0, 800.0, 23.42, T0, now - 2.0),
    }
    for symbol, q in quotes.items():
        await bus.set_latest(Keys.quote(symbol), q)
        for i in range(50):
            tick = b.Quote(symbol, q.con_id, q.bid + 0.01 * i, q.ask + 0.01 * i, 1.0, 1.0,
                           None, T0 + i * BAR_S, now)  # fmt: skip
            await bus.append(Streams.history(symbol), tick)
    navs = {e: b.EtfNav(e, 23.40, T0, now - 3.0)}
    await bus.set_latest(Keys.nav(e), navs[e])
    option = b.OptionQuote(
        u, CALL_CON_ID, local_symbol(u, 90), "20261218", 90.0, "C", 1.52, 1.56, 10.0,
        12.0, 0.1432, 0.5213, 0.0912, 0.1134, -0.0312, 90.02, 1.54, T0, now - 1.5,
    )  # fmt: skip
    await bus.set_latest(Keys.option(CALL_CON_ID), option)
    await bus.hset_latest(Keys.OPTION_INDEX, str(CALL_CON_ID), option)
    old_option = b.OptionQuote(
        u, OLD_CALL_CON_ID, local_symbol(u, 91), "20261218", 91.0, "C", 1.12, 1.16,
        10.0, 12.0, 0.1432, 0.4213, 0.0912, 0.1134, -0.0312, 90.02, 1.14, T0, now - 122.0,
    )  # fmt: skip
    await bus.set_latest(Keys.option(OLD_CALL_CON_ID), old_option)
    await bus.hset_latest(Keys.OPTION_INDEX, str(OLD_CALL_CON_ID), old_option)
    positions = (
        b.Position(u, u, u_id, "STK", 300.0, 89.9, 1.0, 90.02, 36.0, 0.0, now),
        b.Position(u, local_symbol(u, 90), CALL_CON_ID, "OPT", -3.0, 1.61, 100.0, 1.54,
                   21.0, 0.0, now),
        b.Position(e, e, e_id, "STK", -1100.0, 23.45, 1.0, 23.42, 33.0, 0.0,
                   now),
    )  # fmt: skip
    for p in positions:
        await bus.hset_latest(Keys.POSITIONS, str(p.con_id), p)
    pnl = b.PnL(now, realized=-12.34, unrealized=90.0, commissions=4.21, total=73.45,
                per_pair={"pair-1": 73.45}, distributions=0.0)  # fmt: skip
    await bus.set_latest(Keys.PNL, pnl)
    risk = b.RiskStatus(now, "REDUCING", "net delta near limit",
                        {"net_delta": 0.83, "gross_notional": 0.412, "daily_loss": 0.0,
                         "orders_per_minute": 1.07})  # fmt: skip
    await bus.set_latest(Keys.RISK_STATUS, risk)
    open_orders = (
        b.OrderEvent(now - 5, "intent-7", 41, 9041, "stock", e, b.Side.BUY, 200.0, "LMT",
                     23.44, "Submitted", 0.0, 200.0, 0.0),
        b.OrderEvent(now - 4, "intent-8", 42, 9042, "buy_write", u, b.Side.BUY, 2.0, "LMT",
                     8850.0, "Submitted", 0.0, 2.0, 0.0),
    )  # fmt: skip
    for o in open_orders:
        await bus.hset_latest(Keys.OPEN_ORDERS, o.intent_id, o)
    # risk's record of the buy-write's intent: it names the call the combo writes.
    buy_write = b.IntentLeg(b.LegKind.BUY_WRITE, u, b.Side.BUY, 2, 8850.0, u_id,
                            CALL_CON_ID, "20261218", 90.0)  # fmt: skip
    intent = b.OrderIntent("intent-8", "pair-1", now - 4, b.IntentPurpose.ENTRY,
                           b.SignalAction.ENTER_SHORT_SPREAD, (buy_write,))  # fmt: skip
    await bus.hset_state(Keys.INTENT_STATUS, "intent-8",
                         {"status": "placed", "intent": b.encode(intent).decode()})  # fmt: skip
    fills = (
        *(
            b.Fill(now - 60 + i, f"exec-{i}", 30 + i, 9030 + i, f"intent-{i}", e, e,
                   e_id, "STK", b.Side.SELL, 100.0 * (i + 1), 23.41 + 0.01 * i, 1.0, 0.35)
            for i in range(3)
        ),
        b.Fill(now - 50, "exec-3", 33, 9033, "intent-3", u, local_symbol(u, 90),
               CALL_CON_ID, "OPT", b.Side.SELL, 3.0, 1.61, 100.0, 1.95),
    )  # fmt: skip
    for f in fills:
        await bus.append(Streams.FILLS, f)
    health = (
        b.DataHealth(u, b.DataStatus.OK, "", now - 1.0),
        b.DataHealth(e, b.DataStatus.STALE, "no tick for 31 s", now - 0.5),
        # ok since 130 s, and quoted 1.5 s ago: ok, 1.5 s old (not 130)
        b.DataHealth(str(CALL_CON_ID), b.DataStatus.OK, "", now - 130.0),
        # ok by data-ingestion's last word, but no quote for 122 s: shown stale
        b.DataHealth(str(OLD_CALL_CON_ID), b.DataStatus.OK, "", now - 130.0),
    )
    for h in health:
        await bus.hset_latest(Keys.HEALTH, h.symbol, h)
    for service, status, detail in (
        ("strategy", "ok", {}),
        ("risk-management", "degraded", {"problems": list(risk_problems(pair.pair_id))}),
    ):
        await bus.beat(b.Heartbeat(service, now, status, detail), ttl_s=600)
    alerts = (b.Alert(now - 10, b.Severity.WARNING, "monitoring", "stale_data", f"{e} stale"),)
    for a in alerts:
        await bus.append(Streams.ALERTS, a)
    return Seeded(spread, signals, quotes, navs, option, positions, pnl, risk, open_orders,
                  fills, health, alerts, now)  # fmt: skip


def next_session_point(i: int) -> b.SpreadPoint:
    """Bar i of the next session (Tuesday from 09:30 ET), continuing the pair's sine."""
    return dataclasses.replace(spread_point(POINTS + i), ts=NEXT_SESSION + i * BAR_S)


async def publish_point(bus: Bus, point: b.SpreadPoint) -> None:
    """What the strategy does per bar: append, set latest, publish."""
    await bus.append(Streams.SPREAD, point)
    await bus.set_latest(Keys.SPREAD_LATEST, point)
    await bus.publish(Channels.SPREAD, point)
