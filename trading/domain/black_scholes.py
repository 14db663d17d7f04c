"""Black-Scholes-Merton prices, Greeks and implied volatility with a continuous dividend yield.

Conventions, kept everywhere in this package:

* ``tau_years`` is the time to expiry in years (calendar days / 365); ``rate`` and
  ``div_yield`` are continuously compounded annual rates; ``vol_annual`` is the annualised
  volatility as a fraction (0.15 is 15 vol points).
* ``vega`` is per 1.00 of volatility (per 100 vol points); ``Greeks.vega_per_vol_point`` is
  vega / 100, the number IB reports.
* ``theta`` is dV/dt per YEAR of calendar time passing (= -dV/dtau); ``Greeks.theta_per_day``
  is theta / 365, the number IB reports.
* ``rho`` is per 1.00 of rate (per 100 percentage points).
* Prices and Greeks are per share of the underlying; multiply by the contract multiplier (100
  for TLT) for a contract.

The formulas are European. TLT options are American: a call on a dividend payer may be
exercised early just before an ex-date, and a deep in-the-money put may be exercised early
for the interest. For near-the-money one-month calls (the options this system writes) the
early-exercise premium is small, so the European formula with a continuous dividend yield is
used as an approximation for pricing, Greeks and implied volatility; the early-assignment
risk itself is flagged separately (``trading.domain.options``). An American price above the
European upper bound, or below the European lower bound, has no European implied volatility
and is reported as such.

Formulas (F = S e^{(r-q)tau} forward, D = e^{-r tau} discount, s = sigma sqrt(tau)):

    d1 = (ln(S/K) + (r - q + sigma^2/2) tau) / s,   d2 = d1 - s
    call = S e^{-q tau} N(d1) - K e^{-r tau} N(d2)
    put  = K e^{-r tau} N(-d2) - S e^{-q tau} N(-d1)
    delta_call = e^{-q tau} N(d1),  delta_put = -e^{-q tau} N(-d1)
    gamma = e^{-q tau} phi(d1) / (S s),  vega = S e^{-q tau} phi(d1) sqrt(tau)
    theta_call = -S e^{-q tau} phi(d1) sigma / (2 sqrt(tau)) - r K e^{-r tau} N(d2)
                 + q S e^{-q tau} N(d1)
    theta_put  = -S e^{-q tau} phi(d1) sigma / (2 sqrt(tau)) + r K e^{-r tau} N(-d2)
                 - q S e^{-q tau} N(-d1)
    rho_call = K tau e^{-r tau} N(d2),  rho_put = -K tau e^{-r tau} N(-d2)

Degenerate cases: at ``tau_years == 0`` the value is the intrinsic value, delta is 0 or 1
(-1 or 0 for a put; at the money exactly the option is treated as not exercised: delta 0) and
every other Greek is 0. At ``vol_annual == 0`` with time left, the value is the discounted
intrinsic value of the forward, max(S e^{-q tau} - K e^{-r tau}, 0) for a call, with its exact
deterministic delta, theta and rho, and gamma = vega = 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtr

__all__ = [
    "DAYS_PER_YEAR",
    "MAX_VOL_ANNUAL",
    "Greeks",
    "ImpliedVolFailure",
    "ImpliedVolResult",
    "NoImpliedVolatility",
    "Right",
    "greeks",
    "greeks_vec",
    "implied_vol",
    "implied_vol_vec",
    "price",
]

DAYS_PER_YEAR = 365.0
"""Calendar days per year: tau_years = calendar days / 365, theta_per_day = theta / 365."""

MAX_VOL_ANNUAL = 10.0
"""Upper end of the implied-volatility search (1000 vol points); a price needing more is
reported as above the upper bound."""

_SQRT_2PI = math.sqrt(2.0 * math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_IV_MAX_ITERATIONS = 100
# Convergence: relative price error of the out-of-the-money option, or a bracket this narrow
# relative to the total volatility (the float resolution of the input price is reached first).
_IV_PRICE_RTOL = 1e-12
# Halley's error is cubic: from |ln b - ln b*| <= 1e-6 one more step lands below 1e-15, so that
# step is taken and accepted without paying for another evaluation to confirm it.
_IV_LAST_STEP_LOG_ERROR = 1e-6
_IV_BRACKET_RTOL = 1e-13


class Right(StrEnum):
    """Option right, spelled as IB spells it."""

    CALL = "C"
    PUT = "P"


@dataclass(frozen=True, slots=True)
class Greeks:
    """Price and Greeks of one option, per share.

    vega per 1.00 of vol, theta per year of calendar time, rho per 1.00 of rate.
    """

    price: float
    delta: float
    gamma: float
    vega: float
    theta: float
    rho: float

    @property
    def vega_per_vol_point(self) -> float:
        """Vega per 1 vol point (0.01 of vol): vega / 100, as IB reports it."""
        return self.vega / 100.0

    @property
    def theta_per_day(self) -> float:
        """Theta per calendar day: theta / 365, as IB reports it."""
        return self.theta / DAYS_PER_YEAR


class ImpliedVolFailure(StrEnum):
    """Why an option price has no implied volatility."""

    INVALID_PRICE = "invalid_price"
    EXPIRED = "expired"
    BELOW_INTRINSIC = "below_intrinsic"
    ABOVE_UPPER_BOUND = "above_upper_bound"
    NOT_CONVERGED = "not_converged"


class NoImpliedVolatility(ValueError):
    """The option price has no Black-Scholes implied volatility; ``reason`` says why."""

    def __init__(self, reason: ImpliedVolFailure, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason


# ---------------------------------------------------------------------------------------------
# Validation


def _check_scalar(
    name: str, value: float, *, minimum: float | None = 0.0, strict: bool = False
) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        relation = ">" if strict else ">="
        raise ValueError(f"{name} must be {relation} {minimum}, got {value!r}")
    return value


def _check_inputs(
    spot: float, strike: float, tau_years: float, rate: float, div_yield: float, vol_annual: float
) -> tuple[float, float, float, float, float, float]:
    return (
        _check_scalar("spot", spot, strict=True),
        _check_scalar("strike", strike, strict=True),
        _check_scalar("tau_years", tau_years),
        _check_scalar("rate", rate, minimum=None),
        _check_scalar("div_yield", div_yield, minimum=None),
        _check_scalar("vol_annual", vol_annual),
    )


def _check_right(right: Right | str) -> bool:
    """Return True for a call, False for a put."""
    if right == Right.CALL:
        return True
    if right == Right.PUT:
        return False
    raise ValueError(f"right must be 'C' or 'P', got {right!r}")


def _check_array(
    name: str, value: ArrayLike, *, minimum: float | None = 0.0, strict: bool = False
) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    finite = np.isfinite(array)
    if not finite.all():
        index = np.flatnonzero(~finite.ravel())[0]
        raise ValueError(f"{name} must be finite, got {array.ravel()[index]!r} at index {index}")
    if minimum is not None:
        bad = array <= minimum if strict else array < minimum
        if bad.any():
            index = np.flatnonzero(bad.ravel())[0]
            relation = ">" if strict else ">="
            raise ValueError(
                f"{name} must be {relation} {minimum}, "
                f"got {array.ravel()[index]!r} at index {index}"
            )
    return array


def _norm_cdf(x: float) -> float:
    # erfc keeps full relative precision in the lower tail, where 1 + erf(x) cancels.
    return 0.5 * math.erfc(-x * _INV_SQRT_2)


def _norm_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / _SQRT_2PI


def _norm_pdf_vec(x: np.ndarray) -> np.ndarray:
    # Clipped at exp(-700) (1e-304, still a normal float): an exp that underflows to a
    # subnormal or zero takes the slow path in libm, 5x slower, and changes no result.
    pdf: np.ndarray = np.exp(-0.5 * np.minimum(x * x, 1400.0)) * (1.0 / _SQRT_2PI)
    return pdf


# ---------------------------------------------------------------------------------------------
# Scalar (live) forms: plain floats and the math module


def price(
    spot: float,
    strike: float,
    tau_years: float,
    rate: float,
    div_yield: float,
    vol_annual: float,
    right: Right | str,
) -> float:
    """Black-Scholes-Merton price per share (European; see the module docstring)."""
    spot, strike, tau_years, rate, div_yield, vol_annual = _check_inputs(
        spot, strike, tau_years, rate, div_yield, vol_annual
    )
    is_call = _check_right(right)
    if tau_years == 0.0:
        return max(spot - strike, 0.0) if is_call else max(strike - spot, 0.0)
    spot_discounted = spot * math.exp(-div_yield * tau_years)
    strike_discounted = strike * math.exp(-rate * tau_years)
    total_vol = vol_annual * math.sqrt(tau_years)
    if total_vol == 0.0:
        forward_value = spot_discounted - strike_discounted
        return max(forward_value, 0.0) if is_call else max(-forward_value, 0.0)
    d1 = math.log(spot_discounted / strike_discounted) / total_vol + 0.5 * total_vol
    d2 = d1 - total_vol
    if is_call:
        return spot_discounted * _norm_cdf(d1) - strike_discounted * _norm_cdf(d2)
    return strike_discounted * _norm_cdf(-d2) - spot_discounted * _norm_cdf(-d1)


def greeks(
    spot: float,
    strike: float,
    tau_years: float,
    rate: float,
    div_yield: float,
    vol_annual: float,
    right: Right | str,
) -> Greeks:
    """Price and Greeks per share (European; conventions in the module docstring)."""
    spot, strike, tau_years, rate, div_yield, vol_annual = _check_inputs(
        spot, strike, tau_years, rate, div_yield, vol_annual
    )
    is_call = _check_right(right)
    if tau_years == 0.0:
        if is_call:
            in_the_money = spot > strike
            return Greeks(max(spot - strike, 0.0), 1.0 if in_the_money else 0.0, 0.0, 0.0, 0.0, 0.0)
        in_the_money = spot < strike
        return Greeks(max(strike - spot, 0.0), -1.0 if in_the_money else 0.0, 0.0, 0.0, 0.0, 0.0)
    dividend_discount = math.exp(-div_yield * tau_years)
    rate_discount = math.exp(-rate * tau_years)
    spot_discounted = spot * dividend_discount
    strike_discounted = strike * rate_discount
    sqrt_tau = math.sqrt(tau_years)
    total_vol = vol_annual * sqrt_tau
    if total_vol == 0.0:
        return _greeks_zero_vol(
            spot_discounted,
            strike_discounted,
            dividend_discount,
            tau_years,
            rate,
            div_yield,
            is_call,
        )
    d1 = math.log(spot_discounted / strike_discounted) / total_vol + 0.5 * total_vol
    d2 = d1 - total_vol
    pdf_d1 = _norm_pdf(d1)
    gamma = dividend_discount * pdf_d1 / (spot * total_vol)
    vega = spot_discounted * pdf_d1 * sqrt_tau
    decay = -spot_discounted * pdf_d1 * vol_annual / (2.0 * sqrt_tau)
    if is_call:
        cdf_d1 = _norm_cdf(d1)
        cdf_d2 = _norm_cdf(d2)
        return Greeks(
            price=spot_discounted * cdf_d1 - strike_discounted * cdf_d2,
            delta=dividend_discount * cdf_d1,
            gamma=gamma,
            vega=vega,
            theta=decay - rate * strike_discounted * cdf_d2 + div_yield * spot_discounted * cdf_d1,
            rho=tau_years * strike_discounted * cdf_d2,
        )
    cdf_minus_d1 = _norm_cdf(-d1)
    cdf_minus_d2 = _norm_cdf(-d2)
    return Greeks(
        price=strike_discounted * cdf_minus_d2 - spot_discounted * cdf_minus_d1,
        delta=-dividend_discount * cdf_minus_d1,
        gamma=gamma,
        vega=vega,
        theta=decay
        + rate * strike_discounted * cdf_minus_d2
        - div_yield * spot_discounted * cdf_minus_d1,
        rho=-tau_years * strike_discounted * cdf_minus_d2,
    )


def _greeks_zero_vol(
    spot_discounted: float,
    strike_discounted: float,
    dividend_discount: float,
    tau_years: float,
    rate: float,
    div_yield: float,
    is_call: bool,
) -> Greeks:
    """Deterministic limit: the option is the discounted forward payoff or nothing."""
    forward_value = spot_discounted - strike_discounted
    exercised = forward_value > 0.0 if is_call else forward_value < 0.0
    if not exercised:
        return Greeks(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    sign = 1.0 if is_call else -1.0
    return Greeks(
        price=sign * forward_value,
        delta=sign * dividend_discount,
        gamma=0.0,
        vega=0.0,
        theta=sign * (div_yield * spot_discounted - rate * strike_discounted),
        rho=sign * tau_years * strike_discounted,
    )


# ---------------------------------------------------------------------------------------------
# Vectorized (research) forms: numpy arrays, broadcast


def greeks_vec(
    spot: ArrayLike,
    strike: ArrayLike,
    tau_years: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    vol_annual: ArrayLike,
    is_call: ArrayLike,
) -> dict[str, np.ndarray]:
    """Price and Greeks for arrays of options (broadcast); same conventions as :func:`greeks`.

    Returns a dict with keys price, delta, gamma, vega, theta, rho. ``is_call`` is a bool
    array (True for calls). Raises ValueError naming the field and the index of the first
    NaN, infinite or out-of-range input.
    """
    spot = _check_array("spot", spot, strict=True)
    strike = _check_array("strike", strike, strict=True)
    tau_years = _check_array("tau_years", tau_years)
    rate = _check_array("rate", rate, minimum=None)
    div_yield = _check_array("div_yield", div_yield, minimum=None)
    vol_annual = _check_array("vol_annual", vol_annual)
    is_call = np.asarray(is_call, dtype=bool)

    dividend_discount = np.exp(-div_yield * tau_years)
    rate_discount = np.exp(-rate * tau_years)
    spot_discounted = spot * dividend_discount
    strike_discounted = strike * rate_discount
    sqrt_tau = np.sqrt(tau_years)
    total_vol = vol_annual * sqrt_tau
    degenerate = total_vol == 0.0
    any_degenerate = bool(degenerate.any())
    safe_total_vol = np.where(degenerate, 1.0, total_vol) if any_degenerate else total_vol
    safe_sqrt_tau = np.where(sqrt_tau == 0.0, 1.0, sqrt_tau) if any_degenerate else sqrt_tau

    d1 = np.log(spot_discounted / strike_discounted) / safe_total_vol + 0.5 * safe_total_vol
    d2 = d1 - safe_total_vol
    sign = 2.0 * is_call - 1.0  # arithmetic: np.where on a random mask is 4x slower
    cdf_d1 = ndtr(sign * d1)
    cdf_d2 = ndtr(sign * d2)
    pdf_d1 = _norm_pdf_vec(d1)

    option_price = sign * (spot_discounted * cdf_d1 - strike_discounted * cdf_d2)
    delta = sign * dividend_discount * cdf_d1
    gamma = dividend_discount * pdf_d1 / (spot * safe_total_vol)
    vega = spot_discounted * pdf_d1 * sqrt_tau
    theta = -spot_discounted * pdf_d1 * vol_annual / (2.0 * safe_sqrt_tau) + sign * (
        div_yield * spot_discounted * cdf_d1 - rate * strike_discounted * cdf_d2
    )
    rho = sign * tau_years * strike_discounted * cdf_d2

    if any_degenerate:
        expired = tau_years == 0.0
        # Deterministic payoff: at expiry of spot against strike, before it of the discounted
        # forward against the discounted strike (both coincide at tau = 0).
        forward_value = sign * (spot_discounted - strike_discounted)
        exercised = forward_value > 0.0
        deterministic_price = np.where(exercised, forward_value, 0.0)
        deterministic_delta = np.where(exercised, sign * dividend_discount, 0.0)
        deterministic_theta = np.where(
            exercised & ~expired,
            sign * (div_yield * spot_discounted - rate * strike_discounted),
            0.0,
        )
        deterministic_rho = np.where(exercised, sign * tau_years * strike_discounted, 0.0)
        option_price = np.where(degenerate, deterministic_price, option_price)
        delta = np.where(degenerate, deterministic_delta, delta)
        gamma = np.where(degenerate, 0.0, gamma)
        vega = np.where(degenerate, 0.0, vega)
        theta = np.where(degenerate, deterministic_theta, theta)
        rho = np.where(degenerate, deterministic_rho, rho)

    return {
        "price": option_price,
        "delta": delta,
        "gamma": gamma,
        "vega": vega,
        "theta": theta,
        "rho": rho,
    }


# ---------------------------------------------------------------------------------------------
# Implied volatility
#
# Both forms run the same algorithm. The price is converted to the undiscounted price b* of the
# out-of-the-money option of the same strike (put-call parity: the time value is shared), so an
# in-the-money quote does not lose its time value to cancellation. With s = sigma sqrt(tau) the
# Black price b(s) rises from 0 to min(F, K). Halley's method is run on f(s) = ln b(s) - ln b*,
# whose steps stay well scaled in the wings where b is tiny and Newton on b itself crawls:
#     f' = v / b,  v = F phi(d1),  f''/f' = d1 d2 / s - v / b,
#     step = -(f / f') / (1 - (f / f') (f''/f') / 2).
# The start is Corrado-Miller's approximation. A bracket [low, high] with b(low) < b* < b(high)
# is kept and a step that leaves it is replaced by bisection, so the iteration always converges.
# It stops when |f| is below 1e-12 or below the float resolution of b* (an in-the-money price
# of 40 carries its time value only to about 1e-14: the vol cannot be known better than that).


_FAILURE_BY_CODE: tuple[ImpliedVolFailure | None, ...] = (None, *ImpliedVolFailure)
_CODE_BY_FAILURE = {failure: code for code, failure in enumerate(_FAILURE_BY_CODE)}


@dataclass(frozen=True, slots=True)
class ImpliedVolResult:
    """Implied volatilities for a chain.

    ``vol`` is annualised (NaN where unsolved), ``solved`` is the mask of solved options and
    ``failure_code`` an int8 array, 0 where solved, else the code of the option's
    :class:`ImpliedVolFailure` (read it with :meth:`failure` or :meth:`failures`; an int array
    because filling an object array of strings would cost more than the whole solve).
    """

    vol: np.ndarray
    solved: np.ndarray
    failure_code: np.ndarray

    def failure(self, index: int | tuple[int, ...]) -> ImpliedVolFailure | None:
        """Why option ``index`` is unsolved, or None when it is solved."""
        return _FAILURE_BY_CODE[int(self.failure_code[index])]

    def failures(self) -> dict[ImpliedVolFailure, int]:
        """How many options failed for each reason."""
        counts = np.bincount(self.failure_code.ravel(), minlength=len(_FAILURE_BY_CODE))
        return {
            failure: int(counts[code])
            for code, failure in enumerate(_FAILURE_BY_CODE)
            if failure is not None and counts[code]
        }


_EPSILON = float(np.finfo(np.float64).eps)
_INF = math.inf


def _log_tolerance(undiscounted: np.ndarray, otm_target: np.ndarray) -> np.ndarray:
    """Tolerance on |ln b - ln b*|: 1e-12, or the relative float resolution of b*."""
    tolerance: np.ndarray = np.maximum(_IV_PRICE_RTOL, 4.0 * _EPSILON * undiscounted / otm_target)
    return tolerance


def _corrado_miller(forward: np.ndarray, strike: np.ndarray, call_value: np.ndarray) -> np.ndarray:
    """Corrado-Miller start for the total vol s from the undiscounted call value."""
    half_gap = 0.5 * (forward - strike)
    excess = call_value - half_gap
    discriminant = np.maximum(excess * excess - 4.0 * half_gap * half_gap / math.pi, 0.0)
    total_vol: np.ndarray = _SQRT_2PI / (forward + strike) * (excess + np.sqrt(discriminant))
    return total_vol


def _select(where: np.ndarray, *arrays: np.ndarray) -> Iterator[np.ndarray]:
    """Each array's elements at ``where`` (an index or a mask)."""
    return (array[where] for array in arrays)


