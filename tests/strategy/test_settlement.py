"""IB settles the pair's call (assignment, exercise or expiry): the strategy never later sends an
exit for buy-writes the pair no longer holds (risk would refuse it EXCEEDS_HOLDINGS, bar after
bar).

The scenario (`tests.strategy.scenario`) enters short the spread ten minutes after the premium
shock: BUY 5 buy-write units (long 500 TLT, short 5 calls), SELL 1,995 TLTW. Risk's side is the
real `ExecutionEngine`, its book seeded with the entry's fills.
"""

from __future__ import annotations

from tests.strategy.scenario import SHOCK_TIME, answered, scenario_settings, shock_messages
from trading.bus import (
    Fill,
    IntentPurpose,
    LegKind,
    OrderIntent,
    Quote,
    Side,
    SignalAction,
)
from trading.execution.engine import ExecutionEngine, Submit
from trading.settings import RiskSettings
from trading.strategy import StrategyEngine
from trading.strategy.position import PairStatus

UNITS, SHARES = 5, 1995


def run(engine: StrategyEngine, messages) -> tuple[list[OrderIntent], list]:
    """Feed messages, approve every intent; returns the intents and the signals."""
    intents, signals = [], []
    for msg in messages:
        result = engine.on_message(msg)
        signals += result.signals
        for intent in result.intents:
            intents.append(intent)
            signals += answered(engine, intent)
    return intents, signals


def entered() -> tuple[StrategyEngine, OrderIntent, int]:
    """The strategy just after its entry was approved, the entry, and the index of the next
    message."""
    messages = shock_messages()
    engine = StrategyEngine.from_settings(scenario_settings())
    cut = next(
        i for i, m in enumerate(messages)
        if getattr(m, "ts_exchange", 0) > SHOCK_TIME.timestamp() + 600
    )  # fmt: skip
    opened, _ = run(engine, messages[:cut])
    (entry,) = opened
    assert [(leg.kind, leg.side, leg.quantity) for leg in entry.legs] == [
        (LegKind.BUY_WRITE, Side.BUY, UNITS),
        (LegKind.STOCK, Side.SELL, SHARES),
    ]
    assert engine.pairs.status is PairStatus.OPEN
    return engine, entry, cut


def settlement(entry: OrderIntent, contracts: int, ts: float, exec_id: str = "s1") -> Fill:
    """IB's report of an assignment of the short call: bought back at 0, no orderRef."""
    call = entry.legs[0].option_con_id
    assert call is not None
    return Fill(ts, exec_id, 0, 0, "", "TLT", "TLT   261120C00094000", call, "OPT", Side.BUY,
                float(contracts), 0.0, 100.0, 0.0)  # fmt: skip


def exits(intents: list[OrderIntent]) -> list[OrderIntent]:
    return [i for i in intents if i.purpose is not IntentPurpose.ENTRY]


def test_a_full_assignment_of_the_pairs_call_leaves_the_strategy_flat_with_no_exit():
    engine, entry, cut = entered()

    result = engine.on_message(settlement(entry, UNITS, entry.ts + 30))

    assert engine.pairs.status is PairStatus.FLAT and engine.pairs.pair is None
    (signal,) = result.signals
    assert signal.action is SignalAction.NONE and "no buy-write left" in signal.reason
    # Risk's flatten of what is left (TLTW) then changes nothing: the strategy is already flat.
    flatten = OrderIntent(
        f"flatten-{entry.pair_id}-1-1", entry.pair_id, entry.ts + 32, IntentPurpose.FLATTEN,
        SignalAction.EXIT, (entry.legs[1],),
    )  # fmt: skip
    assert engine.on_risk_intent(flatten) == ()
    later, _ = run(engine, shock_messages()[cut:])
    assert exits(later) == []


