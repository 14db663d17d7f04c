"""The sim feed's market messages against an independent construction from the model's public
API: bar rows, `MarketModel.option_quotes` frames and the messages' own constructors."""

from __future__ import annotations

import math
from datetime import date

import pandas as pd

from trading.backtest.simfeed import sim_model, simulated_messages
from trading.bus import Dividends, EtfNav, Message, OptionChain, OptionQuote, Quote
from trading.domain.pair import DEFAULT_PAIR
from trading.ibsim.history import bar_frame

START, END = date(2026, 10, 29), date(2026, 10, 30)


def expected_market(model, chains: list[OptionChain]) -> list[Message]:
    """Bar by bar: the underlying's and the ETF's quotes, the NAV, then every subscribed call
    with a finite two-sided market, slowly, a DataFrame row at a time."""
    under, etf = DEFAULT_PAIR.stocks
    frame = bar_frame(model, START, END)
    expected: list[Message] = []
    for chain, (_, rows) in zip(chains, frame.groupby(frame.index.date), strict=True):
        closes = rows.index + pd.Timedelta(minutes=1)
        calls = []
        for option in chain.subscribed:
            expiry = date.fromisoformat(option.expiry)
            quotes = model.option_quotes(closes, expiry, option.strike, "C")
            calls.append((option, list(quotes.itertuples())))
        for i, (close, row) in enumerate(zip(closes, rows.itertuples(), strict=True)):
            ts = close.timestamp() - 0.5
            expected.append(
                Quote(under, DEFAULT_PAIR.underlying_con_id, row.tlt_bid, row.tlt_ask, 100.0,
                      100.0, None, ts, ts)
            )  # fmt: skip
            expected.append(
                Quote(etf, DEFAULT_PAIR.etf_con_id, row.tltw_bid, row.tltw_ask, 100.0, 100.0,
                      None, ts, ts)
            )  # fmt: skip
            expected.append(EtfNav(etf, row.tltw_nav, ts, ts))
            for option, quotes in calls:
                q = quotes[i]
                if not (math.isfinite(q.bid) and math.isfinite(q.ask) and q.ask > 0):
                    continue
                expected.append(
                    OptionQuote(
                        symbol=under,
                        con_id=option.con_id,
                        local_symbol=option.local_symbol,
                        expiry=option.expiry,
                        strike=option.strike,
                        right="C",
                        bid=q.bid,
                        ask=q.ask,
                        bid_size=10.0,
                        ask_size=10.0,
                        implied_vol=q.implied_vol,
                        delta=q.delta,
                        gamma=q.gamma,
                        vega_per_point=q.vega_per_vol_point,
                        theta_per_day=q.theta_per_day,
                        underlying_price=q.underlying,
                        model_price=q.theo,
                        ts_exchange=ts,
                        ts_recv=ts,
                    )
                )
    return expected


def test_sim_feed_quotes_each_bar_as_the_model_prices_it():
    model = sim_model(seed=2)
    messages = list(simulated_messages(model, START, END))
    chains = [m for m in messages if isinstance(m, OptionChain)]
    market = [m for m in messages if not isinstance(m, OptionChain | Dividends)]
    assert len(chains) == 2
    assert market == expected_market(model, chains)
    assert all(type(m.bid) is float for m in market if isinstance(m, OptionQuote))
