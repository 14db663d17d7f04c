"""Options held to expiry in the replay: exercise/assignment or worthless expiry, as IB reports it.

The pair holds one buy-write unit (+100 TLT bought at 91.00, one 90-strike call written at 2.50)
and 1,000 TLTW shares sold at 25.00 against it, the call expiring 2026-09-18. Every number below
is computed by hand from those fills, IB's fixed commissions (stock 0.005 USD/share, 1 USD
minimum; options 0.65 USD/contract) and the quotes of the stream.
"""

from __future__ import annotations

import math
from datetime import date, datetime

import pytest

from trading.backtest.fills import ExpiringOption, FillModel
from trading.backtest.replay import Replay
from trading.backtest.run import backtest_sim
from trading.backtest.sources import SimSource
from trading.bus import Fill, IntentPurpose, OptionQuote, Quote, Side
from trading.domain.market_hours import EXCHANGE_TIMEZONE
from trading.settings import load_settings

PAIR = "TLTBW-TLTW"
TLT, TLTW, CALL = 15547841, 545186218, 539028360
STRIKE = 90.0
EXPIRY = "20260918"
ENTRY_COMMISSIONS_USD = 1.00 + 0.65 + 5.00  # TLT 100 (minimum), 1 contract, TLTW 1,000


def _ts(day: date, hour: int, minute: int, second: int = 30) -> float:
    return datetime(day.year, day.month, day.day, hour, minute, second,
                    tzinfo=EXCHANGE_TIMEZONE).timestamp()  # fmt: skip


def _quote(symbol: str, con_id: int, bid: float, ask: float, ts: float) -> Quote:
    return Quote(symbol, con_id, bid, ask, 100.0, 100.0, None, ts, ts)


def _call(bid: float, ask: float, spot: float, ts: float) -> OptionQuote:
    return OptionQuote(
        "TLT", CALL, "TLT   260918C00090000", EXPIRY, STRIKE, "C", bid, ask, 10.0, 10.0,
        0.12, 0.9, 0.1, 0.01, -0.02, spot, 0.5 * (bid + ask), ts, ts,
    )  # fmt: skip


def _fill(exec_id: str, con_id: int, symbol: str, sec_type: str, side: Side, quantity: float,
          price: float, multiplier: float, commission: float, ts: float) -> Fill:  # fmt: skip
    local = "TLT   260918C00090000" if sec_type == "OPT" else symbol
    return Fill(ts, exec_id, 1, 1, "entry-1", symbol, local, con_id, sec_type, side, quantity,
                price, multiplier, commission)  # fmt: skip


def _holding_replay(spot_bid: float, spot_ask: float) -> tuple[Replay, list]:
    """A replay whose risk book holds the pair, and the stream it replays.

    The call was last quoted at 15:00 on its expiry day (in the money or out, its quote went
    quiet, as in the seed-3 run): the risk engine's expiry backstop tries to flatten the pair
    and is refused for that stale quote (STALE_DATA), so the pair reaches the close still
    holding the call. The stream: TLT at ``spot_bid``/``spot_ask`` and TLTW in the last two
    minutes of the expiry day, then the next session's first minutes.
    """
    replay = Replay(load_settings())
    expiry_day, next_day = date(2026, 9, 18), date(2026, 9, 21)
    spot = 0.5 * (spot_bid + spot_ask)
    intrinsic = max(spot - STRIKE, 0.0)
    messages: list = []
    for day, hour, minutes in ((expiry_day, 15, (58, 59)), (next_day, 9, range(30, 36))):
        for minute in minutes:
            ts = _ts(day, hour, minute, 59)
            messages += [
                _quote("TLT", TLT, spot_bid, spot_ask, ts),
                _quote("TLTW", TLTW, 24.99, 25.01, ts),
            ]
    engine = replay.execution
    seeded = _ts(expiry_day, 15, 0)
    engine.on_market(_quote("TLT", TLT, spot_bid, spot_ask, seeded))
    engine.on_market(_quote("TLTW", TLTW, 24.99, 25.01, seeded))
    engine.on_market(_call(max(intrinsic - 0.01, 0.0), intrinsic + 0.01, spot, seeded))
    engine.book.attribute("entry-1", PAIR)
    for fill in (
        _fill("e1", TLT, "TLT", "STK", Side.BUY, 100, 91.00, 1.0, 1.00, seeded),
        _fill("e2", CALL, "TLT", "OPT", Side.SELL, 1, 2.50, 100.0, 0.65, seeded),
        _fill("e3", TLTW, "TLTW", "STK", Side.SELL, 1000, 25.00, 1.0, 5.00, seeded),
    ):
        assert engine.on_fill(fill)
    return replay, messages


