"""Bus messages from ibsim's market model, without a socket: the strategy's research feed.

`simulated_messages` yields, for each one-minute bar of the model (``MarketModel.bars``), what
data-ingestion would publish at the bar's close: TLT and TLTW quotes, TLTW's NAV, and the calls
of the front monthlies around the money with the model's Greeks; plus the option chain at each
session's open and TLTW's distributions (``Dividends``) before the session they go ex in. Every
message carries ``ts_exchange = ts_recv`` = the bar's close minus half a second, so feeding them
to `StrategyEngine.on_message` closes each bar when the next one's first message arrives.

The model is ibsim's (TLT against TLTW: its ``tlt_*``/``tltw_*`` bar columns are the model's
underlying and ETF); the messages carry the names and stock contract ids of the ``pair`` asked
for (a `trading.domain.pair.PairSpec`, default `trading.domain.pair.DEFAULT_PAIR`: TLT and
TLTW with IB's ids, so the default feed is what it always was). Below, "TLT" is the pair's
underlying and "TLTW" its ETF.

Used by the engine's tests and by `trading.backtest.study` (the preset comparison).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from itertools import islice, repeat

import numpy as np
import pandas as pd

from trading.backtest.csvfile import known_con_ids
from trading.bus import ChainOption, Dividends, EtfNav, Message, OptionChain, OptionQuote, Quote
from trading.bus.messages import slot_constructor
from trading.domain.pair import DEFAULT_PAIR, PairSpec
from trading.ibsim.config import ET, SimConfig
from trading.ibsim.history import bar_frame
from trading.ibsim.instruments import occ_symbol, option_con_id
from trading.ibsim.market import MarketModel


@dataclass(frozen=True, slots=True)
class FeedConfig:
    """Which calls to publish: the first ``expiries`` standard monthlies, strikes from
    ``low`` to ``high`` x the session's opening spot (whole dollars)."""

    expiries: int = 3
    low: float = 0.95
    high: float = 1.07
    bar_seconds: int = 60


OPTION_COLUMNS = (
    "bid", "ask", "implied_vol", "delta", "gamma", "vega_per_vol_point", "theta_per_day",
    "underlying", "theo",
)  # fmt: skip
"""The model's option columns (`MarketModel.option_columns_at`) an option quote carries."""

# Messages by the hundred thousand: built without the frozen __init__'s cost per field.
_new_quote = slot_constructor(Quote)
_new_etf_nav = slot_constructor(EtfNav)
_new_option_quote = slot_constructor(OptionQuote)


def premium_shock(model: MarketModel, when: datetime, premium_bp: float) -> None:
    """TLTW's premium jumps to ``premium_bp`` at ``when`` and mean-reverts (ibsim's fault)."""
    model.shock_premium(model.calendar.tau(when), premium_bp)


