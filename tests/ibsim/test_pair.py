"""ibsim lists the pair of its config (a PairSpec), not TLT and TLTW: the real ib_async client
against a gateway configured with IEF and IEFW under other contract ids finds those names,
their options, chain, quotes, bars and fills, and nothing of TLT; the prices are the default
pair's model (the same seed gives the same market whatever the names).

The market is frozen at its 09:30 anchor (speed 1e-9), where the underlying's mid is exactly
90.00: bid 90.00, ask 90.01 by hand (one cent wide, bid = floor(100 mid) / 100).
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from datetime import date

import ib_async
import pytest

from tests.ibsim.clients import connected, error_codes, eventually, qualified
from tests.ibsim.conftest import TEST_SEED
from trading.domain.pair import DEFAULT_PAIR, PairSpec
from trading.ibsim import MarketModel, SimConfig, SimulatedGateway
from trading.ibsim.__main__ import parse
from trading.ibsim.history import bar_frame
from trading.ibsim.instruments import TLT, TLTW
from trading.runner import Runner
from trading.settings import load_settings

IEF_CON_ID = 8_227_001
IEFW_CON_ID = 700_123_457
IEF_PAIR = PairSpec(
    underlying="IEF",
    etf="IEFW",
    pair_id="IEFBW-IEFW",
    underlying_con_id=IEF_CON_ID,
    etf_con_id=IEFW_CON_ID,
)


@pytest.fixture(scope="module")
def ief() -> Iterator[SimulatedGateway]:
    """The frozen market listing IEF and IEFW; stopped when the module is done, even failed."""
    with SimulatedGateway(SimConfig(seed=TEST_SEED, speed=1e-9, pair=IEF_PAIR)) as gateway:
        yield gateway


@pytest.fixture
def frozen_ief(ief: SimulatedGateway) -> SimulatedGateway:
    ief.reset()
    return ief


def stock(symbol: str) -> ib_async.Stock:
    return ib_async.Stock(symbol, "SMART", "USD")


async def test_the_stocks_are_the_pairs_and_tlt_is_unknown(frozen_ief):
    async with connected(ib_async, frozen_ief) as ib:
        underlying, etf = await qualified(ib, stock("IEF"), stock("IEFW"))
        assert (underlying.conId, underlying.primaryExchange) == (IEF_CON_ID, "NASDAQ")
        assert (etf.conId, etf.localSymbol, etf.tradingClass) == (IEFW_CON_ID, "IEFW", "IEFW")
        (details,) = await ib.reqContractDetailsAsync(stock("IEF"))
        assert details.longName == "IEF" and details.contract.conId == IEF_CON_ID
        (by_id,) = await ib.reqContractDetailsAsync(ib_async.Contract(conId=IEFW_CON_ID))
        assert by_id.contract.symbol == "IEFW"
        errors = error_codes(ib)
        for unknown in (stock("TLT"), stock("TLTW"), ib_async.Contract(conId=TLT.con_id)):
            assert await ib.reqContractDetailsAsync(unknown) == []
        assert [code for _, code, _ in errors] == [200, 200, 200]


async def test_the_options_are_the_underlyings(frozen_ief):
    async with connected(ib_async, frozen_ief) as ib:
        (call,) = await qualified(ib, ib_async.Option("IEF", "20261120", 90, "C", "SMART"))
        assert call.localSymbol == "IEF   261120C00090000"
        assert (call.tradingClass, call.multiplier) == ("IEF", "100")
        (details,) = await ib.reqContractDetailsAsync(call)
        assert (details.underConId, details.underSymbol) == (IEF_CON_ID, "IEF")
        assert details.marketName == "IEF"
        by_local = ib_async.Option(localSymbol="IEF   261120C00090000", exchange="SMART")
        (found,) = await ib.reqContractDetailsAsync(by_local)
        assert found.contract.conId == call.conId
        errors = error_codes(ib)
        tlt_call = ib_async.Option("TLT", "20261120", 90, "C", "SMART")
        assert await ib.reqContractDetailsAsync(tlt_call) == []
        assert [code for _, code, _ in errors] == [200]


async def test_the_option_chain_is_the_underlyings(frozen_ief):
    async with connected(ib_async, frozen_ief) as ib:
        chains = await ib.reqSecDefOptParamsAsync("IEF", "", "STK", IEF_CON_ID)
        assert {c.exchange for c in chains} == {"SMART", "CBOE"}
        smart = next(c for c in chains if c.exchange == "SMART")
        assert (smart.underlyingConId, smart.tradingClass) == (str(IEF_CON_ID), "IEF")
        assert {"20261106", "20261120", "20261218"} <= set(smart.expirations)
        assert {89.0, 89.5, 90.0, 90.5, 91.0} <= set(smart.strikes)
        assert await ib.reqSecDefOptParamsAsync("TLT", "", "STK", TLT.con_id) == []


async def test_quotes_are_the_default_models_under_the_new_names(frozen_ief):
    model = MarketModel(SimConfig(seed=TEST_SEED))  # the default pair, same seed
    expected = model.snapshot(model.calendar.anchor_tau)
    async with connected(ib_async, frozen_ief) as ib:
        underlying, etf, call = await qualified(
            ib, stock("IEF"), stock("IEFW"), ib_async.Option("IEF", "20261218", 90, "C", "SMART")
        )
        quote = ib.reqMktData(underlying, "", False, False)
        fund = ib.reqMktData(etf, "577,456", False, False)
        option = ib.reqMktData(call, "", False, False)
        await eventually(
            lambda: quote.ask > 0 and fund.ask > 0 and fund.dividends and option.modelGreeks,
            what="quotes of IEF, IEFW (NAV, distributions) and the call",
        )
        assert (quote.bid, quote.ask) == (90.00, 90.01)  # the anchor's mid, exactly 90.00
        assert (fund.bid, fund.ask) == (expected.tltw.bid, expected.tltw.ask)
        assert fund.etfNavLast == pytest.approx(expected.tltw_nav, abs=1e-4)
        # The ETF is the buy-write fund: its monthly distribution (12% a year of NAV 24).
        assert fund.dividends.nextDate == date(2026, 12, 1)
        assert fund.dividends.nextAmount == pytest.approx(0.01 * 24.0, rel=0.02)
        assert option.modelGreeks.undPrice == pytest.approx(expected.tlt_mid)
        assert 0.4 < option.modelGreeks.delta < 0.6  # at the money


@pytest.mark.filterwarnings("ignore:Series.values returning")
async def test_historical_bars_of_the_etf_are_the_default_models(frozen_ief):
    model = MarketModel(SimConfig(seed=TEST_SEED))  # the default pair, same seed
    frame = bar_frame(model, date(2026, 10, 26), date(2026, 10, 30), bar="1 day")
    closes = {t.date(): round(c, 2) for t, c in frame["tltw_close"].items()}
    assert len(closes) == 5
    async with connected(ib_async, frozen_ief) as ib:
        (etf,) = await qualified(ib, stock("IEFW"))
        daily = await ib.reqHistoricalDataAsync(etf, "", "6 D", "1 day", "TRADES", True)
        assert {b.date: b.close for b in daily if b.date in closes} == closes


async def test_a_buy_write_fills_in_the_pairs_names(frozen_ief):
    async with connected(ib_async, frozen_ief) as ib:
        underlying, call = await qualified(
            ib, stock("IEF"), ib_async.Option("IEF", "20261218", 90, "C", "SMART")
        )
        leg = ib_async.ComboLeg
        combo = ib_async.Contract(
            secType="BAG",
            symbol="IEF",
            exchange="SMART",
            currency="USD",
            comboLegs=[
                leg(conId=underlying.conId, ratio=100, action="BUY", exchange="SMART"),
                leg(conId=call.conId, ratio=1, action="SELL", exchange="SMART"),
            ],
        )
        order = ib_async.MarketOrder("BUY", 1)
        order.smartComboRoutingParams = [ib_async.TagValue("NonGuaranteed", "1")]
        trade = ib.placeOrder(combo, order)
        await eventually(lambda: trade.orderStatus.status == "Filled" and len(trade.fills) == 3)
        assert {(f.contract.secType, f.contract.symbol) for f in trade.fills} == {
            ("STK", "IEF"),
            ("OPT", "IEF"),
            ("BAG", "IEF"),
        }
        stock_fill = next(f for f in trade.fills if f.contract.secType == "STK")
        assert (stock_fill.execution.shares, stock_fill.execution.price) == (100, 90.01)
        await eventually(lambda: len(ib.positions()) == 2)
        assert {p.contract.conId: p.position for p in ib.positions()} == {
            IEF_CON_ID: 100,
            call.conId: -1,
        }
        # reqExecutions filtered by symbol: the combo's own execution matches the underlying's.
        fills = await ib.reqExecutionsAsync(ib_async.ExecutionFilter(symbol="IEF"))
        assert len(fills) == 3
        assert await ib.reqExecutionsAsync(ib_async.ExecutionFilter(symbol="TLT")) == []


def test_the_default_pair_is_tlt_and_tltw_under_ibs_ids():
    assert SimConfig().pair == DEFAULT_PAIR
    assert (DEFAULT_PAIR.underlying, DEFAULT_PAIR.underlying_con_id) == (TLT.symbol, TLT.con_id)
    assert (DEFAULT_PAIR.etf, DEFAULT_PAIR.etf_con_id) == (TLTW.symbol, TLTW.con_id)
    # A default symbol without its id takes the default's; the registry lists them.
    registry = MarketModel(SimConfig(pair=PairSpec())).registry
    assert (registry.underlying, registry.etf) == (TLT, TLTW)


def test_a_pair_without_its_contract_ids_is_refused():
    with pytest.raises(ValueError, match=r"SimConfig\.pair\.underlying_con_id .*'IEF'"):
        SimConfig(pair=PairSpec(underlying="IEF", etf="IEFW"))
    with pytest.raises(ValueError, match=r"SimConfig\.pair\.etf_con_id .*'IEFW'"):
        SimConfig(pair=PairSpec(underlying="IEF", etf="IEFW", underlying_con_id=IEF_CON_ID))
    with pytest.raises(ValueError, match=r"SimConfig\.pair must be a PairSpec, got 'IEF'"):
        SimConfig(pair="IEF")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="etf_con_id must differ"):
        SimConfig(pair=PairSpec(underlying="IEF", underlying_con_id=TLTW.con_id))


def test_the_command_line_names_the_pair():
    _, config = parse(
        ["--underlying", "IEF", "--etf", "IEFW", "--underlying-con-id", str(IEF_CON_ID),
         "--etf-con-id", str(IEFW_CON_ID)]
    )  # fmt: skip
    pair = config.pair
    assert (pair.underlying, pair.etf) == ("IEF", "IEFW")
    assert (pair.underlying_con_id, pair.etf_con_id) == (IEF_CON_ID, IEFW_CON_ID)
    assert parse([])[1].pair == DEFAULT_PAIR
    with pytest.raises(ValueError, match="underlying_con_id must be set for 'IEF'"):
        parse(["--underlying", "IEF"])


async def test_the_runner_starts_ibsim_with_the_settings_pair(tmp_path):
    """`make run`'s runner (Redis and ibsim only) passes the pair of TRADING_PAIR__* to ibsim."""
    pair = {"underlying": "IEF", "etf": "IEFW"}
    settings = load_settings(
        redis={"data_dir": str(tmp_path / "redis")},
        pair={**pair, "underlying_con_id": IEF_CON_ID, "etf_con_id": IEFW_CON_ID},
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_")}
    runner = Runner(settings, services=(), env=env, output=io.StringIO())
    try:
        runner.start()
        assert runner.ib_port is not None
        async with connected(ib_async, runner.ib_port) as ib:
            underlying, etf = await qualified(ib, stock("IEF"), stock("IEFW"))
            assert (underlying.conId, etf.conId) == (IEF_CON_ID, IEFW_CON_ID)
            assert await ib.reqContractDetailsAsync(stock("TLT")) == []
    finally:
        runner.stop()


def test_the_planted_excursions_are_told_in_the_etfs_name(caplog):
    caplog.set_level(logging.INFO, logger="trading.ibsim")
    config = SimConfig(seed=TEST_SEED, speed=1e-9, pair=IEF_PAIR, excursion_bp=60.0)
    with SimulatedGateway(config):
        pass
    messages = [r.getMessage() for r in caplog.records]
    told = [m for m in messages if m.startswith("planted premium excursions")]
    assert len(told) == 1 and "IEFW's premium moves +60 bp off its own path" in told[0]