def _through_settlement(messages: list) -> int:
    """Index just past the first message of the next session: its arrival closes the expiry
    day's last bar (16:00), where the settlement happens."""
    return next(i for i, m in enumerate(messages) if m.ts_exchange > _ts(date(2026, 9, 18), 16, 0))


def test_in_the_money_short_call_is_assigned_at_the_strike_and_the_pair_is_closed():
    replay, messages = _holding_replay(91.99, 92.01)  # TLT mid 92.00: 2.00 in the money
    cut = _through_settlement(messages) + 1
    replay.run(messages[:cut])
    before = replay.result.records
    assert before and all(
        r.intent.purpose is IntentPurpose.FLATTEN and not r.decision.approved for r in before
    ), "the backstop's flatten should have been refused for the call's stale quote"

    book = replay.execution.book
    settled = [(f.con_id, f.side, f.quantity, f.price, f.commission, f.intent_id)
               for f in replay.result.settlements]  # fmt: skip
    assert settled == [
        (CALL, Side.BUY, 1.0, 0.0, 0.0, ""),  # the short call closes at 0
        (TLT, Side.SELL, 100.0, 90.0, 0.0, ""),  # 100 TLT delivered at the strike
    ]
    assert book.net_quantities()[CALL] == 0.0
    assert book.net_quantities()[TLT] == 0.0
    # TLT (90 - 91) x 100 = -100; call premium kept 2.50 x 100 = +250; commissions 6.65;
    # TLTW 1,000 short marked at its mid 25.00: 0. The cash from the delivery: 90 x 100.
    pnl = book.pair_pnl(PAIR, replay.execution.mark_prices())
    assert pnl["realized"] == pytest.approx(150.0, abs=1e-9)
    assert pnl["total"] == pytest.approx(150.0 - ENTRY_COMMISSIONS_USD, abs=1e-9)
    assert sum(f.quantity * f.price for f in replay.result.settlements if f.con_id == TLT) == 9000

    replay.run(messages[cut:])
    # Risk saw the settlement as the live service sees IB's: it flattens what is left (TLTW),
    # and nothing is refused for the expired call's quote, which stopped at the close.
    after = [r for r in replay.result.records if r.intent.ts > _ts(date(2026, 9, 18), 16, 0)]
    assert [(r.source, r.intent.purpose, r.decision.approved) for r in after] == [
        ("risk", IntentPurpose.FLATTEN, True)
    ]
    assert any(a.code == "assignment" for a in replay.result.alerts)
    assert replay.execution.book.open_pairs() == []
    # TLTW bought back at the ask 25.01: -10; its commission 5.00.
    total = book.pair_pnl(PAIR, replay.execution.mark_prices())["total"]
    assert total == pytest.approx(150.0 - 10.0 - ENTRY_COMMISSIONS_USD - 5.00, abs=1e-9)


def test_out_of_the_money_short_call_expires_worthless_and_the_premium_is_kept():
    replay, messages = _holding_replay(87.99, 88.01)  # TLT mid 88.00: 2.00 out of the money
    cut = _through_settlement(messages) + 1
    replay.run(messages[:cut])
    before = replay.result.records
    assert before and all(
        r.intent.purpose is IntentPurpose.FLATTEN and not r.decision.approved for r in before
    ), "the backstop's flatten should have been refused for the call's stale quote"

    book = replay.execution.book
    settled = [(f.con_id, f.side, f.quantity, f.price) for f in replay.result.settlements]
    assert settled == [(CALL, Side.BUY, 1.0, 0.0)]  # no delivery
    assert book.net_quantities()[CALL] == 0.0
    assert book.net_quantities()[TLT] == 100.0
    # Realized: the call's premium, 2.50 x 100, kept; TLT still held (unrealized).
    pnl = book.pair_pnl(PAIR, replay.execution.mark_prices())
    assert pnl["realized"] == pytest.approx(250.0, abs=1e-9)

    replay.run(messages[cut:])
    # The expiry left the pair long 100 TLT unhedged by a call: risk closes TLT and TLTW.
    after = [r for r in replay.result.records if r.intent.ts > _ts(date(2026, 9, 18), 16, 0)]
    assert [(r.source, r.intent.purpose, r.decision.approved) for r in after] == [
        ("risk", IntentPurpose.FLATTEN, True)
    ]
    assert book.open_pairs() == []
    # call +250; TLT sold at the bid 87.99: (87.99 - 91) x 100 = -301; TLTW -10;
    # commissions 6.65 at entry + 1.00 (TLT) + 5.00 (TLTW) at the flatten.
    total = book.pair_pnl(PAIR, replay.execution.mark_prices())["total"]
    assert total == pytest.approx(250.0 - 301.0 - 10.0 - ENTRY_COMMISSIONS_USD - 6.00, abs=1e-9)


