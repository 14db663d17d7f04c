"""Risk checks every leg's data health as of the moment it sends, not as of its decision.

Between risk-management's decision and its placeOrder there is a Redis round trip (the
"placing" record), and its view of md:health arrives by pub/sub, behind the hash. A flag that
data-ingestion writes in that gap was not seen: the entry went to IB on data flagged stale. Each
test freezes one side of that race (the flag written while the intent is being decided; the flag
in md:health, its message not yet at risk's market feed) and checks IB's own records: no order.
"""

from __future__ import annotations

import pytest

from tests.risk.stack import decision_of, entry_intent, market, observer, orders_at_ib, risk_service
from tests.support import async_eventually
from trading import seams
from trading.bus import (
    Batch,
    Channels,
    DataHealth,
    DataStatus,
    Heartbeat,
    Keys,
    Streams,
    encode,
)


async def flag(bus, symbol: str, status: DataStatus, publish: bool = True) -> None:
    """Write `symbol`'s data health as data-ingestion does (hash, history, channel)."""
    reason = "" if status is DataStatus.OK else "no good tick for over 3s"
    data = encode(DataHealth(symbol, status, reason, 0.0))
    batch = Batch()
    batch.hset_latest(Keys.HEALTH, symbol, data)
    batch.append(Streams.HEALTH_HISTORY, data)
    if publish:
        batch.publish(Channels.HEALTH, data)
    await bus.execute(batch, transaction=True)


async def risk_sees_ok(bus) -> bool:
    health = await bus.hget_all(Keys.HEALTH, DataHealth)
    return all(health.get(s) and health[s].status is DataStatus.OK for s in ("TLT", "TLTW"))


async def risk_ready(bus) -> bool:
    beat = await bus.get_latest(Keys.heartbeat("risk-management"), Heartbeat)
    return beat is not None and beat.status == "ok"


@pytest.mark.parametrize("race", ["flagged_while_deciding", "flag_not_yet_delivered"])
async def test_an_entry_is_refused_when_a_legs_data_is_flagged_at_the_moment_of_sending(
    gateway, redis_url, bus, race
):
    async with market(gateway, redis_url, bus), observer(gateway) as ib:
        await async_eventually(lambda: risk_sees_ok(bus), 10, what="TLT and TLTW ok")

        async def stale_now() -> None:
            await flag(bus, "TLTW", DataStatus.STALE)

        if race == "flagged_while_deciding":
            seams.arm("risk.approved", stale_now)
        try:
            async with risk_service(gateway, redis_url):
                await async_eventually(lambda: risk_ready(bus), 10, what="risk reconciled")
                if race == "flag_not_yet_delivered":
                    await flag(bus, "TLTW", DataStatus.STALE, publish=False)
                entry = await entry_intent(bus, "e-1")
                await bus.append(Streams.INTENTS, entry)
                decision = await decision_of(bus, "e-1")
                assert not decision.approved
                assert [r.code for r in decision.reasons] == ["STALE_DATA"]
                assert decision.reasons[0].message.startswith("TLTW: data stale")
                record = await bus.hget_state(Keys.INTENT_STATUS, "e-1")
                assert record["status"] == "rejected"
                assert {leg["state"] for leg in record["legs"]} <= {"rejected"}
                assert [t for t in await orders_at_ib(ib) if t.order.orderRef == "e-1"] == []
                assert gateway.faults.broker_truth().orders == ()

                # nothing is left waiting on the refused intent: once TLTW is ok the next
                # entry is placed
                seams.disarm("risk.approved")
                await flag(bus, "TLTW", DataStatus.OK)
                again = await entry_intent(bus, "e-2")
                await bus.append(Streams.INTENTS, again)
                assert (await decision_of(bus, "e-2")).approved
                await async_eventually(lambda: _at_ib(ib, "e-2"), 10, what="both legs of e-2 at IB")
        finally:
            seams.disarm("risk.approved")


async def _at_ib(ib, ref: str) -> bool:
    return len([t for t in await orders_at_ib(ib) if t.order.orderRef == ref]) == 2
