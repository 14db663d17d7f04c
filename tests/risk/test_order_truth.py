"""What risk-management believes about its orders is what IB reports: reproductions of the
independent fault test's findings, each against ibsim's broker truth.

1. Orders sent into a dying connection were left "working" forever, and every later intent of
   the pair was refused ORDER_WORKING (a wedge that looked healthy).
2. A leg that filled while risk was down was kept "working, 0 filled" after the restart; the
   legging rule then unwound the other leg: a hedged pair became a naked short.
3. The legging clock ran from a fill older than the other leg's placement: a leg placed right
   after a restart was declared legged at once and the pair unwound while both were filling.
"""

from __future__ import annotations

import asyncio
import time

from tests.risk.stack import (
    TLT_ID,
    TLTW_ID,
    alerts_of,
    decision_of,
    entry_intent,
    holds,
    market,
    observer,
    orders_at_ib,
    positions_of,
    risk_service,
    with_call,
)
from tests.support import async_eventually
from trading import seams
from trading.bus import DataHealth, Heartbeat, IntentPurpose, Keys, Severity, Side, Streams

LEGGING_TIMEOUT_S = 2.0


async def intent_legs(bus, intent_id: str) -> list[dict]:
    record = await bus.hget_state(Keys.INTENT_STATUS, intent_id)
    return [] if record is None else record["legs"]


async def risk_heartbeat(bus) -> Heartbeat | None:
    return await bus.get_latest(Keys.heartbeat("risk-management"), Heartbeat)


async def test_orders_lost_with_the_connection_are_resolved_and_never_block_the_pair(
    gateway, redis_url, bus
):
    async with (
        market(gateway, redis_url, bus),
        risk_service(gateway, redis_url),
        observer(gateway) as ib,
    ):
        gateway.faults.drop_on_next_place_order()
        await bus.append(Streams.INTENTS, await entry_intent(bus, "e-1"))
        assert (await decision_of(bus, "e-1")).approved
        # IB never received either leg (the BAG killed the socket, the TLTW order went with it)
        await async_eventually(
            holds(lambda: gateway.faults.broker_truth().lost), 10, what="the order lost at IB"
        )

        async def resolved():
            legs = await intent_legs(bus, "e-1")
            return legs and all(leg["state"] == "lost" for leg in legs)

        await async_eventually(resolved, 20, what="both legs resolved as lost after reconnect")
        lost_alerts = [a for a in await alerts_of(bus) if a.code == "order_lost"]
        assert len(lost_alerts) == 1 and lost_alerts[0].severity == Severity.CRITICAL
        assert "e-1" in lost_alerts[0].message
        # nothing of e-1 exists at IB, and the pair is free: the next entry trades at once
        assert not [o for o in gateway.faults.broker_truth().orders if o.order_ref == "e-1"]
        entry = await entry_intent(bus, "e-2")
        await bus.append(Streams.INTENTS, entry)
        assert (await decision_of(bus, "e-2")).approved
        expected = {TLT_ID: 100.0, entry.legs[0].option_con_id: -1.0, TLTW_ID: -375.0}
        await async_eventually(
            holds(lambda: positions_of(ib) == expected), 10, what="e-2 filled at IB"
        )

        async def healthy():
            beat = await risk_heartbeat(bus)
            return beat is not None and beat.status == "ok"

        await async_eventually(healthy, 10, what="risk's heartbeat ok again")


