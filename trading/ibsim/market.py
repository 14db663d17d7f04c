"""The market model: the underlying's path, its option quotes and Greeks, the ETF's NAV,
premium and quotes.

The pair's names and contract ids are ``SimConfig.pair``'s (the registry lists them); the model's
numbers and its names below (``tlt_*`` for the underlying, ``tltw_*`` for the ETF) are the
default pair's, TLT and TLTW, whatever the pair is called.

Everything is a deterministic function of (config, trading time ``tau``), so the live gateway,
historical bars and a socket-free backtest (:meth:`MarketModel.bars`) see one and the same
market. Randomness is drawn per session date from ``numpy.random.default_rng([seed, stream,
date ordinal])``, so a given date has the same shocks whatever the start or the range asked.

TLT: log-mid on a one-second grid. Each session draws an overnight gap (variance
``overnight_variance_fraction`` of a day's) and the day's total move; the intraday path is a
Brownian bridge to that total, drawn only when a day is looked at. Quotes are one cent wide:
``bid = floor(100 mid) / 100``, ``ask = bid + 0.01``.

TLTW: ``NAV = shares x S - shares x C + cash`` for its index's position (see SimConfig), times
``exp(drift x tau)`` when the config plants a drift, and ``price = NAV x (1 + premium)``. The
premium is an OU process on a one-minute grid (linear in between);
:meth:`MarketModel.shock_premium` adds ``(jump - premium) e^{-kappa (tau - tau0)}``; planted
excursions (``SimConfig.excursion_bp``, :meth:`MarketModel.excursion`) add a triangle on a
schedule fixed from the start.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from trading.domain import black_scholes as bs
from trading.ibsim.config import ET, SimConfig
from trading.ibsim.instruments import Instrument, InstrumentRegistry
from trading.ibsim.sessions import SECONDS_PER_DAY, TradingCalendar

TRADING_DAYS_PER_YEAR = 252
REGULAR_SESSION_SECONDS = 23_400
SECONDS_PER_YEAR = bs.DAYS_PER_YEAR * SECONDS_PER_DAY
CHAIN_MIN_OPTIONS = 5
"""`MarketModel.chain_quotes` computes this many options and more with numpy, fewer one by one
(`option_quote`). Measured (CPU time, least of 3 x 40 runs over 5 times of a day, the calls
nearest the money of the first three monthlies, n = 1-50): one by one costs 27.6 us an option,
numpy 108 us + 2.7 us an option; the lines cross at 4.4 options (4: 108 us one by one, 117
numpy; 5: 136 and 121). `price_greeks` has its own threshold, ``board.NUMPY_MIN_PRICES``."""
_STREAM_LEVEL, _STREAM_PATH, _STREAM_PREMIUM, _STREAM_MICRO = 1, 2, 3, 4


def stock_bid(mid):
    """One-cent market around a mid: ``bid = floor(100 mid) / 100`` (ask = bid + 0.01).

    Works on floats and numpy arrays; the 1e-9 keeps a mid of exactly 90.00 at bid 90.00.
    """
    return np.floor(np.asarray(mid) * 100.0 + 1e-9) / 100.0


def option_bid_ask(theo):
    """An option's market around its theoretical value: width 2 cents plus a cent per dollar
    of premium, at most 10 cents; bid >= 0, ask >= bid + 0.01 (floats or numpy arrays)."""
    theo = np.asarray(theo)
    bid_cents, ask_cents = _quote_edges_cents(theo)
    bid = np.maximum(0.0, np.floor(bid_cents) / 100)
    ask = np.maximum(bid + 0.01, np.ceil(ask_cents) / 100)
    return bid.round(2), ask.round(2)


def _quote_edges_cents(theo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`option_bid_ask`'s bid and ask in cents before they are rounded down and up."""
    width = np.minimum(0.10, 0.02 + 0.01 * np.floor(theo))
    return (theo - width / 2) * 100 + 1e-9, (theo + width / 2) * 100 - 1e-9


def near_quote_rounding(theo: np.ndarray, tolerance: float = 1e-9) -> np.ndarray:
    """Where `option_bid_ask` could round a value within ``tolerance`` of ``theo`` otherwise:
    theo near a whole dollar (the width's step), or a quote edge near a whole cent."""
    bid_cents, ask_cents = _quote_edges_cents(theo)
    cents = 100.0 * tolerance
    return (
        (np.abs(theo - np.rint(theo)) < tolerance)
        | (np.abs(bid_cents - np.rint(bid_cents)) < cents)
        | (np.abs(ask_cents - np.rint(ask_cents)) < cents)
    )


