"""The pair's lifecycle follows what risk reports about its orders, and never storms.

The scenario (`tests.strategy.scenario`) enters short the spread after the premium shock (BUY 5
buy-write units, SELL 1,995 TLTW) and exits as the premium reverts. Risk's side is the real
`ExecutionEngine` where its answers matter (the finding: while an entry's orders worked, the
strategy sent an exit every bar and risk refused each ORDER_WORKING, ten a second at 600x).
"""

from __future__ import annotations

import itertools

from tests.strategy.scenario import (
    answered,
    filled_events,
    scenario_settings,
    shock_messages,
)
from trading.bus import (
    IntentPurpose,
    LegKind,
    OptionQuote,
    OrderIntent,
    Quote,
    RiskDecision,
    RiskReason,
)
from trading.domain.orders import StatusUpdate
from trading.execution.engine import ExecutionEngine
from trading.settings import RiskSettings
from trading.strategy import StrategyEngine
from trading.strategy.position import PairStatus

UNITS, SHARES = 5, 1995


def until_entry(engine: StrategyEngine) -> tuple[OrderIntent, int]:
    """Feed the scenario until the entry intent; returns it and the next message's index."""
    for i, msg in enumerate(shock_messages()):
        (entry, *_) = engine.on_message(msg).intents or (None,)
        if entry is not None:
            return entry, i + 1
    raise AssertionError("the scenario never entered")


def test_an_exit_while_the_entry_works_goes_out_once_and_the_strategy_never_storms():
    """Risk is the real engine, and IB never fills the entry. The spread reverts while the
    entry's orders work: the strategy sends one exit, risk refuses it SUPERSEDED (it cancels the
    entry and flattens the pair itself), and nothing more is asked for the rest of the day."""
    engine = StrategyEngine.from_settings(scenario_settings())
    risk = ExecutionEngine(RiskSettings(check_market_hours=False, stale_after_s=1e9))
    entry, cut = until_entry(engine)
    messages = shock_messages()
    for msg in messages[:cut]:
        if isinstance(msg, Quote | OptionQuote):
            risk.on_market(msg)
    decision = risk.decide(entry, entry.ts)
    assert decision.approved
    engine.on_decision(decision)
    for index in range(len(entry.legs)):  # the orders rest at IB, unfilled
        risk.order_sent(entry.intent_id, index, 10 + index, entry.ts)
        event = risk.on_status(
            StatusUpdate(10 + index, "Submitted", 0, entry.legs[index].quantity, 0), entry.ts
        )
        engine.on_order_event(event)
    asked = []
    for msg in messages[cut:]:
        if isinstance(msg, Quote | OptionQuote):
            risk.on_market(msg)
        for intent in engine.on_message(msg).intents:
            asked.append(intent)
            engine.on_decision(risk.decide(intent, intent.ts))
    assert [i.purpose for i in asked] == [IntentPurpose.EXIT]
    assert engine.pairs.status is PairStatus.FLAT and engine.pairs.pair is None
    assert [r.code for r in risk.decisions[asked[0].intent_id].reasons] == ["SUPERSEDED"]


def test_an_entry_that_filled_nothing_leaves_the_strategy_flat_and_blocked():
    engine = StrategyEngine.from_settings(scenario_settings())
    entry, cut = until_entry(engine)
    engine.on_decision(RiskDecision(entry.intent_id, entry.ts, True, ()))
    assert engine.pairs.status is PairStatus.OPEN and engine.pairs.working is not None
    signals = []
    for event in filled_events(entry, filled={}):  # IB never received them (lost), say
        signals += engine.on_order_event(event)
    assert engine.pairs.status is PairStatus.FLAT and engine.pairs.machine.blocked
    assert "nothing filled" in signals[0].reason
    later = [i for m in shock_messages()[cut:] for i in engine.on_message(m).intents]
    assert later == []  # blocked: the same dislocation is not entered again


def test_a_partly_filled_entry_is_exited_for_what_filled():
    engine = StrategyEngine.from_settings(scenario_settings())
    entry, cut = until_entry(engine)
    engine.on_decision(RiskDecision(entry.intent_id, entry.ts, True, ()))
    for event in filled_events(entry, {LegKind.BUY_WRITE: 2.0, LegKind.STOCK: 800.0}):
        engine.on_order_event(event)  # both legs cancelled at the close, part filled
    assert engine.pairs.status is PairStatus.OPEN
    exits = []
    for msg in shock_messages()[cut:]:
        for intent in engine.on_message(msg).intents:
            exits.append(intent)
            answered(engine, intent)
    (exit_,) = exits
    assert {leg.kind: leg.quantity for leg in exit_.legs} == {
        LegKind.BUY_WRITE: 2,
        LegKind.STOCK: 800,
    }
    assert engine.pairs.status is PairStatus.FLAT


def test_an_exit_that_left_a_leg_is_open_with_the_rest_and_exits_it_again():
    engine = StrategyEngine.from_settings(scenario_settings())
    entry, cut = until_entry(engine)
    answered(engine, entry)
    messages = iter(shock_messages()[cut:])
    exit_ = next(intent for msg in messages for intent in engine.on_message(msg).intents)
    engine.on_decision(RiskDecision(exit_.intent_id, exit_.ts, True, ()))
    # the buy-write filled, the TLTW order was cancelled with 995 of 1,995 bought
    for event in filled_events(exit_, {LegKind.BUY_WRITE: UNITS, LegKind.STOCK: 995.0}):
        engine.on_order_event(event)
    assert engine.pairs.status is PairStatus.OPEN
    assert (engine.pairs.pair.legs.buy_write_units, engine.pairs.pair.legs.tltw_shares) == (0, 1000)
    retried = next(intent for msg in messages for intent in engine.on_message(msg).intents)
    assert [(leg.kind, leg.quantity) for leg in retried.legs] == [(LegKind.STOCK, 1000)]
    assert retried.purpose is IntentPurpose.EXIT


def test_a_rejected_exit_is_asked_again_after_a_pause_that_doubles():
    engine = StrategyEngine.from_settings(scenario_settings())
    entry, cut = until_entry(engine)
    answered(engine, entry)
    asked_at = []
    for msg in shock_messages()[cut:]:
        for intent in engine.on_message(msg).intents:
            asked_at.append(engine.pairs.bars)
            stale = (RiskReason("STALE_DATA", "TLTW: quote is 12 s old"),)
            engine.on_decision(RiskDecision(intent.intent_id, intent.ts, False, stale))
    gaps = [b - a for a, b in itertools.pairwise(asked_at)]
    assert len(asked_at) > 5
    assert gaps[:6] == [1, 2, 4, 8, 16, 32] and max(gaps) == 64
    assert engine.pairs.status is PairStatus.OPEN


def test_the_working_intent_survives_a_restart():
    engine = StrategyEngine.from_settings(scenario_settings())
    entry, _ = until_entry(engine)
    engine.on_decision(RiskDecision(entry.intent_id, entry.ts, True, ()))
    first, second = filled_events(entry)
    engine.on_order_event(first)
    again = StrategyEngine.from_settings(scenario_settings())
    assert again.restore(engine.to_state())
    assert again.pairs.working.intent_id == entry.intent_id
    again.on_order_event(second)
    assert again.pairs.working is None and again.pairs.status is PairStatus.OPEN
    assert again.pairs.pair.legs.tltw_shares == SHARES