def simulated_messages(
    model: MarketModel,
    start: date,
    end: date,
    feed: FeedConfig = FeedConfig(),
    pair: PairSpec = DEFAULT_PAIR,
) -> Iterator[Message]:
    """Messages of ``pair`` bar by bar from ``start`` to ``end`` (inclusive), see the module
    docstring. ValueError when the pair lacks a stock's contract id."""
    con_ids = known_con_ids(pair, "the sim feed")
    under, etf = pair.stocks
    frame = bar_frame(model, start, end, bar="1 min")
    if frame.empty:
        return
    calendar = model.calendar
    registry = model.registry
    frame = frame.assign(session_day=[t.date() for t in frame.index])
    for day, rows in frame.groupby("session_day", sort=True):
        session = calendar.index_of(day)
        if session is None:
            continue
        closes = rows.index + pd.Timedelta(seconds=feed.bar_seconds)
        stamps = [c.timestamp() - 0.5 for c in closes]
        spot_open = float(rows["tlt_open"].iloc[0])
        monthlies = [e for e, weekly in registry.listed_expiries(day) if not weekly]
        chosen = monthlies[: feed.expiries]
        strikes = [
            float(k)
            for k in registry.monthly_strikes
            if spot_open * feed.low <= k <= spot_open * feed.high
        ]
        subscribed = tuple(
            ChainOption(
                con_id=option_con_id(expiry, k, "C"),
                local_symbol=occ_symbol(under, expiry.strftime("%Y%m%d"), "C", k),
                expiry=expiry.strftime("%Y%m%d"),
                strike=k,
                right="C",
            )
            for expiry in chosen
            for k in strikes
        )
        yield OptionChain(
            underlying=under,
            underlying_con_id=con_ids[under],
            expiries=tuple(e.strftime("%Y%m%d") for e in monthlies),
            strikes=tuple(float(k) for k in registry.monthly_strikes),
            subscribed=subscribed,
            spot=spot_open,
            ts=stamps[0] - 1.0,
        )
        distribution = model.tltw_distribution(session)
        if distribution > 0:
            yield Dividends(
                symbol=etf,
                past_12m=0.0,
                next_12m=12 * distribution,
                next_ex_date=day.strftime("%Y%m%d"),
                next_amount=distribution,
                ts=stamps[0] - 1.0,
            )
        spots, epochs = model.spots_at(closes)  # once for every option of the day
        option_quotes, per_bar = _option_quotes(model, under, subscribed, spots, epochs, stamps)
        # The slot constructors take every field positionally, in the message's field order.
        under_quotes = map(
            _new_quote, repeat(under), repeat(con_ids[under]), rows["tlt_bid"].tolist(),
            rows["tlt_ask"].tolist(), repeat(100.0), repeat(100.0), repeat(None), stamps, stamps,
        )  # fmt: skip
        etf_quotes = map(
            _new_quote, repeat(etf), repeat(con_ids[etf]), rows["tltw_bid"].tolist(),
            rows["tltw_ask"].tolist(), repeat(100.0), repeat(100.0), repeat(None), stamps, stamps,
        )  # fmt: skip
        navs = map(_new_etf_nav, repeat(etf), rows["tltw_nav"].tolist(), stamps, stamps)
        for under_quote, etf_quote, nav, options in zip(
            under_quotes, etf_quotes, navs, per_bar, strict=True
        ):
            yield under_quote
            yield etf_quote
            yield nav
            yield from islice(option_quotes, options)


def _option_quotes(
    model: MarketModel,
    under: str,
    subscribed: tuple[ChainOption, ...],
    spots: np.ndarray,
    epochs: np.ndarray,
    stamps: list[float],
) -> tuple[Iterator[OptionQuote], list[int]]:
    """A session's option quotes bar by bar, in ``subscribed`` order within a bar, of the calls
    with a finite two-sided market (ask > 0); and how many there are in each bar."""
    grid = {name: np.empty((len(stamps), len(subscribed))) for name in OPTION_COLUMNS}
    for j, option in enumerate(subscribed):
        columns = model.option_columns_at(spots, epochs, _date(option.expiry), option.strike, "C")
        for name in OPTION_COLUMNS:
            grid[name][:, j] = columns[name]
    bid, ask = grid["bid"], grid["ask"]
    quoted = np.isfinite(bid) & np.isfinite(ask) & (ask > 0)
    bars, options = np.nonzero(quoted)  # row-major: bar by bar, as boolean indexing below

    def of_option(attribute: str) -> list:
        return np.array([getattr(o, attribute) for o in subscribed], dtype=object)[options].tolist()

    def quoted_values(name: str) -> list[float]:
        return grid[name][quoted].tolist()

    ts = np.array(stamps)[bars].tolist()
    quotes = map(
        _new_option_quote, repeat(under), of_option("con_id"), of_option("local_symbol"),
        of_option("expiry"), of_option("strike"), repeat("C"), quoted_values("bid"),
        quoted_values("ask"), repeat(10.0), repeat(10.0), quoted_values("implied_vol"),
        quoted_values("delta"), quoted_values("gamma"), quoted_values("vega_per_vol_point"),
        quoted_values("theta_per_day"), quoted_values("underlying"), quoted_values("theo"), ts, ts,
    )  # fmt: skip
    return quotes, quoted.sum(axis=1).tolist()


def _date(yyyymmdd: str) -> date:
    return date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))


def sim_model(seed: int = 1, start: datetime | None = None, **config: object) -> MarketModel:
    """A market model anchored at ``start`` (default ibsim's 2026-11-02 09:30 ET)."""
    anchor = start or datetime(2026, 11, 2, 9, 30, tzinfo=ET)
    return MarketModel(SimConfig(seed=seed, start=anchor, **config))  # type: ignore[arg-type]