def _size_offset(strike: float) -> int:
    """Seconds back to an option's ask size in the session's size row (its bid size is now's)."""
    return int(strike * 2) % 17


@dataclass(frozen=True, slots=True)
class Quote:
    """Top of book; sizes in shares (contracts for options)."""

    bid: float
    ask: float
    bid_size: float
    ask_size: float

    @property
    def mid(self) -> float:
        return 0.5 * (self.bid + self.ask)


@dataclass(frozen=True, slots=True)
class LastTrade:
    """The tape's last print: price, size and the session's cumulative volume."""

    price: float
    size: float
    volume: float
    second: int


@dataclass(frozen=True, slots=True)
class OptionQuote:
    """An option's quote and model values; Greeks per share, as IB reports them."""

    quote: Quote
    theo: float
    implied_vol: float
    delta: float
    gamma: float
    vega_per_vol_point: float
    theta_per_day: float
    underlying: float
    pv_dividend: float


@dataclass(frozen=True, slots=True)
class Truth:
    """Ground truth at one instant: TLT mid, TLTW NAV, premium (a fraction) and price."""

    time: datetime
    tlt_mid: float
    tltw_nav: float
    tltw_premium: float
    tltw_price: float


@dataclass(frozen=True, slots=True)
class IndexPosition:
    """TLTW's index holdings during one session (unscaled: NAV 1 at the window's first open)."""

    shares: float
    strike: float
    expiry: date
    expiry_epoch: float
    cash: float
    distribution: float
    """Paid at this session's open (ex-date), unscaled; 0 on other days."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The whole market at one step (what the gateway publishes and fills against)."""

    tau: float
    epoch: float
    session: int
    second: int
    tlt: Quote
    tltw: Quote
    tlt_mid: float
    tltw_nav: float
    tltw_premium: float
    tlt_trade: LastTrade
    tltw_trade: LastTrade


