"""Hedge ratio estimators: rolling OLS, Kalman filter, delta-neutral.

Notation: x = log(buy-write index), y = log(TLTW) (both total-return series), and

    spread = y - beta * x - alpha

(the spread, its z-score and the tracker that measures it with these hedges:
`trading.domain.spread`). Every incremental estimator is O(1) per update in plain Python floats
(numpy on scalars costs 20x more), keeps a small state that :meth:`to_state` /
:meth:`from_state` serialise to a dict of JSON types, and agrees with its vectorized twin
(``*_vec``) to 1e-9.

Numerical stability: rolling sums are kept centred (Welford's add and remove updates of the
means and of the co-moments sum((x - mean_x)(y - mean_y))), never as raw sums of x, x^2, xy: the
log prices sit near 4.5 with a spread of 1e-4, and raw sums lose about 1e-7 over a long run.

Parameters that look standard but are not safe here (the strategy trades a premium spread of
tens of basis points that mean-reverts over days):

* An OLS window of one session of one-minute bars (390) re-fits the hedge within hours, so
  alpha and beta follow the spread and absorb the deviation the strategy wants to trade. The
  default ``DEFAULT_OLS_WINDOW`` is 20 sessions of one-minute bars.
* Kalman process noise delta = 1e-4 with observation variance 1e-3 (Chan's textbook example)
  gives the filter a memory of about sqrt(R / Q) = 3 updates: the hedge *is* the spread. The
  memory in updates is about sqrt(observation_variance / process_variance); the defaults
  (delta 1e-14, R 1e-6 = (10 bp)^2) give 10,000 updates, about 25 sessions of one-minute bars.
  :meth:`KalmanHedge.from_memory` sets delta from a memory length instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from trading.domain.common import CountedDeque, check_finite

__all__ = [
    "DEFAULT_KALMAN_DELTA",
    "DEFAULT_KALMAN_OBSERVATION_VARIANCE",
    "DEFAULT_OLS_WINDOW",
    "DeltaNeutralHedge",
    "DeltaNeutralHedger",
    "KalmanHedge",
    "RollingOls",
    "delta_neutral_hedge",
    "kalman_hedge_vec",
    "ols_hedge_ratio",
    "rolling_ols_vec",
    "tltw_shares_of_tlt",
]


DEFAULT_OLS_WINDOW = 7_800
"""20 sessions x 390 one-minute bars; see the module docstring for why not one session."""
DEFAULT_KALMAN_DELTA = 1e-14
"""Process noise per update, Chan's delta: Q = delta / (1 - delta) * I."""
DEFAULT_KALMAN_OBSERVATION_VARIANCE = 1e-6
"""Variance of the spread around the hedge per update, (10 bp)^2."""


