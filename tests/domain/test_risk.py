"""Pre-trade risk rules."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading.domain import risk
from trading.domain.common import Side
from trading.domain.market_hours import EXCHANGE_TIMEZONE
from trading.domain.risk import (
    BookSnapshot,
    InstrumentRisk,
    OrderLeg,
    OrderRequest,
    RiskCode,
    RiskLimits,
    TradingState,
    check_order,
)

NOW = datetime(2024, 6, 12, 11, 0, tzinfo=EXCHANGE_TIMEZONE)
CALL = "TLT 20240719C91"
LIMITS = RiskLimits(
    max_position={"TLT": 2_000, CALL: 20, "TLTW": 10_000},
    max_gross_notional_usd=400_000,
    max_order_quantity=5_000,
    max_order_notional_usd=150_000,
    price_band_fraction=0.01,
    max_net_delta_shares=1_500,
    max_net_vega_usd=2_000,
    max_orders_per_window=5,
    order_rate_window_seconds=60,
    max_daily_loss_usd=5_000,
    max_quote_age_seconds=10,
)


def instruments(tlt=0.0, call=0.0, tltw=0.0, quote_time=NOW):
    return {
        "TLT": InstrumentRisk("TLT", tlt, 90.00, 90.02, quote_time, 1, 1.0, 0.0),
        CALL: InstrumentRisk(CALL, call, 1.58, 1.62, quote_time, 100, 0.48, 0.11),
        "TLTW": InstrumentRisk("TLTW", tltw, 25.99, 26.01, quote_time, 1, 0.25, 0.0),
    }


def book(state=TradingState.ACTIVE, pnl=0.0, orders=(), now=NOW, quote_time=NOW, **positions):
    return BookSnapshot(
        instruments(quote_time=quote_time, **positions), pnl, tuple(orders), state, now
    )


def buy_write(side=Side.BUY, quantity=2.0, limit=None):
    # 100 x 90.01 - 1.60 = 8,999.40 at mids.
    return OrderRequest(
        (OrderLeg("TLT", 100), OrderLeg(CALL, -1)),
        side,
        quantity,
        8_999.40 if limit is None else limit,
    )


def tltw(side=Side.SELL, quantity=1_000.0, limit=26.0):
    return OrderRequest((OrderLeg("TLTW", 1),), side, quantity, limit)


def test_ordinary_pair_orders_are_approved():
    assert check_order(buy_write(), book(), LIMITS).approved
    assert check_order(tltw(), book(), LIMITS).approved


def test_halted_rejects_everything_even_a_reducing_order():
    decision = check_order(tltw(Side.BUY), book(TradingState.HALTED, tltw=-1_000), LIMITS)
    assert not decision.approved and RiskCode.HALTED in decision.codes


def test_reducing_admits_only_orders_that_shrink_exposure():
    reducing = book(TradingState.REDUCING, tltw=-1_000)
    assert check_order(tltw(Side.BUY, 600), reducing, LIMITS).approved
    assert RiskCode.REDUCE_ONLY in check_order(tltw(Side.SELL, 100), reducing, LIMITS).codes
    # Crossing through zero is not a reduction.
    assert RiskCode.REDUCE_ONLY in check_order(tltw(Side.BUY, 1_500), reducing, LIMITS).codes


def test_market_closed_on_a_holiday_and_after_hours():
    holiday = datetime(2024, 7, 4, 11, 0, tzinfo=EXCHANGE_TIMEZONE)
    assert RiskCode.MARKET_CLOSED in check_order(tltw(), book(now=holiday), LIMITS).codes
    evening = datetime(2024, 6, 12, 16, 30, tzinfo=EXCHANGE_TIMEZONE)
    assert RiskCode.MARKET_CLOSED in check_order(tltw(), book(now=evening), LIMITS).codes


def test_an_order_on_the_closing_quotes_is_the_sessions_a_second_later_is_closed():
    close = datetime(2024, 6, 12, 16, 0, tzinfo=EXCHANGE_TIMEZONE)
    at_close = book(now=close, quote_time=close)
    assert check_order(tltw(), at_close, LIMITS).approved
    later = datetime(2024, 6, 12, 16, 0, 1, tzinfo=EXCHANGE_TIMEZONE)
    assert RiskCode.MARKET_CLOSED in check_order(tltw(), book(now=later), LIMITS).codes
    half_day_close = datetime(2024, 11, 29, 13, 0, tzinfo=EXCHANGE_TIMEZONE)
    on_half_day = book(now=half_day_close, quote_time=half_day_close)
    assert check_order(tltw(), on_half_day, LIMITS).approved


def test_stale_or_crossed_quotes_are_rejected():
    old = book(quote_time=NOW - timedelta(seconds=30))
    decision = check_order(tltw(), old, LIMITS)
    assert RiskCode.STALE_DATA in decision.codes and "30.0 s old" in decision.reasons[0].message
    crossed = dict(instruments())
    crossed["TLTW"] = InstrumentRisk("TLTW", 0.0, 26.05, 26.00, NOW, 1, 0.25, 0.0)
    snapshot = BookSnapshot(crossed, 0.0, (), TradingState.ACTIVE, NOW)
    assert RiskCode.STALE_DATA in check_order(tltw(), snapshot, LIMITS).codes
    unknown = OrderRequest((OrderLeg("IEF", 1),), Side.BUY, 10, 95.0)
    assert RiskCode.STALE_DATA in check_order(unknown, book(), LIMITS).codes


def test_position_limit_per_leg_but_a_reduction_of_an_oversized_leg_is_allowed():
    decision = check_order(tltw(Side.SELL, 1_500), book(tltw=-9_000), LIMITS)
    assert RiskCode.POSITION_LIMIT in decision.codes
    assert "exceeds limit 10000" in decision.reasons[0].message
    assert check_order(tltw(Side.BUY, 500), book(tltw=-12_000), LIMITS).approved


def test_order_size_by_quantity_and_notional():
    assert RiskCode.ORDER_SIZE in check_order(tltw(quantity=6_000), book(), LIMITS).codes
    # 17 buy-writes: 1,700 TLT x 90.01 + 17 x 160 = 155,737 USD > 150,000.
    assert RiskCode.ORDER_SIZE in check_order(buy_write(quantity=17), book(), LIMITS).codes


def test_gross_notional_limit():
    # 1,900 TLT (171,019) + 19 calls short (3,040) + 8,000 TLTW short (208,000) = 382,059;
    # another 1,000 TLTW short brings it to 408,059 > 400,000.
    snapshot = book(tlt=1_900, call=-19, tltw=-8_000)
    assert RiskCode.GROSS_NOTIONAL in check_order(tltw(), snapshot, LIMITS).codes
    assert check_order(tltw(Side.BUY), snapshot, LIMITS).approved


def test_price_band_around_the_mid():
    # Band: 1% of the gross leg value per unit, 100 x 90.01 + 1.60 = 9,002.60: 90.03.
    assert check_order(buy_write(limit=8_999.40 + 90.0), book(), LIMITS).approved
    assert (
        RiskCode.PRICE_BAND in check_order(buy_write(limit=8_999.40 + 90.1), book(), LIMITS).codes
    )
    assert RiskCode.PRICE_BAND in check_order(tltw(limit=26.30), book(), LIMITS).codes
    market = OrderRequest((OrderLeg("TLTW", 1),), Side.SELL, 100, None)
    assert RiskCode.PRICE_BAND in check_order(market, book(), LIMITS).codes


def test_net_delta_and_net_vega_limits():
    # 1,500 TLT long and 10 calls short: net delta 1,500 - 480 = 1,020 TLT shares. Buying 2
    # more buy-writes adds 2 x (100 - 48) = 104: fine. 1,000 TLTW adds 250.
    assert check_order(buy_write(), book(tlt=1_500, call=-10), LIMITS).approved
    over = check_order(tltw(Side.BUY, 2_000), book(tlt=1_500, call=-10), LIMITS)
    assert RiskCode.NET_DELTA in over.codes  # 1,020 + 500 = 1,520
    # Vega: 0.11 x 100 = 11 USD per vol point per contract; 20 short is -220. A limit of 200:
    vega_limits = RiskLimits(**{**_limits_dict(), "max_net_vega_usd": 200.0})
    decision = check_order(buy_write(quantity=2), book(tlt=1_800, call=-18), vega_limits)
    assert RiskCode.NET_VEGA in decision.codes


def _limits_dict():
    return {name: getattr(LIMITS, name) for name in LIMITS.__slots__}


def test_order_rate_limit_over_the_rolling_window():
    recent = [NOW - timedelta(seconds=s) for s in (1, 5, 10, 20, 59)]
    assert RiskCode.ORDER_RATE in check_order(tltw(), book(orders=recent), LIMITS).codes
    older = [NOW - timedelta(seconds=s) for s in (1, 5, 10, 20, 61)]
    assert check_order(tltw(), book(orders=older), LIMITS).approved


def test_daily_loss_blocks_new_exposure_but_not_reductions():
    losing = book(pnl=-5_000.0, tltw=-1_000)
    assert RiskCode.DAILY_LOSS in check_order(tltw(Side.SELL, 100), losing, LIMITS).codes
    assert check_order(tltw(Side.BUY, 100), losing, LIMITS).approved


def test_every_failing_rule_is_reported_with_its_numbers():
    decision = check_order(
        tltw(Side.SELL, 16_000, limit=20.0),
        book(TradingState.REDUCING, pnl=-6_000),
        LIMITS,
    )
    assert decision.codes >= {
        RiskCode.REDUCE_ONLY,
        RiskCode.POSITION_LIMIT,
        RiskCode.ORDER_SIZE,
        RiskCode.PRICE_BAND,
        RiskCode.DAILY_LOSS,
        RiskCode.GROSS_NOTIONAL,
    }
    assert all(reason.message for reason in decision.reasons)


BREACHES = {
    # rule: (order, book) that breaks that rule and no other
    risk.halted: (tltw(Side.BUY, 100), dict(state=TradingState.HALTED, tltw=-1_000)),
    risk.market_hours: (tltw(), dict(now=NOW.replace(hour=17), quote_time=NOW.replace(hour=17))),
    risk.stale_quotes: (tltw(), dict(quote_time=NOW - timedelta(seconds=11))),
    risk.reduce_only: (tltw(), dict(state=TradingState.REDUCING)),
    risk.position_limits: (buy_write(quantity=3), dict(tlt=1_800, call=-18)),
    risk.order_size: (buy_write(quantity=17), {}),
    risk.gross_notional: (tltw(), dict(tlt=1_900, call=-19, tltw=-8_000)),
    risk.price_band: (tltw(limit=26.30), {}),
    risk.net_greeks: (tltw(Side.BUY, 2_000), dict(tlt=1_500, call=-10)),
    risk.order_rate: (tltw(), dict(orders=[NOW - timedelta(seconds=s) for s in (1, 5, 9, 20, 59)])),
    risk.daily_loss: (tltw(Side.SELL, 100), dict(pnl=-5_000.0, tltw=-1_000)),
}


@pytest.mark.parametrize("rule", list(BREACHES), ids=lambda rule: rule.__name__)
def test_each_rule_alone_finds_its_breach_and_no_other_rule_objects(rule):
    order, snapshot = BREACHES[rule]
    b = book(**snapshot)
    assert not check_order(order, b, LIMITS, rules=(rule,)).approved
    others = tuple(r for r in risk.RULES if r is not rule)
    assert check_order(order, b, LIMITS, rules=others).approved, rule.__name__
    assert set(risk.RULES) == set(BREACHES)


def test_rules_that_value_the_legs_are_skipped_on_a_stale_quote():
    stale = book(quote_time=NOW - timedelta(seconds=11))
    decision = check_order(tltw(limit=30.0), stale, LIMITS, rules=(risk.price_band,))
    assert decision.approved  # nothing to value the band against: STALE_DATA says why
    full = check_order(tltw(limit=30.0), stale, LIMITS)
    assert full.codes == {RiskCode.STALE_DATA}


def test_malformed_orders_and_limits_raise_value_error():
    with pytest.raises(ValueError, match="quantity"):
        OrderRequest((OrderLeg("TLTW", 1),), Side.BUY, math.nan, 26.0)
    with pytest.raises(ValueError, match="ratio"):
        OrderLeg("TLT", 0)
    with pytest.raises(ValueError, match="distinct"):
        OrderRequest((OrderLeg("TLT", 1), OrderLeg("TLT", 2)), Side.BUY, 1, 90.0)
    with pytest.raises(ValueError, match="max_gross_notional_usd"):
        RiskLimits(max_gross_notional_usd=-1)
    with pytest.raises(ValueError, match="position"):
        InstrumentRisk("TLT", math.nan, 90, 90.1, NOW)


def metrics(snapshot: BookSnapshot, positions: dict[str, float]):
    legs = snapshot.instruments
    gross = sum(abs(q) * legs[k].mid * legs[k].multiplier for k, q in positions.items())
    delta = sum(q * legs[k].multiplier * legs[k].delta for k, q in positions.items())
    vega = sum(q * legs[k].multiplier * legs[k].vega for k, q in positions.items())
    return gross, delta, vega


@settings(max_examples=400, deadline=None)
@given(
    tlt=st.integers(-3_000, 3_000),
    call=st.integers(-30, 30),
    tltw_position=st.integers(-15_000, 15_000),
    leg=st.sampled_from(["pair", "TLTW", "TLT", CALL]),
    side=st.sampled_from(list(Side)),
    quantity=st.integers(1, 8_000),
    price_offset=st.floats(-0.03, 0.03),
    state=st.sampled_from(list(TradingState)),
    pnl=st.floats(-10_000, 10_000),
    order_count=st.integers(0, 8),
)
def test_risk_rules_never_approve_an_order_that_breaks_a_limit(
    tlt, call, tltw_position, leg, side, quantity, price_offset, state, pnl, order_count
):
    snapshot = book(
        state,
        pnl,
        [NOW - timedelta(seconds=i) for i in range(order_count)],
        tlt=float(tlt),
        call=float(call),
        tltw=float(tltw_position),
    )
    legs = {"pair": (OrderLeg("TLT", 100), OrderLeg(CALL, -1))}.get(leg, (OrderLeg(leg, 1),))
    mid = sum(part.ratio * snapshot.instruments[part.key].mid for part in legs)
    gross_price = sum(abs(part.ratio) * snapshot.instruments[part.key].mid for part in legs)
    order = OrderRequest(legs, side, float(quantity), mid + price_offset * gross_price)
    decision = check_order(order, snapshot, LIMITS)
    if not decision.approved:
        assert decision.reasons
        return
    before = {key: leg.position for key, leg in snapshot.instruments.items()}
    after = dict(before)
    for key, change in order.leg_changes().items():
        after[key] += change
    assert state is not TradingState.HALTED
    assert order_count < LIMITS.max_orders_per_window
    assert order.quantity <= LIMITS.max_order_quantity
    order_notional = sum(
        abs(change) * snapshot.instruments[key].mid * snapshot.instruments[key].multiplier
        for key, change in order.leg_changes().items()
    )
    assert order_notional <= LIMITS.max_order_notional_usd
    assert abs(order.limit_price - mid) <= LIMITS.price_band_fraction * gross_price + 1e-9
    for key in order.leg_changes():
        assert abs(after[key]) <= LIMITS.max_position[key] or abs(after[key]) <= abs(before[key])
    shrinks = all(
        abs(after[k]) <= abs(before[k]) and after[k] * before[k] >= 0 for k in order.leg_changes()
    )
    if state is TradingState.REDUCING or pnl <= -LIMITS.max_daily_loss_usd:
        assert shrinks
    gross_before, delta_before, vega_before = metrics(snapshot, before)
    gross_after, delta_after, vega_after = metrics(snapshot, after)
    assert gross_after <= LIMITS.max_gross_notional_usd or gross_after <= gross_before
    assert abs(delta_after) <= LIMITS.max_net_delta_shares or abs(delta_after) <= abs(delta_before)
    assert abs(vega_after) <= LIMITS.max_net_vega_usd or abs(vega_after) <= abs(vega_before)