class MarketModel:
    """Deterministic market for a SimConfig; see the module docstring for the model.

    Backtest use (no socket)::

        model = MarketModel(SimConfig(seed=7, start=datetime(2026, 11, 2, 9, 30, tzinfo=ET)))
        frame = bar_frame(model, date(2026, 1, 5), date(2026, 10, 30))  # trading.ibsim.history
        calls = model.option_quotes(frame.index, date(2026, 11, 20), 92.0, "C")

    Times before ``start`` reach back ``history_days`` sessions; times after it run forward.
    """

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.calendar = TradingCalendar(config.start_time, config.history_days)
        self.registry = InstrumentRegistry(self.calendar, config.tlt_price, config.pair)
        size = len(self.calendar)
        daily_variance = config.tlt_vol_annual**2 / TRADING_DAYS_PER_YEAR
        self._gap_sigma = math.sqrt(daily_variance * config.overnight_variance_fraction)
        intraday_variance = daily_variance * (1.0 - config.overnight_variance_fraction)
        self._second_variance = intraday_variance / REGULAR_SESSION_SECONDS
        half_life_minutes = config.premium_half_life_days * REGULAR_SESSION_SECONDS / 60.0
        self._kappa_per_second = math.log(2.0) / (half_life_minutes * 60.0)
        self._premium_decay = math.exp(-self._kappa_per_second * 60.0)
        self._premium_shock_sigma = (config.premium_bp / 1e4) * math.sqrt(
            1.0 - self._premium_decay**2
        )
        self._drift_per_second = (
            config.premium_drift_bp_year / 1e4 / (TRADING_DAYS_PER_YEAR * REGULAR_SESSION_SECONDS)
        )
        self._gap = np.full(size, np.nan)
        self._total = np.full(size, np.nan)
        self._log_open = np.full(size, np.nan)
        self._levels_done = -1
        self._premium_end: list[float] = []
        self._index: list[IndexPosition] = []
        self._carried: IndexPosition | None = None
        self._nav_close: list[float] = []
        self._paths: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._shocks: list[tuple[float, float]] = []
        self._expiry_epochs: dict[str, float] = {}
        # history's bars (list[Bar]) by request; Any, as market does not import history
        self.bar_cache: dict[tuple, Any] = {}
        """Bars of completed sessions, kept by the history module (cleared with the shocks)."""
        anchor = self.calendar.anchor_index
        for i in range(anchor, -1, -1):
            self._draw_level(i)
        self._log_open[anchor] = math.log(config.tlt_price)
        for i in range(anchor - 1, -1, -1):
            self._log_open[i] = self._log_open[i + 1] - self._gap[i + 1] - self._total[i]
        self._levels_done = anchor
        self._nav_scale = 1.0
        start_tau = float(self.calendar.start_tau[anchor])
        self._nav_scale = config.tltw_nav / self.tltw_nav(start_tau)

    # ----------------------------------------------------------------------------------------
    # Per-session draws

    def _rng(self, stream: int, session: int) -> np.random.Generator:
        ordinal = self.calendar.dates[session].toordinal()
        return np.random.default_rng([self.config.seed, stream, ordinal])

    def _draw_level(self, i: int) -> None:
        seconds = float(self.calendar.length_s[i])
        day_sigma = math.sqrt(self._second_variance * seconds)
        gap, total = self._rng(_STREAM_LEVEL, i).standard_normal(2)
        self._gap[i] = gap * self._gap_sigma - 0.5 * self._gap_sigma**2
        self._total[i] = total * day_sigma - 0.5 * day_sigma**2

    def _ensure_levels(self, i: int) -> None:
        if i >= len(self.calendar):
            raise ValueError(f"session index {i} is past the simulated calendar")
        while self._levels_done < i:
            j = self._levels_done + 1
            self._draw_level(j)
            self._log_open[j] = self._log_open[j - 1] + self._total[j - 1] + self._gap[j]
            self._levels_done = j

    def _cached(self, key: tuple[str, int], build) -> np.ndarray:
        array = self._paths.get(key)
        if array is None:
            array = build()
            self._paths[key] = array
            if len(self._paths) > 12:
                self._paths.popitem(last=False)
        else:
            self._paths.move_to_end(key)
        return array

    def tlt_log_path(self, i: int) -> np.ndarray:
        """log TLT mid at each second of session ``i`` (length seconds + 1 points)."""

        def build() -> np.ndarray:
            self._ensure_levels(i)
            n = self.calendar.seconds[i]
            steps = self._rng(_STREAM_PATH, i).standard_normal(n) * math.sqrt(self._second_variance)
            walk = np.concatenate([[0.0], np.cumsum(steps)])
            weight = np.arange(n + 1) / n
            return self._log_open[i] + walk + weight * (self._total[i] - walk[-1])

        return self._cached(("tlt", i), build)

    def _premium_minutes(self, i: int) -> np.ndarray:
        """Premium (fraction) at each minute of session ``i``, before shocks."""

        def build() -> np.ndarray:
            start = self._premium_start(i)
            n = math.ceil(self.calendar.seconds[i] / 60)
            if self.config.premium_bp == 0:
                return np.zeros(n + 1)
            shocks = self._rng(_STREAM_PREMIUM, i).standard_normal(n) * self._premium_shock_sigma
            decay = self._premium_decay
            path, _ = lfilter([1.0], [1.0, -decay], shocks, zi=[decay * start])
            return np.concatenate([[start], path])

        return self._cached(("premium", i), build)

    def _premium_start(self, i: int) -> float:
        """Premium at the open of session ``i`` (the OU runs from 0 at the window's start)."""
        while len(self._premium_end) < i:
            self._premium_end.append(float(self._premium_minutes(len(self._premium_end))[-1]))
        return self._premium_end[i - 1] if i > 0 else 0.0

    def microstructure(self, i: int) -> np.ndarray:
        """Per-second microstructure of session ``i``: rows of quote sizes and prints."""

        def build() -> np.ndarray:
            n = self.calendar.seconds[i] + 1
            # One block of uniforms, mapped to integer ranges: several times faster than
            # separate integer draws, and history reads a year of these.
            u = self._rng(_STREAM_MICRO, i).random((8, n))
            rows = np.empty((10, n), dtype=np.int64)
            rows[0] = (1 + (u[0] * 59).astype(np.int64)) * 100  # TLT bid size, 100-5,900
            rows[1] = (1 + (u[1] * 59).astype(np.int64)) * 100  # TLT ask size
            rows[2] = (1 + (u[2] * 19).astype(np.int64)) * 100  # TLTW bid size, 100-1,900
            rows[3] = (1 + (u[3] * 19).astype(np.int64)) * 100  # TLTW ask size
            rows[4] = 5 + (u[4] * 145).astype(np.int64)  # option size, 5-149 contracts
            # A TLT print in half the seconds (100-900 shares), TLTW in a quarter (100-400).
            rows[5] = np.where(u[5] < 0.5, (1 + (u[5] * 18).astype(np.int64)) * 100, 0)
            rows[7] = np.where(u[6] < 0.25, (1 + (u[6] * 16).astype(np.int64)) * 100, 0)
            rows[6] = np.cumsum(rows[5])
            rows[8] = np.cumsum(rows[7])
            rows[9] = u[7] < 0.5  # the print is at the ask (else the bid)
            return rows

        return self._cached(("micro", i), build)

    # ----------------------------------------------------------------------------------------
    # Options

    def implied_vol(self, strike, spot, tau_years):
        """The surface of SimConfig at strike, spot and time to expiry (floats or arrays)."""
        c = self.config
        forward = spot * np.exp((c.rate - c.div_yield) * tau_years)
        k = np.log(strike / forward)
        scale = np.sqrt(np.maximum(tau_years, 1.0 / 365.0) * 12.0)
        vol = c.iv_atm + c.iv_term_slope * (tau_years - 1.0 / 12.0)
        vol = np.clip(vol + (c.iv_skew * k + c.iv_smile * k * k / scale) / scale, 0.02, 3.0)
        return float(vol) if np.ndim(vol) == 0 else vol

    def expiry_epoch(self, expiry: date) -> float:
        index = self.calendar.index_of(expiry)
        if index is None:
            return datetime(expiry.year, expiry.month, expiry.day, 16, tzinfo=ET).timestamp()
        return float(self.calendar.close_epoch[index])

    def option_expiry_epoch(self, option: Instrument) -> float:
        """`expiry_epoch` of an option's expiry (kept by expiry: the calendar never changes)."""
        epoch = self._expiry_epochs.get(option.expiry)
        if epoch is None:
            epoch = self._expiry_epochs[option.expiry] = self.expiry_epoch(option.expiry_date)
        return epoch

    def years_to_expiry(self, option: Instrument, epoch: float) -> float:
        """Years from ``epoch`` to an option's expiry (0 once expired), as the model prices it."""
        return max(self.option_expiry_epoch(option) - epoch, 0.0) / SECONDS_PER_YEAR

    def option_value(
        self, spot: float, strike: float, expiry_epoch: float, epoch: float, right: str
    ) -> float:
        tau_years = max(expiry_epoch - epoch, 0.0) / SECONDS_PER_YEAR
        vol = self.implied_vol(strike, spot, tau_years)
        c = self.config
        return bs.price(spot, strike, tau_years, c.rate, c.div_yield, vol, right)

    def option_quote(
        self, option: Instrument, tau: float, spot: float | None = None
    ) -> OptionQuote:
        """Quote and model Greeks of an option at ``tau`` (a few cents wide around theo)."""
        c = self.config
        epoch = self.calendar.epoch(tau)
        spot = self.tlt_mid(tau) if spot is None else spot
        tau_years = self.years_to_expiry(option, epoch)
        vol = self.implied_vol(option.strike, spot, tau_years)
        g = bs.greeks(spot, option.strike, tau_years, c.rate, c.div_yield, vol, option.right)
        bid, ask = option_bid_ask(g.price)
        sizes, second = self._option_sizes(tau)
        offset = _size_offset(option.strike)
        quote = Quote(float(bid), float(ask), float(sizes[second]), float(sizes[second - offset]))
        return OptionQuote(
            quote=quote,
            theo=g.price,
            implied_vol=vol,
            delta=g.delta,
            gamma=g.gamma,
            vega_per_vol_point=g.vega_per_vol_point,
            theta_per_day=g.theta_per_day,
            underlying=spot,
            pv_dividend=spot * (1.0 - math.exp(-c.div_yield * tau_years)),
        )

    def chain_quotes(
        self, options: Sequence[Instrument], tau: float, spot: float
    ) -> list[OptionQuote]:
        """`option_quote` of several options at one instant; from `CHAIN_MIN_OPTIONS` on,
        computed together with numpy (a numpy pass costs about as much as four `option_quote`s,
        whatever its length; fewer options are quoted one by one).

        numpy's model values are `bs.greeks_vec`'s: they agree with `option_quote`'s to ~1e-12
        relative. The bid and ask are `option_quote`'s exactly: where ``option_bid_ask`` could
        round the numpy price otherwise (`near_quote_rounding`), the scalar price is rounded.
        """
        if len(options) < CHAIN_MIN_OPTIONS:
            return [self.option_quote(option, tau, spot) for option in options]
        c = self.config
        strikes, is_call, tau_years = self.option_terms(options, tau)
        vols = np.asarray(self.implied_vol(strikes, spot, tau_years))
        g = bs.greeks_vec(spot, strikes, tau_years, c.rate, c.div_yield, vols, is_call)
        theo = g["price"]
        for i in np.flatnonzero(near_quote_rounding(theo)).tolist():
            theo[i] = bs.price(
                spot, strikes[i], tau_years[i], c.rate, c.div_yield, vols[i], options[i].right
            )
        bid, ask = option_bid_ask(theo)
        sizes, second = self._option_sizes(tau)
        offsets = np.array([_size_offset(option.strike) for option in options])
        bid_size = float(sizes[second])
        pv_dividend = spot * (1.0 - np.exp(-c.div_yield * tau_years))
        columns = zip(
            bid.tolist(),
            ask.tolist(),
            sizes[second - offsets].astype(float).tolist(),
            theo.tolist(),
            vols.tolist(),
            g["delta"].tolist(),
            g["gamma"].tolist(),
            (g["vega"] / 100.0).tolist(),
            (g["theta"] / bs.DAYS_PER_YEAR).tolist(),
            pv_dividend.tolist(),
            strict=True,
        )
        return [
            OptionQuote(Quote(b, a, bid_size, a_size), t, v, d, g_, vega, theta, spot, pv)
            for b, a, a_size, t, v, d, g_, vega, theta, pv in columns
        ]

    def option_terms(
        self, options: Sequence[Instrument], tau: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The options' strikes, call flags and years to expiry at ``tau`` (as `option_quote`
        counts them), as arrays."""
        epoch = self.calendar.epoch(tau)
        strikes = np.array([option.strike for option in options], dtype=float)
        is_call = np.array([option.right == "C" for option in options], dtype=bool)
        expiries = np.array([self.option_expiry_epoch(option) for option in options])
        return strikes, is_call, np.maximum(expiries - epoch, 0.0) / SECONDS_PER_YEAR

    def _option_sizes(self, tau: float) -> tuple[np.ndarray, int]:
        """The session's option quote sizes (per second) and the second of ``tau`` in it."""
        session = self.calendar.session_at(tau)
        second = min(int(tau - self.calendar.start_tau[session]), self.calendar.seconds[session])
        return self.microstructure(session)[4], second

    def option_quotes(self, times, expiry: date, strike: float, right: str) -> pd.DataFrame:
        """Vectorized model quotes of one option at each time (aware datetimes).

        Columns: underlying, theo, bid, ask, implied_vol, delta, gamma, vega_per_vol_point,
        theta_per_day (per share; bid/ask a few cents around theo as in the live gateway).
        """
        index = pd.DatetimeIndex(times)
        spots, epochs = self.spots_at(index)
        return self.option_quotes_at(index, spots, epochs, expiry, strike, right)

    def spots_at(self, index: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        """TLT's mid and the epoch second at each time, for `option_quotes_at` (computed once
        for all the options quoted at the same times)."""
        # A quote at a session's close is that session's (not the next open's, gap included).
        taus = [self.calendar.tau_closing(t.to_pydatetime()) for t in index]
        spots = np.array([self.tlt_mid(t) for t in taus], dtype=float)
        epochs = np.array([self.calendar.epoch(t) for t in taus], dtype=float)
        return spots, epochs

    def option_quotes_at(
        self,
        index: pd.DatetimeIndex,
        spots: np.ndarray,
        epochs: np.ndarray,
        expiry: date,
        strike: float,
        right: str,
    ) -> pd.DataFrame:
        """`option_quotes` on the spots and epochs of `spots_at` (the same ``index``)."""
        return pd.DataFrame(
            self.option_columns_at(spots, epochs, expiry, strike, right), index=index
        )

    def option_columns_at(
        self, spots: np.ndarray, epochs: np.ndarray, expiry: date, strike: float, right: str
    ) -> dict[str, np.ndarray]:
        """`option_quotes_at`'s columns as arrays, without the DataFrame (the sim feed's loop)."""
        tau_years = np.maximum(self.expiry_epoch(expiry) - epochs, 0.0) / SECONDS_PER_YEAR
        vols = np.asarray(self.implied_vol(strike, spots, tau_years), dtype=float)
        c = self.config
        g = bs.greeks_vec(spots, strike, tau_years, c.rate, c.div_yield, vols, right == "C")
        bid, ask = option_bid_ask(g["price"])
        return {
            "underlying": spots,
            "theo": g["price"],
            "bid": bid,
            "ask": ask,
            "implied_vol": vols,
            "delta": g["delta"],
            "gamma": g["gamma"],
            "vega_per_vol_point": g["vega"] / 100.0,
            "theta_per_day": g["theta"] / bs.DAYS_PER_YEAR,
        }

    # ----------------------------------------------------------------------------------------
    # TLTW's index

    def _roll_session(self, expiry: date) -> int:
        return self.calendar.session_on_or_before(
            expiry - timedelta(days=self.config.roll_days_before_expiry)
        )

    def _next_index_expiry(self, after_session: int) -> date:
        """First monthly expiry whose roll session is after ``after_session``."""
        day = self.calendar.dates[max(after_session, 0)]
        year, month = day.year, day.month
        while True:
            expiry = self.registry.monthly_expiry(year, month)
            if self._roll_session(expiry) > after_session:
                return expiry
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)

    def _index_strike(self, spot: float) -> float:
        return float(round(spot * self.config.tltw_moneyness))

    def index_position(self, i: int) -> IndexPosition:
        """TLTW's index position during session ``i`` (computed forward from the window start).

        At a session's open: cash pays the fee over the calendar days since the previous open
        (TLT pays no cash dividend in this model), and pays the month's distribution on the first
        session of a month. At the roll session's close the call is bought back, NAV is put
        back into TLT (shares = NAV / S) and the new call is sold on those shares.
        """
        c = self.config
        cal = self.calendar
        while len(self._index) <= i:
            j = len(self._index)
            self._ensure_levels(j)
            if j == 0:
                open_spot = math.exp(self._log_open[0])
                position = self._written_position(1.0, open_spot, float(cal.open_epoch[0]), -1)
            else:
                carried = self._carried
                assert carried is not None  # session j - 1's close set it
                close_spot = math.exp(self._log_open[j - 1] + self._total[j - 1])
                nav = self._nav_close[j - 1]
                days = (cal.open_epoch[j] - cal.open_epoch[j - 1]) / SECONDS_PER_DAY
                # TLT's price path is driftless and pays no cash dividend (its yield shows only in
                # the options' forward, with rate = div_yield), so the fund earns nothing on its
                # shares beyond their price: a TLT buy-write and TLTW then share the same TLT
                # economics and the pair has no structural drift. Only the fee accrues.
                income = -c.tltw_fee_annual * nav
                new_month = cal.dates[j].month != cal.dates[j - 1].month
                distribution = c.tltw_distribution_yield_annual / 12.0 * nav if new_month else 0.0
                position = IndexPosition(
                    carried.shares,
                    carried.strike,
                    carried.expiry,
                    carried.expiry_epoch,
                    float(carried.cash + income * days / bs.DAYS_PER_YEAR - distribution),
                    float(distribution),
                )
            close_spot = math.exp(self._log_open[j] + self._total[j])
            close_epoch = float(cal.close_epoch[j])
            call = self.option_value(
                close_spot, position.strike, position.expiry_epoch, close_epoch, "C"
            )
            nav = float(position.shares * (close_spot - call) + position.cash)
            self._index.append(position)
            self._nav_close.append(nav)
            self._carried = position
            if self._roll_session(position.expiry) == j:
                self._carried = self._written_position(nav, close_spot, close_epoch, j)
        return self._index[i]

    def _written_position(
        self, nav: float, spot: float, epoch: float, session: int
    ) -> IndexPosition:
        """All of NAV in TLT, short one call per share on the next index expiry."""
        expiry = self._next_index_expiry(session)
        strike = self._index_strike(spot)
        expiry_epoch = self.expiry_epoch(expiry)
        call = self.option_value(spot, strike, expiry_epoch, epoch, "C")
        shares = nav / spot
        return IndexPosition(float(shares), strike, expiry, expiry_epoch, float(shares * call), 0.0)

    # ----------------------------------------------------------------------------------------
    # Values at an instant

    def tlt_mid(self, tau: float) -> float:
        session = self.calendar.session_at(tau)
        path = self.tlt_log_path(session)
        return math.exp(_interpolate(path, tau - self.calendar.start_tau[session]))

    def excursion(self, tau):
        """The planted excursions' part of the premium (fraction; floats or arrays): a
        trapezoid from 0 to ``excursion_bp`` (rise, hold, fall; SimConfig), starting
        ``excursion_first_minutes`` of trading time after the start, then every
        ``excursion_every_minutes``; 0 before the first and between them."""
        c = self.config
        tau = np.asarray(tau, dtype=float)
        if c.excursion_bp == 0.0:
            return 0.0 if tau.ndim == 0 else np.zeros(tau.shape)
        since = tau - (self.calendar.anchor_tau + c.excursion_first_minutes * 60.0)
        phase = np.mod(since, c.excursion_every_minutes * 60.0) / 60.0
        rise, hold = c.excursion_rise_minutes, c.excursion_hold_minutes
        corners = [0.0, rise, rise + hold, c.excursion_length_minutes]
        shape = np.where(since >= 0.0, np.interp(phase, corners, [0.0, 1.0, 1.0, 0.0]), 0.0)
        out = c.excursion_bp / 1e4 * shape
        return float(out) if out.ndim == 0 else out

    def excursion_schedule(self, count: int) -> list[tuple[datetime, datetime, datetime]]:
        """The first ``count`` planted excursions: (start, top reached, back), New York time."""
        c = self.config
        if c.excursion_bp == 0.0:
            return []
        first = self.calendar.anchor_tau + c.excursion_first_minutes * 60.0
        out = []
        for k in range(count):
            start = first + k * c.excursion_every_minutes * 60.0
            top = start + c.excursion_rise_minutes * 60.0
            back = start + c.excursion_length_minutes * 60.0
            out.append((self.calendar.datetime(start), self.calendar.datetime(top),
                        self.calendar.datetime(back)))  # fmt: skip
        return out

    def tltw_premium(self, tau: float) -> float:
        session = self.calendar.session_at(tau)
        minutes = self._premium_minutes(session)
        premium = _interpolate(minutes, (tau - self.calendar.start_tau[session]) / 60.0)
        premium += self.excursion(tau)
        for shock_tau, jump in self._shocks:
            if tau >= shock_tau:
                premium += jump * math.exp(-self._kappa_per_second * (tau - shock_tau))
        return float(premium)

    def nav_drift(self, tau):
        """The planted drift's factor exp(drift x tau) (1 without one; floats or arrays)."""
        if self._drift_per_second == 0.0:
            return 1.0 if np.ndim(tau) == 0 else np.ones(np.shape(tau))
        return np.exp(self._drift_per_second * np.asarray(tau, dtype=float))

    def tltw_nav(self, tau: float) -> float:
        session = self.calendar.session_at(tau)
        return (
            self._nav_scale
            * float(self.nav_drift(tau))
            * _interpolate(self._nav_seconds(session), tau - self.calendar.start_tau[session])
        )

    def _nav_seconds(self, i: int) -> np.ndarray:
        """Unscaled TLTW NAV at each second of session ``i``."""

        def build() -> np.ndarray:
            position = self.index_position(i)
            spots = np.exp(self.tlt_log_path(i))
            epochs = self.calendar.open_epoch[i] + np.arange(len(spots))
            tau_years = np.maximum(position.expiry_epoch - epochs, 0.0) / SECONDS_PER_YEAR
            vols = self.implied_vol(position.strike, spots, tau_years)
            c = self.config
            call = bs.greeks_vec(
                spots, position.strike, tau_years, c.rate, c.div_yield, vols, True
            )["price"]
            return position.shares * (spots - call) + position.cash

        return self._cached(("nav", i), build)

    def premium_seconds(self, i: int) -> np.ndarray:
        """TLTW premium (fraction, shocks included) at each second of session ``i``."""
        minutes = self._premium_minutes(i)
        seconds = np.arange(self.calendar.seconds[i] + 1)
        premium = np.interp(seconds / 60.0, np.arange(len(minutes)), minutes)
        start = self.calendar.start_tau[i]
        premium = premium + self.excursion(seconds + start)
        for shock_tau, jump in self._shocks:
            after = seconds >= shock_tau - start
            premium[after] += jump * np.exp(
                -self._kappa_per_second * (seconds[after] + start - shock_tau)
            )
        return premium

    def tltw_nav_seconds(self, i: int) -> np.ndarray:
        """TLTW NAV at each second of session ``i``."""
        nav = self._nav_scale * self._nav_seconds(i)
        if self._drift_per_second == 0.0:
            return nav
        return nav * self.nav_drift(self.calendar.start_tau[i] + np.arange(len(nav)))

    def tltw_price_seconds(self, i: int) -> np.ndarray:
        """TLTW market price (NAV x (1 + premium)) at each second of session ``i``."""
        return self.tltw_nav_seconds(i) * (1.0 + self.premium_seconds(i))

    def tltw_distribution(self, session: int) -> float:
        """Cash distribution per TLTW share going ex at the open of ``session``."""
        drift = float(self.nav_drift(float(self.calendar.start_tau[session])))
        return self._nav_scale * drift * self.index_position(session).distribution

    def shock_premium(self, tau: float, premium_bp: float) -> None:
        """From ``tau`` on, the premium jumps to ``premium_bp`` and mean-reverts from there."""
        if not math.isfinite(premium_bp):
            raise ValueError(f"premium_bp must be finite, got {premium_bp!r}")
        self.bar_cache.clear()
        self._shocks.append((tau, premium_bp / 1e4 - self.tltw_premium(tau)))

    def clear_shocks(self) -> None:
        self._shocks.clear()
        self.bar_cache.clear()

    def truth(self, tau: float) -> Truth:
        spot = self.tlt_mid(tau)
        nav = self.tltw_nav(tau)
        premium = self.tltw_premium(tau)
        return Truth(self.calendar.datetime(tau), spot, nav, premium, nav * (1.0 + premium))

    def snapshot(self, tau: float) -> Snapshot:
        cal = self.calendar
        session = cal.session_at(tau)
        length = cal.seconds[session]
        second = min(int(tau - cal.start_tau[session]), length)
        micro = self.microstructure(session)
        spot = self.tlt_mid(tau)
        nav = self.tltw_nav(tau)
        premium = self.tltw_premium(tau)
        tlt = _cent_quote(spot, micro[0][second], micro[1][second])
        tltw = _cent_quote(nav * (1.0 + premium), micro[2][second], micro[3][second])
        return Snapshot(
            tau=tau,
            epoch=cal.epoch(tau),
            session=session,
            second=second,
            tlt=tlt,
            tltw=tltw,
            tlt_mid=spot,
            tltw_nav=nav,
            tltw_premium=premium,
            tlt_trade=_last_trade(micro, 5, 6, second, tlt),
            tltw_trade=_last_trade(micro, 7, 8, second, tltw),
        )


def _cent_quote(mid: float, bid_size: float, ask_size: float) -> Quote:
    bid = float(stock_bid(mid))
    return Quote(round(bid, 2), round(bid + 0.01, 2), float(bid_size), float(ask_size))


def _last_trade(micro: np.ndarray, size_row: int, volume_row: int, second: int, quote: Quote):
    """The latest print at or before ``second`` (at the quote of this step)."""
    sizes = micro[size_row]
    traded = second
    while traded > 0 and sizes[traded] == 0:
        traded -= 1
    price = quote.ask if micro[9][traded] else quote.bid
    return LastTrade(price, float(sizes[traded]), float(micro[volume_row][second]), traded)


def _interpolate(values: np.ndarray, offset: float) -> float:
    """Linear interpolation of a per-second (or per-minute) grid at ``offset`` grid units."""
    last = len(values) - 1
    if offset >= last:
        return float(values[last])
    if offset <= 0.0:
        return float(values[0])
    index = int(offset)
    low = values[index]
    return float(low + (offset - index) * (values[index + 1] - low))
