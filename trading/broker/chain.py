"""The underlying's option chain at IB (TLT's by default): which expiries and strikes the feed
subscribes, and the requests that find their contracts. The symbols are the pair's
(`trading.domain.pair.PairSpec`), passed in by the caller.

The choices (expiries, the strike window, when to re-centre, the line budget shared with held
options) are pure functions with unit tests; `qualify_stocks`, `load_chain` and
`qualify_by_con_id` are the IB requests behind them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from trading.broker.translate import chain_option_from_contract
from trading.bus import Position
from trading.domain.options import is_standard_monthly

# Pure: expiries, strikes, re-centring, line budget ----------------------------------------------


def select_expiries(expiries: Iterable[str], today: date, count: int) -> tuple[str, ...]:
    """The first `count` standard monthly expiries (YYYYMMDD) on or after `today`."""
    if count < 1:
        raise ValueError(f"expiries count={count!r} must be >= 1")
    monthlies = sorted(
        e for e in set(expiries) if _as_date(e) >= today and is_standard_monthly(_as_date(e))
    )
    return tuple(monthlies[:count])


def _as_date(expiry: str) -> date:
    try:
        return datetime.strptime(expiry[:8], "%Y%m%d").date()
    except ValueError:
        raise ValueError(f"expiry={expiry!r} is not YYYYMMDD") from None


def nearest_strike(strikes: Sequence[float], spot: float) -> float:
    """The listed strike nearest spot; a tie goes to the higher strike."""
    if not (math.isfinite(spot) and spot > 0):
        raise ValueError(f"spot={spot!r} must be finite and > 0")
    if not strikes:
        raise ValueError("strikes must not be empty")
    return min(strikes, key=lambda k: (round(abs(k - spot), 9), -k))


def strike_window(strikes: Sequence[float], spot: float, each_side: int) -> tuple[float, ...]:
    """The strike nearest spot and `each_side` listed strikes below and above it (fewer at the
    ends of the chain), ascending."""
    if each_side < 0:
        raise ValueError(f"strikes each_side={each_side!r} must be >= 0")
    ordered = sorted(set(strikes))
    centre = ordered.index(nearest_strike(ordered, spot))
    return tuple(ordered[max(0, centre - each_side) : centre + each_side + 1])


def should_recentre(
    centre: float | None, spot: float, strikes: Sequence[float], hysteresis: float = 0.2
) -> bool:
    """True when TLT has moved a strike: another strike is nearer spot than `centre` by more
    than `hysteresis` x the gap between them (so a spot wobbling at the midpoint between two
    strikes does not churn subscriptions)."""
    if centre is None:
        return True
    nearest = nearest_strike(strikes, spot)
    if nearest == centre:
        return False
    advantage = abs(spot - centre) - abs(spot - nearest)
    return advantage > hysteresis * abs(nearest - centre)


def rank_strikes(windows: dict[str, tuple[float, ...]], spot: float) -> list[tuple[str, float]]:
    """Every (expiry, strike) of the windows, most wanted first: nearest spot first, the front
    expiry before later ones at equal distance."""
    ranked = sorted(
        ((abs(k - spot), rank, expiry, k) for rank, expiry in enumerate(sorted(windows))
         for k in windows[expiry]),
    )  # fmt: skip
    return [(expiry, k) for _, _, expiry, k in ranked]


def fit_to_budget(
    windows: dict[str, tuple[float, ...]], spot: float, lines: int
) -> dict[str, tuple[float, ...]]:
    """Trim the strike windows to at most `lines` options in total: the strikes farthest from
    spot go first (front expiry kept over later ones at equal distance)."""
    if lines < 0:
        raise ValueError(f"lines={lines!r} must be >= 0")
    keep = set(rank_strikes(windows, spot)[:lines])
    return {e: tuple(k for k in ks if (e, k) in keep) for e, ks in windows.items()}


def held_options(positions: Iterable[Position]) -> frozenset[int]:
    """The con_ids the book holds options in: sec_type "OPT" and quantity != 0 (a NaN
    quantity counts as held: keeping a line costs less than losing a held contract's mark)."""
    return frozenset(p.con_id for p in positions if p.sec_type == "OPT" and p.quantity != 0)


def plan_option_lines(
    window: Sequence[int], held: Sequence[int], lines: int
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Share `lines` option lines between held contracts and the strike window.

    Held contracts come first: a contract the book holds must keep its mark (risk refuses to
    close a pair on a stale mark), while a window strike is only a candidate to write. So the
    held contracts (in or outside the window) take their lines first, in the order given, and
    the window strikes get what is left, most wanted first (`window` is in priority order, as
    from `rank_strikes`); a held contract inside the window stays a window line. Returns
    (window con_ids kept, held-only con_ids kept, held con_ids left without a line), each in
    the order given.
    """
    if lines < 0:
        raise ValueError(f"lines={lines!r} must be >= 0")
    window = tuple(dict.fromkeys(window))
    held = tuple(dict.fromkeys(held))
    first = set(held[:lines])
    rest = [c for c in window if c not in first][: lines - len(first)]
    kept = first | set(rest)
    in_window = set(window)
    window_kept = tuple(c for c in window if c in kept)
    held_only = tuple(c for c in held if c in kept and c not in in_window)
    unquoted = tuple(c for c in held if c not in kept)
    return window_kept, held_only, unquoted


def contract_order(contract: Any) -> tuple[str, float, int]:
    """Held contracts by expiry, strike, conId: a deterministic order for the line budget."""
    return (str(contract.lastTradeDateOrContractMonth), float(contract.strike), contract.conId)


# IB requests ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Chain:
    """TLT's listed chain (every expiry and strike) and the calls of the selected expiries."""

    expiries: tuple[str, ...] = ()
    strikes: tuple[float, ...] = ()
    calls: dict[str, dict[float, Any]] = field(default_factory=dict)  # expiry -> strike -> Contract


async def qualify_stocks(ib: Any, library: Any, symbols: Sequence[str]) -> dict[str, Any]:
    """The pair's stocks (``symbols``: underlying, ETF) qualified at IB (SMART, USD), by
    symbol; ConnectionError when IB cannot say what they are right now (reconnecting retries
    with backoff)."""
    wanted = [library.Stock(symbol, "SMART", "USD") for symbol in symbols]
    qualified = await ib.qualifyContractsAsync(*wanted)
    found = {c.symbol: c for c in qualified if c is not None and c.conId}
    missing = [s for s in symbols if s not in found]
    if missing:
        raise ConnectionError(f"could not qualify {missing} with IB")
    return found


async def load_chain(
    ib: Any, library: Any, tlt: Any, today: date, count: int, log: logging.Logger
) -> Chain:
    """The chain of ``tlt`` (the underlying's qualified stock Contract) from IB's sec-def
    parameters (SMART preferred) and the calls of the first `count` monthly expiries on or
    after `today`, one contract-details request per expiry."""
    underlying = tlt.symbol
    params = await ib.reqSecDefOptParamsAsync(underlying, "", "STK", tlt.conId)
    chosen = [p for p in params if p.exchange == "SMART"] or list(params)
    if not chosen:
        raise ConnectionError(f"IB returned no option chain for {underlying}")
    expiries = sorted({e for p in chosen for e in p.expirations})
    strikes = sorted({float(k) for p in chosen for k in p.strikes})
    selected = select_expiries(expiries, today, count)
    calls: dict[str, dict[float, Any]] = {}
    for expiry in selected:
        # One request per expiry lists the strikes that really exist for it (the sec-def
        # strikes are the union over all expiries) with their conIds.
        pattern = library.Option(underlying, expiry, 0.0, "C", "SMART", currency="USD")
        details = await ib.reqContractDetailsAsync(pattern)
        calls[expiry] = {
            float(d.contract.strike): d.contract
            for d in details
            if d.contract.right in ("C", "CALL") and d.contract.conId
        }
    log.info(
        "option chain: %d expiries, %d strikes; subscribing calls of %s",
        len(expiries), len(strikes), list(selected),
        extra={"event.action": "chain_loaded"},
    )  # fmt: skip
    return Chain(tuple(expiries), tuple(strikes), calls)


async def qualify_by_con_id(ib: Any, library: Any, con_id: int) -> tuple[Any | None, str]:
    """The option Contract IB knows by this conId (SMART routed, exchange set to SMART when
    empty), or None and the reason it cannot be quoted."""
    details = await ib.reqContractDetailsAsync(library.Contract(conId=con_id))
    found = [d.contract for d in details or [] if d.contract and d.contract.conId == con_id]
    contract = next((c for c in found if c.exchange == "SMART"), found[0] if found else None)
    if contract is None:
        return None, "IB knows no contract with this conId"
    try:
        chain_option_from_contract(contract)
    except ValueError as exc:
        return None, str(exc)
    if not contract.exchange:
        contract.exchange = "SMART"
    return contract, ""