def _black_otm_vec(
    forward: np.ndarray,
    strike: np.ndarray,
    log_moneyness: np.ndarray,
    sign: np.ndarray,
    total_vol: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undiscounted out-of-the-money Black price, vega in total vol, and d1 d2 / s;
    ``log_moneyness`` = ln(F/K) and ``sign`` = +1 for the call (K >= F), -1 for the put, passed
    in because they do not change between iterations."""
    scaled = log_moneyness / total_vol
    half = 0.5 * total_vol
    d1 = scaled + half
    d2 = scaled - half
    value = forward * ndtr(sign * d1) - strike * ndtr(sign * d2)
    value *= sign
    vega = forward * _norm_pdf_vec(d1)
    return value, vega, d1 * d2 / total_vol


def implied_vol(
    option_price: float,
    spot: float,
    strike: float,
    tau_years: float,
    rate: float,
    div_yield: float,
    right: Right | str,
) -> float:
    """Annualised implied volatility of a European option price (see the module docstring).

    Raises :class:`NoImpliedVolatility` (a ValueError) with the reason: an invalid price (NaN,
    negative), tau_years <= 0, a price at or below the European lower bound
    max(S e^{-q tau} - K e^{-r tau}, 0) (call; the put's mirror), at or above the upper bound
    S e^{-q tau} (call) / K e^{-r tau} (put) or needing a vol above ``MAX_VOL_ANNUAL``, or no
    convergence. Raises ValueError for NaN or negative model inputs.

    The same algorithm as `implied_vol_vec` (and `_black_otm_vec`, `_corrado_miller` and
    `_log_tolerance`), written out with the loop's invariants hoisted and the normal CDF and
    PDF inlined, every expression as the helpers write it: ibsim solves a small chain's bid and
    ask with it every market step.
    """
    option_price = float(option_price)
    if not math.isfinite(option_price) or option_price < 0.0:
        raise NoImpliedVolatility(
            ImpliedVolFailure.INVALID_PRICE,
            f"option_price must be finite and >= 0, got {option_price!r}",
        )
    spot, strike, tau_years, rate, div_yield, is_call = _implied_vol_inputs(
        spot, strike, tau_years, rate, div_yield, right
    )
    exp, log, erfc = math.exp, math.log, math.erfc
    rate_discount = exp(-rate * tau_years)
    forward = spot * exp((rate - div_yield) * tau_years)
    undiscounted = option_price / rate_discount
    intrinsic = max(forward - strike, 0.0) if is_call else max(strike - forward, 0.0)
    upper = forward if is_call else strike
    if undiscounted <= intrinsic:
        raise NoImpliedVolatility(
            ImpliedVolFailure.BELOW_INTRINSIC,
            f"{_described(option_price, strike, right)} is at or below the European lower "
            f"bound {intrinsic * rate_discount!r}",
        )
    if undiscounted >= upper:
        raise NoImpliedVolatility(
            ImpliedVolFailure.ABOVE_UPPER_BOUND,
            f"{_described(option_price, strike, right)} is at or above the European upper "
            f"bound {upper * rate_discount!r}",
        )
    target = undiscounted - intrinsic
    sqrt_tau = math.sqrt(tau_years)
    high = MAX_VOL_ANNUAL * sqrt_tau
    # _black_otm_vec's value: the out-of-the-money call where strike >= forward, else the put
    # (N(-x) = 0.5 erfc(x / sqrt 2), as _norm_cdf(-x) computes it).
    ln_forward_strike = log(forward / strike)
    otm_call = strike >= forward
    c = _INV_SQRT_2
    log_moneyness = ln_forward_strike / high
    d1 = log_moneyness + 0.5 * high
    d2 = log_moneyness - 0.5 * high
    if otm_call:
        value_max = forward * (0.5 * erfc(-d1 * c)) - strike * (0.5 * erfc(-d2 * c))
    else:
        value_max = strike * (0.5 * erfc(d2 * c)) - forward * (0.5 * erfc(d1 * c))
    if target >= value_max:
        raise NoImpliedVolatility(
            ImpliedVolFailure.ABOVE_UPPER_BOUND,
            f"{_described(option_price, strike, right)} needs a volatility above "
            f"MAX_VOL_ANNUAL={MAX_VOL_ANNUAL!r}",
        )
    log_target = log(target)
    tolerance = max(_IV_PRICE_RTOL, 4.0 * _EPSILON * undiscounted / target)
    call_value = target + max(forward - strike, 0.0)
    low = 0.0
    # _corrado_miller
    half_gap = 0.5 * (forward - strike)
    excess = call_value - half_gap
    discriminant = max(excess * excess - 4.0 * half_gap * half_gap / math.pi, 0.0)
    total_vol = _SQRT_2PI / (forward + strike) * (excess + math.sqrt(discriminant))
    if not 0.0 < total_vol < high:
        total_vol = 0.5 * high
    last_step_log_error = _IV_LAST_STEP_LOG_ERROR
    bracket_rtol = _IV_BRACKET_RTOL
    sqrt_2pi = _SQRT_2PI
    for _ in range(_IV_MAX_ITERATIONS):
        log_moneyness = ln_forward_strike / total_vol
        d1 = log_moneyness + 0.5 * total_vol
        d2 = log_moneyness - 0.5 * total_vol
        if otm_call:
            value = forward * (0.5 * erfc(-d1 * c)) - strike * (0.5 * erfc(-d2 * c))
        else:
            value = strike * (0.5 * erfc(d2 * c)) - forward * (0.5 * erfc(d1 * c))
        if value <= 0.0:
            low = total_vol
            candidate = 0.5 * (low + high)
        else:
            error = log(value) - log_target
            if abs(error) <= tolerance:
                return total_vol / sqrt_tau
            if error < 0.0:
                low = total_vol
            else:
                high = total_vol
            candidate = -1.0
            vega = forward * (exp(-0.5 * d1 * d1) / sqrt_2pi)
            if vega > 0.0:
                newton = error * value / vega
                denominator = 1.0 - 0.5 * newton * (d1 * d2 / total_vol - vega / value)
                candidate = total_vol - newton / denominator if denominator > 0.0 else -1.0
            if not low < candidate < high:
                candidate = 0.5 * (low + high)
            elif abs(error) <= last_step_log_error:
                return candidate / sqrt_tau
        if high - low <= bracket_rtol * high:
            return candidate / sqrt_tau
        total_vol = candidate
    raise NoImpliedVolatility(
        ImpliedVolFailure.NOT_CONVERGED,
        f"{_described(option_price, strike, right)}: no convergence in "
        f"{_IV_MAX_ITERATIONS} iterations",
    )


def _implied_vol_inputs(
    spot: float, strike: float, tau_years: float, rate: float, div_yield: float, right: Right | str
) -> tuple[float, float, float, float, float, bool]:
    """`implied_vol`'s model inputs as floats and its right as is_call, checked as
    `_check_inputs` and `_check_right` check them (which raise the errors); EXPIRED at
    tau_years == 0."""
    try:
        s, k, t, r, q = float(spot), float(strike), float(tau_years), float(rate), float(div_yield)
        valid = 0.0 < s < _INF and 0.0 < k < _INF and 0.0 <= t < _INF
        valid = valid and -_INF < r < _INF and -_INF < q < _INF
    except (TypeError, ValueError):
        valid = False
    if not valid:
        s, k, t, r, q, _ = _check_inputs(spot, strike, tau_years, rate, div_yield, 0.0)
    is_call = right == "C" or (right != "P" and _check_right(right))  # _check_right raises
    if t <= 0.0:
        raise NoImpliedVolatility(ImpliedVolFailure.EXPIRED, f"tau_years must be > 0, got {t!r}")
    return s, k, t, r, q, is_call


def _described(option_price: float, strike: float, right: Right | str) -> str:
    """An option price in `implied_vol`'s failure messages."""
    return f"option_price {option_price!r} (strike {strike!r}, right {right})"


def implied_vol_vec(
    option_price: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    tau_years: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    is_call: ArrayLike,
) -> ImpliedVolResult:
    """Implied volatilities for arrays of options (broadcast); same algorithm as implied_vol.

    A bad option price (NaN, negative, outside the no-arbitrage bounds, expired) does not stop
    the chain: that option is marked unsolved with its :class:`ImpliedVolFailure`. Bad model
    inputs (NaN or negative spot, strike, tau) raise ValueError naming the field.
    """
    option_price = np.asarray(option_price, dtype=np.float64)
    spot = _check_array("spot", spot, strict=True)
    strike = _check_array("strike", strike, strict=True)
    tau_years = _check_array("tau_years", tau_years)
    rate = _check_array("rate", rate, minimum=None)
    div_yield = _check_array("div_yield", div_yield, minimum=None)
    is_call = np.asarray(is_call, dtype=bool)
    arrays = np.broadcast_arrays(option_price, spot, strike, tau_years, rate, div_yield, is_call)
    shape = arrays[0].shape
    option_price, spot, strike, tau_years, rate, div_yield, is_call = (
        array.ravel() for array in arrays
    )
    size = option_price.size

    failure = np.zeros(size, dtype=np.int8)
    vol = np.full(size, np.nan)

    # Computed for every option (NaN prices compare False), then the bad ones are marked.
    sign = 2.0 * is_call - 1.0
    rate_discount = np.exp(-rate * tau_years)
    forward = spot * np.exp((rate - div_yield) * tau_years)
    undiscounted = option_price / rate_discount
    forward_minus_strike = forward - strike
    intrinsic = np.maximum(sign * forward_minus_strike, 0.0)
    upper = strike + is_call * forward_minus_strike
    with np.errstate(invalid="ignore"):
        valid_price = option_price >= 0.0  # False for NaN
        valid_price &= option_price < np.inf
        below = undiscounted <= intrinsic
        above = undiscounted >= upper
    expired = tau_years <= 0.0
    live = valid_price & ~expired & ~below & ~above
    if not live.all():
        failure[~valid_price] = _CODE_BY_FAILURE[ImpliedVolFailure.INVALID_PRICE]
        checked = valid_price & ~expired
        failure[valid_price & expired] = _CODE_BY_FAILURE[ImpliedVolFailure.EXPIRED]
        failure[checked & below] = _CODE_BY_FAILURE[ImpliedVolFailure.BELOW_INTRINSIC]
        failure[checked & ~below & above] = _CODE_BY_FAILURE[ImpliedVolFailure.ABOVE_UPPER_BOUND]
    index = np.flatnonzero(live)
    if index.size < size:
        forward, strike, undiscounted, intrinsic, tau_years, forward_minus_strike = _select(
            index, forward, strike, undiscounted, intrinsic, tau_years, forward_minus_strike
        )

    target = undiscounted - intrinsic
    log_moneyness = np.log(forward / strike)
    otm_sign = 2.0 * (strike >= forward) - 1.0
    sqrt_tau = np.sqrt(tau_years)
    high = MAX_VOL_ANNUAL * sqrt_tau
    high_start = high.copy()
    log_target = np.log(target)
    tolerance = _log_tolerance(undiscounted, target)
    low = np.zeros_like(target)
    total_vol = _corrado_miller(forward, strike, target + np.maximum(forward_minus_strike, 0.0))
    total_vol = np.where((total_vol > 0.0) & (total_vol < high), total_vol, 0.5 * high)
    solution = np.full(index.size, np.nan)

    # The working set shrinks as options converge; ``position`` maps it back to ``solution``.
    # A price needing more than MAX_VOL_ANNUAL drives ``low`` up to ``high`` by bisection and is
    # flagged after the loop (cheaper than pricing every option at the cap beforehand).
    position = np.arange(index.size)
    for _ in range(_IV_MAX_ITERATIONS):
        if position.size == 0:
            break
        value, vega, d1_d2_over_s = _black_otm_vec(
            forward, strike, log_moneyness, otm_sign, total_vol
        )
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            error = np.log(value) - log_target  # -inf where the price underflows to 0
            below_target = error < 0.0
            np.copyto(low, total_vol, where=below_target)
            np.copyto(high, total_vol, where=~below_target)
            newton = error * value / vega
            candidate = total_vol - newton / (1.0 - 0.5 * newton * (d1_d2_over_s - vega / value))
            # NaN (0/0 where the price underflows) fails both comparisons: bisection.
            inside = (candidate > low) & (candidate < high)
            absolute_error = np.abs(error)
        np.copyto(candidate, 0.5 * (low + high), where=~inside)
        converged = absolute_error <= tolerance
        done = (high - low <= _IV_BRACKET_RTOL * high) | (
            inside & (absolute_error <= _IV_LAST_STEP_LOG_ERROR)
        )
        np.copyto(candidate, total_vol, where=converged)
        done |= converged
        if not done.any():
            total_vol = candidate
            continue
        solution[position[done]] = candidate[done]
        going = ~done
        position = position[going]
        forward, strike, log_moneyness, otm_sign, log_target, tolerance, low, high, total_vol = (
            _select(
                going,
                forward,
                strike,
                log_moneyness,
                otm_sign,
                log_target,
                tolerance,
                low,
                high,
                candidate,
            )
        )

    capped = solution >= high_start * (1.0 - 1e-12)
    if capped.any():
        failure[index[capped]] = _CODE_BY_FAILURE[ImpliedVolFailure.ABOVE_UPPER_BOUND]
        solution[capped] = np.nan
        failure[index[np.isnan(solution) & ~capped]] = _CODE_BY_FAILURE[
            ImpliedVolFailure.NOT_CONVERGED
        ]
    else:
        failure[index[np.isnan(solution)]] = _CODE_BY_FAILURE[ImpliedVolFailure.NOT_CONVERGED]
    vol[index] = solution / sqrt_tau
    return ImpliedVolResult(
        vol=vol.reshape(shape),
        solved=np.isfinite(vol).reshape(shape),
        failure_code=failure.reshape(shape),
    )
