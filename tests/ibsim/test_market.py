"""The market model without a socket: statistics, TLTW's index rules, determinism, bars."""

from __future__ import annotations

import math
from datetime import date, datetime

import numpy as np
import pytest
import statsmodels.api as sm

from trading.domain import black_scholes as bs
from trading.ibsim import ET, MarketModel, SimConfig
from trading.ibsim.history import bar_frame, bars, current_bar
from trading.ibsim.instruments import TLT, occ_symbol, option_con_id, third_friday

START = datetime(2026, 11, 2, 9, 30, tzinfo=ET)


@pytest.fixture(scope="module")
def model() -> MarketModel:
    return MarketModel(SimConfig(seed=3, start=START, history_days=520))


@pytest.fixture(scope="module")
def year(model: MarketModel):
    """A year of hourly bars ending the day before the start."""
    return bar_frame(model, date(2025, 10, 1), date(2026, 10, 30), bar="1 hour")


def test_start_is_anchored_at_the_configured_prices(model):
    truth = model.truth(model.calendar.anchor_tau)
    assert truth.time == START
    assert truth.tlt_mid == pytest.approx(90.0)
    assert truth.tltw_nav == pytest.approx(24.0)
    assert truth.tltw_price == pytest.approx(24.0 * (1 + truth.tltw_premium))


def test_tlt_realized_volatility_is_about_15_percent(year):
    daily = year.groupby(year.index.date)["tlt_close"].last()
    returns = np.diff(np.log(daily.to_numpy()))
    # ~270 daily returns: the standard error of the volatility estimate is ~0.15/sqrt(540).
    assert returns.std(ddof=1) * math.sqrt(252) == pytest.approx(0.15, abs=0.025)


def test_premium_is_ou_with_20bp_scale_and_one_day_half_life(year):
    premium = year.groupby(year.index.date)["tltw_premium"].last().to_numpy()
    assert premium.std(ddof=1) == pytest.approx(0.0020, abs=0.0004)
    # AR(1) of daily closes: coefficient exp(-ln 2 / 1 day) = 0.5.
    fit = sm.OLS(premium[1:], sm.add_constant(premium[:-1])).fit()
    assert fit.params[1] == pytest.approx(0.5, abs=0.12)


def test_price_is_nav_times_one_plus_premium(year):
    implied = year["tltw_nav"] * (1 + year["tltw_premium"])
    np.testing.assert_allclose(year["tltw_close"], implied, rtol=1e-12)


def test_minute_bars_open_close_and_bound_their_minute_of_the_one_second_grid(model):
    day = date(2026, 10, 29)
    frame = bar_frame(model, day, day, bar="1 min")
    session = model.calendar.index_of(day)
    tlt = np.exp(model.tlt_log_path(session))
    tltw = model.tltw_nav_seconds(session) * (1.0 + model.premium_seconds(session))
    assert len(frame) == 390
    for i in (0, 1, 217, 389):
        row = frame.iloc[i]
        for name, seconds in (("tlt", tlt), ("tltw", tltw)):
            window = seconds[60 * i : 60 * (i + 1) + 1]
            bar = [row[f"{name}_{field}"] for field in ("open", "high", "low", "close")]
            assert bar == [window[0], window.max(), window.min(), window[-1]]


def test_zero_premium_scale_turns_the_premium_off():
    quiet = MarketModel(SimConfig(seed=3, premium_bp=0.0, history_days=30))
    frame = bar_frame(quiet, date(2026, 10, 26), date(2026, 10, 30), bar="30 mins")
    assert (frame["tltw_premium"] == 0).all()
    np.testing.assert_allclose(frame["tltw_close"], frame["tltw_nav"])


def test_index_rolls_at_the_wednesday_close_to_the_next_monthly_near_102_percent(model, year):
    # October 2026: third Friday the 16th, so the roll is Wednesday the 14th at the close.
    assert third_friday(2026, 10) == date(2026, 10, 16)
    before = year.loc[year.index.date == date(2026, 10, 14)]
    after = year.loc[year.index.date == date(2026, 10, 15)]
    assert set(before["index_call_expiry"]) == {date(2026, 10, 16)}
    assert set(after["index_call_expiry"]) == {date(2026, 11, 20)}
    close_spot = float(before["tlt_close"].iloc[-1])
    assert after["index_call_strike"].iloc[0] == round(1.02 * close_spot)


def test_distribution_goes_ex_on_the_first_session_of_the_month(model, year):
    session = model.calendar.index_of(date(2026, 10, 1))
    previous_close_nav = float(year.loc[year.index.date == date(2026, 9, 30), "tltw_nav"].iloc[-1])
    assert model.tltw_distribution(session) == pytest.approx(0.12 / 12 * previous_close_nav)
    assert model.tltw_distribution(session + 1) == 0.0