async def test_a_leg_filled_while_risk_was_down_is_booked_filled_and_never_unwound(
    gateway, redis_url, bus
):
    async with market(gateway, redis_url, bus), observer(gateway) as ib:
        gateway.faults.hold_fills(["TLTW"])
        entry = await entry_intent(bus, "e-1")
        call_id = entry.legs[0].option_con_id
        async with risk_service(gateway, redis_url, legging_timeout_s=LEGGING_TIMEOUT_S):
            await bus.append(Streams.INTENTS, entry)
            assert (await decision_of(bus, "e-1")).approved

            async def legged_working():
                legs = await intent_legs(bus, "e-1")
                return [(leg["state"], leg["filled"]) for leg in legs] == [
                    ("filled", 1.0),
                    ("working", 0.0),
                ]

            await async_eventually(legged_working, 10, what="BAG filled, TLTW working")
        # risk is down; the TLTW leg fills in full at IB
        gateway.faults.release_fills()
        whole = {TLT_ID: 100.0, call_id: -1.0, TLTW_ID: -375.0}
        await async_eventually(holds(lambda: positions_of(ib) == whole), 10, what="filled")
        async with risk_service(gateway, redis_url, legging_timeout_s=LEGGING_TIMEOUT_S):

            async def booked_filled():
                legs = await intent_legs(bus, "e-1")
                return [(leg["state"], leg["filled"]) for leg in legs] == [
                    ("filled", 1.0),
                    ("filled", 375.0),
                ]

            await async_eventually(booked_filled, 10, what="the TLTW leg filled after restart")
            # a wrong legging decision would act within the timeout: give it the time to show
            await asyncio.sleep(LEGGING_TIMEOUT_S + 1.5)
        assert positions_of(ib) == whole
        assert not [t for t in await orders_at_ib(ib) if t.order.orderRef.endswith(":unwind")]
        assert not [a for a in await alerts_of(bus) if a.code == "legging"]


async def test_a_leg_placed_after_a_restart_gets_its_whole_legging_timeout(gateway, redis_url, bus):
    """Risk dies between the BAG's placeOrder and the TLTW's; the BAG fills while it is down
    (longer than the legging timeout). On restart IB confirms it never saw the TLTW leg, which
    is sent then: the legging clock starts once both legs are acknowledged, so the TLTW leg
    filling normally (held for half the timeout) is not unwound."""
    async with market(gateway, redis_url, bus), observer(gateway) as ib:
        crashed = asyncio.Event()

        async def die() -> None:
            crashed.set()
            await asyncio.sleep(3600)  # the process "dies" here: cancelled below

        entry = await entry_intent(bus, "e-1")
        call_id = entry.legs[0].option_con_id
        seams.arm("risk.leg_sent", die)
        try:
            async with risk_service(gateway, redis_url, legging_timeout_s=LEGGING_TIMEOUT_S):
                await bus.append(Streams.INTENTS, entry)
                await asyncio.wait_for(crashed.wait(), 10)
        finally:
            seams.disarm("risk.leg_sent")
        await async_eventually(
            holds(lambda: positions_of(ib) == {TLT_ID: 100.0, call_id: -1.0}), 10, what="BAG"
        )
        await asyncio.sleep(LEGGING_TIMEOUT_S + 0.5)  # down longer than the legging timeout
        gateway.faults.hold_fills(["TLTW"])
        async with risk_service(gateway, redis_url, legging_timeout_s=LEGGING_TIMEOUT_S):

            async def tltw_working():
                legs = await intent_legs(bus, "e-1")
                return len(legs) == 2 and legs[1]["state"] == "working"

            await async_eventually(tltw_working, 10, what="the TLTW leg sent after restart")
            await asyncio.sleep(LEGGING_TIMEOUT_S / 2)
            gateway.faults.release_fills()
            whole = {TLT_ID: 100.0, call_id: -1.0, TLTW_ID: -375.0}
            await async_eventually(holds(lambda: positions_of(ib) == whole), 10, what="whole")
            await asyncio.sleep(LEGGING_TIMEOUT_S)
        assert positions_of(ib) == whole
        refs = [t.order.orderRef for t in await orders_at_ib(ib)]
        assert refs.count("e-1") == 2  # one BAG, one TLTW: nothing sent twice
        assert not [r for r in refs if r.endswith(":unwind")]


