"""The backtest's broker: fills an intent's legs against the book's bid/ask, with IB commissions.

Fill rule (the same as ibsim's matching, without the displayed-size limit): a limit order fills
in full when it is marketable against the quotes in force (a buy at the ask when ask <= limit,
a sell at the bid when bid >= limit), else it rests and is tried again at every later bar
close, and is cancelled at the end of the day it was placed (a DAY order). A buy-write leg
(BAG: 100 TLT + 1 short call per unit) fills as its legs: a BUY buys TLT at the ask and sells
the call at the bid, a SELL sells TLT at the bid and buys the call at the ask; the combo price
is IB's convention ``100 x S - C`` (C per share) and is compared with the limit.

Daily bars: an order decided at a daily bar's close (the session's close) fills the same way
on the closing quotes, at that instant, as a market-on-close order would (the risk gate counts
the closing instant as the session's); a limit that is not marketable there rests and is
cancelled at the next bar (the next session's close) without another try.

Commissions: IB's fixed schedule as ibsim charges it (`SimConfig`: stock USD per share with a
per-order minimum, options USD per contract); each leg of a combo is charged as its own order.

Expiry (`FillModel.settle_expiry`), as OCC settles and IB reports it (and ibsim's
``Broker.settle``): at the expiry's close a call in the money by at least 0.01 USD
(spot - strike >= 0.01) is exercised (long) or assigned (short): the option position closes at
price 0 and 100 shares per contract change hands at the strike (a short call delivers: SELL
100 x contracts TLT at K; a long call takes delivery: BUY); otherwise it expires worthless (the
option closes at price 0, the premium is kept or lost). Executions with order id 0, no intent
(IB's empty orderRef) and no commission; the option's execution comes first, as IB sends it,
so the risk book attributes the stock delivery to the pair of the option settled with it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from trading.bus import Fill, IntentLeg, LegKind, OrderIntent, Side
from trading.domain.costs import CommissionSchedule
from trading.domain.pair import DEFAULT_UNDERLYING
from trading.execution.marks import Marks
from trading.ibsim.config import SimConfig

SHARES_PER_UNIT = 100
OPTION_MULTIPLIER = 100.0
EXERCISE_THRESHOLD_USD = 0.01
"""OCC's exercise by exception: an option in the money by at least this much (per share)."""


def sim_commissions(config: SimConfig | None = None) -> CommissionSchedule:
    """The commission schedule ibsim charges (`SimConfig`, IB's fixed rates by default)."""
    c = config or SimConfig()
    return CommissionSchedule(
        c.stock_commission_per_share_usd,
        c.stock_commission_minimum_usd,
        c.option_commission_per_contract_usd,
    )


@dataclass(frozen=True, slots=True)
class LegExecution:
    """What one intent leg did: the combo (or share) price, and the bus fills it produced."""

    intent_id: str
    leg_index: int
    order_id: int
    price: float
    """Per unit in IB's convention: 100 x S - C for a buy-write, per share for TLTW."""
    fills: tuple[Fill, ...]


@dataclass(frozen=True, slots=True)
class ExpiringOption:
    """A call reaching its expiry: its contract and strike (per share)."""

    con_id: int
    symbol: str
    local_symbol: str
    expiry: str  # YYYYMMDD
    strike: float


@dataclass(slots=True)
class RestingOrder:
    intent: OrderIntent
    leg_index: int
    order_id: int
    day: str
    """Exchange date (YYYY-MM-DD) it was placed on: cancelled once the day is over."""


