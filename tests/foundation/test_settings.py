"""Settings: typed, from TRADING_* variables, refusing unsafe configurations by name."""

from __future__ import annotations

import pytest

from trading.domain.common import HedgeMethod, Preset
from trading.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("TRADING_"):
            monkeypatch.delenv(name)


def test_defaults_are_the_safe_ones():
    s = load_settings()
    assert s.ib.port == 4002 and not s.ib.allow_live
    assert s.redis.url is None  # embedded Redis
    assert s.http.port == 8000 and s.http.token is None  # operator controls off
    assert s.strategy.preset is Preset.ATM and s.moneyness == 1.00
    assert 0 < s.strategy.kelly_fraction <= 1


def test_environment_variables_with_groups(monkeypatch):
    monkeypatch.setenv("TRADING_IB__HOST", "gateway.internal")
    monkeypatch.setenv("TRADING_IB__PORT", "4004")
    monkeypatch.setenv("TRADING_IB__CLIENT_ID", "42")
    monkeypatch.setenv("TRADING_HTTP__PORT", "8080")
    monkeypatch.setenv("TRADING_STRATEGY__PRESET", "replica")
    monkeypatch.setenv("TRADING_STRATEGY__HEDGE_METHOD", "kalman")
    s = load_settings()
    assert (s.ib.host, s.ib.port, s.ib.client_id, s.http.port) == (
        "gateway.internal",
        4004,
        42,
        8080,
    )
    assert s.ib_client_id("risk-management") == 42
    assert s.moneyness == 1.02 and s.strategy.hedge_method is HedgeMethod.KALMAN


def test_each_service_has_its_own_client_id_by_default():
    s = load_settings()
    assert s.ib_client_id("data-ingestion") != s.ib_client_id("risk-management")


@pytest.mark.parametrize("port", ["4001", "7496"])
def test_live_port_is_refused_without_allow_live(monkeypatch, port):
    monkeypatch.setenv("TRADING_IB__PORT", port)
    with pytest.raises(SettingsError, match=f"TRADING_IB__PORT={port} is a LIVE"):
        load_settings()
    monkeypatch.setenv("TRADING_IB__ALLOW_LIVE", "true")
    assert load_settings().ib.port == int(port)


@pytest.mark.parametrize(
    "name",
    [
        "TRADING_RISK__MAX_TLTW_SHARES",
        "TRADING_RISK__MAX_BUY_WRITE_UNITS",
        "TRADING_RISK__MAX_GROSS_NOTIONAL_USD",
        "TRADING_RISK__DAILY_LOSS_LIMIT_USD",
        "TRADING_RISK__PAIR_STOP_LOSS_USD",
        "TRADING_RISK__MAX_ORDERS_PER_MINUTE",
        "TRADING_STRATEGY__MAX_GROSS_NOTIONAL_USD",
    ],
)
@pytest.mark.parametrize("value", ["0", "-5"])
def test_zero_or_negative_limits_are_refused_by_name(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=f"{name}='{value}'.*greater than 0"):
        load_settings()


def test_entry_band_inside_exit_band_is_refused(monkeypatch):
    monkeypatch.setenv("TRADING_STRATEGY__ENTRY_Z", "0.4")
    monkeypatch.setenv("TRADING_STRATEGY__EXIT_Z", "0.5")
    with pytest.raises(SettingsError, match="TRADING_STRATEGY__ENTRY_Z=0.4 must be above"):
        load_settings()


def test_stop_band_inside_entry_band_is_refused(monkeypatch):
    monkeypatch.setenv("TRADING_STRATEGY__STOP_Z", "1.5")
    with pytest.raises(SettingsError, match="TRADING_STRATEGY__STOP_Z=1.5"):
        load_settings()


@pytest.mark.parametrize("value", ["0", "1.5", "-0.5"])
def test_kelly_fraction_outside_zero_one_is_refused(monkeypatch, value):
    monkeypatch.setenv("TRADING_STRATEGY__KELLY_FRACTION", value)
    with pytest.raises(SettingsError, match="TRADING_STRATEGY__KELLY_FRACTION"):
        load_settings()


