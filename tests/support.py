"""Test helpers: poll for a condition instead of sleeping; another pair than the default."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from trading import bus as b
from trading.domain.pair import PairSpec


def eventually(
    condition: Callable[[], Any], timeout_s: float = 10.0, interval_s: float = 0.02, what: str = ""
) -> Any:
    """Poll `condition` until it returns a truthy value (returned) or time runs out (fails)."""
    deadline = time.monotonic() + timeout_s
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except AssertionError as exc:
            last_exc = exc
        time.sleep(interval_s)
    raise AssertionError(f"not true within {timeout_s}s: {what or condition}") from last_exc


async def async_eventually(
    condition: Callable[[], Awaitable[Any]],
    timeout_s: float = 10.0,
    interval_s: float = 0.02,
    what: str = "",
) -> Any:
    """Await `condition()` until it is truthy (returned) or time runs out (fails)."""
    deadline = time.monotonic() + timeout_s
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = await condition()
            if value:
                return value
        except AssertionError as exc:
            last_exc = exc
        await asyncio.sleep(interval_s)
    raise AssertionError(f"not true within {timeout_s}s: {what or condition}") from last_exc


NO_DEMO = {"excursion_bp": 0.0, "start": None}
"""SimSettings overrides that turn off `make run`'s demo story (the planted premium excursions,
the demo's start day): whole-stack tests that plant their own shocks on ibsim's default day."""
NO_DEMO_ENV = {"TRADING_SIM__EXCURSION_BP": "0", "TRADING_SIM__START": "2026-11-02T09:30:00"}
"""The same as environment variables (ibsim's default day written out)."""


OTHER_PAIR = PairSpec(
    underlying="IEF",
    etf="IEFW",
    pair_id="IEFBW-IEFW",
    underlying_con_id=8_000_001,
    etf_con_id=8_000_002,
)
"""Another pair than the default (IEF against a made-up buy-write ETF, with their own con ids):
code that takes the pair from the settings must show these names and never TLT's."""


def pair_settings(pair: PairSpec) -> dict[str, dict[str, Any]]:
    """`load_settings` overrides that configure ``pair`` as TRADING_PAIR__* and
    TRADING_STRATEGY__PAIR_ID do (merge further strategy settings into ``["strategy"]``)."""
    return {
        "pair": {
            "underlying": pair.underlying,
            "etf": pair.etf,
            "underlying_con_id": pair.underlying_con_id,
            "etf_con_id": pair.etf_con_id,
        },
        "strategy": {"pair_id": pair.pair_id},
    }


RECORDED_CALL = 539_280_368
"""The call of `recorded_option` (TLT 2026-11-20 92 C)."""


def recorded_quote(symbol: str, con_id: int, ts: float, bid: float) -> b.Quote:
    """A one-cent-wide quote stamped ``ts`` (exchange and receive), as a history stream holds."""
    return b.Quote(symbol, con_id, bid, bid + 0.01, 100.0, 100.0, None, ts, ts)


def recorded_option(ts: float) -> b.OptionQuote:
    """A quote of `RECORDED_CALL` stamped ``ts``."""
    return b.OptionQuote(
        "TLT", RECORDED_CALL, "TLT   261120C00092000", "20261120", 92.0, "C", 0.47, 0.49, 10.0,
        10.0, 0.12, 0.3, 0.1, 0.05, -0.02, 90.0, 0.48, ts, ts,
    )  # fmt: skip
