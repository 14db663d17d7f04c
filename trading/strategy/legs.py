"""The synthetic leg: which call the buy-write index holds, when it rolls, and its level.

`RolledCall` keeps one buy-write index for one moneyness with the quant core's rules
(`trading.domain.options.select_call`, `roll_decision`; `trading.domain.buy_write.BuyWriteIndex`)
applied once per bar, at bar close:

1. first bar: hold the call the index would hold today, i.e. the first standard monthly expiry
   whose roll date is still ahead (so the replica holds what TLTW's index holds between its roll
   and the next), strike nearest spot x moneyness (``select_call``, ties upward);
2. a TLT distribution going ex since the last bar is reinvested first (total return);
3. on the roll date (or expiry, or a spot move beyond the configured distance) the held call is
   bought back and the new one written: the target expiry is the next monthly with at least
   ``min_days_to_expiry`` days left (``select_call``);
4. the level is marked with spot and the held call's mid.

A call the chain did not subscribe, or one without a quote yet, makes the bar "not ready"
(`LegNotReady` with the reason): nothing is sampled from a guess. A roll whose new call has no
quote is deferred to the next bar; a held call past expiry is marked at intrinsic value.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date
from typing import Any

from trading.domain.buy_write import BuyWriteIndex
from trading.domain.market_hours import MarketCalendar
from trading.domain.options import (
    HeldOption,
    OptionChain,
    RollRule,
    SelectionRule,
    is_standard_monthly,
    roll_date,
    roll_decision,
    select_call,
)
from trading.strategy.market import MarketState, parse_yyyymmdd


class LegNotReady(ValueError):
    """The buy-write index cannot be marked on this bar; the message says why."""


@dataclass(frozen=True, slots=True)
class HeldCall:
    """The call the index is short (per share), identified as the broker knows it."""

    con_id: int
    expiry: str  # YYYYMMDD
    strike: float


@dataclass(frozen=True, slots=True)
class LegMark:
    """The index at a bar close: its level and the call held, with that call's mid and delta."""

    level: float
    spot: float
    call: HeldCall
    call_mid: float
    call_delta: float
    rolled: bool


def _iso(expiry: date) -> str:
    return expiry.strftime("%Y%m%d")


