"""The linear-time socket reader (trading/broker/reader.py) splits a byte stream into exactly the
messages the library's own reader does, however the stream is cut into reads."""

from __future__ import annotations

import random

import ib_async
import ib_insync
import pytest

from trading.broker import reader
from trading.ibsim.marketdata import tick_option, tick_price, tick_size, tick_string
from trading.ibsim.protocol import frame_text


def stream(n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    frames = []
    for i in range(n):
        req = rng.randint(1, 40)
        kind = rng.randrange(4)
        if kind == 0:
            frames.append(tick_price(req, rng.choice((1, 2, 4)), 90 + rng.random(), 100.0))
        elif kind == 1:
            frames.append(tick_size(req, 8, float(i)))
        elif kind == 2:
            frames.append(tick_string(req, 45, str(1_700_000_000 + i)))
        else:
            frames.append(tick_option(req, 13, (0.16, 0.5, 1.2, 0.0, 0.05, 0.1, -0.02, 90.0)))
    frames.append(frame_text("é\x00ü\x00"))  # non-ASCII survives the decode as the library's
    return b"".join(frames)


def recording_client(library, linear: bool):
    client = library.IB().client
    client._serverVersion = 176
    client.decoder.serverVersion = 176
    client._apiReady = True
    client.connState = type(client).CONNECTED
    seen: list[list[str]] = []
    client.decoder.interpret = seen.append
    if linear:
        reader.install(client)
        reader.install(client)  # idempotent: one handler, not two
    return client, seen


def feed(client, data: bytes, cuts: list[int]) -> None:
    start = 0
    for cut in [*cuts, len(data)]:
        client.conn.hasData.emit(data[start:cut])
        start = cut


@pytest.mark.parametrize("library", [ib_async, ib_insync], ids=["ib_async", "ib_insync"])
@pytest.mark.parametrize("seed", range(6))
def test_same_messages_as_the_library_for_any_cut(library, seed):
    data = stream(300, seed)
    rng = random.Random(seed)
    # One read of everything, reads cut inside a length prefix or a body, and one byte a read.
    cuts = sorted(rng.sample(range(1, len(data)), k=rng.choice((0, 1, 7, 200))))
    if seed == 5:
        cuts = list(range(1, len(data)))
    theirs, expected = recording_client(library, linear=False)
    ours, got = recording_client(library, linear=True)
    feed(theirs, data, cuts)
    feed(ours, data, cuts)
    assert len(expected) == 301
    assert got == expected
    assert ours._numMsgRecv == theirs._numMsgRecv == 301
    assert ours._numBytesRecv == theirs._numBytesRecv == len(data)
    assert ours._data == theirs._data == b""


def test_an_unfinished_message_waits_for_the_next_read():
    data = stream(3, 0)
    last = frame_text("é\x00ü\x00")
    ours, got = recording_client(ib_async, linear=True)
    ours.conn.hasData.emit(data[:-5])
    assert len(got) == 3
    assert ours._data == last[:-5]
    ours.conn.hasData.emit(data[-5:])
    assert len(got) == 4
    assert got[-1] == ["é", "ü"]
    assert ours._data == b""


@pytest.mark.parametrize("library", [ib_async, ib_insync], ids=["ib_async", "ib_insync"])
def test_bid_ask_and_last_computations_of_market_data_are_not_decoded(library):
    """IB sends the bid's, the ask's and the last trade's option computations (10/11/12,
    delayed 80/81/82) with every model computation (13/83); the quotes use the model's only.
    A request id that is not a market-data ticker's (a calculateImpliedVolatility reply) and a
    malformed message still reach the library's decoder."""
    ours, got = recording_client(library, linear=True)
    ours.wrapper.reqId2Ticker[7] = object()
    values = (0.16, 0.5, 1.2, 0.0, 0.05, 0.1, -0.02, 90.0)
    frames = [tick_option(7, tick_type, values) for tick_type in (10, 11, 12, 13, 80, 81, 82, 83)]
    frames.append(tick_option(9, 10, values))  # not a ticker's request: decoded
    frames.append(frame_text("21\x00x\x0010\x00"))  # malformed: the library logs it
    ours.conn.hasData.emit(b"".join(frames))
    assert [(f[1], f[2]) for f in got[:3]] == [("7", "13"), ("7", "83"), ("9", "10")]
    assert got[3] == ["21", "x", "10"]
    assert len(got) == 4
    assert ours._numMsgRecv == 10


def ticker_client(library):
    """A client whose wrapper is the library's own, with market-data tickers for requests 1-3."""
    client = library.IB().client
    client._serverVersion = 176
    client.decoder.serverVersion = 176
    client._apiReady = True
    client.connState = type(client).CONNECTED
    reader.install(client)
    wrapper = client.wrapper
    for req, symbol in ((1, "TLT"), (2, "TLTW"), (3, "XYZ")):
        wrapper.startTicker(req, library.Stock(symbol, "SMART", "USD", conId=req), "mktData")
    emitted: list[list[tuple[str, float, float, int]]] = []
    stamps: list[float] = []

    def on_tickers(tickers):
        emitted.append(sorted((t.contract.symbol, t.bid, t.ask, len(t.ticks)) for t in tickers))
        stamps.extend(getattr(t, "timestamp", None) or t.time.timestamp() for t in tickers)

    client.wrapper.ib.pendingTickersEvent += on_tickers
    return client, emitted, stamps


def quote_frames(req: int, bid: float, ask: float) -> list[bytes]:
    return [tick_price(req, 1, bid, 100.0), tick_price(req, 2, ask, 100.0)]


@pytest.mark.parametrize("library", [ib_async, ib_insync], ids=["ib_async", "ib_insync"])
def test_the_first_ticker_of_a_read_is_emitted_before_the_rest_is_decoded(library):
    """One read, three tickers: the first ticker is emitted alone (bid and ask both), the
    rest once the read is decoded, all with the read's receive stamp."""
    client, emitted, stamps = ticker_client(library)
    frames = [*quote_frames(1, 90.0, 90.1), *quote_frames(2, 25.0, 25.1)]
    frames += [*quote_frames(3, 10.0, 10.2), tick_string(3, 45, "1700000000")]
    client.conn.hasData.emit(b"".join(frames))
    assert emitted == [
        [("TLT", 90.0, 90.1, 2)],
        [("TLTW", 25.0, 25.1, 2), ("XYZ", 10.0, 10.2, 2)],
    ]
    assert len(stamps) == 3 and len(set(stamps)) == 1, "one receive stamp for the read"
    # The next read starts afresh, as the library's own reader does; a read of one ticker is
    # emitted once, at its end.
    client.conn.hasData.emit(b"".join(quote_frames(2, 25.2, 25.3)))
    assert emitted[2:] == [[("TLTW", 25.2, 25.3, 2)]]


@pytest.mark.parametrize("library", [ib_async, ib_insync], ids=["ib_async", "ib_insync"])
def test_a_long_read_is_emitted_early_once_and_then_whole(library):
    """Three steps of three tickers in one read: one early emission (the first ticker's first
    update), then every ticker with its latest values and all its updates of the read since;
    a message that is not market data does not count as a boundary."""
    client, emitted, _ = ticker_client(library)
    frames = [frame_text("4\x002\x00-1\x002104\x00Market data farm connection is OK\x00")]
    for step in range(3):
        for req in (1, 2, 3):
            frames += quote_frames(req, 10.0 * req + step, 10.0 * req + step + 0.5)
    client.conn.hasData.emit(b"".join(frames))
    assert emitted == [
        [("TLT", 10.0, 10.5, 2)],
        [("TLT", 12.0, 12.5, 4), ("TLTW", 22.0, 22.5, 6), ("XYZ", 32.0, 32.5, 6)],
    ]