def test_nav_drops_by_the_distribution_at_the_ex_date_open():
    # No overnight gap in TLT: the NAV moves overnight only by the distribution (1% of NAV),
    # the day's accrual (+(4% - 0.35%)/365) and the short call's time decay (< 0.1%).
    model = MarketModel(SimConfig(seed=3, overnight_variance_fraction=0.0, history_days=40))
    session = model.calendar.index_of(date(2026, 10, 1))
    close = model.tltw_nav(model.calendar.start_tau[session] - 1e-6)
    opened = model.tltw_nav(float(model.calendar.start_tau[session]))
    assert opened / close - 1 == pytest.approx(-0.01, abs=0.0015)


def test_same_seed_same_market_other_seed_other_market():
    window = (date(2026, 10, 28), date(2026, 10, 30))
    first = bar_frame(MarketModel(SimConfig(seed=9, history_days=20)), *window, bar="5 mins")
    again = bar_frame(MarketModel(SimConfig(seed=9, history_days=20)), *window, bar="5 mins")
    other = bar_frame(MarketModel(SimConfig(seed=10, history_days=20)), *window, bar="5 mins")
    assert first.equals(again)
    assert not np.allclose(first["tlt_close"], other["tlt_close"])


def test_option_quote_brackets_black_scholes_at_the_surface(model):
    tau = model.calendar.anchor_tau + 3600.0
    option = model.registry.option(date(2026, 12, 18), 91.0, "C")
    quote = model.option_quote(option, tau)
    spot = model.tlt_mid(tau)
    expiry = datetime(2026, 12, 18, 16, tzinfo=ET).timestamp()
    tau_years = (expiry - model.calendar.epoch(tau)) / (365 * 86400)
    vol = model.implied_vol(91.0, spot, tau_years)
    reference = bs.price(spot, 91.0, tau_years, 0.04, 0.04, vol, "C")
    assert quote.theo == pytest.approx(reference, rel=1e-12)
    assert quote.quote.bid <= reference <= quote.quote.ask
    assert 0.02 <= round(quote.quote.ask - quote.quote.bid, 2) <= 0.11
    assert 0.10 < vol < 0.25


def test_skew_and_term_structure(model):
    one_month, six_months = 30 / 365, 182 / 365
    atm = model.implied_vol(90.0, 90.0, one_month)
    assert model.implied_vol(85.0, 90.0, one_month) > atm  # puts richer: negative skew
    assert model.implied_vol(90.0, 90.0, six_months) > atm  # upward term structure


def test_bars_bound_every_live_tick_inside_them(model):
    tau0 = model.calendar.anchor_tau + 600.0
    found = bars(model, TLT, "MIDPOINT", "1 min", tau0, tau0 + 120)
    live = [model.snapshot(tau0 + 0.25 * k).tlt.mid for k in range(480)]
    lows, highs = min(b.low for b in found), max(b.high for b in found)
    assert lows <= min(live) and max(live) <= highs
    assert found[0].open == pytest.approx(model.snapshot(tau0).tlt.mid)


def test_current_bar_agrees_with_the_finished_bar(model):
    tau = model.calendar.anchor_tau + 3600.0 + 59.999
    partial = current_bar(model, TLT, "TRADES", 60, tau)
    (finished,) = [
        b
        for b in bars(model, TLT, "TRADES", "1 min", tau - 59, tau + 1)
        if b.start_tau == partial.start_tau
    ]
    assert (partial.open, partial.high, partial.low) == (finished.open, finished.high, finished.low)


def test_hourly_bars_align_to_the_clock(year):
    day = year.loc[year.index.date == date(2026, 10, 29)]
    assert [t.strftime("%H:%M") for t in day.index] == [
        "09:30", "10:00", "11:00", "12:00", "13:00", "14:00", "15:00",
    ]  # fmt: skip


def test_option_identity_is_stable_and_occ_shaped():
    con_id = option_con_id(date(2026, 12, 18), 90.5, "P")
    assert con_id == option_con_id(date(2026, 12, 18), 90.5, "P") < 2**31
    assert con_id != option_con_id(date(2026, 12, 18), 90.5, "C")
    assert occ_symbol("TLT", "20261218", "P", 90.5) == "TLT   261218P00090500"
    with pytest.raises(ValueError, match="strike"):
        option_con_id(date(2026, 12, 18), 90.25, "C")


def test_bad_configuration_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="tlt_vol_annual"):
        SimConfig(tlt_vol_annual=float("nan"))
    with pytest.raises(ValueError, match="speed"):
        SimConfig(speed=0)
    with pytest.raises(ValueError, match="start"):
        SimConfig(start=datetime(2026, 11, 2, 9, 30))