class RolledCall:
    """A buy-write index of one moneyness, rolled by the quant core's rules. O(1) per bar
    except on the first bar and roll bars (a scan of the chain)."""

    __slots__ = ("calendar", "held", "index", "moneyness", "roll_rule", "selection")

    def __init__(
        self,
        moneyness: float,
        min_days_to_expiry: int,
        roll_business_days_before_expiry: int,
        roll_strike_distance: float | None,
        calendar: MarketCalendar,
    ) -> None:
        self.moneyness = moneyness
        self.selection = SelectionRule(min_days_to_expiry=min_days_to_expiry, moneyness=moneyness)
        self.roll_rule = RollRule(
            business_days_before_expiry=roll_business_days_before_expiry,
            max_spot_move_fraction=roll_strike_distance,
        )
        self.calendar = calendar
        self.held: HeldCall | None = None
        self.index: BuyWriteIndex | None = None

    # --------------------------------------------------------------------------------------

    def _domain_chain(self, market: MarketState) -> OptionChain:
        if market.chain is None:
            raise LegNotReady("no option chain yet")
        return OptionChain(
            expiries=tuple(parse_yyyymmdd("chain.expiries", e) for e in market.chain.expiries),
            strikes=market.chain.strikes,
        )

    def _initial_expiry(self, chain: OptionChain, as_of: date) -> date:
        """The first standard monthly whose roll date is after ``as_of``."""
        days_before = self.roll_rule.business_days_before_expiry
        for expiry in chain.expiries:
            if (
                is_standard_monthly(expiry)
                and roll_date(expiry, days_before, self.calendar) > as_of
            ):
                return expiry
        raise LegNotReady(f"no monthly expiry in the chain rolls after {as_of.isoformat()}")

    def _subscribed(self, market: MarketState, expiry: str, strike: float) -> HeldCall:
        option = market.find_call(expiry, strike)
        if option is None:
            raise LegNotReady(f"call {expiry} {strike} is not subscribed")
        return HeldCall(option.con_id, expiry, strike)

    def _quote(self, market: MarketState, call: HeldCall) -> tuple[float, float]:
        quote = market.options.get(call.con_id)
        if quote is None:
            raise LegNotReady(f"no quote for call {call.con_id} ({call.expiry} {call.strike})")
        return quote.mid, quote.delta

    def _select(self, market: MarketState, spot: float, as_of: date, initial: bool) -> HeldCall:
        chain = self._domain_chain(market)
        if initial:
            expiry = self._initial_expiry(chain, as_of)
            rule = SelectionRule(min_days_to_expiry=0, moneyness=self.moneyness)
        else:
            try:
                expiry = select_call(chain, spot, as_of, self.selection).expiry
            except ValueError as exc:
                raise LegNotReady(str(exc)) from None
            rule = self.selection
        # The strike is chosen among the calls subscribed for that expiry: the chain's strike
        # list is the union over all expiries (weeklies list half-dollar strikes monthlies do
        # not), and a call without a quote cannot be held anyway.
        iso = _iso(expiry)
        strikes = market.subscribed_strikes(iso)
        if not strikes:
            raise LegNotReady(f"no call of expiry {iso} is subscribed")
        selected = select_call(OptionChain((expiry,), strikes), spot, as_of, rule)
        step = min((b - a for a, b in itertools.pairwise(strikes)), default=1.0)
        target = selected.target_strike
        if not strikes[0] - step / 2 <= target <= strikes[-1] + step / 2:
            raise LegNotReady(
                f"target strike {target:.2f} is outside the subscribed strikes "
                f"{strikes[0]}..{strikes[-1]} of {iso} (waiting for data-ingestion to re-centre)"
            )
        return self._subscribed(market, iso, selected.strike)

    # --------------------------------------------------------------------------------------

    def mark(self, market: MarketState, spot: float, as_of: date, dividend: float) -> LegMark:
        """Mark the index at a bar close on exchange date ``as_of``; ``dividend`` is TLT's
        distribution per share gone ex since the previous bar (0 when none)."""
        if self.held is None or self.index is None:
            call = self._select(market, spot, as_of, initial=True)
            call_mid, delta = self._quote(market, call)
            self.index = BuyWriteIndex.start(spot, call_mid, call.strike, call.expiry)
            self.held = call
            return LegMark(self.index.level, spot, call, call_mid, delta, rolled=True)

        held = self.held
        held_expiry = parse_yyyymmdd("held.expiry", held.expiry)
        if as_of > held_expiry:
            # Expired: worth its intrinsic value; no quote is needed (or published) any more.
            old_mid, old_delta = max(spot - held.strike, 0.0), 1.0 if spot > held.strike else 0.0
        else:
            old_mid, old_delta = self._quote(market, held)
        if dividend > 0:
            self.index.pay_dividend(dividend, spot, old_mid)

        decision = roll_decision(
            HeldOption(held_expiry, held.strike), spot, as_of, self.roll_rule, self.calendar
        )
        if decision.roll:
            try:
                new = self._select(market, spot, as_of, initial=False)
                new_mid, new_delta = self._quote(market, new)
            except LegNotReady:
                if as_of > held_expiry:
                    raise
                new = None  # deferred: the held call still trades; try again next bar
            if new is not None and new != held:
                self.index.roll(spot, old_mid, new_mid, new.strike, new.expiry)
                self.held = new
                return LegMark(self.index.level, spot, new, new_mid, new_delta, rolled=True)
        level = self.index.update(spot, old_mid)
        return LegMark(level, spot, held, old_mid, old_delta, rolled=False)

    # --------------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "held": None
            if self.held is None
            else {
                "con_id": self.held.con_id,
                "expiry": self.held.expiry,
                "strike": self.held.strike,
            },
            "index": None if self.index is None else self.index.to_state(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        held = state.get("held")
        self.held = None if held is None else HeldCall(**held)
        index = state.get("index")
        self.index = None if index is None else BuyWriteIndex.from_state(index)
