"""Hedge ratio (OLS, Kalman, delta-neutral: trading.domain.hedge), spread and rolling z-score
(trading.domain.spread)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading.domain.hedge import (
    DeltaNeutralHedger,
    KalmanHedge,
    RollingOls,
    delta_neutral_hedge,
    kalman_hedge_vec,
    ols_hedge_ratio,
    rolling_ols_vec,
    tltw_shares_of_tlt,
)
from trading.domain.spread import RollingZScore, SpreadTracker, rolling_zscore_vec, zscore


def log_price_pair(bars: int, seed: int = 1):
    """Log prices near 4.5 (TLT ~ 90) with a small mean-reverting premium spread."""
    rng = np.random.default_rng(seed)
    x = 4.5 + np.cumsum(rng.normal(0, 1e-4, bars))
    premium = np.zeros(bars)
    for t in range(1, bars):
        premium[t] = 0.995 * premium[t - 1] + rng.normal(0, 2e-5)
    y = 0.98 * x + 0.05 + premium + rng.normal(0, 5e-5, bars)
    return x, y


def test_ols_known_answer():
    x = np.arange(1.0, 6.0)
    y = 2 * x + 1 + np.array([0.1, -0.1, 0.0, 0.1, -0.1])
    beta, alpha = ols_hedge_ratio(x, y)
    assert beta == pytest.approx(1.98, abs=1e-12)
    assert alpha == pytest.approx(1.06, abs=1e-12)


def test_zscore_known_answer_with_ddof_one():
    assert zscore(6.0, [1, 2, 3, 4, 5], ddof=1) == pytest.approx(1.8974, abs=1e-4)
    assert zscore(6.0, [1, 2, 3, 4, 5], ddof=1) == pytest.approx(3 / math.sqrt(2.5), rel=1e-12)


def test_rolling_zscore_judges_a_value_against_the_previous_window():
    rolling = RollingZScore(window=5, ddof=1, min_std=0.0)
    assert [rolling.update(v) for v in [1, 2, 3, 4, 5]] == [None] * 5
    assert rolling.update(6.0) == pytest.approx(1.8974, abs=1e-4)
    assert rolling.last_mean == 3.0


def test_kalman_one_step_known_answer():
    kalman = KalmanHedge(
        delta=1e-4, observation_variance=1e-3, beta=1.0, initial_variance=1.0, fit_intercept=False
    )
    kalman.update(x=1.0, y=1.5)
    assert kalman.beta == pytest.approx(1.499501, abs=1e-6)
    assert kalman.p_beta == pytest.approx(9.990e-4, abs=1e-7)


def test_incremental_ols_equals_exact_numpy_and_pandas_within_1e_9():
    x, y = log_price_pair(6000)
    window = 500
    ols = RollingOls(window)
    betas, alphas = [], []
    for xi, yi in zip(x, y, strict=True):
        ols.update(xi, yi)
        betas.append(math.nan if ols.beta is None else ols.beta)
        alphas.append(math.nan if ols.alpha is None else ols.alpha)
    pandas_beta, pandas_alpha = rolling_ols_vec(x, y, window)
    np.testing.assert_allclose(betas, pandas_beta, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(alphas, pandas_alpha, atol=1e-9, equal_nan=True)
    for end in (window, 3000, 6000):
        beta, alpha = ols_hedge_ratio(x[end - window : end], y[end - window : end])
        assert betas[end - 1] == pytest.approx(beta, abs=1e-9)
        assert alphas[end - 1] == pytest.approx(alpha, abs=1e-9)


def test_incremental_zscore_equals_pandas_within_1e_9():
    _, y = log_price_pair(5000, seed=2)
    rolling = RollingZScore(window=300, ddof=1, min_std=0.0)
    incremental = [rolling.update(v) for v in y]
    incremental = np.array([math.nan if z is None else z for z in incremental])
    series = pd.Series(y)
    expected = (series - series.rolling(300).mean().shift(1)) / series.rolling(300).std(
        ddof=1
    ).shift(1)
    np.testing.assert_allclose(incremental, expected.to_numpy(), atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(incremental, rolling_zscore_vec(y, 300), atol=1e-9, equal_nan=True)


def test_long_run_stays_exact_where_raw_sums_drift():
    # 300,000 bars of log prices near 4.5: centred updates (and the periodic re-sum) stay at
    # 1e-12 of the exact window statistics.
    rng = np.random.default_rng(11)
    bars = 300_000
    y = 4.5 + np.cumsum(rng.normal(0, 1e-4, bars))
    rolling = RollingZScore(window=1000, ddof=1, min_std=0.0)
    for value in y[:-1]:
        rolling.update(value)
    rolling.update(y[-1])
    window = y[-1001:-1]
    assert rolling.last_mean == pytest.approx(window.mean(), abs=1e-12)
    assert rolling.last_std == pytest.approx(window.std(ddof=1), rel=1e-9)


def test_kalman_scalar_filter_equals_the_matrix_form():
    x, y = log_price_pair(3000, seed=3)
    kalman = KalmanHedge(delta=1e-10, observation_variance=1e-8)
    betas, alphas, innovations = [], [], []
    for xi, yi in zip(x, y, strict=True):
        innovations.append(kalman.update(xi, yi))
        betas.append(kalman.beta)
        alphas.append(kalman.alpha)
    matrix = kalman_hedge_vec(x, y, delta=1e-10, observation_variance=1e-8)
    np.testing.assert_allclose(betas, matrix["beta"], atol=1e-9)
    np.testing.assert_allclose(alphas, matrix["alpha"], atol=1e-9)
    np.testing.assert_allclose(innovations, matrix["innovation"], atol=1e-12)


def test_kalman_with_textbook_noise_absorbs_the_spread_and_safe_default_does_not():
    # A premium step of 30 bp held for 2,000 bars. With delta 1e-4 / R 1e-3 the filter's
    # prediction error has forgotten the step ten bars later: the hedge ate the premium.
    x, y = log_price_pair(6000, seed=4)
    y = y.copy()
    y[4000:] += 0.003
    textbook = KalmanHedge(delta=1e-4, observation_variance=1e-3)
    safe = KalmanHedge()
    textbook_errors = [textbook.update(a, b) for a, b in zip(x, y, strict=True)]
    safe_errors = [safe.update(a, b) for a, b in zip(x, y, strict=True)]
    assert abs(textbook_errors[4010]) < 0.0005
    assert safe_errors[4010] > 0.0025


def test_state_round_trip_through_json_resumes_identically():
    x, y = log_price_pair(1200, seed=5)
    tracker = SpreadTracker(RollingOls(200), RollingZScore(100), warmup_updates=0)
    kalman_tracker = SpreadTracker(KalmanHedge(), RollingZScore(100), warmup_updates=50)
    for xi, yi in zip(x[:1000], y[:1000], strict=True):
        tracker.update(yi, xi)
        kalman_tracker.update(yi, xi)
    restored = SpreadTracker.from_state(json.loads(json.dumps(tracker.to_state())))
    restored_kalman = SpreadTracker.from_state(json.loads(json.dumps(kalman_tracker.to_state())))
    for xi, yi in zip(x[1000:], y[1000:], strict=True):
        assert restored.update(yi, xi) == tracker.update(yi, xi)
        assert restored_kalman.update(yi, xi) == kalman_tracker.update(yi, xi)


def test_spread_uses_the_hedge_from_before_the_bar():
    tracker = SpreadTracker(RollingOls(3), RollingZScore(2, min_std=0.0))
    assert tracker.update(3.0, 1.0) is None
    assert tracker.update(5.0, 2.0) is None
    assert tracker.update(7.0, 3.0) is None  # y = 2x + 1 fitted after this bar
    observation = tracker.update(9.5, 4.0)
    assert observation.beta == pytest.approx(2.0)
    assert observation.alpha == pytest.approx(1.0)
    assert observation.spread == pytest.approx(0.5)  # 9.5 - 2 * 4 - 1
    assert observation.zscore is None


def test_delta_neutral_hedge_from_option_deltas():
    # Buy-write: ATM call delta 0.52, so 0.48 of a share of TLT exposure. TLTW holds 0.3 TLT per
    # share short calls of delta 0.30: 0.21 TLT per TLTW share.
    hedge = delta_neutral_hedge(
        tlt_price=90.0,
        call_delta=0.52,
        call_price=1.6,
        tltw_price=26.0,
        tltw_call_delta=0.30,
        tlt_shares_per_tltw_share=0.3,
    )
    assert not hedge.guarded
    assert hedge.tltw_shares_per_buy_write_share == pytest.approx(0.48 / 0.21)
    elasticity_tltw = 0.21 * 90 / 26
    elasticity_buy_write = 0.48 * 90 / 88.4
    assert hedge.log_beta == pytest.approx(elasticity_tltw / elasticity_buy_write)
    assert tltw_shares_of_tlt(26.0, 90.0, 0.6) == pytest.approx(26 / 89.4)


def test_delta_neutral_hedge_is_guarded_when_a_leg_has_no_exposure_left():
    # Deep in the money near expiry: call delta 0.99 leaves 1% of a share.
    hedge = delta_neutral_hedge(90.0, 0.99, 9.9, 26.0, 0.30, 0.3)
    assert hedge.guarded and hedge.tltw_shares_per_buy_write_share is None
    hedger = DeltaNeutralHedger()
    hedger.update(4.5, 3.26, delta_neutral_hedge(90.0, 0.52, 1.6, 26.0, 0.30, 0.3))
    beta = hedger.beta
    hedger.update(4.51, 3.27, hedge)
    assert hedger.stale and hedger.beta == beta
    with pytest.raises(ValueError, match="call_delta"):
        delta_neutral_hedge(90.0, 1.2, 1.6, 26.0, 0.3, 0.3)


def test_delta_neutral_hedger_keeps_the_spread_continuous_when_beta_changes():
    hedger = DeltaNeutralHedger()
    first = delta_neutral_hedge(90.0, 0.52, 1.6, 26.0, 0.30, 0.3)
    hedger.update(4.5, 3.26, first)
    assert 3.26 - hedger.beta * 4.5 - hedger.alpha == pytest.approx(0.0)
    second = delta_neutral_hedge(91.0, 0.60, 2.0, 26.2, 0.35, 0.3)
    spread_before = 3.27 - hedger.beta * 4.51 - hedger.alpha
    hedger.update(4.51, 3.27, second)
    assert hedger.beta == pytest.approx(second.log_beta)
    assert 3.27 - hedger.beta * 4.51 - hedger.alpha == pytest.approx(spread_before, abs=1e-12)


def test_nan_inputs_raise_value_error():
    with pytest.raises(ValueError, match="x"):
        RollingOls(10).update(math.nan, 1.0)
    with pytest.raises(ValueError, match="value"):
        RollingZScore(10).update(math.inf)
    with pytest.raises(ValueError, match="y"):
        KalmanHedge().update(4.5, math.nan)


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(st.integers(-1000, 1000), min_size=12, max_size=40),
    scale=st.floats(1e-3, 1e3),
    shift=st.floats(-100, 100),
)
def test_zscore_is_unchanged_by_an_affine_map_of_the_spread(values, scale, shift):
    window = 10
    original = RollingZScore(window, min_std=0.0)
    mapped = RollingZScore(window, min_std=0.0)
    for value in (v / 1000 for v in values):
        z = original.update(value)
        z_mapped = mapped.update(scale * value + shift)
        if not original.last_std >= 1e-3:  # NaN while the window fills
            continue  # a (nearly) flat window: z is undefined or ill-conditioned
        assert z is not None and z_mapped is not None
        assert z_mapped == pytest.approx(z, rel=1e-6, abs=1e-6)


def test_tracker_with_delta_neutral_hedger_keeps_the_spread_continuous_across_a_beta_change():
    tracker = SpreadTracker(DeltaNeutralHedger(), RollingZScore(2, min_std=0.0))
    first = delta_neutral_hedge(90.0, 0.52, 1.6, 26.0, 0.30, 0.3)
    second = delta_neutral_hedge(91.0, 0.60, 2.0, 26.2, 0.35, 0.3)
    assert tracker.update(3.26, 4.5, first) is None  # the first bar anchors alpha
    observation = tracker.update(3.265, 4.505, second)
    assert observation.beta == pytest.approx(first.log_beta)
    spread_now = observation.spread
    # The re-anchored hedge prices the same bar to the same spread.
    assert 3.265 - tracker.hedge.beta * 4.505 - tracker.hedge.alpha == pytest.approx(spread_now)
    tracker.update(3.268, 4.507, second)
    tracker.update(3.266, 4.506, second)  # the z window of 2 is now full
    restored = SpreadTracker.from_state(json.loads(json.dumps(tracker.to_state())))
    assert restored.update(3.27, 4.51, second) == tracker.update(3.27, 4.51, second)
    with pytest.raises(ValueError, match="delta_hedge"):
        tracker.update(3.27, 4.51)
