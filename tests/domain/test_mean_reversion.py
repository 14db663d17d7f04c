"""AR(1) / Ornstein-Uhlenbeck fit, half-life and Engle-Granger cointegration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.tsa.ar_model import AutoReg

from trading.domain.mean_reversion import (
    engle_granger,
    fit_ar1,
    fit_ornstein_uhlenbeck,
    half_life,
)


def ornstein_uhlenbeck_path(bars: int, phi: float, mean: float, noise: float, seed: int):
    rng = np.random.default_rng(seed)
    values = np.empty(bars)
    values[0] = mean
    for t in range(1, bars):
        values[t] = mean + phi * (values[t - 1] - mean) + rng.normal(0, noise)
    return values


def test_half_life_known_answer_for_geometric_decay():
    series = 10 * 0.9 ** np.arange(50)
    result = half_life(series)
    assert result.reversion_rate == pytest.approx(-0.1, abs=1e-12)
    assert result.half_life == pytest.approx(6.9315, abs=1e-4)
    assert result.mean_reverting


def test_half_life_of_a_trending_series_is_infinite_not_nan():
    result = half_life(1.01 ** np.arange(50))
    assert not result.mean_reverting
    assert result.half_life == math.inf


def test_ar1_fit_equals_statsmodels_autoreg():
    series = ornstein_uhlenbeck_path(2000, 0.97, 0.002, 1e-4, seed=1)
    fit = fit_ar1(series)
    reference = AutoReg(series, lags=1, trend="c").fit()
    assert fit.intercept == pytest.approx(reference.params[0], rel=1e-9)
    assert fit.phi == pytest.approx(reference.params[1], rel=1e-12)


def test_ou_fit_recovers_the_simulated_parameters():
    phi, mean, noise = 0.98, 0.002, 1e-4
    series = ornstein_uhlenbeck_path(50_000, phi, mean, noise, seed=2)
    fit = fit_ornstein_uhlenbeck(series, dt=1.0)
    theta = -math.log(phi)
    assert fit.theta == pytest.approx(theta, rel=0.1)
    assert fit.mu == pytest.approx(mean, abs=2e-4)
    assert fit.half_life == pytest.approx(math.log(2) / theta, rel=0.1)
    assert fit.stationary_std == pytest.approx(noise / math.sqrt(1 - phi**2), rel=0.05)
    # Exact discretisation: one step's conditional variance is the residual variance.
    assert fit.change_variance(1.0) == pytest.approx(noise**2, rel=0.05)
    assert fit.expected_change(fit.mu + 0.001, fit.half_life) == pytest.approx(-0.0005, rel=1e-9)


def test_ou_fit_rejects_a_random_walk():
    series = np.cumsum(np.ones(100))
    with pytest.raises(ValueError, match="phi"):
        fit_ornstein_uhlenbeck(series)


def test_bad_series_raise_value_error_naming_the_index():
    with pytest.raises(ValueError, match="index 3"):
        half_life([1.0, 2.0, 1.5, math.nan, 1.0])
    with pytest.raises(ValueError, match="dt"):
        fit_ornstein_uhlenbeck([1.0, 2.0, 1.5, 1.2], dt=0.0)


def test_engle_granger_accepts_a_cointegrated_pair_and_rejects_independent_walks():
    rng = np.random.default_rng(3)
    x = np.cumsum(rng.normal(0, 1, 1000))
    residual = ornstein_uhlenbeck_path(1000, 0.8, 0.0, 1.0, seed=4)
    y = 0.9 * x + 2.0 + residual
    cointegrated = engle_granger(y, x)
    assert cointegrated.cointegrated(0.05)
    assert cointegrated.beta == pytest.approx(0.9, abs=0.02)
    independent = engle_granger(np.cumsum(rng.normal(0, 1, 1000)), x)
    assert not independent.cointegrated(0.05)
