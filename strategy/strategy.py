"""strategy: the buy-write index, the hedge ratio, the spread and its z-score, the signal and
the Kelly size, every bar; appends order intents for risk-management.

Reads ticks (conflated per instrument and bar), risk decisions, fills and order events from
Redis; writes the state, intents, spread points and signals. All logic is in
`trading.strategy` (the pure engine and the inbox) and `trading.services.strategy` (the Redis
shell). Run as `python strategy/strategy.py` with settings from TRADING_* variables.
"""

from __future__ import annotations

from trading.services.shell import ServiceContext, run_service
from trading.services.strategy import run

SERVICE = "strategy"


async def main(ctx: ServiceContext) -> None:
    await run(ctx)


if __name__ == "__main__":
    run_service(SERVICE, main)
