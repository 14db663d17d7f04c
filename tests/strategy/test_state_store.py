"""The strategy's state in Redis (trading/services/strategy_state.py): every bar writes the
state without its windows and each window's new values only; a restore from Redis gives the
engine the saver had, value for value; a list that does not match the state is not used."""

from __future__ import annotations

import orjson

from tests.strategy.scenario import scenario_settings, shock_messages
from trading.bus import Batch, Keys
from trading.services.strategy_state import StateWriter, read_state
from trading.strategy import StrategyEngine

CURSORS = {"st:fills": "5-0"}


def bars(engine: StrategyEngine, count: int, start: int = 0) -> int:
    """Feed ticks until ``count`` more bars have closed; returns the index to carry on from."""
    messages = shock_messages()
    closed = 0
    i = start
    while closed < count:
        if engine.on_message(messages[i]).bar_end_ts is not None:
            closed += 1
        i += 1
    return i


async def save(bus, writer: StateWriter, engine: StrategyEngine) -> Batch:
    batch = Batch()
    writer.add(batch, engine, CURSORS)
    await bus.execute(batch, transaction=True)
    writer.written()
    return batch


async def restored(bus) -> tuple[StrategyEngine, bool, dict]:
    state, windows = await read_state(bus)
    assert state is not None
    engine = StrategyEngine.from_settings(scenario_settings(hedge_method="ols"))
    return engine, engine.restore(state["engine"], windows), state


async def test_each_bar_writes_only_its_new_values_and_a_restore_is_exact(bus):
    engine = StrategyEngine.from_settings(scenario_settings(hedge_method="ols"))
    writer = StateWriter()
    # Past the 390-bar windows (values fall off their left ends) and the z-score's warm-up
    # (the hedge's window, then the z-score's).
    at = bars(engine, 800)
    first = await save(bus, writer, engine)
    names = set(engine.windows())
    assert names == {"zscore", "pairs.spreads", "pairs.log_index", "pairs.log_tltw", "hedge.x",
                     "hedge.y"}  # fmt: skip
    assert {c[1] for c in first.commands if c[0] == "DEL"} == {
        Keys.strategy_window(n) for n in names
    }  # the first write sends every window whole

    for _ in range(3):
        at = bars(engine, 1, at)
        batch = await save(bus, writer, engine)
        pushes = [c for c in batch.commands if c[0] == "RPUSH"]
        assert sorted(c[1] for c in pushes) == sorted(Keys.strategy_window(n) for n in names)
        assert all(len(c) == 3 for c in pushes), "one value a window a bar"
        assert not [c for c in batch.commands if c[0] == "DEL"]

    state_bytes = await bus.redis.get(Keys.STRATEGY_STATE)
    assert len(state_bytes) < 20_000, "the windows' 2,340 values are not in the state"
    assert orjson.loads(state_bytes)["engine"]["zscore"]["values"] is None

    again, complete, state = await restored(bus)
    assert complete is True
    assert state["cursors"] == CURSORS
    assert again.to_state() == engine.to_state()  # every window value for value
    # and, given the latest quotes (the service seeds them from their keys), it carries on as
    # the original does
    for msg in shock_messages()[at - 2000 : at]:
        again.update(msg)
    points = 0
    for msg in shock_messages()[at : at + 3000]:
        result = again.on_message(msg)
        assert result == engine.on_message(msg)
        points += result.spread_point is not None and result.spread_point.z is not None
    assert points > 50


async def test_a_window_list_that_does_not_match_the_state_is_not_used(bus):
    engine = StrategyEngine.from_settings(scenario_settings(hedge_method="ols"))
    writer = StateWriter()
    bars(engine, 400)
    await save(bus, writer, engine)
    # A value written twice (a retried write that had been applied): the list is one longer.
    await bus.redis.rpush(Keys.strategy_window("zscore"), b"\x00" * 8)
    again, complete, _ = await restored(bus)
    assert complete is False, "the estimators are warmed up from history instead"
    assert again.pairs.status == engine.pairs.status  # the lifecycle is restored regardless


async def test_after_a_failed_write_the_next_one_sends_every_window_whole(bus):
    engine = StrategyEngine.from_settings(scenario_settings(hedge_method="ols"))
    writer = StateWriter()
    at = bars(engine, 400)
    await save(bus, writer, engine)
    bars(engine, 1, at)
    writer.add(Batch(), engine, CURSORS)  # sent, but no answer: applied or not, unknown
    writer.failed()
    batch = await save(bus, writer, engine)
    assert len([c for c in batch.commands if c[0] == "DEL"]) == len(engine.windows())
    again, complete, _ = await restored(bus)
    assert complete is True
    assert again.to_state() == engine.to_state()


async def test_a_whole_state_saved_by_the_earlier_version_still_restores(bus):
    engine = StrategyEngine.from_settings(scenario_settings(hedge_method="ols"))
    bars(engine, 400)
    await bus.set_state(Keys.STRATEGY_STATE, {"engine": engine.to_state(), "cursors": CURSORS})
    again, complete, _ = await restored(bus)
    assert complete is True
    assert again.to_state() == engine.to_state()
