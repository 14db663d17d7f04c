"""Market data for the backtest as the bus messages data-ingestion publishes, in time order.

Sources:

* ``sim``: ibsim's market model (`trading.ibsim.market.MarketModel`), seeded, through the
  strategy's socket-free feed (`trading.backtest.simfeed.simulated_messages`): one-minute bars
  of TLT and TLTW quotes, TLTW's NAV and distributions, the front monthly calls with the model's
  Greeks. The model is anchored where the live ibsim is (2026-11-02 09:30 New York, reaching
  back ``history_days`` sessions), so a seeded period is the same market the live stack sees.
  The ground truth (TLTW's premium to NAV) comes with it, for the R-squared of the spread.
  The messages carry the names of the source's ``pair`` (the settings' in the CLI).
* ``csv``: a file in the format of `trading.backtest.csvfile` (validated before replay).
* ``ib``: one-minute BID and ASK bars from IB's reqHistoricalData, paced, with Greeks solved
  from the option mids (`trading.backtest.ibsource`; no NAV or distributions from IB).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from trading.backtest.simfeed import FeedConfig, simulated_messages
from trading.bus import Message
from trading.domain.pair import DEFAULT_PAIR, PairSpec
from trading.ibsim.config import DEFAULT_START, ET, SimConfig
from trading.ibsim.history import bar_frame
from trading.ibsim.market import MarketModel

BACKTEST_FEED = FeedConfig(expiries=2, low=0.85, high=1.15)
"""Two monthlies (the held call and the roll target), strikes 85-115% of the session's open.
A call held after spot moved must keep its quotes: the risk gate refuses every order, exits and
flattens included, against a stale quote of anything in the book. With 95-107% a 5-7% move in
the month stranded the held call and froze the pair (13,680 refused flattens in one 150-session
run); 15% in a month is a three-sigma move of TLT."""


@dataclass(frozen=True, slots=True)
class SimSource:
    """ibsim's market for ``seed``, premium scale and half-life, from ``start`` to ``end``."""

    seed: int
    start: date
    end: date
    premium_bp: float = 20.0
    premium_half_life_days: float = 1.0
    feed: FeedConfig = BACKTEST_FEED
    premium_drift_bp_year: float = 0.0
    """TLTW's NAV drifts against its index by this much a year (SimConfig)."""
    warm_up_sessions: int = 0
    """Sessions before ``start`` the strategy replays first with trading off, so that its
    windows are full when the period starts (`trading.backtest.run.warm_up_sessions`)."""
    pair: PairSpec = DEFAULT_PAIR
    """The pair whose names (and stock contract ids) the model's messages carry."""

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        if not isinstance(self.warm_up_sessions, int) or self.warm_up_sessions < 0:
            raise ValueError(f"warm_up_sessions must be an int >= 0, got {self.warm_up_sessions!r}")

    def model(self) -> MarketModel:
        anchor = DEFAULT_START
        sessions_back = int(np.busday_count(self.start, anchor.date())) + 5
        sessions_back += self.warm_up_sessions + self.warm_up_sessions // 20 + 5  # holidays
        return MarketModel(
            SimConfig(
                seed=self.seed,
                start=anchor,
                history_days=max(300, sessions_back),
                premium_bp=self.premium_bp,
                premium_half_life_days=self.premium_half_life_days,
                premium_drift_bp_year=self.premium_drift_bp_year,
            )
        )

    def messages(self, model: MarketModel | None = None) -> Iterator[Message]:
        return simulated_messages(model or self.model(), self.start, self.end, self.feed, self.pair)

    def warm_up_days(self, model: MarketModel | None = None) -> list[date]:
        """The ``warm_up_sessions`` sessions just before ``start``."""
        if not self.warm_up_sessions:
            return []
        m = model or self.model()
        return [d for d in m.calendar.dates if d < self.start][-self.warm_up_sessions :]

    def warm_up_messages(self, model: MarketModel | None = None) -> Iterator[Message]:
        """The warm-up sessions' messages (none without warm-up)."""
        m = model or self.model()
        days = self.warm_up_days(m)
        if not days:
            return iter(())
        return simulated_messages(m, days[0], days[-1], self.feed, self.pair)

    def sessions(self, model: MarketModel | None = None) -> int:
        """Trading sessions in the period (for the progress bar)."""
        m = model or self.model()
        return sum(1 for d in m.calendar.dates if self.start <= d <= self.end)


def true_premium(model: MarketModel, start: date, end: date) -> pd.Series:
    """TLTW's premium to NAV (a fraction) at each one-minute bar close, indexed by the close as
    epoch seconds: the ground truth the spread should track."""
    frame = bar_frame(model, start, end, bar="1 min")
    closes = np.array([(t + timedelta(minutes=1)).timestamp() for t in frame.index])
    return pd.Series(frame["tltw_premium"].to_numpy(), index=closes, name="premium")


def parse_day(text: str) -> date:
    """A YYYY-MM-DD date (ValueError naming the text otherwise)."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"date must be YYYY-MM-DD, got {text!r}") from None


def session_open(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 9, 30, tzinfo=ET)
