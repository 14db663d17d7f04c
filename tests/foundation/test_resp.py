"""The bus's lean Redis connections (trading/bus/resp.py) and the ordered Sender, against a real
redis-server: replies matched to their callers, errors, transactions, authentication and the
database of the URL, a lost connection, pub/sub back-pressure, order across a Redis restart."""

from __future__ import annotations

import asyncio

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from tests.support import async_eventually
from trading.bus import Batch, Bus, Sender
from trading.bus import resp as resp_module
from trading.bus.resp import Pipe, Subscription, raise_errors
from trading.redis_server import EmbeddedRedis


async def test_replies_reach_their_callers_in_order_however_calls_interleave(redis_url):
    pipe = await Pipe.open(redis_url, "test")
    try:

        async def worker(i: int) -> list:
            out = []
            for j in range(50):
                replies = await pipe.call(
                    [("INCR", f"n{i}"), ("GET", f"n{i}"), ("ECHO", f"{i}:{j}")]
                )
                out.append(replies)
            return out

        results = await asyncio.gather(*(worker(i) for i in range(8)))
        for i, replies in enumerate(results):
            assert replies == [[j + 1, str(j + 1).encode(), f"{i}:{j}".encode()] for j in range(50)]
    finally:
        pipe.close()


async def test_a_cancelled_caller_leaves_the_connection_in_step(redis_url):
    pipe = await Pipe.open(redis_url, "test")
    try:
        slow = asyncio.create_task(pipe.call([("DEBUG", "SLEEP", "0.2"), ("ECHO", "dropped")]))
        await asyncio.sleep(0.05)
        slow.cancel()
        assert await pipe.call([("ECHO", "next")]) == [b"next"]
    finally:
        pipe.close()


async def test_error_replies_are_values_until_raised_and_a_transaction_is_atomic(redis_url):
    pipe = await Pipe.open(redis_url, "test")
    try:
        replies = await pipe.call([("SET", "s", "x"), ("INCR", "s"), ("GET", "s")])
        assert replies[0] == b"OK" and replies[2] == b"x"
        assert isinstance(replies[1], ResponseError)
        with pytest.raises(ResponseError, match="not an integer"):
            raise_errors(replies)
        # Inside MULTI/EXEC the error is an element of EXEC's array.
        replies = await pipe.call([("MULTI",), ("SET", "t", "1"), ("INCR", "s"), ("EXEC",)])
        assert replies[:3] == [b"OK", b"QUEUED", b"QUEUED"]
        with pytest.raises(ResponseError):
            raise_errors(replies)
    finally:
        pipe.close()


async def test_the_url_s_password_and_database_are_used(redis_server):
    admin = redis.Redis.from_url(redis_server.url)
    admin.config_set("requirepass", "s3cret")
    try:
        host_port = redis_server.url.split("//", 1)[1].split("/", 1)[0]
        pipe = await Pipe.open(f"redis://:s3cret@{host_port}/3", "test")
        try:
            await pipe.call([("SET", "where", "db3")])
            assert await pipe.call([("CLIENT", "GETNAME")]) == [b"test"]
        finally:
            pipe.close()
        checker = redis.Redis.from_url(f"redis://:s3cret@{host_port}/3")
        assert checker.get("where") == b"db3"
        assert redis.Redis.from_url(f"redis://:s3cret@{host_port}/0").get("where") is None
        with pytest.raises(ResponseError):
            await Pipe.open(f"redis://:wrong@{host_port}/0", "test")
    finally:
        redis.Redis.from_url(redis_server.url, password="s3cret").config_set("requirepass", "")


async def test_a_lost_connection_fails_every_waiting_call_and_later_ones(redis_server):
    pipe = await Pipe.open(redis_server.url, "test")
    waiting = asyncio.create_task(pipe.call([("BLPOP", "never", "0")]))
    await asyncio.sleep(0.05)
    redis_server.kill()
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(waiting, 5)
    assert not pipe.healthy
    with pytest.raises(RedisConnectionError):
        await pipe.call([("PING",)])
    with pytest.raises(RedisConnectionError):
        await Pipe.open(redis_server.url, "test")


async def test_a_subscription_is_confirmed_before_it_returns_and_reads_in_batches(redis_url):
    sub = await Subscription.subscribe(redis_url, "test", ["a", "b"])
    publisher = redis.Redis.from_url(redis_url)
    try:
        # Confirmed: a message published right after the return is received.
        assert publisher.publish("a", b"1") == 1
        with publisher.pipeline(transaction=False) as pipe:
            for i in range(2, 40):
                pipe.publish("b" if i % 2 else "a", str(i).encode())
            pipe.execute()
        got: list[tuple[bytes, bytes]] = []
        while len(got) < 39:
            got += await asyncio.wait_for(sub.take(), 5)
        assert got == [(b"a", b"1")] + [
            (b"b" if i % 2 else b"a", str(i).encode()) for i in range(2, 40)
        ]
    finally:
        publisher.close()
        sub.close()


async def test_a_slow_reader_stops_reading_the_socket_and_loses_nothing(redis_url, monkeypatch):
    monkeypatch.setattr(resp_module, "HIGH_WATER", 50)
    sub = await Subscription.subscribe(redis_url, "test", ["a"])
    publisher = redis.Redis.from_url(redis_url)
    try:
        with publisher.pipeline(transaction=False) as pipe:
            for i in range(500):
                pipe.publish("a", str(i).encode())
            pipe.execute()
        await async_eventually(lambda: _true(sub.paused), what="reading paused")
        assert len(sub.messages) == 50  # the rest waits unparsed, in the socket and in Redis
        got: list[bytes] = []
        while len(got) < 500:
            got += [data for _, data in await asyncio.wait_for(sub.take(), 5)]
        assert got == [str(i).encode() for i in range(500)]
        assert not sub.paused
    finally:
        publisher.close()
        sub.close()


