"""The bus against a real redis-server: schemas, pub/sub, streams, consumer groups, restarts."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
import typing

import orjson
import pytest

from tests.support import async_eventually
from trading import bus as b
from trading.bus import Bus, Channels, Groups, Keys, MessageError, Streams, decode, encode
from trading.bus.messages import slot_constructor
from trading.redis_server import EmbeddedRedis

T = 1_764_000_000.0

SAMPLES: list[b.Message] = [
    b.Quote("TLT", 15547841, 90.01, 90.02, 500.0, 700.0, 90.015, T, T + 0.001),
    b.OptionQuote(
        "TLT",
        700000001,
        "TLT   261218C00090000",
        "20261218",
        90.0,
        "C",
        1.52,
        1.56,
        10.0,
        12.0,
        0.14,
        0.52,
        0.09,
        0.11,
        -0.031,
        90.0,
        1.54,
        T,
        T + 0.001,
        delayed=True,
    ),
    b.EtfNav("TLTW", 23.41, T, T),
    b.Dividends("TLTW", 3.1, 3.0, "20261201", 0.26, T),
    b.DataHealth("TLT", b.DataStatus.STALE, "2103 market data farm broken", T),
    b.OptionChain(
        "TLT",
        15547841,
        ("20261218", "20270115"),
        (89.0, 90.0, 91.0),
        (b.ChainOption(700000001, "TLT   261218C00090000", "20261218", 90.0, "C"),),
        90.0,
        T,
    ),
    b.SpreadPoint(
        T,
        88.5,
        23.4,
        0.98,
        0.01,
        0.0012,
        0.0002,
        0.0005,
        2.0,
        2.0,
        0.5,
        4.0,
        "delta",
        "FLAT",
        700000001,
        90.0,
        "20261218",
    ),
    b.Signal(T, b.SignalAction.ENTER_SHORT_SPREAD, "SHORT_SPREAD", 2.3, 0.0015, "z above entry"),
    b.OrderIntent(
        "int-1",
        "pair-1",
        T,
        b.IntentPurpose.ENTRY,
        b.SignalAction.ENTER_SHORT_SPREAD,
        (
            b.IntentLeg(
                b.LegKind.BUY_WRITE,
                "TLT",
                b.Side.BUY,
                2,
                8848.46,
                15547841,
                700000001,
                "20261218",
                90.0,
            ),
            b.IntentLeg(b.LegKind.STOCK, "TLTW", b.Side.SELL, 760, 23.39, 545186218),
        ),
        {"z": 2.3, "kelly": {"f_star": 1.2, "fraction": 0.5}, "note": "x"},
    ),
    b.RiskDecision("int-1", T, False, (b.RiskReason("ORDER_SIZE", "1,200 > 1,000 shares"),)),
    b.OrderEvent(
        T,
        "int-1",
        17,
        9001,
        "stock",
        "TLTW",
        b.Side.SELL,
        760.0,
        "LMT",
        23.39,
        "Submitted",
        0.0,
        760.0,
        0.0,
    ),
    b.Fill(
        T,
        "0001.01",
        17,
        9001,
        "int-1",
        "TLTW",
        "TLTW",
        545186218,
        "STK",
        b.Side.SELL,
        760.0,
        23.39,
        1.0,
        3.8,
    ),
    b.Position("TLT", "TLT", 15547841, "STK", 200.0, 90.02, 1.0, 90.05, 6.0, 0.0, T),
    b.PnL(T, 12.5, -3.25, 5.3, 3.95, {"pair-1": 3.95}),
    b.RiskStatus(T, "ACTIVE", "", {"gross_notional": 0.42}),
    b.Heartbeat("strategy", T, "ok", {"ticks": 12}),
    b.Alert(T, b.Severity.WARNING, "risk-management", "LEGGING", "TLTW leg not filled", {"a": 1}),
    b.OperatorCommand("cmd-1", T, b.Command.KILL, "dashboard", "test", flatten=True),
]


def sample(cls: type[b.M]) -> b.M:
    return next(m for m in SAMPLES if type(m) is cls)


def test_every_registered_message_type_has_a_sample():
    assert {type(m) for m in SAMPLES} | {b.IntentLeg, b.RiskReason, b.ChainOption} == set(
        b.MESSAGE_TYPES.values()
    )


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).KIND)
def test_every_message_type_round_trips(msg):
    assert decode(encode(msg)) == msg
    assert decode(encode(msg), type(msg)) == msg


def _has_default_factory(cls: type) -> bool:
    return any(f.default_factory is not dataclasses.MISSING for f in dataclasses.fields(cls))


@pytest.mark.parametrize(
    "msg", [m for m in SAMPLES if not _has_default_factory(type(m))], ids=lambda m: type(m).KIND
)
def test_slot_constructor_builds_what_init_builds_and_it_stays_frozen(msg):
    names = [f.name for f in dataclasses.fields(msg)]
    built = slot_constructor(type(msg))(*(getattr(msg, name) for name in names))
    assert type(built) is type(msg)
    assert built == msg
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, names[0], None)


def test_slot_constructor_fills_left_off_defaults_and_refuses_default_factories():
    quote = slot_constructor(b.Quote)("TLT", 1, 90.0, 90.01, 1.0, 1.0, None, T, T)
    assert quote == b.Quote("TLT", 1, 90.0, 90.01, 1.0, 1.0, None, T, T)
    assert quote.delayed is False
    with pytest.raises(TypeError, match="PnL.per_pair"):
        slot_constructor(b.PnL)


def test_decoded_numbers_keep_their_types():
    q = decode(encode(b.Quote("TLT", 1, 90, 91, 1, 1, None, T, T)), b.Quote)
    assert type(q.bid) is float and q.bid == 90.0
    assert q.last is None


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_encode_rejects_non_finite_numbers_naming_the_field(bad):
    q = b.Quote("TLT", 1, bad, 91.0, 1.0, 1.0, None, T, T)
    with pytest.raises(MessageError, match=r"quote\.bid: must be finite") as exc:
        encode(q)
    assert exc.value.field == "bid"


def test_encode_rejects_nan_inside_a_nested_leg():
    leg = b.IntentLeg(b.LegKind.STOCK, "TLTW", b.Side.BUY, 10, math.nan, 1)
    intent = b.OrderIntent("i", "p", T, b.IntentPurpose.ENTRY, b.SignalAction.EXIT, (leg,))
    with pytest.raises(MessageError, match=r"legs\[0\]") as exc:
        encode(intent)
    assert "limit_price" in str(exc.value)


def test_encode_rejects_nan_inside_free_form_why():
    intent = b.OrderIntent(
        "i", "p", T, b.IntentPurpose.ENTRY, b.SignalAction.EXIT, (), {"kelly": {"mu": math.nan}}
    )
    with pytest.raises(MessageError, match=r"why\.kelly\.mu"):
        encode(intent)


def _tamper(msg: b.Message, **changes) -> bytes:
    body = orjson.loads(encode(msg))
    for k, v in changes.items():
        if v is dataclasses.MISSING:
            del body[k]
        else:
            body[k] = v
    return orjson.dumps(body)


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        ({"bid": dataclasses.MISSING}, "bid", "is missing"),
        ({"bid": "90.1"}, "bid", "must be a number"),
        ({"con_id": 1.5}, "con_id", "must be an integer"),
        ({"con_id": True}, "con_id", "must be an integer"),
        ({"symbol": 7}, "symbol", "must be a string"),
        ({"delayed": 1}, "delayed", "must be true or false"),
        ({"last": [1]}, "last", "must be a number"),
    ],
)
def test_decode_rejects_bad_payloads_naming_the_field(changes, field, problem):
    raw = _tamper(sample(b.Quote), **changes)
    with pytest.raises(MessageError, match=problem) as exc:
        decode(raw)
    assert exc.value.field == field


def test_decode_rejects_nan_literal_unknown_kind_wrong_kind_and_garbage():
    with pytest.raises(MessageError, match=r"\(json\)"):
        decode(encode(sample(b.Quote)).replace(b"90.01", b"NaN"))
    with pytest.raises(MessageError, match="unknown message kind"):
        decode(_tamper(sample(b.Quote), kind="ticker"))
    with pytest.raises(MessageError, match="expected 'fill'"):
        decode(encode(sample(b.Quote)), b.Fill)
    with pytest.raises(MessageError):
        decode(b"\x00not json")
    with pytest.raises(MessageError, match="must be an object"):
        decode(b"[1,2]")


def test_decode_rejects_bad_enum_and_bad_nested_field():
    with pytest.raises(MessageError, match="must be one of") as exc:
        decode(_tamper(sample(b.DataHealth), status="fresh"))
    assert exc.value.field == "status"
    intent = orjson.loads(encode(sample(b.OrderIntent)))
    intent["legs"][1]["quantity"] = "760"
    with pytest.raises(MessageError) as exc:
        decode(orjson.dumps(intent))
    assert exc.value.field == "legs[1].quantity"


# The codec's fast path checks every plain field in one condition: each case below would pass
# silently if it skipped one field's check.


def _fields(msg: b.Message, *types: object) -> list[str]:
    hints = typing.get_type_hints(type(msg))
    return [f.name for f in dataclasses.fields(msg) if hints[f.name] in types]


FLOAT_FIELDS = [(m, name) for m in SAMPLES for name in _fields(m, float, float | None)]
REQUIRED_FIELDS = [
    (m, f.name)
    for m in SAMPLES
    for f in dataclasses.fields(m)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
]


def _ids(case: tuple[b.Message, str]) -> str:
    return f"{type(case[0]).KIND}.{case[1]}"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("case", FLOAT_FIELDS, ids=_ids)
def test_encode_rejects_a_non_finite_value_in_any_float_field(case, bad):
    msg, name = case
    with pytest.raises(MessageError, match="must be finite") as exc:
        encode(dataclasses.replace(msg, **{name: bad}))
    assert exc.value.field == name


@pytest.mark.parametrize("case", FLOAT_FIELDS, ids=_ids)
def test_a_bool_or_a_string_in_any_float_field_is_refused_both_ways(case):
    msg, name = case
    for bad in (True, "1.5"):
        with pytest.raises(MessageError, match="must be a number") as exc:
            encode(dataclasses.replace(msg, **{name: bad}))
        assert exc.value.field == name
        with pytest.raises(MessageError, match="must be a number") as exc:
            decode(_tamper(msg, **{name: bad}))
        assert exc.value.field == name


@pytest.mark.parametrize("case", FLOAT_FIELDS, ids=_ids)
def test_an_int_in_any_float_field_is_sent_and_read_as_a_float(case):
    msg, name = case
    as_float = dataclasses.replace(msg, **{name: 7.0})
    assert encode(dataclasses.replace(msg, **{name: 7})) == encode(as_float)
    decoded = decode(_tamper(msg, **{name: 7}))
    assert decoded == as_float
    assert type(getattr(decoded, name)) is float


@pytest.mark.parametrize("case", REQUIRED_FIELDS, ids=_ids)
def test_decode_names_any_missing_field(case):
    msg, name = case
    with pytest.raises(MessageError, match="is missing") as exc:
        decode(_tamper(msg, **{name: dataclasses.MISSING}))
    assert exc.value.field == name


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).KIND)
def test_int_bool_and_string_fields_refuse_a_wrong_type_both_ways(msg):
    ints, bools, strs = _fields(msg, int), _fields(msg, bool), _fields(msg, str)
    for name, bad in [(n, True) for n in ints] + [(n, 1) for n in bools] + [(n, 7) for n in strs]:
        with pytest.raises(MessageError) as exc:
            encode(dataclasses.replace(msg, **{name: bad}))
        assert exc.value.field == name
        with pytest.raises(MessageError) as exc:
            decode(_tamper(msg, **{name: bad}))
        assert exc.value.field == name


def test_the_first_bad_field_in_order_is_named():
    q = b.Quote("TLT", 1, 90.0, math.nan, 1.0, "x", None, T, T)  # ask NaN, then ask_size a str
    with pytest.raises(MessageError) as exc:
        encode(q)
    assert exc.value.field == "ask"


def test_finite_floats_whose_sum_overflows_pass():
    q = b.Quote("TLT", 1, 1.7e308, 1.7e308, 1.7e308, 1.0, 1.7e308, T, T)
    assert decode(encode(q)) == q


def test_decode_refuses_a_number_too_large_for_a_float():
    raw = encode(sample(b.OptionQuote)).replace(b'"strike":90.0', b'"strike":1e999')
    with pytest.raises(MessageError, match=r"\(json\)"):
        decode(raw)


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).KIND)
def test_a_decoded_message_is_an_instance_of_its_frozen_class(msg):
    decoded = decode(encode(msg))
    assert type(decoded) is type(msg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(decoded, dataclasses.fields(msg)[0].name, None)


def test_decode_takes_fields_in_any_order_without_defaults_and_with_unknown_keys():
    msg = sample(b.OptionQuote)
    body = orjson.loads(encode(msg))
    assert decode(orjson.dumps(dict(reversed(body.items())))) == msg
    del body["delayed"]
    body["note"] = "from a newer sender"
    assert decode(orjson.dumps(body)) == dataclasses.replace(msg, delayed=False)


async def test_latest_value_set_and_get(bus: Bus):
    q = sample(b.Quote)
    assert await bus.get_latest(Keys.quote("TLT"), b.Quote) is None
    await bus.set_latest(Keys.quote("TLT"), q)
    assert await bus.get_latest(Keys.quote("TLT"), b.Quote) == q
    await bus.hset_latest(Keys.POSITIONS, "15547841", sample(b.Position))
    assert await bus.hget_all(Keys.POSITIONS, b.Position) == {"15547841": sample(b.Position)}


async def test_publish_reaches_a_subscriber_and_malformed_messages_are_skipped(bus: Bus):
    received: list = []

    async def listen():
        async for channel, msg in bus.subscribe(Channels.QUOTES):
            received.append((channel, msg))

    task = asyncio.create_task(listen())
    try:
        await async_eventually(lambda: _numsub(bus, Channels.QUOTES), what="subscriber registered")
        await bus.redis.publish(Channels.QUOTES, b'{"kind":"quote","bid":NaN}')
        await bus.publish(Channels.QUOTES, sample(b.Quote))
        await async_eventually(lambda: _true(received), what="message received")
        assert received == [(Channels.QUOTES, sample(b.Quote))]
    finally:
        task.cancel()


async def _numsub(bus: Bus, channel: str) -> bool:
    counts = await bus.redis.pubsub_numsub(channel)
    return counts[0][1] > 0


async def _true(value) -> bool:
    return bool(value)


async def test_capped_stream_append_keeps_about_maxlen(bus: Bus):
    for i in range(500):
        await bus.append(Streams.SPREAD, b.Heartbeat("x", T + i, "ok"), maxlen=100)
    length = await bus.redis.xlen(Streams.SPREAD)
    assert 100 <= length < 500  # approximate trimming: never below the cap, trimmed in blocks
    newest = await bus.read_range(Streams.SPREAD, 3, b.Heartbeat)
    assert [e.message.ts for e in newest] == [T + 499, T + 498, T + 497]


async def test_consumer_group_redelivers_entries_a_killed_consumer_never_acked(redis_url):
    producer = await Bus.connect(redis_url, "strategy")
    first = await Bus.connect(redis_url, "risk")
    intents = [dataclasses.replace(sample(b.OrderIntent), intent_id=f"int-{i}") for i in range(3)]
    await first.ensure_group(Streams.INTENTS, Groups.RISK)
    for intent in intents:
        await producer.append(Streams.INTENTS, intent)
    got = await first.read_group(Streams.INTENTS, Groups.RISK, "risk-0", count=10)
    assert [e.message.intent_id for e in got] == ["int-0", "int-1", "int-2"]
    await first.ack(Streams.INTENTS, Groups.RISK, got[0].entry_id)
    await first.close()  # "killed" with int-1 and int-2 unacknowledged

    restarted = await Bus.connect(redis_url, "risk")
    again = await restarted.read_group(Streams.INTENTS, Groups.RISK, "risk-0", count=10)
    assert [e.message.intent_id for e in again] == ["int-1", "int-2"]
    await restarted.ack(Streams.INTENTS, Groups.RISK, *[e.entry_id for e in again])
    assert await restarted.pending_count(Streams.INTENTS, Groups.RISK) == 0
    assert await restarted.read_group(Streams.INTENTS, Groups.RISK, "risk-0", block_ms=50) == []
    await restarted.close()
    await producer.close()


async def test_malformed_stream_entry_goes_to_dead_letters_not_to_the_reader(bus: Bus):
    await bus.ensure_group(Streams.INTENTS, Groups.RISK)
    await bus.redis.xadd(Streams.INTENTS, {b"m": b'{"kind":"order_intent"}'})
    await bus.append(Streams.INTENTS, sample(b.OrderIntent))
    got = await bus.read_group(Streams.INTENTS, Groups.RISK, "c", block_ms=100)
    assert [e.message for e in got] == [sample(b.OrderIntent)]
    await bus.ack(Streams.INTENTS, Groups.RISK, got[0].entry_id)
    assert await bus.pending_count(Streams.INTENTS, Groups.RISK) == 0
    dead = await bus.redis.xrange(f"{Streams.INTENTS}:dead")
    assert len(dead) == 1 and b"intent_id" in dead[0][1][b"error"]


async def test_bus_keeps_working_after_redis_server_is_killed_and_restarted(redis_server):
    bus = await Bus.connect(redis_server.url, "test")
    await bus.set_latest(Keys.quote("TLT"), sample(b.Quote))
    received: list = []

    async def listen():
        async for _channel, msg in bus.subscribe(Channels.QUOTES):
            received.append(msg)

    task = asyncio.create_task(listen())
    try:
        await async_eventually(lambda: _numsub(bus, Channels.QUOTES))
        redis_server.kill()
        # A write issued while Redis is down waits and lands once it is back.
        pending_write = asyncio.create_task(bus.set_latest(Keys.quote("TLTW"), sample(b.Quote)))
        await asyncio.sleep(0.3)
        assert not pending_write.done()
        redis_server.start()
        await asyncio.wait_for(pending_write, 15)
        assert await bus.get_latest(Keys.quote("TLTW"), b.Quote) == sample(b.Quote)
        # The subscription came back by itself.
        await async_eventually(lambda: _numsub(bus, Channels.QUOTES), timeout_s=15)
        await bus.publish(Channels.QUOTES, sample(b.Quote))
        await async_eventually(lambda: _true(received), timeout_s=5)
        assert received == [sample(b.Quote)]
    finally:
        task.cancel()
        await bus.close()


async def test_heartbeat_expires_after_its_ttl(bus: Bus):
    await bus.beat(b.Heartbeat("strategy", T, "ok"), ttl_s=0.2)
    assert set(await bus.heartbeats()) == {"strategy"}

    async def gone() -> bool:
        return "strategy" not in await bus.heartbeats()

    await async_eventually(gone, timeout_s=3)


def test_embedded_redis_applies_the_pubsub_buffer_limit():
    import redis

    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        limit = client.config_get("client-output-buffer-limit")["client-output-buffer-limit"]
        assert "pubsub 268435456 67108864 60" in limit
        client.close()
    assert not server.running


def test_state_helpers_refuse_nan():
    with pytest.raises(MessageError, match="state"):
        b.check_json_value("state", "strategy:state", {"z": math.nan})


async def test_cancelling_a_subscriber_always_ends_it(bus: Bus, redis_url):
    """redis-py can swallow a cancellation inside PubSub.subscribe; the bus must not hang."""
    import random

    publisher = await Bus.connect(redis_url, "pub")

    async def consume():
        async for _channel, _msg in bus.subscribe(Channels.QUOTES, Channels.BOOK):
            pass

    rng = random.Random(7)
    try:
        for _ in range(150):
            task = asyncio.create_task(consume())
            for _ in range(rng.randint(0, 3)):
                await publisher.publish(Channels.QUOTES, sample(b.Quote))
            await asyncio.sleep(rng.random() * 0.005)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=2)
            assert done, "a cancelled subscriber kept running"
    finally:
        await publisher.close()


async def test_one_group_read_of_two_streams_wakes_on_either_and_keeps_their_order(bus):
    """A command appended while the reader blocks wakes it at once (two blocking reads in turn
    left an entry waiting out the other stream's block, ~100 ms at Redis's default hz)."""
    for stream in (Streams.COMMANDS, Streams.INTENTS):
        await bus.ensure_group(stream, Groups.RISK)
    kinds = {Streams.COMMANDS: b.OperatorCommand, Streams.INTENTS: b.OrderIntent}
    reader = asyncio.create_task(
        bus.read_groups(kinds, Groups.RISK, "c1", block_ms=5_000, pending_first=False)
    )
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await bus.append(Streams.COMMANDS, b.OperatorCommand("c-1", 1.0, b.Command.HALT, "test"))
    entries = await asyncio.wait_for(reader, 2.0)
    assert time.monotonic() - started < 1.0  # not the 5 s block
    assert [(e.stream, e.message.command) for e in entries] == [(Streams.COMMANDS, b.Command.HALT)]


async def test_a_stream_cut_holds_everything_appended_before_it_and_nothing_after(bus):
    """Two streams written in turn while a reader takes a cut: read up to it, each stream
    holds exactly the entries appended before the cut was taken (a snapshot of one moment)."""
    streams = (Streams.history("TLT"), Streams.history("TLTW"))
    before = 0
    for i in range(200):  # a cut within a millisecond of the last append, again and again
        for stream in streams:
            await bus.append(stream, sample(b.Quote))
        before += 1
        if i % 20 == 19:
            cut = await bus.stream_cut()
            for stream in streams:
                await bus.append(stream, sample(b.Quote))
            before += 1
            for stream in streams:
                assert len(await bus.read_after(stream, until_id=cut)) == before - 1
            assert len(await bus.read_after(streams[0])) == before


@pytest.mark.parametrize("case", FLOAT_FIELDS, ids=_ids)
def test_an_int_too_large_for_a_float_field_is_refused_naming_the_field(case):
    msg, name = case
    with pytest.raises(MessageError, match="must be finite") as exc:
        encode(dataclasses.replace(msg, **{name: 10**400}))
    assert exc.value.field == name


@pytest.mark.parametrize("bad", [2**64, -(2**63) - 1, 10**30])
def test_an_int_outside_64_bits_is_refused_naming_the_field_both_ways(bad):
    """JSON as orjson writes it carries 64-bit integers: a larger conId is a clear error on
    encode (not orjson's TypeError) and on decode, and so is one in a free-form field."""
    with pytest.raises(MessageError, match="outside the 64-bit range") as exc:
        encode(b.Quote("TLT", bad, 90.0, 91.0, 1.0, 1.0, None, T, T))
    assert exc.value.field == "con_id"
    raw = encode(sample(b.Quote)).replace(b'"con_id":', f'"con_id":{bad},"x":'.encode())
    with pytest.raises(MessageError):
        decode(raw)
    intent = b.OrderIntent(
        "i", "p", T, b.IntentPurpose.ENTRY, b.SignalAction.EXIT, (), {"kelly": {"n": bad}}
    )
    with pytest.raises(MessageError, match=r"why\.kelly\.n"):
        encode(intent)
    assert encode(b.Quote("TLT", 2**64 - 1, 90.0, 91.0, 1.0, 1.0, None, T, T))
