"""The strategy's engine takes the pair (symbols, contract ids, pair id, moneyness) from the
settings' PairSpec."""

from __future__ import annotations

import pytest

from trading.domain.pair import PairSpec
from trading.settings import load_settings
from trading.strategy.engine import StrategyEngine
from trading.strategy.market import EngineConfig


def test_from_settings_takes_the_pair_spec():
    settings = load_settings(
        pair={"underlying": "AAA", "etf": "BBB", "underlying_con_id": 11, "etf_con_id": 22},
        strategy={"pair_id": "AAABW-BBB", "preset": "replica"},
    )
    engine = StrategyEngine.from_settings(settings)
    c = engine.config
    assert (c.underlying, c.etf, c.tlt_con_id, c.tltw_con_id) == ("AAA", "BBB", 11, 22)
    assert (c.pair_id, c.moneyness) == ("AAABW-BBB", 1.02)
    assert (engine.market.underlying, engine.market.etf) == ("AAA", "BBB")


def test_default_settings_keep_todays_pair():
    c = StrategyEngine.from_settings(load_settings()).config
    assert (c.underlying, c.etf, c.tlt_con_id, c.tltw_con_id) == (
        "TLT",
        "TLTW",
        15547841,
        545186218,
    )
    assert c == EngineConfig(moneyness=1.0, stale_after_s=c.stale_after_s)


def test_the_strategy_refuses_a_pair_without_contract_ids():
    with pytest.raises(ValueError, match="PairSpec.etf_con_id is required by the strategy"):
        EngineConfig.pair_values(PairSpec(underlying_con_id=1))