async def test_a_lost_subscription_raises_once_its_queue_is_read(redis_server):
    sub = await Subscription.subscribe(redis_server.url, "test", ["a"])
    publisher = redis.Redis.from_url(redis_server.url)
    publisher.publish("a", b"last")
    await async_eventually(lambda: _true(sub.messages), what="message queued")
    redis_server.kill()
    await async_eventually(lambda: _true(sub.lost), what="connection lost")
    assert await sub.take() == [(b"a", b"last")]
    with pytest.raises(RedisConnectionError):
        await sub.take()
    publisher.close()


async def test_sender_keeps_the_order_of_batches_across_a_redis_restart(redis_server):
    """Batches made while Redis is down, and those written on the connection that was lost,
    land after Redis is back, in the order they were made."""
    bus = await Bus.connect(redis_server.url, "test")
    sender = Sender(bus)
    confirmed: list[int] = []

    async def confirm() -> None:
        async for note in sender.confirmed():
            confirmed.append(note)

    def batch(i: int) -> Batch:
        b = Batch()
        b.commands.append(("RPUSH", "order", i))
        return b

    task = asyncio.create_task(confirm())
    try:
        sender.send(batch(0), 0)  # the connection is not open yet: the task sends it
        await async_eventually(lambda: _true(confirmed), what="first batch")
        for i in range(1, 20):
            sender.send(batch(i), i)
        redis_server.kill()
        for i in range(20, 40):
            sender.send(batch(i), i)
            await asyncio.sleep(0.005)
        redis_server.start()
        for i in range(40, 60):
            sender.send(batch(i), i)
            await asyncio.sleep(0.002)
        await async_eventually(lambda: _true(len(confirmed) == 60), timeout_s=20, what="all")
        assert confirmed == list(range(60))
        stored = [int(x) for x in redis.Redis.from_url(redis_server.url).lrange("order", 0, -1)]
        # Redis was killed without saving: what it held is gone; batches written on the lost
        # connection and unconfirmed were sent again. In order, once each, none missing after.
        assert stored == sorted(set(stored))
        assert stored[-40:] == list(range(20, 60))
    finally:
        task.cancel()
        await bus.close()


async def _true(value) -> bool:
    return bool(value)


async def test_sender_sends_what_waited_at_once_when_the_connection_opens(redis_server):
    """Batches made before the connection opened wait; once the first is answered (sent with
    retries, which opens it), the rest go out on it together, in order: one retried send, not
    one round trip each (a producer faster than a round trip never caught up that way)."""
    bus = await Bus.connect(redis_server.url, "test")
    sender = Sender(bus)
    execute = bus.execute
    retried: list[int] = []

    async def counted(batch: Batch, transaction: bool = False) -> None:
        retried.append(len(batch.commands))
        await execute(batch, transaction)

    bus.execute = counted  # type: ignore[method-assign]
    confirmed: list[int] = []

    async def confirm() -> None:
        async for note in sender.confirmed():
            confirmed.append(note)

    for i in range(2000):
        b = Batch()
        b.commands.append(("RPUSH", "order", i))
        sender.send(b, i)
    task = asyncio.create_task(confirm())
    try:
        await async_eventually(lambda: _true(len(confirmed) == 2000), timeout_s=20, what="all")
        assert confirmed == list(range(2000))
        assert retried == [1]
        stored = [int(x) for x in redis.Redis.from_url(redis_server.url).lrange("order", 0, -1)]
        assert stored == list(range(2000))
        after = Batch()
        after.commands.append(("RPUSH", "order", 2000))
        sender.send(after, 2000)  # the connection is open and nothing waits: written at once
        assert sender.queue[-1][2] is not None
    finally:
        task.cancel()
        await bus.close()


async def test_a_restarted_redis_still_loading_its_dataset_is_waited_for_not_an_error(tmp_path):
    """A restarted server answers LOADING to every command until its dataset is read: the lean
    connection's calls are retried through it (it ended the strategy's and risk's loops in the
    fault suite when a call landed in it), and the Sender's batches land after it."""
    server = EmbeddedRedis(persist_dir=tmp_path).start()
    try:
        sync = redis.Redis.from_url(server.url)
        sync.execute_command("DEBUG", "POPULATE", 3_000_000)  # about 1-2 s to load
        sync.bgrewriteaof()
        while (
            sync.info("persistence")["aof_rewrite_in_progress"]
            or sync.info("persistence")["aof_rewrite_scheduled"]
        ):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # the rewritten file swapped in
        sync.close()
        bus = await Bus.connect(server.url, "test")
        try:
            server.kill()
            restarting = asyncio.create_task(asyncio.to_thread(server.start, 60.0))
            loading: list[str] = []
            while not restarting.done() and not loading:  # the server up and still loading
                try:
                    pipe = await Pipe.open(server.url, "probe")
                except RedisConnectionError:
                    await asyncio.sleep(0.01)
                    continue
                replies = await pipe.call([("PING",)])
                pipe.close()
                if isinstance(replies[0], ResponseError):
                    loading.append(str(replies[0]))
            assert loading and loading[0].startswith("LOADING")
            batch = Batch()
            batch.commands.append(("SET", "after-restart", "1"))
            await bus.execute(batch)  # retried until the dataset is loaded
            await restarting
            assert redis.Redis.from_url(server.url).get("after-restart") == b"1"
            assert redis.Redis.from_url(server.url).dbsize() == 3_000_001
        finally:
            await bus.close()
    finally:
        server.stop()