@pytest.mark.parametrize(
    ("quantity", "spot", "expected"),
    [
        (-2.0, 92.0, [(Side.BUY, 2.0, 0.0), (Side.SELL, 200.0, 90.0)]),  # short, assigned
        (3.0, 92.0, [(Side.SELL, 3.0, 0.0), (Side.BUY, 300.0, 90.0)]),  # long, exercised
        (-1.0, 90.01, [(Side.BUY, 1.0, 0.0), (Side.SELL, 100.0, 90.0)]),  # a cent in: assigned
        (-1.0, 90.0, [(Side.BUY, 1.0, 0.0)]),  # at the money: expires
        (1.0, 88.0, [(Side.SELL, 1.0, 0.0)]),  # long, out of the money: expires
    ],
)
def test_settlement_exercises_calls_in_the_money_by_a_cent_and_lets_the_rest_expire(
    quantity, spot, expected
):
    option = ExpiringOption(CALL, "TLT", "TLT   260918C00090000", EXPIRY, STRIKE)
    fills = FillModel().settle_expiry(option, quantity, spot, TLT, 1.0)

    assert [(f.side, f.quantity, f.price) for f in fills] == expected
    assert [f.con_id for f in fills] == [CALL, TLT][: len(expected)]
    assert all(f.intent_id == "" and f.order_id == 0 and f.commission == 0 for f in fills)


@pytest.mark.parametrize(
    ("field", "quantity", "spot"),
    [("quantity", 0.0, 92.0), ("quantity", math.nan, 92.0), ("spot", -1.0, -1.0)],
)
def test_settlement_refuses_bad_input_naming_the_field(field, quantity, spot):
    option = ExpiringOption(CALL, "TLT", "TLT   260918C00090000", EXPIRY, STRIKE)
    with pytest.raises(ValueError, match=field):
        FillModel().settle_expiry(option, quantity, spot, TLT, 1.0)


def test_a_pair_holding_the_september_call_is_closed_on_its_roll_date_and_reopens_on_october():
    # Regression (seed 3, issue 9/6): the pair kept the call its entry opened until expiry; the
    # index rolled to October on 2026-09-16 but the position did not, and risk's backstop only
    # watches short calls (a long-spread pair holds a long one). Here (seed 1) the pair sells
    # the buy-write on the 18 Sep call (a long call) on 15 Sep, and still holds it on the 16th.
    strategy = {
        "preset": "atm",
        "z_window": 390,
        "ols_window": 390,
        "exit_z": 0.0,
        "stop_z": 50.0,
        "time_stop_half_lives": 1e9,
        "cointegration_pvalue": 0.99,
        "edge_gate": False,  # a one-day window: the roll is the subject, not the edge
    }
    run = backtest_sim(
        load_settings(strategy=strategy), SimSource(1, date(2026, 9, 14), date(2026, 9, 16), 50.0)
    )

    records = run.result.records
    assert all(r.decision.approved and r.source == "strategy" for r in records)
    held_into_roll_date = [
        r for r in records
        if r.intent.purpose is IntentPurpose.ENTRY and r.intent.legs[0].option_expiry == EXPIRY
        and r.intent.ts < _ts(date(2026, 9, 16), 9, 30, 0)
    ][-1]  # fmt: skip
    roll = next(r for r in records if r.intent.ts > held_into_roll_date.intent.ts)
    assert roll.intent.purpose is IntentPurpose.EXIT
    assert roll.intent.why["reason"].startswith("roll (roll_date)")
    assert roll.intent.legs[0].option_con_id == held_into_roll_date.intent.legs[0].option_con_id
    assert roll.intent.legs[0].side is not held_into_roll_date.intent.legs[0].side
    assert _ts(date(2026, 9, 16), 9, 30, 0) < roll.intent.ts <= _ts(date(2026, 9, 16), 9, 31, 0)
    # Every later entry writes the October call; nothing of September is held at the end.
    later = [r for r in records if r.intent.ts > roll.intent.ts]
    assert later and all(r.intent.legs[0].option_expiry == "20261016" for r in later)
    september = {r.intent.legs[0].option_con_id for r in records
                 if r.intent.legs[0].option_expiry == EXPIRY}  # fmt: skip
    net: dict[int, float] = {}
    for f in run.result.fills:
        net[f.con_id] = net.get(f.con_id, 0.0) + (f.quantity if f.side is Side.BUY else -f.quantity)
    assert all(abs(net.get(c, 0.0)) < 1e-9 for c in september)
    assert run.result.settlements == []
