"""The edge gate: is the spread worth trading on the horizon of one trade? Pure.

Measured on the spread itself (the series the z-score is taken of), sampled every
``sample_bars`` bars: a minute's change of the spread is mostly quote noise (TLTW's one-cent
tick is 4 bp), which makes any fit on one-minute changes find a reversion of a bar or two that
no trade can capture. On the samples s_0 .. s_n (n + 1 of them, ``sample_bars`` bars apart):

* half-life: the AR(1) fit s_t = c + phi s_{t-1} + e (least squares), half-life = ln 2 / -ln phi
  samples, with the interval of phi +/- z se(phi) (z the normal quantile of ``confidence``,
  two-sided; se the OLS standard error). The spread is shown to revert on the horizon when the
  interval's upper half-life (phi's upper bound) is at most the horizon; a bound at or above
  phi = 1 is no bound (infinite).
* ADF: the augmented Dickey-Fuller test of a unit root (constant, ``adf_lags`` lagged
  differences; MacKinnon's p-value, statsmodels): p-value at most ``max_adf_p_value``.
* variance ratio at the horizon, VR(q) = Var(s_t - s_{t-q}) / (q Var(s_t - s_{t-1})) with q the
  horizon in samples (overlapping differences, no bias correction): about 1 for a random walk,
  below 1 for a reverting spread (reported, not a test: quote noise also pulls it below 1).
* drift: the least-squares slope of the samples on time, in bp per month (21 sessions of
  ``bars_per_session`` bars). Beyond ``max_drift_bp_month`` the spread is trending: no entry
  against the drift (a long spread bets on a rise, so it is refused while the spread drifts
  down; a short spread while it drifts up).
* expected profit of an entry at ``distance`` = spread - its rolling mean (log units):
  |distance| x (1 - 2^(-horizon / half-life)), what an OU process with that half-life is
  expected to give back over the horizon (the issue's 1 - exp(-horizon / half-life) with the
  half-life's own decay rate, ln 2 / half-life). It must reach ``cost_margin`` x the measured
  round-trip cost (`trading.domain.costs`), both in bp of the TLTW leg's notional (the pair's
  P&L is that notional x the change of the log spread, to first order).

Verdict: ``DRIFTING`` when the drift bound is passed, else ``NO_EDGE`` when the half-life bound
or the ADF test fails (or too few samples), else ``EDGE``. An entry passes when the verdict is
EDGE, or DRIFTING with the entry on the drift's side and the reversion tests passed, and its
expected profit beats the cost; a refusal names each test that failed, with its numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike

from trading.domain.common import is_finite_number

__all__ = [
    "EdgeCheck",
    "EdgeDiagnostics",
    "EdgeLimits",
    "EdgeVerdict",
    "check_entry",
    "measure_edge",
    "sample_spread",
]

SESSIONS_PER_MONTH = 21.0


class EdgeVerdict(StrEnum):
    EDGE = "edge"
    NO_EDGE = "no edge"
    DRIFTING = "drifting"


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """Thresholds of the tests (see the module docstring); times in bars of the strategy."""

    sample_bars: int
    horizon_bars: float
    bars_per_session: float
    confidence: float = 0.95
    max_adf_p_value: float = 0.05
    max_drift_bp_month: float = 15.0
    cost_margin: float = 2.0
    adf_lags: int = 1
    min_samples: int = 20

    def __post_init__(self) -> None:
        if not (isinstance(self.sample_bars, int) and self.sample_bars >= 1):
            raise ValueError(f"sample_bars must be an int >= 1, got {self.sample_bars!r}")
        for name in ("horizon_bars", "bars_per_session"):
            value = getattr(self, name)
            if not (is_finite_number(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0, got {value!r}")
        for name in ("confidence", "max_adf_p_value"):
            value = getattr(self, name)
            if not (is_finite_number(value) and 0 < value < 1):
                raise ValueError(f"{name} must be in (0, 1), got {value!r}")
        for name in ("max_drift_bp_month", "cost_margin"):
            value = getattr(self, name)
            if not (is_finite_number(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        if not (isinstance(self.adf_lags, int) and self.adf_lags >= 0):
            raise ValueError(f"adf_lags must be an int >= 0, got {self.adf_lags!r}")
        if not (isinstance(self.min_samples, int) and self.min_samples >= 10):
            raise ValueError(f"min_samples must be an int >= 10, got {self.min_samples!r}")

    @property
    def horizon_samples(self) -> float:
        return self.horizon_bars / self.sample_bars


@dataclass(frozen=True, slots=True)
class EdgeDiagnostics:
    """The tests' figures on one window of the spread (bars of the strategy; NaN when not
    measurable) and the verdict, with each failed test named in ``failures``."""

    samples: int
    half_life_bars: float
    half_life_low_bars: float
    half_life_high_bars: float
    adf_statistic: float
    adf_p_value: float
    variance_ratio: float
    drift_bp_month: float
    spread_std_bp: float
    verdict: EdgeVerdict
    failures: tuple[str, ...]
    horizon_bars: float

    @property
    def reverts(self) -> bool:
        """The reversion tests (half-life bound and ADF) passed."""
        return not any(f.startswith(("half-life", "adf", "samples")) for f in self.failures)

    def reversion_fraction(self) -> float:
        """1 - 2^(-horizon / half-life): the share of a deviation expected back in the horizon."""
        if not (math.isfinite(self.half_life_bars) and self.half_life_bars > 0):
            return 0.0
        return -math.expm1(-math.log(2.0) * self.horizon_bars / self.half_life_bars)

    def as_dict(self) -> dict[str, float | int | str | list[str]]:
        return {
            "samples": self.samples,
            "half_life_bars": self.half_life_bars,
            "half_life_low_bars": self.half_life_low_bars,
            "half_life_high_bars": self.half_life_high_bars,
            "adf_statistic": self.adf_statistic,
            "adf_p_value": self.adf_p_value,
            "variance_ratio": self.variance_ratio,
            "drift_bp_month": self.drift_bp_month,
            "spread_std_bp": self.spread_std_bp,
            "verdict": self.verdict.value,
            "failures": list(self.failures),
            "horizon_bars": self.horizon_bars,
        }


@dataclass(frozen=True, slots=True)
class EdgeCheck:
    """One entry's answer: passed, the expected profit and the cost (bp of the TLTW leg), and
    why it failed (empty when it passed)."""

    passed: bool
    expected_profit_bp: float
    cost_bp: float
    reason: str


def sample_spread(spreads: ArrayLike, sample_bars: int) -> np.ndarray:
    """Every ``sample_bars``-th value, ending at the newest (oldest first)."""
    values = np.asarray(spreads, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"spreads must be 1-d, got shape {values.shape}")
    return values[::-1][::sample_bars][::-1].copy()


def _half_life(phi: float) -> float:
    """ln 2 / -ln phi for phi in (0, 1); infinite at or above 1, 0 at or below 0."""
    if phi >= 1.0:
        return math.inf
    if phi <= 0.0:
        return 0.0
    return math.log(2.0) / -math.log(phi)


def _variance_ratio(samples: np.ndarray, q: int) -> float:
    if q < 2 or samples.size <= q + 1:
        return math.nan
    one = np.diff(samples)
    var_one = float(np.var(one, ddof=1))
    if var_one <= 0:
        return math.nan
    many = samples[q:] - samples[:-q]
    return float(np.mean(many**2) - np.mean(many) ** 2) / (q * var_one)


def _adf(samples: np.ndarray, lags: int) -> tuple[float, float]:
    from statsmodels.tsa.stattools import adfuller

    statistic, p_value, *_ = adfuller(
        samples, maxlag=lags, regression="c", autolag=None, result_object=False
    )
    return float(statistic), float(p_value)


def measure_edge(spreads: ArrayLike, limits: EdgeLimits) -> EdgeDiagnostics:
    """The tests of the module docstring on a window of the spread (one value per bar, oldest
    first, log units). Raises ValueError naming a non-finite value."""
    samples = sample_spread(spreads, limits.sample_bars)
    finite = np.isfinite(samples)
    if not finite.all():
        index = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"spreads must be finite, got {samples[index]!r} at sample {index}")
    step = limits.sample_bars
    n = samples.size
    nan = math.nan
    std_bp = float(np.std(samples, ddof=1)) * 1e4 if n > 1 else nan
    if n < limits.min_samples:
        return EdgeDiagnostics(
            n, nan, nan, nan, nan, nan, nan, nan, std_bp, EdgeVerdict.NO_EDGE,
            (f"samples: {n} < {limits.min_samples} (one every {step} bars)",),
            limits.horizon_bars,
        )  # fmt: skip
    failures: list[str] = []
    x, y = samples[:-1], samples[1:]
    dx = x - x.mean()
    sxx = float(dx @ dx)
    if sxx <= 0:
        phi = se = nan
    else:
        phi = float(dx @ (y - y.mean())) / sxx
        residual = y - (y.mean() - phi * x.mean()) - phi * x
        se = math.sqrt(float(residual @ residual) / max(x.size - 2, 1) / sxx)
    z = NormalDist().inv_cdf(0.5 + limits.confidence / 2.0)
    if math.isfinite(phi):
        half_life = _half_life(phi) * step
        low = _half_life(phi - z * se) * step
        high = _half_life(phi + z * se) * step
    else:
        half_life = low = high = nan
    if not (math.isfinite(high) and high <= limits.horizon_bars):
        failures.append(
            f"half-life: {half_life:.0f} bars, {limits.confidence:.0%} interval "
            f"[{low:.0f}, {high:.0f}], upper bound not inside the horizon of "
            f"{limits.horizon_bars:.0f} bars"
        )
    try:
        adf_statistic, adf_p = _adf(samples, limits.adf_lags)
    except (ValueError, np.linalg.LinAlgError) as exc:
        adf_statistic = adf_p = nan
        failures.append(f"adf: not computable ({exc})")
    else:
        if not adf_p <= limits.max_adf_p_value:
            failures.append(
                f"adf: p-value {adf_p:.3f} > {limits.max_adf_p_value} (statistic "
                f"{adf_statistic:.2f}): a unit root is not rejected"
            )
    t = np.arange(n, dtype=np.float64) * step
    dt = t - t.mean()
    slope = float(dt @ (samples - samples.mean())) / float(dt @ dt)
    drift = slope * limits.bars_per_session * SESSIONS_PER_MONTH * 1e4
    q = max(round(limits.horizon_samples), 2)
    ratio = _variance_ratio(samples, q)
    drifting = abs(drift) > limits.max_drift_bp_month
    if drifting:
        failures.append(
            f"drift: {drift:+.1f} bp/month beyond +/-{limits.max_drift_bp_month:g}: trending"
        )
        verdict = EdgeVerdict.DRIFTING
    elif failures:
        verdict = EdgeVerdict.NO_EDGE
    else:
        verdict = EdgeVerdict.EDGE
    return EdgeDiagnostics(
        n, half_life, low, high, adf_statistic, adf_p, ratio, drift, std_bp, verdict,
        tuple(failures), limits.horizon_bars,
    )  # fmt: skip


def check_entry(
    diagnostics: EdgeDiagnostics | None,
    distance: float,
    long_spread: bool,
    cost_bp: float,
    limits: EdgeLimits,
) -> EdgeCheck:
    """Whether an entry at ``distance`` (spread - rolling mean, log units; a long spread is
    entered below the mean) passes the gate (module docstring), with the reason when not."""
    if diagnostics is None:
        return EdgeCheck(False, math.nan, cost_bp, "edge: not measured yet")
    reasons = [f for f in diagnostics.failures if not f.startswith("drift")]
    drift = diagnostics.drift_bp_month
    if diagnostics.verdict is EdgeVerdict.DRIFTING and (drift < 0) == long_spread:
        reasons.append(
            f"drift: {drift:+.1f} bp/month against a {'long' if long_spread else 'short'} "
            f"spread (bound {limits.max_drift_bp_month:g})"
        )
    expected = abs(distance) * diagnostics.reversion_fraction() * 1e4
    if not (math.isfinite(cost_bp) and cost_bp >= 0):
        reasons.append(f"cost: the round trip's cost is {cost_bp!r} bp")
    elif not expected >= limits.cost_margin * cost_bp:
        reasons.append(
            f"profit: expected {expected:.1f} bp (|distance| {abs(distance) * 1e4:.1f} bp x "
            f"{diagnostics.reversion_fraction():.2f} back in {limits.horizon_bars:.0f} bars) < "
            f"{limits.cost_margin:g} x cost {cost_bp:.1f} bp"
        )
    if reasons:
        return EdgeCheck(False, expected, cost_bp, "edge: " + "; ".join(reasons))
    return EdgeCheck(True, expected, cost_bp, "")