def ols_hedge_ratio(x: ArrayLike, y: ArrayLike) -> tuple[float, float]:
    """Least squares y = beta x + alpha; returns (beta, alpha).

    beta = sum((x - mx)(y - my)) / sum((x - mx)^2), alpha = my - beta mx.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError(f"x and y must be 1-d of equal length >= 2, got {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x and y must be finite")
    dx = x - x.mean()
    sxx = float(dx @ dx)
    if sxx == 0.0:
        raise ValueError("x has no variance: the hedge ratio is undefined")
    beta = float(dx @ (y - y.mean())) / sxx
    return beta, float(y.mean() - beta * x.mean())


# ---------------------------------------------------------------------------------------------
# Rolling OLS


class RollingOls:
    """OLS of y on x over the last ``window`` bars, updated in O(1) (centred Welford updates).

    ``beta`` and ``alpha`` are None until ``min_observations`` bars (default: the full window)
    are in, or while x has no variance.
    """

    __slots__ = (
        "_buffer_x",
        "_buffer_y",
        "_cxx",
        "_cxy",
        "_mean_x",
        "_mean_y",
        "_since_resync",
        "alpha",
        "beta",
        "min_observations",
        "window",
    )

    def __init__(self, window: int = DEFAULT_OLS_WINDOW, min_observations: int | None = None):
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window!r}")
        min_observations = window if min_observations is None else min_observations
        if not 2 <= min_observations <= window:
            raise ValueError(f"min_observations must be in [2, window], got {min_observations!r}")
        self.window = window
        self.min_observations = min_observations
        self._buffer_x = CountedDeque()
        self._buffer_y = CountedDeque()
        self._mean_x = 0.0
        self._mean_y = 0.0
        self._cxx = 0.0
        self._cxy = 0.0
        self._since_resync = 0
        self.beta: float | None = None
        self.alpha: float | None = None

    @property
    def count(self) -> int:
        return len(self._buffer_x)

    def update(self, x: float, y: float) -> None:
        """Add a bar (dropping the oldest when the window is full) and refresh beta, alpha."""
        x = check_finite("x", x)
        y = check_finite("y", y)
        if len(self._buffer_x) == self.window:
            self._remove(self._buffer_x.popleft(), self._buffer_y.popleft())
        self._buffer_x.append(x)
        self._buffer_y.append(y)
        count = len(self._buffer_x)
        dx = x - self._mean_x
        self._mean_x += dx / count
        self._mean_y += (y - self._mean_y) / count
        self._cxx += dx * (x - self._mean_x)
        self._cxy += dx * (y - self._mean_y)
        self._since_resync += 1
        if self._since_resync >= self.window:
            self._resync()
        self._refresh(count)

    def _resync(self) -> None:
        # Once per window, re-sum exactly (two-pass, numpy: ~50 us for 7,800 bars): the add and
        # remove updates are stable but their rounding still random-walks over a long run.
        x = np.fromiter(self._buffer_x, np.float64, len(self._buffer_x))
        y = np.fromiter(self._buffer_y, np.float64, len(self._buffer_y))
        self._mean_x = float(x.mean())
        self._mean_y = float(y.mean())
        dx = x - self._mean_x
        self._cxx = float(dx @ dx)
        self._cxy = float(dx @ (y - self._mean_y))
        self._since_resync = 0

    def _remove(self, x: float, y: float) -> None:
        count = len(self._buffer_x) + 1  # the bar being removed is already popped
        if count == 1:
            self._mean_x = self._mean_y = self._cxx = self._cxy = 0.0
            return
        mean_x_after = self._mean_x - (x - self._mean_x) / (count - 1)
        mean_y_before = self._mean_y
        self._mean_y -= (y - self._mean_y) / (count - 1)
        self._cxx -= (x - mean_x_after) * (x - self._mean_x)
        self._cxy -= (x - mean_x_after) * (y - mean_y_before)
        self._mean_x = mean_x_after

    def _refresh(self, count: int) -> None:
        if count < self.min_observations or self._cxx <= 0.0:
            self.beta = self.alpha = None
            return
        self.beta = self._cxy / self._cxx
        self.alpha = self._mean_y - self.beta * self._mean_x

    @property
    def values(self) -> tuple[CountedDeque, CountedDeque]:
        """The window's bars (x, y), oldest first."""
        return self._buffer_x, self._buffer_y

    def to_state(self, values: bool = True) -> dict[str, Any]:
        """The window's bars and the centred sums (restored exactly, not re-summed); without
        ``values`` the bars are left out (a writer that keeps them apart)."""
        return {
            "window": self.window,
            "min_observations": self.min_observations,
            "x": list(self._buffer_x) if values else None,
            "y": list(self._buffer_y) if values else None,
            "mean_x": self._mean_x,
            "mean_y": self._mean_y,
            "cxx": self._cxx,
            "cxy": self._cxy,
            "since_resync": self._since_resync,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RollingOls:
        ols = cls(state["window"], state["min_observations"])
        ols._buffer_x.extend(float(v) for v in state["x"])
        ols._buffer_y.extend(float(v) for v in state["y"])
        if len(ols._buffer_x) != len(ols._buffer_y) or len(ols._buffer_x) > ols.window:
            raise ValueError("state x and y must be of equal length, at most window")
        ols._mean_x = float(state["mean_x"])
        ols._mean_y = float(state["mean_y"])
        ols._cxx = float(state["cxx"])
        ols._cxy = float(state["cxy"])
        ols._since_resync = int(state["since_resync"])
        ols._refresh(len(ols._buffer_x))
        return ols


def rolling_ols_vec(
    x: ArrayLike, y: ArrayLike, window: int, min_observations: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized :class:`RollingOls`: (beta, alpha) arrays after each bar, NaN while not ready.

    Computed from pandas' rolling covariance and variance (an independent implementation) of
    the series less their overall means: pandas' online sums lose 1e-9 on raw log prices.
    """
    import pandas as pd

    min_observations = window if min_observations is None else min_observations
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    centre_x = float(x.mean())
    centre_y = float(y.mean())
    xs = pd.Series(x - centre_x)
    ys = pd.Series(y - centre_y)
    rolling_x = xs.rolling(window, min_periods=min_observations)
    beta = (rolling_x.cov(ys) / rolling_x.var()).to_numpy()
    mean_y = ys.rolling(window, min_periods=min_observations).mean().to_numpy() + centre_y
    alpha = mean_y - beta * (rolling_x.mean().to_numpy() + centre_x)
    return beta, alpha


# ---------------------------------------------------------------------------------------------
# Kalman filter


class KalmanHedge:
    """Kalman filter of the hedge: beta and the spread's level are a random walk.

        observation  y = beta (x - x_ref) + level + noise,   alpha = level - beta x_ref
        predict:     P += Q,  Q = delta / (1 - delta) * I       (Chan's parametrisation)
        innovation   e = y - (beta (x - x_ref) + level),  S = H P H' + R,  H = (x - x_ref, 1)
        gain         K = P H' / S;  (beta, level) += K e
        covariance   P = (I - K H) P (I - K H)' + K R K'        (Joseph form: stays symmetric
                                                                 and positive over long runs)

    The state is (beta, alpha) written about a reference level x_ref (the first x seen, unless
    given), because log prices sit near 4.5 with a range of a few percent: about the origin,
    beta and alpha are almost collinear, P has a condition number near 1e9 and rounding
    differences grow to 1e-5 in beta. About x_ref they are near-orthogonal, and a random step in
    beta turns the hedge line about today's price instead of shifting the spread by 4.5 times
    that step. ``alpha`` is reported in the usual form, spread = y - beta x - alpha.

    With ``fit_intercept=False`` the state is beta alone (alpha = 0, H = x, no reference). The
    memory is about sqrt(R / Q) updates; see the module docstring for why the defaults are small.
    """

    __slots__ = (
        "alpha",
        "beta",
        "count",
        "delta",
        "fit_intercept",
        "innovation_variance",
        "level",
        "observation_variance",
        "p_beta",
        "p_cross",
        "p_level",
        "process_variance",
        "x_reference",
    )

    def __init__(
        self,
        delta: float = DEFAULT_KALMAN_DELTA,
        observation_variance: float = DEFAULT_KALMAN_OBSERVATION_VARIANCE,
        beta: float = 1.0,
        alpha: float = 0.0,
        initial_variance: float = 1.0,
        fit_intercept: bool = True,
        x_reference: float | None = None,
    ) -> None:
        if not (math.isfinite(delta) and 0.0 < delta < 1.0):
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        if not (math.isfinite(observation_variance) and observation_variance > 0.0):
            raise ValueError(f"observation_variance must be > 0, got {observation_variance!r}")
        if not (math.isfinite(initial_variance) and initial_variance > 0.0):
            raise ValueError(f"initial_variance must be > 0, got {initial_variance!r}")
        self.delta = delta
        self.process_variance = delta / (1.0 - delta)
        self.observation_variance = observation_variance
        self.fit_intercept = fit_intercept
        self.beta = check_finite("beta", beta)
        self.alpha = check_finite("alpha", alpha) if fit_intercept else 0.0
        self.x_reference = None if x_reference is None else check_finite("x_reference", x_reference)
        if not fit_intercept:
            self.x_reference = 0.0
        self.level = math.nan if self.x_reference is None else self.alpha + beta * self.x_reference
        self.p_beta = initial_variance
        self.p_cross = 0.0
        self.p_level = initial_variance if fit_intercept else 0.0
        self.innovation_variance = math.nan
        self.count = 0

    @classmethod
    def from_memory(
        cls,
        memory_updates: float,
        observation_variance: float = DEFAULT_KALMAN_OBSERVATION_VARIANCE,
        **kwargs: Any,
    ) -> KalmanHedge:
        """A filter whose memory is about ``memory_updates``: Q = R / memory^2."""
        if not (math.isfinite(memory_updates) and memory_updates >= 1.0):
            raise ValueError(f"memory_updates must be >= 1, got {memory_updates!r}")
        process = observation_variance / memory_updates**2
        return cls(process / (1.0 + process), observation_variance, **kwargs)

    def update(self, x: float, y: float) -> float:
        """One filter step; returns the innovation e (the spread before this update)."""
        x = check_finite("x", x)
        y = check_finite("y", y)
        q = self.process_variance
        r = self.observation_variance
        p00 = self.p_beta + q
        if self.fit_intercept:
            if self.x_reference is None:
                self.x_reference = x
                self.level = self.alpha + self.beta * x
            h = x - self.x_reference
            p01 = self.p_cross
            p11 = self.p_level + q
            ph0 = p00 * h + p01
            ph1 = p01 * h + p11
            s = ph0 * h + ph1 + r
            k0 = ph0 / s
            k1 = ph1 / s
            error = y - self.beta * h - self.level
            self.beta += k0 * error
            self.level += k1 * error
            self.alpha = self.level - self.beta * self.x_reference
            # Joseph form with A = I - K H = [[1 - k0 h, -k0], [-k1 h, 1 - k1]], M = A P.
            a00 = 1.0 - k0 * h
            a10 = -k1 * h
            a11 = 1.0 - k1
            m00 = a00 * p00 - k0 * p01
            m01 = a00 * p01 - k0 * p11
            m10 = a10 * p00 + a11 * p01
            m11 = a10 * p01 + a11 * p11
            self.p_beta = m00 * a00 - m01 * k0 + r * k0 * k0
            self.p_cross = m00 * a10 + m01 * a11 + r * k0 * k1
            self.p_level = m10 * a10 + m11 * a11 + r * k1 * k1
        else:
            s = p00 * x * x + r
            k0 = p00 * x / s
            error = y - self.beta * x
            self.beta += k0 * error
            a00 = 1.0 - k0 * x
            self.p_beta = a00 * a00 * p00 + r * k0 * k0
        self.innovation_variance = s
        self.count += 1
        return error

    def to_state(self) -> dict[str, Any]:
        return {
            "delta": self.delta,
            "observation_variance": self.observation_variance,
            "fit_intercept": self.fit_intercept,
            "x_reference": self.x_reference,
            "beta": self.beta,
            "alpha": self.alpha,
            "p_beta": self.p_beta,
            "p_cross": self.p_cross,
            "p_level": self.p_level,
            "innovation_variance": self.innovation_variance,
            "count": self.count,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> KalmanHedge:
        kalman = cls(
            delta=state["delta"],
            observation_variance=state["observation_variance"],
            beta=state["beta"],
            alpha=state["alpha"],
            fit_intercept=state["fit_intercept"],
            x_reference=state["x_reference"],
        )
        kalman.p_beta = float(state["p_beta"])
        kalman.p_cross = float(state["p_cross"])
        kalman.p_level = float(state["p_level"])
        kalman.innovation_variance = float(state["innovation_variance"])
        kalman.count = int(state["count"])
        return kalman


def kalman_hedge_vec(
    x: ArrayLike,
    y: ArrayLike,
    delta: float = DEFAULT_KALMAN_DELTA,
    observation_variance: float = DEFAULT_KALMAN_OBSERVATION_VARIANCE,
    beta: float = 1.0,
    alpha: float = 0.0,
    initial_variance: float = 1.0,
    fit_intercept: bool = True,
    x_reference: float | None = None,
) -> dict[str, np.ndarray]:
    """The same filter in numpy matrix form (the textbook equations, written independently of
    :class:`KalmanHedge`'s scalar algebra), for research and to check it. A recursion: it loops
    over bars (no closed form), at numpy-on-small-matrices speed.

    Returns arrays beta, alpha (after each bar) and innovation (the spread before each bar).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if fit_intercept:
        reference = float(x[0]) if x_reference is None else float(x_reference)
        state = np.array([beta, alpha + beta * reference])
        design = np.column_stack([x - reference, np.ones_like(x)])
    else:
        reference = 0.0
        state = np.array([beta])
        design = x[:, None]
    dimension = state.size
    covariance = np.eye(dimension) * initial_variance
    process = np.eye(dimension) * (delta / (1.0 - delta))
    identity = np.eye(dimension)
    betas = np.empty_like(x)
    alphas = np.zeros_like(x)
    innovations = np.empty_like(x)
    for t in range(x.size):
        observation = design[t]
        covariance = covariance + process
        innovation = y[t] - observation @ state
        innovation_variance = observation @ covariance @ observation + observation_variance
        gain = covariance @ observation / innovation_variance
        state = state + gain * innovation
        a = identity - np.outer(gain, observation)
        covariance = a @ covariance @ a.T + np.outer(gain, gain) * observation_variance
        betas[t] = state[0]
        if fit_intercept:
            alphas[t] = state[1] - state[0] * reference
        innovations[t] = innovation
    return {"beta": betas, "alpha": alphas, "innovation": innovations}


# ---------------------------------------------------------------------------------------------
# Delta-neutral hedge


@dataclass(frozen=True, slots=True)
class DeltaNeutralHedge:
    """Hedge from the option deltas.

    Exposures to TLT (change in value per $1 move of TLT, per share):
        buy-write share: 1 - call_delta
        TLTW share:      h (1 - tltw_call_delta),  h = TLT shares held per TLTW share
    ``tltw_shares_per_buy_write_share`` = (1 - call_delta) / (h (1 - tltw_call_delta)) zeroes
    the pair's TLT delta. ``log_beta`` is the same hedge for the log spread: the elasticity of
    TLTW to TLT over that of the buy-write,
        log_beta = [h (1 - tltw_call_delta) S / tltw_price] / [(1 - call_delta) S / (S - C)].
    ``guarded`` is True (and both ratios None) when either exposure fraction 1 - delta is below
    the minimum: a deep in-the-money leg near expiry has almost no TLT exposure left, and the
    ratio would swing from a few shares to thousands on noise in its delta.
    """

    tltw_shares_per_buy_write_share: float | None
    log_beta: float | None
    buy_write_exposure: float
    tltw_exposure: float
    guarded: bool
    reason: str


def tltw_shares_of_tlt(tltw_price: float, tlt_price: float, tltw_call_price: float) -> float:
    """Estimate h, TLT shares per TLTW share, from NAV ~ h (S - C): h = tltw / (S - C)."""
    if not (tlt_price > tltw_call_price >= 0.0 and tltw_price > 0.0):
        raise ValueError(
            f"need tltw_price > 0 and tlt_price > tltw_call_price >= 0, got {tltw_price!r}, "
            f"{tlt_price!r}, {tltw_call_price!r}"
        )
    return tltw_price / (tlt_price - tltw_call_price)


def delta_neutral_hedge(
    tlt_price: float,
    call_delta: float,
    call_price: float,
    tltw_price: float,
    tltw_call_delta: float,
    tlt_shares_per_tltw_share: float,
    min_exposure_fraction: float = 0.05,
) -> DeltaNeutralHedge:
    """Delta-neutral hedge between one buy-write share and TLTW (see :class:`DeltaNeutralHedge`)."""
    for name, value in (
        ("tlt_price", tlt_price),
        ("tltw_price", tltw_price),
        ("tlt_shares_per_tltw_share", tlt_shares_per_tltw_share),
    ):
        if not (math.isfinite(value) and value > 0.0):
            raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    for name, value in (("call_delta", call_delta), ("tltw_call_delta", tltw_call_delta)):
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ValueError(f"{name} must be a call delta in [0, 1], got {value!r}")
    if not (math.isfinite(call_price) and 0.0 <= call_price < tlt_price):
        raise ValueError(f"call_price must be in [0, tlt_price), got {call_price!r}")
    buy_write_exposure = 1.0 - call_delta
    tltw_exposure = tlt_shares_per_tltw_share * (1.0 - tltw_call_delta)
    for name, fraction in (
        ("buy-write", buy_write_exposure),
        ("TLTW", 1.0 - tltw_call_delta),
    ):
        if fraction < min_exposure_fraction:
            return DeltaNeutralHedge(
                None,
                None,
                buy_write_exposure,
                tltw_exposure,
                True,
                f"{name} leg keeps {fraction:.4f} of its TLT exposure, below the minimum "
                f"{min_exposure_fraction}",
            )
    elasticity_tltw = tltw_exposure * tlt_price / tltw_price
    elasticity_buy_write = buy_write_exposure * tlt_price / (tlt_price - call_price)
    return DeltaNeutralHedge(
        buy_write_exposure / tltw_exposure,
        elasticity_tltw / elasticity_buy_write,
        buy_write_exposure,
        tltw_exposure,
        False,
        "",
    )


class DeltaNeutralHedger:
    """Incremental holder of the delta-neutral log beta for the spread.

    A delta-derived beta is a ratio of returns, not of levels, so when beta changes alpha is
    re-anchored to keep the spread continuous at the current bar:
    alpha_new = alpha_old - (beta_new - beta_old) x. The first bar sets alpha = y - beta x (the
    spread starts at 0; the z-score measures it against its own rolling mean). A guarded hedge
    keeps the last good beta (``stale`` is set).
    """

    __slots__ = ("alpha", "beta", "stale")

    def __init__(self, beta: float | None = None, alpha: float | None = None) -> None:
        self.beta = beta
        self.alpha = alpha
        self.stale = False

    def update(self, x: float, y: float, hedge: DeltaNeutralHedge) -> None:
        x = check_finite("x", x)
        y = check_finite("y", y)
        self.stale = hedge.guarded
        if hedge.guarded or hedge.log_beta is None:
            return
        if self.beta is None or self.alpha is None:
            self.beta = hedge.log_beta
            self.alpha = y - self.beta * x
            return
        self.alpha -= (hedge.log_beta - self.beta) * x
        self.beta = hedge.log_beta

    def to_state(self) -> dict[str, Any]:
        return {"beta": self.beta, "alpha": self.alpha, "stale": self.stale}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DeltaNeutralHedger:
        hedger = cls(state["beta"], state["alpha"])
        hedger.stale = bool(state["stale"])
        return hedger