@dataclass
class FillModel:
    """Marketable-or-rest fills of intent legs against `Marks`; see the module docstring."""

    schedule: CommissionSchedule = field(default_factory=sim_commissions)
    resting: dict[int, RestingOrder] = field(default_factory=dict)
    _order_ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _exec_ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def next_order_id(self) -> int:
        return next(self._order_ids)

    def try_fill(
        self, intent: OrderIntent, leg_index: int, order_id: int, marks: Marks, now: float
    ) -> LegExecution | None:
        """Fill the leg in full if it is marketable now, else None (it should rest)."""
        leg = intent.legs[leg_index]
        if leg.kind is LegKind.BUY_WRITE:
            return self._fill_buy_write(intent, leg_index, leg, order_id, marks, now)
        return self._fill_stock(intent, leg_index, leg, order_id, marks, now)

    def settle_expiry(
        self,
        option: ExpiringOption,
        quantity: float,
        spot: float,
        stock_con_id: int,
        now: float,
        stock_symbol: str = DEFAULT_UNDERLYING,
    ) -> tuple[Fill, ...]:
        """The executions that settle ``quantity`` contracts (signed: > 0 long) of a call at
        its expiry with the underlying at ``spot`` (see the module docstring).

        Raises ValueError naming the field for a zero or non-finite quantity, or a spot or
        strike that is not finite and positive.
        """
        if not (math.isfinite(quantity) and quantity != 0):
            raise ValueError(f"quantity must be finite and non-zero, got {quantity!r}")
        if not (math.isfinite(spot) and spot > 0):
            raise ValueError(f"spot must be finite and > 0, got {spot!r}")
        if not (math.isfinite(option.strike) and option.strike > 0):
            raise ValueError(f"strike must be finite and > 0, got {option.strike!r}")
        contracts = abs(quantity)
        long_call = quantity > 0
        fills = [
            self._fill(
                intent_id="",
                order_id=0,
                symbol=option.symbol,
                local_symbol=option.local_symbol,
                con_id=option.con_id,
                sec_type="OPT",
                side=Side.SELL if long_call else Side.BUY,
                quantity=contracts,
                price=0.0,
                multiplier=OPTION_MULTIPLIER,
                commission=0.0,
                now=now,
            )
        ]
        # Rounded to the tenth of a cent: spot and strike are cents held in floats.
        if round(spot - option.strike, 6) >= EXERCISE_THRESHOLD_USD:
            fills.append(
                self._fill(
                    intent_id="",
                    order_id=0,
                    symbol=stock_symbol,
                    local_symbol=stock_symbol,
                    con_id=stock_con_id,
                    sec_type="STK",
                    side=Side.BUY if long_call else Side.SELL,
                    quantity=contracts * SHARES_PER_UNIT,
                    price=option.strike,
                    multiplier=1.0,
                    commission=0.0,
                    now=now,
                )
            )
        return tuple(fills)

    def _touch(self, marks: Marks, con_id: int, buying: bool, what: str) -> float:
        mark = marks.get(con_id)
        if mark is None:
            raise ValueError(f"no quote for {what} (conId {con_id}): cannot fill")
        return mark.ask if buying else mark.bid

    def _fill_stock(
        self,
        intent: OrderIntent,
        leg_index: int,
        leg: IntentLeg,
        order_id: int,
        marks: Marks,
        now: float,
    ) -> LegExecution | None:
        buying = leg.side is Side.BUY
        price = self._touch(marks, leg.con_id, buying, leg.symbol)
        if not _marketable(price, leg.limit_price, buying):
            return None
        fill = self._fill(
            intent_id=intent.intent_id,
            order_id=order_id,
            symbol=leg.symbol,
            local_symbol=leg.symbol,
            con_id=leg.con_id,
            sec_type="STK",
            side=leg.side,
            quantity=float(leg.quantity),
            price=price,
            multiplier=1.0,
            commission=self.schedule.stock_usd(leg.quantity),
            now=now,
        )
        return LegExecution(intent.intent_id, leg_index, order_id, price, (fill,))

    def _fill_buy_write(
        self,
        intent: OrderIntent,
        leg_index: int,
        leg: IntentLeg,
        order_id: int,
        marks: Marks,
        now: float,
    ) -> LegExecution | None:
        if leg.option_con_id is None:
            raise ValueError(f"intent {intent.intent_id} leg {leg_index}: option_con_id missing")
        buying = leg.side is Side.BUY
        stock_price = self._touch(marks, leg.con_id, buying, leg.symbol)
        # The call is sold when the unit is bought (and bought back when it is sold).
        call_price = self._touch(marks, leg.option_con_id, not buying, "the call")
        combo = SHARES_PER_UNIT * stock_price - call_price
        if not _marketable(combo, leg.limit_price, buying):
            return None
        call_mark = marks.get(leg.option_con_id)
        call_symbol = call_mark.symbol if call_mark is not None else str(leg.option_con_id)
        shares = float(leg.quantity * SHARES_PER_UNIT)
        call_side = Side.SELL if buying else Side.BUY
        fills = (
            self._fill(
                intent_id=intent.intent_id,
                order_id=order_id,
                symbol=leg.symbol,
                local_symbol=leg.symbol,
                con_id=leg.con_id,
                sec_type="STK",
                side=leg.side,
                quantity=shares,
                price=stock_price,
                multiplier=1.0,
                commission=self.schedule.stock_usd(shares),
                now=now,
            ),
            self._fill(
                intent_id=intent.intent_id,
                order_id=order_id,
                symbol=leg.symbol,
                local_symbol=call_symbol,
                con_id=leg.option_con_id,
                sec_type="OPT",
                side=call_side,
                quantity=float(leg.quantity),
                price=call_price,
                multiplier=OPTION_MULTIPLIER,
                commission=self.schedule.option_usd(leg.quantity),
                now=now,
            ),
        )
        return LegExecution(intent.intent_id, leg_index, order_id, combo, fills)

    def _fill(self, now: float, commission: float, **fields: Any) -> Fill:
        """An execution at `now` (the backtest's exec id, the order id as its permId): the
        fields are Fill's (intent_id, order_id, symbol, local_symbol, con_id, sec_type, side,
        quantity, price, multiplier)."""
        return Fill(
            ts=now,
            exec_id=f"bt.{next(self._exec_ids):08d}",
            perm_id=fields["order_id"],
            commission=round(commission, 10),
            **fields,
        )


def _marketable(price: float, limit: float, buying: bool) -> bool:
    if not (math.isfinite(price) and price > 0):
        return False
    # Half a tenth of a cent of slack: prices and limits are cents held in floats.
    return price <= limit + 5e-4 if buying else price >= limit - 5e-4