async def test_a_late_acknowledgement_is_looked_up_at_ib_and_the_order_kept(
    gateway, redis_url, bus
):
    """IB works the orders but its answers come 3 s late; after 0.5 s risk asks IB, which
    knows them: they are adopted as IB reports them, never declared lost."""
    async with (
        market(gateway, redis_url, bus),
        risk_service(gateway, redis_url, ack_timeout_s=0.5),
        observer(gateway) as ib,
    ):
        gateway.faults.delay_acks(3.0)
        entry = await entry_intent(bus, "e-1")
        await bus.append(Streams.INTENTS, entry)
        assert (await decision_of(bus, "e-1")).approved

        async def filled():
            legs = await intent_legs(bus, "e-1")
            return [leg["state"] for leg in legs] == ["filled", "filled"] and legs

        legs = await async_eventually(filled, 10, what="both legs filled, found by the lookup")
        assert all(leg["acknowledged_at"] - leg["sent_at"] < 3.0 for leg in legs)
        whole = {TLT_ID: 100.0, entry.legs[0].option_con_id: -1.0, TLTW_ID: -375.0}
        await async_eventually(holds(lambda: positions_of(ib) == whole), 10, what="at IB")
        await asyncio.sleep(3.0)  # the late answers arrive: nothing changes, nothing is lost
        assert not [a for a in await alerts_of(bus) if a.code == "order_lost"]
        assert [o.order_ref for o in gateway.faults.broker_truth().orders] == ["e-1", "e-1"]


async def test_no_order_is_placed_while_ib_has_lost_its_servers(gateway, redis_url, bus):
    """Error 1100: IB's own link is down. Intents wait (not decided, not acknowledged) until
    1102, then are decided after a reconciliation; trading goes on once the data is fresh."""
    async with (
        market(gateway, redis_url, bus),
        risk_service(gateway, redis_url),
        observer(gateway) as ib,
    ):

        async def degraded():
            beat = await risk_heartbeat(bus)
            return beat is not None and beat.status == "degraded" and beat

        async def healthy():
            beat = await risk_heartbeat(bus)
            return beat is not None and beat.status == "ok"

        await async_eventually(healthy, 10, what="risk connected and reconciled")
        gateway.faults.send_error(1100)
        beat = await async_eventually(degraded, 10, what="risk reports degraded")
        assert "1100" in " ".join(beat.detail["problems"])
        entry = await entry_intent(bus, "e-1")
        await bus.append(Streams.INTENTS, entry)
        await asyncio.sleep(1.0)  # an order placed now would be on IB's books by then
        assert gateway.faults.broker_truth().orders == ()
        assert await bus.hget_state(Keys.INTENT_STATUS, "e-1") is None
        restored = time.time()
        gateway.faults.send_error(1102)
        # decided once IB is back (refused if the data is still flagged from the outage: the
        # data-ingestion service clears its flag on its own 1102)
        first = await decision_of(bus, "e-1")
        assert first.ts >= restored

        async def data_ok():
            health = await bus.hget_all(Keys.HEALTH, DataHealth)
            return all(health[s].status == "ok" for s in ("TLT", "TLTW"))

        await async_eventually(data_ok, 10, what="TLT and TLTW fresh again")
        entry = await entry_intent(bus, "e-2")
        await bus.append(Streams.INTENTS, entry)
        assert (await decision_of(bus, "e-2")).approved
        units = 2 if first.approved else 1
        whole = {
            TLT_ID: 100.0 * units,
            entry.legs[0].option_con_id: -units,
            TLTW_ID: -375.0 * units,
        }
        await async_eventually(holds(lambda: positions_of(ib) == whole), 10, what="placed")


