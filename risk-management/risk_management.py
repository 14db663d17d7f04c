"""risk-management: the only sender of orders.

Consumes order intents and operator commands (consumer group `risk`), gates every intent with
the risk rules against the live book, places approved intents through ib_async (the buy-write as
one BAG combo, TLTW as shares, the intent id as orderRef), tracks orders, fills, positions and
P&L, and runs the stop-loss, daily-loss and kill-switch rules. On start it reconciles with IB
before anything else. All logic is in `trading.execution` (pure engine) and
`trading.services.risk` (the Redis/IB shell).
"""

from __future__ import annotations

from trading.services.risk import RiskRuntime
from trading.services.shell import ServiceContext, run_service

SERVICE = "risk-management"


async def main(ctx: ServiceContext) -> None:
    await RiskRuntime(ctx).run()


if __name__ == "__main__":
    run_service(SERVICE, main)