def test_kelly_fraction_of_one_is_allowed(monkeypatch):
    monkeypatch.setenv("TRADING_STRATEGY__KELLY_FRACTION", "1")
    assert load_settings().strategy.kelly_fraction == 1.0


def test_malformed_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("TRADING_IB__PORT", "paper")
    with pytest.raises(SettingsError, match="TRADING_IB__PORT='paper'"):
        load_settings()


def test_secrets_never_appear_in_repr_or_errors(monkeypatch):
    monkeypatch.setenv("TRADING_REDIS__URL", "redis://:hunter2@redis:6379/0")
    monkeypatch.setenv("TRADING_HTTP__TOKEN", "s3cret-token")
    s = load_settings()
    assert "hunter2" not in repr(s) and "s3cret-token" not in repr(s)
    assert "hunter2" not in str(s.model_dump())
    assert s.http.token.get_secret_value() == "s3cret-token"
    monkeypatch.setenv("TRADING_IB__PORT", "4001")
    with pytest.raises(SettingsError) as exc:
        load_settings()
    assert "hunter2" not in str(exc.value) and "s3cret-token" not in str(exc.value)


def test_windows_in_bars_are_checked_against_the_bar_length(monkeypatch):
    # The one-minute defaults on daily bars: a z window of 15,600 sessions, a refit every 390.
    monkeypatch.setenv("TRADING_STRATEGY__BAR_SECONDS", "86400")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    message = str(refused.value)
    assert "TRADING_STRATEGY__Z_WINDOW=15600 bars of 86400 s spans 15,600 sessions" in message
    assert "TRADING_STRATEGY__OLS_WINDOW=7800" in message
    assert "TRADING_STRATEGY__REFIT_BARS=390 bars of 86400 s refits every 390 sessions" in message
    for name, value in (("Z_WINDOW", "40"), ("OLS_WINDOW", "20"), ("REFIT_BARS", "1")):
        monkeypatch.setenv(f"TRADING_STRATEGY__{name}", value)
    daily = load_settings().strategy
    assert (daily.bar_seconds, daily.z_window, daily.refit_bars) == (86400, 40, 1)


def test_an_edge_horizon_shorter_than_its_sample_spacing_is_refused(monkeypatch):
    monkeypatch.setenv("TRADING_STRATEGY__EDGE_HORIZON_SECONDS", "600")
    with pytest.raises(SettingsError, match="EDGE_HORIZON_SECONDS=600.0 is shorter"):
        load_settings()


def test_pair_spec_defaults_are_todays_pair():
    p = load_settings().pair_spec()
    assert p.stocks == ("TLT", "TLTW") and p.pair_id == "TLTBW-TLTW"
    assert (p.underlying_con_id, p.etf_con_id) == (15547841, 545186218)
    assert (p.moneyness, p.min_days_to_expiry, p.roll_business_days_before_expiry) == (1.0, 20, 2)


def test_pair_spec_joins_the_pair_and_strategy_groups(monkeypatch):
    monkeypatch.setenv("TRADING_PAIR__UNDERLYING", "SPY")
    monkeypatch.setenv("TRADING_PAIR__ETF", "XYLD")
    monkeypatch.setenv("TRADING_PAIR__ETF_CON_ID", "99")
    monkeypatch.setenv("TRADING_STRATEGY__PRESET", "replica")
    monkeypatch.setenv("TRADING_STRATEGY__ROLL_STRIKE_DISTANCE", "0.03")
    p = load_settings().pair_spec()
    assert (p.underlying, p.etf, p.etf_con_id, p.moneyness) == ("SPY", "XYLD", 99, 1.02)
    assert p.roll_strike_distance == 0.03


def test_pair_with_one_symbol_twice_is_refused(monkeypatch):
    monkeypatch.setenv("TRADING_PAIR__ETF", "TLT")
    with pytest.raises(SettingsError, match="PairSpec.etf must differ from PairSpec.underlying"):
        load_settings()
