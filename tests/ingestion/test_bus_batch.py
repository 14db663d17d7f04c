"""Bus.execute(Batch): one round trip that stores, publishes and appends encoded messages."""

from __future__ import annotations

import asyncio

from trading.bus import Batch, Channels, Keys, Quote, Streams, decode, encode


async def test_batch_sets_hsets_publishes_and_appends_in_one_round_trip(bus):
    quote = Quote("TLT", 15547841, 90.01, 90.03, 300.0, 500.0, None, 1.0, 2.0)
    data = encode(quote)
    received = []

    async def listen():
        async for channel, msg in bus.subscribe(Channels.QUOTES):
            received.append((channel, msg))
            return

    listener = asyncio.create_task(listen())
    while not (await bus.redis.pubsub_numsub(Channels.QUOTES))[0][1]:
        await asyncio.sleep(0.01)
    batch = Batch()
    batch.set_latest(Keys.quote("TLT"), data)
    batch.hset_latest(Keys.OPTION_INDEX, "1", data)
    batch.hset_latest(Keys.OPTION_INDEX, "2", data)
    batch.hdel(Keys.OPTION_INDEX, "2")
    batch.publish(Channels.QUOTES, data)
    batch.append(Streams.history("TLT"), data, maxlen=10)
    assert len(batch) == 6
    await bus.execute(batch)
    await asyncio.wait_for(listener, 5)
    assert await bus.get_latest(Keys.quote("TLT"), Quote) == quote
    assert set(await bus.hget_all(Keys.OPTION_INDEX, Quote)) == {"1"}
    assert received == [(Channels.QUOTES, quote)]
    history = await bus.read_range(Streams.history("TLT"), 10, Quote)
    assert [entry.message for entry in history] == [quote]
    assert decode(data) == quote


async def test_empty_batch_is_a_no_op(bus):
    await bus.execute(Batch())


async def test_batch_sets_many_keys_and_hash_members_in_one_command_each(bus):
    a = Quote("TLT", 1, 90.0, 90.1, 1.0, 1.0, None, 1.0, 2.0)
    b = Quote("TLTW", 2, 24.0, 24.1, 1.0, 1.0, None, 1.0, 2.0)
    batch = Batch()
    batch.set_many({Keys.quote("TLT"): encode(a), Keys.quote("TLTW"): encode(b)})
    batch.hset_many(Keys.OPTION_INDEX, {"1": encode(a), "2": encode(b)})
    batch.set_many({})
    batch.hset_many(Keys.OPTION_INDEX, {})
    assert len(batch) == 2
    await bus.execute(batch)
    assert await bus.get_latest(Keys.quote("TLTW"), Quote) == b
    assert await bus.hget_all(Keys.OPTION_INDEX, Quote) == {"1": a, "2": b}
