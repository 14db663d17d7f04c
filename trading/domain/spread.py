"""The spread, its rolling z-score, and the tracker that measures both with a hedge.

Notation: x = log(buy-write index), y = log(TLTW) (both total-return series), and

    spread = y - beta * x - alpha

with beta and alpha from an estimator of `trading.domain.hedge`. The spread on bar t uses the
hedge estimated through bar t-1 (the hedge never sees the value it is about to judge), then the
bar is added to the estimate. Its z-score on bar t is measured against the previous ``window``
spreads, never including its own value. The incremental objects are O(1) per update in plain
Python floats, serialise with :meth:`to_state` / :meth:`from_state` to a dict of JSON types,
and agree with their vectorized twins (``*_vec``) to 1e-9; rolling sums are kept centred
(Welford), with an exact re-sum once per window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from trading.domain.common import CountedDeque, check_finite
from trading.domain.hedge import DeltaNeutralHedge, DeltaNeutralHedger, KalmanHedge, RollingOls

__all__ = [
    "DEFAULT_ZSCORE_MIN_STD",
    "RollingZScore",
    "SpreadObservation",
    "SpreadTracker",
    "rolling_zscore_mean_vec",
    "rolling_zscore_vec",
    "spread",
    "zscore",
]


DEFAULT_ZSCORE_MIN_STD = 1e-4
"""Floor under the z-score denominator, 1 bp of log spread: a quiet spread does not turn a
fraction of a basis point into a large z."""


def spread(
    log_tltw: float | np.ndarray,
    log_index: float | np.ndarray,
    beta: float | np.ndarray,
    alpha: float | np.ndarray = 0.0,
) -> float | np.ndarray:
    """spread = log_tltw - beta * log_index - alpha (scalars or arrays)."""
    return log_tltw - beta * log_index - alpha


# ---------------------------------------------------------------------------------------------
# z-score


def zscore(value: float, window: ArrayLike, ddof: int = 1, min_std: float = 0.0) -> float:
    """z of ``value`` against the values of ``window`` (which does not contain it):
    (value - mean(window)) / max(std(window, ddof), min_std)."""
    window = np.asarray(window, dtype=np.float64)
    if window.size <= ddof:
        raise ValueError(f"window needs more than ddof={ddof} values, got {window.size}")
    std = max(float(window.std(ddof=ddof)), min_std)
    if std == 0.0:
        raise ValueError("window has zero standard deviation and min_std is 0")
    return (float(value) - float(window.mean())) / std


class RollingZScore:
    """z-score of each new value against the previous ``window`` values, O(1) per update.

        z_t = (v_t - mean(v_{t-w..t-1})) / max(std(v_{t-w..t-1}, ddof), min_std)

    The window excludes the value being judged, so a jump is not damped by itself. ``update``
    returns None until the window is full (and, with ``min_std`` 0, while the window is flat).
    ``last_mean`` / ``last_std`` are those used for the last z.
    """

    __slots__ = (
        "_buffer",
        "_m2",
        "_mean",
        "_since_resync",
        "ddof",
        "last_mean",
        "last_std",
        "min_std",
        "window",
    )

    def __init__(self, window: int, ddof: int = 1, min_std: float = DEFAULT_ZSCORE_MIN_STD) -> None:
        if window < 2 or not 0 <= ddof < window:
            raise ValueError(f"need window >= 2 and 0 <= ddof < window, got {window!r}, {ddof!r}")
        if not (math.isfinite(min_std) and min_std >= 0.0):
            raise ValueError(f"min_std must be finite and >= 0, got {min_std!r}")
        self.window = window
        self.ddof = ddof
        self.min_std = min_std
        self._buffer = CountedDeque()
        self._mean = 0.0
        self._m2 = 0.0
        self._since_resync = 0
        self.last_mean = math.nan
        self.last_std = math.nan

    @property
    def ready(self) -> bool:
        return len(self._buffer) == self.window

    def update(self, value: float) -> float | None:
        """z of ``value`` against the window, then ``value`` joins the window."""
        value = check_finite("value", value)
        buffer = self._buffer
        z = None
        if len(buffer) == self.window:
            variance = max(self._m2, 0.0) / (self.window - self.ddof)
            std = max(math.sqrt(variance), self.min_std)
            self.last_mean = self._mean
            self.last_std = std
            if std > 0.0:
                z = (value - self._mean) / std
            # Slide: drop the oldest (Welford removal), then add the new value below.
            old = buffer.popleft()
            count = len(buffer) + 1
            mean_after = self._mean - (old - self._mean) / (count - 1)
            self._m2 -= (old - mean_after) * (old - self._mean)
            self._mean = mean_after
        buffer.append(value)
        count = len(buffer)
        delta = value - self._mean
        self._mean += delta / count
        self._m2 += delta * (value - self._mean)
        self._since_resync += 1
        if self._since_resync >= self.window:
            # Exact two-pass re-sum once per window (see `trading.domain.hedge.RollingOls`).
            values = np.fromiter(buffer, np.float64, count)
            self._mean = float(values.mean())
            centred = values - self._mean
            self._m2 = float(centred @ centred)
            self._since_resync = 0
        return z

    @property
    def values(self) -> CountedDeque:
        """The window's values, oldest first (the previous ``window`` values, or fewer)."""
        return self._buffer

    def to_state(self, values: bool = True) -> dict[str, Any]:
        """The window and the centred sums; without ``values`` the window's values are left
        out (a writer that keeps them apart, see `CountedDeque`)."""
        return {
            "window": self.window,
            "ddof": self.ddof,
            "min_std": self.min_std,
            "values": list(self._buffer) if values else None,
            "mean": self._mean,
            "m2": self._m2,
            "since_resync": self._since_resync,
            "last_mean": self.last_mean,
            "last_std": self.last_std,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RollingZScore:
        rolling = cls(state["window"], state["ddof"], state["min_std"])
        rolling._buffer.extend(float(v) for v in state["values"])
        if len(rolling._buffer) > rolling.window:
            raise ValueError("state values longer than the window")
        rolling._mean = float(state["mean"])
        rolling._m2 = float(state["m2"])
        rolling._since_resync = int(state["since_resync"])
        rolling.last_mean = float(state["last_mean"])
        rolling.last_std = float(state["last_std"])
        return rolling


def rolling_zscore_vec(
    values: ArrayLike, window: int, ddof: int = 1, min_std: float = 0.0
) -> np.ndarray:
    """Vectorized :class:`RollingZScore` (pandas rolling mean and std of the previous window);
    NaN where the window is not full."""
    return rolling_zscore_mean_vec(values, window, ddof, min_std)[0]


def rolling_zscore_mean_vec(
    values: ArrayLike, window: int, ddof: int = 1, min_std: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(z, mean) of :func:`rolling_zscore_vec` in one pass: the z-score and the mean of the
    previous ``window`` values it is measured from; NaN where the window is not full."""
    import pandas as pd

    values = np.asarray(values, dtype=np.float64)
    # z is shift-invariant; centring first keeps pandas' online sums accurate.
    centre = values.mean()
    series = pd.Series(values - centre)
    rolling = series.rolling(window)
    mean = rolling.mean().shift(1)
    std = rolling.std(ddof=ddof).shift(1).clip(lower=min_std)
    return ((series - mean) / std).to_numpy(), mean.to_numpy() + centre


# ---------------------------------------------------------------------------------------------
# Spread tracker: hedge + spread + z-score in one update


@dataclass(frozen=True, slots=True)
class SpreadObservation:
    """One bar of the spread: hedge used, spread, its z and distance from the rolling mean."""

    beta: float
    alpha: float
    spread: float
    zscore: float | None
    mean: float
    std: float
    distance_bp: float


class SpreadTracker:
    """spread_t = y_t - beta_{t-1} x_t - alpha_{t-1}, its rolling z-score, then the hedge update.

    ``hedge`` is a :class:`RollingOls`, a :class:`KalmanHedge` or a :class:`DeltaNeutralHedger`
    (which needs the bar's :class:`DeltaNeutralHedge` passed to ``update``). ``update`` returns
    None until the hedge has an estimate (for the Kalman filter, which always has one, until it
    has seen ``warmup_updates`` bars); the observation's ``zscore`` is None until the z window
    is full. ``distance_bp`` = (spread - rolling mean) x 10,000 (log spread, so basis points of
    price).
    """

    __slots__ = ("hedge", "updates", "warmup_updates", "zscore")

    def __init__(
        self,
        hedge: RollingOls | KalmanHedge | DeltaNeutralHedger,
        zscore: RollingZScore,
        warmup_updates: int = 0,
        updates: int = 0,
    ) -> None:
        if warmup_updates < 0:
            raise ValueError(f"warmup_updates must be >= 0, got {warmup_updates!r}")
        self.hedge = hedge
        self.zscore = zscore
        self.warmup_updates = warmup_updates
        self.updates = updates

    def update(
        self, log_tltw: float, log_index: float, delta_hedge: DeltaNeutralHedge | None = None
    ) -> SpreadObservation | None:
        hedge = self.hedge
        if isinstance(hedge, DeltaNeutralHedger) and delta_hedge is None:
            raise ValueError("delta_hedge is required with a DeltaNeutralHedger")
        beta = hedge.beta
        alpha = hedge.alpha
        observation = None
        if beta is not None and alpha is not None and self.updates >= self.warmup_updates:
            value = log_tltw - beta * log_index - alpha
            z = self.zscore.update(value)
            mean = self.zscore.last_mean
            observation = SpreadObservation(
                beta, alpha, value, z, mean, self.zscore.last_std, (value - mean) * 1e4
            )
        if isinstance(hedge, DeltaNeutralHedger):
            assert delta_hedge is not None  # refused on entry
            hedge.update(log_index, log_tltw, delta_hedge)
        else:
            hedge.update(log_index, log_tltw)
        self.updates += 1
        return observation

    def to_state(self) -> dict[str, Any]:
        kinds = {KalmanHedge: "kalman", RollingOls: "ols", DeltaNeutralHedger: "delta"}
        return {
            "hedge_kind": kinds[type(self.hedge)],
            "hedge": self.hedge.to_state(),
            "zscore": self.zscore.to_state(),
            "warmup_updates": self.warmup_updates,
            "updates": self.updates,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SpreadTracker:
        kind = state["hedge_kind"]
        hedge: RollingOls | KalmanHedge | DeltaNeutralHedger
        if kind == "kalman":
            hedge = KalmanHedge.from_state(state["hedge"])
        elif kind == "ols":
            hedge = RollingOls.from_state(state["hedge"])
        elif kind == "delta":
            hedge = DeltaNeutralHedger.from_state(state["hedge"])
        else:
            raise ValueError(f"hedge_kind must be 'kalman', 'ols' or 'delta', got {kind!r}")
        return cls(
            hedge,
            RollingZScore.from_state(state["zscore"]),
            int(state["warmup_updates"]),
            int(state["updates"]),
        )