async def test_an_exit_while_the_entry_works_is_superseded_by_risks_own_close(
    gateway, redis_url, bus
):
    """The strategy's exit arrives while its entry's TLTW leg still works: risk refuses it
    SUPERSEDED (never ORDER_WORKING, which made the strategy ask again every bar), cancels the
    TLTW order and flattens the buy-write the entry did buy."""
    async with (
        market(gateway, redis_url, bus),
        risk_service(gateway, redis_url),
        observer(gateway) as ib,
    ):
        gateway.faults.hold_fills(["TLTW"])
        entry = await entry_intent(bus, "e-1")
        call_id = entry.legs[0].option_con_id
        await bus.append(Streams.INTENTS, entry)
        assert (await decision_of(bus, "e-1")).approved
        await async_eventually(
            holds(lambda: positions_of(ib) == {TLT_ID: 100.0, call_id: -1.0}), 10, what="BAG"
        )
        exit_ = with_call(
            await entry_intent(bus, "x-1", bw_side=Side.SELL, purpose=IntentPurpose.EXIT),
            entry.legs[0],
        )
        await bus.append(Streams.INTENTS, exit_)
        decision = await decision_of(bus, "x-1")
        assert not decision.approved
        assert [r.code for r in decision.reasons] == ["SUPERSEDED"]
        await async_eventually(holds(lambda: positions_of(ib) == {}), 15, what="flat at IB")
        truth = gateway.faults.broker_truth()
        (tltw_order,) = [
            o for o in truth.orders if o.order_ref == "e-1" and o.con_ids == (TLTW_ID,)
        ]
        assert (tltw_order.status, tltw_order.filled) == ("Cancelled", 0.0)
        closes = [o for o in truth.orders if o.order_ref.startswith("flatten-p-1")]
        assert [o.con_ids for o in closes] == [(TLT_ID, call_id)] and closes[0].status == "Filled"
        assert not [o for o in truth.orders if o.order_ref == "x-1"]  # never sent as it was


async def test_the_rest_of_an_intent_partly_at_ib_is_sent_under_its_approval_after_a_restart(
    gateway, redis_url, bus
):
    """Risk dies between the BAG and the TLTW order; it restarts with limits that would refuse
    the intent now. Part of it is at IB already: the TLTW leg is sent under the approval it had
    (gated again and refused, it was left unsent for good and the pair's close waited on it
    forever: found by the fault suite)."""
    async with market(gateway, redis_url, bus), observer(gateway) as ib:
        crashed = asyncio.Event()

        async def die() -> None:
            crashed.set()
            await asyncio.sleep(3600)

        entry = await entry_intent(bus, "e-1")
        seams.arm("risk.leg_sent", die)
        try:
            async with risk_service(gateway, redis_url):
                await bus.append(Streams.INTENTS, entry)
                await asyncio.wait_for(crashed.wait(), 10)
        finally:
            seams.disarm("risk.leg_sent")
        async with risk_service(gateway, redis_url, max_tltw_shares=10):  # would refuse it now
            whole = {TLT_ID: 100.0, entry.legs[0].option_con_id: -1.0, TLTW_ID: -375.0}
            await async_eventually(holds(lambda: positions_of(ib) == whole), 15, what="whole")
        refs = [o.order_ref for o in gateway.faults.broker_truth().orders]
        assert refs == ["e-1", "e-1"]


async def test_fills_of_an_intent_decided_just_before_a_crash_stay_with_their_pair(
    gateway, redis_url, bus
):
    """Risk's state (with which intent is which pair's) is saved every second; killed within
    that second of an entry, the restarted risk booked the entry's fills to no pair and
    refused the pair's exit EXCEEDS_HOLDINGS for good (found by the fault suite). The intent's
    own record, written before its placeOrder, names its pair."""
    async with market(gateway, redis_url, bus), observer(gateway) as ib:
        entry = await entry_intent(bus, "e-1")
        async with risk_service(gateway, redis_url):
            await bus.append(Streams.INTENTS, entry)
            assert (await decision_of(bus, "e-1")).approved
            whole = {TLT_ID: 100.0, entry.legs[0].option_con_id: -1.0, TLTW_ID: -375.0}
            await async_eventually(holds(lambda: positions_of(ib) == whole), 10, what="filled")

            async def saved():
                state = await bus.get_state(Keys.RISK_STATE)
                return state if state and "e-1" in state["book"]["pair_of_intent"] else None

            state = await async_eventually(saved, 10, what="risk's state saved")
        state["book"]["pair_of_intent"].pop("e-1")  # as if killed before the state was saved
        await bus.set_state(Keys.RISK_STATE, state)
        async with risk_service(gateway, redis_url):
            exit_ = with_call(
                await entry_intent(bus, "x-1", bw_side=Side.SELL, purpose=IntentPurpose.EXIT),
                entry.legs[0],
            )
            await bus.append(Streams.INTENTS, exit_)
            assert (await decision_of(bus, "x-1")).approved
            await async_eventually(holds(lambda: positions_of(ib) == {}), 10, what="flat")