def test_an_option_quote_at_the_close_is_priced_on_the_close_not_the_next_open(model):
    """A bar ending at 16:00 must not see the overnight gap: the option's underlying at the
    close is the session's last TLT price, and only at the next open does it gap."""
    frame = bar_frame(model, date(2026, 10, 29), date(2026, 10, 30))
    last = frame.index[389]  # the 15:59 bar of 2026-10-29, closing at 16:00
    close = last + (frame.index[1] - frame.index[0])
    opening = frame.index[390]  # 09:30 the next day
    quotes = model.option_quotes([close, opening], date(2026, 11, 20), 90.0, "C")
    tlt_close = 0.5 * (frame["tlt_bid"].iloc[389] + frame["tlt_ask"].iloc[389])
    assert quotes["underlying"].iloc[0] == pytest.approx(tlt_close, abs=0.006)
    night = model.option_quotes([close.replace(hour=20)], date(2026, 11, 20), 90.0, "C")
    assert night["underlying"].iloc[0] == quotes["underlying"].iloc[0]
    gap = abs(quotes["underlying"].iloc[1] - quotes["underlying"].iloc[0])
    assert gap > 0.006  # the next open has moved: the test would not see a look-ahead otherwise


def test_a_planted_drift_moves_tltw_nav_against_its_index_without_reverting():
    plain = MarketModel(SimConfig(seed=3, start=START, history_days=300))
    drifting = MarketModel(SimConfig(seed=3, start=START, history_days=300,
                                     premium_drift_bp_year=-300.0))  # fmt: skip
    calendar = plain.calendar
    year_ago = calendar.anchor_index - 252
    for session in (year_ago, calendar.anchor_index - 126, calendar.anchor_index):
        tau = float(calendar.start_tau[session]) + 600.0
        years = tau / (252 * 23_400)
        ratio = drifting.tltw_nav(tau) / plain.tltw_nav(tau)
        assert ratio == pytest.approx(math.exp(-0.03 * years), rel=1e-12)
        assert drifting.truth(tau).tlt_mid == plain.truth(tau).tlt_mid  # TLT is untouched
        seconds = drifting.tltw_nav_seconds(session)[600] / plain.tltw_nav_seconds(session)[600]
        assert seconds == pytest.approx(ratio, rel=1e-9)
    # A year back TLTW's NAV stood 3% higher against the same index: it fell 3% behind.
    tau = float(calendar.start_tau[year_ago])
    assert drifting.tltw_nav(tau) / plain.tltw_nav(tau) == pytest.approx(math.exp(0.03), rel=1e-3)
    month = next(s for s in range(year_ago, calendar.anchor_index) if plain.tltw_distribution(s))
    assert drifting.tltw_distribution(month) / plain.tltw_distribution(month) == pytest.approx(
        float(drifting.nav_drift(float(calendar.start_tau[month]))), rel=1e-12
    )


def test_a_non_finite_drift_is_refused():
    with pytest.raises(ValueError, match="premium_drift_bp_year"):
        SimConfig(premium_drift_bp_year=math.nan)


def test_planted_excursions_are_a_trapezoid_on_the_printed_schedule():
    """The demo's excursions: +60 bp in 2 minutes, held 20, back in 10, from 30 minutes after
    the start and every 150; the rest of the market (TLT, NAV, the premium's own path) is the
    same as without them."""
    config = dict(seed=3, start=START, history_days=5)
    plain = MarketModel(SimConfig(**config))
    planted = MarketModel(SimConfig(**config, excursion_bp=60.0))
    start = plain.calendar.anchor_tau
    # minutes after the start -> bp over the premium's own path (by hand: 30 + 2 + 20 + 10)
    expected = {0: 0, 29: 0, 30: 0, 31: 30, 32: 60, 45: 60, 52: 60, 57: 30, 62: 0, 100: 0,
                180: 0, 181: 30, 182: 60}  # fmt: skip
    for minute, bp in expected.items():
        tau = start + minute * 60.0
        added = planted.tltw_premium(tau) - plain.tltw_premium(tau)
        assert added * 1e4 == pytest.approx(bp, abs=1e-9), minute
        assert planted.tlt_mid(tau) == plain.tlt_mid(tau)
        assert planted.tltw_nav(tau) == plain.tltw_nav(tau)
    # The per-second path of a session (bars, the backtest) carries the same excursion.
    session = planted.calendar.session_at(start)
    second = int(start + 45 * 60 - planted.calendar.start_tau[session])
    added = planted.premium_seconds(session)[second] - plain.premium_seconds(session)[second]
    assert added * 1e4 == pytest.approx(60.0)
    (first, top, back), (second_start, _, _) = planted.excursion_schedule(2)
    assert (first, top, back) == (
        datetime(2026, 11, 2, 10, 0, tzinfo=ET),
        datetime(2026, 11, 2, 10, 2, tzinfo=ET),
        datetime(2026, 11, 2, 10, 32, tzinfo=ET),
    )
    assert second_start == datetime(2026, 11, 2, 12, 30, tzinfo=ET)
    assert plain.excursion_schedule(2) == []


def test_excursions_must_end_before_the_next_begins():
    with pytest.raises(ValueError, match="excursion_every_minutes"):
        SimConfig(excursion_bp=60.0, excursion_every_minutes=30.0)
    with pytest.raises(ValueError, match="excursion_bp"):
        SimConfig(excursion_bp=math.nan)