def test_a_fill_of_another_contract_or_with_an_intent_is_not_a_settlement():
    engine, entry, _ = entered()
    other = settlement(entry, UNITS, entry.ts + 30)
    other = Fill(**{**{f: getattr(other, f) for f in other.__slots__}, "con_id": 1})
    own = settlement(entry, UNITS, entry.ts + 30)
    own = Fill(**{**{f: getattr(own, f) for f in own.__slots__}, "intent_id": entry.intent_id})

    assert engine.on_message(other).signals == ()
    assert engine.on_message(own).signals == ()
    assert engine.pairs.status is PairStatus.OPEN and engine.pairs.pair.legs.buy_write_units == 5


def test_a_partial_assignment_shrinks_the_pair_to_what_risk_leaves_and_the_exit_closes_it():
    engine, entry, cut = entered()
    messages = shock_messages()
    last = {m.con_id: m for m in messages[:cut] if isinstance(m, Quote)}
    risk = ExecutionEngine(RiskSettings())
    for quote in last.values():
        risk.on_market(quote)
    risk.book.attribute(entry.intent_id, entry.pair_id)
    bw, tltw = entry.legs
    call = bw.option_con_id
    ts = entry.ts + 1
    for fill in (
        Fill(ts, "e1", 1, 1, entry.intent_id, "TLT", "TLT", bw.con_id, "STK", Side.BUY,
             500.0, 92.82, 1.0, 0.0),
        Fill(ts, "e2", 1, 1, entry.intent_id, "TLT", "TLT   261120C00094000", call, "OPT",
             Side.SELL, 5.0, 0.97, 100.0, 0.0),
        Fill(ts, "e3", 2, 2, entry.intent_id, "TLTW", "TLTW", tltw.con_id, "STK", Side.SELL,
             float(SHARES), 25.04, 1.0, 0.0),
    ):  # fmt: skip
        assert risk.on_fill(fill)
        engine.on_message(fill)
    # IB assigns 2 of the 5 calls: 200 TLT delivered at the 94 strike.
    assigned = (
        settlement(entry, 2, ts + 60),
        Fill(ts + 60, "s2", 0, 0, "", "TLT", "TLT", bw.con_id, "STK", Side.SELL, 200.0, 94.0,
             1.0, 0.0),
    )  # fmt: skip
    signals = []
    for fill in assigned:
        assert risk.on_fill(fill)
        signals += engine.on_message(fill).signals
    assert "5 -> 3 buy-write units" in signals[0].reason
    assert engine.pairs.pair.legs.buy_write_units == 3

    (rebalance,) = [a.intent for a in risk.tick(ts + 62) if isinstance(a, Submit)]
    # 3 of 5 units left: TLTW cut to -1,995 x 3/5 = -1,197 (buy 798); TLT 300 = 100 x 3 stays.
    assert [(leg.symbol, leg.side, leg.quantity) for leg in rebalance.legs] == [
        ("TLTW", Side.BUY, 798)
    ]
    (note,) = engine.on_risk_intent(rebalance)
    assert "1995 -> 1197 TLTW shares" in note.reason
    assert engine.pairs.status is PairStatus.OPEN
    # Risk sends a refused rebalance again: the pair is not cut twice.
    engine.on_risk_intent(rebalance)
    assert (engine.pairs.pair.legs.buy_write_units, engine.pairs.pair.legs.tltw_shares) == (3, 1197)
    holdings = {h.con_id: h.quantity for h in risk.book.pair_holdings(entry.pair_id)}
    assert holdings == {bw.con_id: 300.0, call: -3.0, tltw.con_id: -1995.0}

    later, _ = run(engine, messages[cut:])

    (exit_,) = exits(later)
    # The exit closes what the pair holds once the rebalance fills: 3 units, 1,197 TLTW.
    assert [(leg.kind, leg.side, leg.quantity) for leg in exit_.legs] == [
        (LegKind.BUY_WRITE, Side.SELL, 3),
        (LegKind.STOCK, Side.BUY, 1197),
    ]
    assert exit_.legs[0].option_con_id == call
