"""SimConfig: every knob of the simulated gateway, checked once when it is built."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from trading.domain.costs import IB_FIXED
from trading.domain.pair import (
    DEFAULT_ETF,
    DEFAULT_ETF_CON_ID,
    DEFAULT_PAIR,
    DEFAULT_UNDERLYING,
    DEFAULT_UNDERLYING_CON_ID,
    PairSpec,
)

ET = ZoneInfo("America/New_York")
DEFAULT_START = datetime(2026, 11, 2, 9, 30, tzinfo=ET)
"""A Monday: runs are deterministic because the clock starts here unless told otherwise."""


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Configuration of the simulated IB Gateway and its market model (deterministic per seed).

    Pair: ``pair`` (a `trading.domain.pair.PairSpec`; default its ``DEFAULT_PAIR``, TLT and
    TLTW under IB's contract ids) names the two stocks listed and their contract ids: the
    underlying, its options (OCC root and trading class: the underlying's symbol) and the ETF
    whose NAV replicates a buy-write on it. Only the names and ids come from it; the model's
    numbers below (``tlt_price``, ``tltw_nav``, vols, distributions) are the default pair's,
    whatever the names. A contract id left None is the default pair's for the default symbol;
    another symbol needs its own.

    Clock: the sim runs in trading time. ``start`` (New York time; default 2026-11-02 09:30)
    is snapped to the next regular session if it falls outside one; the clock then advances at
    ``speed`` x wall time and jumps over nights, weekends and XNYS holidays, so it is always
    inside a session. ``firehose=True`` decouples the clock from the wall: every market step
    advances ``tick_interval_s`` of sim time and steps run back to back, as fast as the clients
    read (the benchmark mode).

    Market: the underlying (TLT) follows a driftless geometric Brownian motion
    (``tlt_vol_annual``, a fraction of its variance ``overnight_variance_fraction`` in the
    overnight gap) anchored at ``tlt_price`` at the first session's open. Options are priced
    with Black-Scholes (rate ``rate``, TLT's yield ``div_yield`` as a continuous yield) on the
    implied-volatility
    surface ``iv(k, T) = iv_atm + iv_term_slope (T - 1/12) + (iv_skew k + iv_smile k^2 / s) / s``
    with ``k = ln(K / F)`` and ``s = sqrt(max(T, 1/365) * 12)``. TLTW's NAV replicates its index
    (long TLT, short the one-month call nearest ``tltw_moneyness`` x spot, rolled
    ``roll_days_before_expiry`` calendar days before the third-Friday expiry, fee
    ``tltw_fee_annual``, distributions of ``tltw_distribution_yield_annual`` / 12 of NAV on the
    first session of each month) and is scaled to ``tltw_nav`` at the first session's open.
    TLT pays no cash dividend (``rate`` = ``div_yield`` makes its driftless path the risk-neutral
    one), so the fund's cash earns nothing but pays the fee.
    TLTW trades at NAV x (1 + premium); the premium is an Ornstein-Uhlenbeck process in trading
    time with stationary standard deviation ``premium_bp`` basis points and half-life
    ``premium_half_life_days`` trading days (``premium_bp = 0`` turns it off).
    ``premium_drift_bp_year`` makes TLTW's NAV drift against its index by that many basis
    points a year of trading time (252 sessions of 6.5 hours), with no reversion: NAV x
    exp(drift x years since the anchor's open), distributions scaled with it (0 = none; -300 is
    TLTW falling 3% a year behind its modelled index, what real prices showed). Alone or with
    the stationary premium.
    """

    seed: int = 1
    speed: float = 1.0
    tick_interval_s: float = 0.25
    start: datetime | None = None
    firehose: bool = False
    history_days: int = 300
    """Sessions of past generated before ``start`` (historical bars reach this far back)."""
    account: str = "DU1234567"
    initial_cash_usd: float = 1_000_000.0
    tlt_price: float = 90.0
    tlt_vol_annual: float = 0.15
    overnight_variance_fraction: float = 0.2
    rate: float = 0.04
    div_yield: float = 0.04
    iv_atm: float = 0.16
    iv_term_slope: float = 0.02
    iv_skew: float = -0.10
    iv_smile: float = 0.5
    tltw_nav: float = 24.0
    tltw_moneyness: float = 1.02
    tltw_fee_annual: float = 0.0035
    tltw_distribution_yield_annual: float = 0.12
    roll_days_before_expiry: int = 2
    premium_bp: float = 20.0
    premium_half_life_days: float = 1.0
    premium_drift_bp_year: float = 0.0
    excursion_bp: float = 0.0
    """Planted premium excursions (the demo's story): the ETF's premium moves away from its own
    path by this many basis points (negative: below it) over ``excursion_rise_minutes``, stays
    there ``excursion_hold_minutes``, and comes back over ``excursion_fall_minutes`` (a
    trapezoid in trading time); the first ``excursion_first_minutes`` after the start, then
    every ``excursion_every_minutes`` (0 = none). Known, and printed, before the market opens."""
    excursion_first_minutes: float = 30.0
    excursion_every_minutes: float = 150.0
    excursion_rise_minutes: float = 2.0
    excursion_hold_minutes: float = 20.0
    excursion_fall_minutes: float = 10.0
    stock_commission_per_share_usd: float = IB_FIXED.stock_per_share_usd
    stock_commission_minimum_usd: float = IB_FIXED.stock_minimum_usd
    option_commission_per_contract_usd: float = IB_FIXED.option_per_contract_usd
    server_version: int = 176
    master_client_id: int | None = None
    """As TWS's "Master API client ID": this client also receives every other client's order
    status, open orders and executions (None: each client sees only its own)."""
    pair: PairSpec = DEFAULT_PAIR
    """The two stocks listed and their contract ids (see Pair above)."""

    def __post_init__(self) -> None:
        # Frozen: the pair is replaced by itself with both contract ids known.
        object.__setattr__(self, "pair", _listed(self.pair))
        positive = (
            "speed",
            "tick_interval_s",
            "tlt_price",
            "tlt_vol_annual",
            "iv_atm",
            "tltw_nav",
            "tltw_moneyness",
            "premium_half_life_days",
            "excursion_every_minutes",
            "excursion_rise_minutes",
            "excursion_fall_minutes",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"SimConfig.{name} must be a finite number > 0, got {value!r}")
        non_negative = (
            "overnight_variance_fraction",
            "tltw_fee_annual",
            "tltw_distribution_yield_annual",
            "premium_bp",
            "initial_cash_usd",
            "stock_commission_per_share_usd",
            "stock_commission_minimum_usd",
            "option_commission_per_contract_usd",
            "excursion_first_minutes",
            "excursion_hold_minutes",
        )
        for name in non_negative:
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"SimConfig.{name} must be a finite number >= 0, got {value!r}")
        for name in (
            "rate",
            "div_yield",
            "iv_term_slope",
            "iv_skew",
            "iv_smile",
            "premium_drift_bp_year",
            "excursion_bp",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"SimConfig.{name} must be a finite number, got {value!r}")
        if self.overnight_variance_fraction >= 1:
            raise ValueError(
                "SimConfig.overnight_variance_fraction must be < 1, "
                f"got {self.overnight_variance_fraction!r}"
            )
        length = self.excursion_length_minutes
        if self.excursion_every_minutes < length:
            raise ValueError(
                "SimConfig.excursion_every_minutes must be at least one excursion's length "
                f"(rise + hold + fall = {length!r}), got {self.excursion_every_minutes!r}"
            )
        if not isinstance(self.history_days, int) or self.history_days < 1:
            raise ValueError(
                f"SimConfig.history_days must be an int >= 1, got {self.history_days!r}"
            )
        if not isinstance(self.roll_days_before_expiry, int) or not (
            0 <= self.roll_days_before_expiry <= 20
        ):
            raise ValueError(
                "SimConfig.roll_days_before_expiry must be an int in [0, 20], "
                f"got {self.roll_days_before_expiry!r}"
            )
        if not 157 <= self.server_version <= 176:
            raise ValueError(
                f"SimConfig.server_version must be in [157, 176], got {self.server_version!r}"
            )
        if self.start is not None and self.start.tzinfo is None:
            raise ValueError(f"SimConfig.start must be timezone-aware, got {self.start!r}")
        if not self.account or "," in self.account:
            raise ValueError(f"SimConfig.account must be one account code, got {self.account!r}")

    @property
    def excursion_length_minutes(self) -> float:
        return (
            self.excursion_rise_minutes + self.excursion_hold_minutes + self.excursion_fall_minutes
        )

    @property
    def start_time(self) -> datetime:
        """The requested start, in New York time."""
        return (self.start or DEFAULT_START).astimezone(ET)


def _listed(pair: object) -> PairSpec:
    """``pair`` with both contract ids set (a default symbol's None: the default pair's id)."""
    if not isinstance(pair, PairSpec):
        raise ValueError(f"SimConfig.pair must be a PairSpec, got {pair!r}")
    underlying_con_id = _con_id(
        "underlying_con_id", pair.underlying_con_id, pair.underlying, DEFAULT_UNDERLYING
    )
    etf_con_id = _con_id("etf_con_id", pair.etf_con_id, pair.etf, DEFAULT_ETF)
    # PairSpec's own checks run again (the two ids distinct).
    return replace(pair, underlying_con_id=underlying_con_id, etf_con_id=etf_con_id)


def _con_id(field: str, con_id: int | None, symbol: str, default_symbol: str) -> int:
    if con_id is not None:
        return con_id
    if symbol != default_symbol:
        raise ValueError(
            f"SimConfig.pair.{field} must be set for {symbol!r}: ibsim lists it under that "
            "contract id (only the default pair's symbols have default ids)"
        )
    return DEFAULT_UNDERLYING_CON_ID if field == "underlying_con_id" else DEFAULT_ETF_CON_ID
