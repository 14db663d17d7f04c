"""A linear-time socket reader for ib_async's (and ib_insync's) Client: an upstream fix, kept here.

Both libraries split the bytes read from the socket into messages with
``self._data = self._data[msgEnd:]`` after each message: every message copies the rest of the
buffer, so a read of n bytes holding m messages costs O(n x m). A loopback read of a busy feed
holds hundreds of messages (64 KiB and more), and the copies then take longer than decoding the
messages. ``install(client)`` replaces the client's handler with the same logic walking an
offset through the buffer (one slice per message, one copy of the unfinished tail per read).
Everything else is the library's own code path: the handshake, the API-ready snooping, the
decoder, the counters and the wrapper's tcpDataArrived/tcpDataProcessed hooks.

This belongs upstream (ib_async's ``Client._onSocketHasData``); it is isolated here so that it
goes away with one line when the library fixes it.

It also leaves undecoded the option computations of the bid, the ask and the last trade (tick
types 10, 11 and 12, delayed 80, 81 and 82) of market-data subscriptions: IB sends them with
every model computation (13/83), nothing here reads them (an option's quote carries the model's
Greeks: trading.broker.translate) and they were three quarters of the computations decoded, each
~16 us in the library's decoder and wrapper. Their tickers' ``bidGreeks``, ``askGreeks`` and
``lastGreeks`` stay None. Replies to calculateImpliedVolatility/calculateOptionPrice (not a
market-data request id) are decoded as before.

And it hands the first ticker of a read to the application before decoding the rest
(`emit_pending`): a read of a busy feed holds a market step of every line (~170 messages here,
1-2 ms to decode), and the library emits ``pendingTickersEvent`` once, after the last. The first
line of a step is the one waited on (any tick of a new bar closes the last bar downstream), so
the reader emits the pending tickers once, at the first boundary between two tickers'
market-data messages, and the rest at the end of the read as the library does. A ticker's
messages up to that boundary are never split (a bid without its ask could read as a crossed
quote), and both emissions carry the read's receive stamp. One early emission a read, not
more: each costs the application a Redis write.
"""

from __future__ import annotations

import logging
import struct
from typing import Any

_LENGTH = struct.Struct(">I")
OPTION_COMPUTATION = "21"
UNREAD_COMPUTATIONS = frozenset({"10", "11", "12", "80", "81", "82"})
REQ_ID_AT = {"1": 2, "2": 2, "45": 2, "46": 2, "57": 2, "21": 1, "81": 1}
"""Market-data messages -> the index of their request id (tickPrice, tickSize, tickGeneric,
tickString, tickSnapshotEnd carry a version first; tickOptionComputation, tickReqParams not)."""


def emit_pending(wrapper: Any) -> None:
    """Emit the tickers updated so far in this read (the library's end-of-read emission) and
    start a new set, as the next read would, but keeping this read's receive stamp."""
    wrapper.tcpDataProcessed()
    for ticker in wrapper.pendingTickers:
        ticker.ticks = []
        ticker.tickByTicks = []
        ticker.domTicks = []
    wrapper.pendingTickers = set()


def on_socket_has_data(client: Any, data: bytes) -> None:
    """``Client._onSocketHasData`` without the copy of the rest of the buffer per message."""
    debug = client._logger.isEnabledFor(logging.DEBUG)
    if client._tcpDataArrived:
        client._tcpDataArrived()
    buffer = client._data + data if client._data else data
    client._numBytesRecv += len(data)
    end = len(buffer)
    pos = 0
    unpack = _LENGTH.unpack_from
    wrapper = client.wrapper
    tickers = wrapper.reqId2Ticker
    early = client._apiReady  # the early emission is still to come in this read
    first_req: str | None = None  # the request id of the read's first market-data message
    try:
        while end - pos > 4:
            message_end = pos + 4 + unpack(buffer, pos)[0]
            if end < message_end:
                break  # the rest of this message is in a later read
            msg = buffer[pos + 4 : message_end].decode(errors="backslashreplace")
            pos = message_end
            fields = msg.split("\0")
            fields.pop()  # the empty field after the last separator
            client._numMsgRecv += 1
            if debug:
                client._logger.debug("<<< %s", ",".join(fields))
            if not client._serverVersion and len(fields) == 2:
                # The handshake's answer: the server version and its connection time.
                version, _conn_time = fields
                client._serverVersion = int(version)
                if client._serverVersion < client.MinClientVersion:
                    client._data = buffer[pos:]
                    client._onSocketDisconnected("TWS/gateway version must be >= 972")
                    return
                client.decoder.serverVersion = client._serverVersion
                client.connState = type(client).CONNECTED
                client.startApi()
                client.wrapper.connectAck()
                client._logger.info(f"Logged on to server version {client._serverVersion}")
                continue
            if not client._apiReady:
                # nextValidId and managedAccounts: the client is ready once both are in.
                msg_id = int(fields[0])
                if msg_id == 9:
                    _, _, valid_id = fields
                    client.updateReqId(int(valid_id))
                    client._hasReqId = True
                elif msg_id == 15:
                    _, _, accounts = fields
                    client._accounts = [a for a in accounts.split(",") if a]
                if client._hasReqId and client._accounts:
                    client._apiReady = True
                    client.apiStart.emit()
            if early:
                at = REQ_ID_AT.get(fields[0])
                if at is not None and len(fields) > at:
                    if first_req is None:
                        first_req = fields[at]
                    elif fields[at] != first_req:
                        early = False
                        if wrapper.pendingTickers:
                            emit_pending(wrapper)
            if (
                fields[0] == OPTION_COMPUTATION
                and len(fields) > 3
                and fields[2] in UNREAD_COMPUTATIONS
                and fields[1].isdigit()
                and int(fields[1]) in tickers
            ):
                continue  # [21, reqId, tickType, ...]: see the module's docstring
            client.decoder.interpret(fields)
    finally:
        # The unfinished tail (usually nothing) waits for the next read; a disconnect that a
        # handler caused has reset the client (its buffer is empty then: keep it so).
        if client.connState != type(client).DISCONNECTED:
            client._data = buffer[pos:] if pos < end else b""
    if client._tcpDataProcessed:
        client._tcpDataProcessed()


def install(client: Any) -> None:
    """Swap the client's socket handler for ``on_socket_has_data`` (idempotent). The handler
    is connected to the connection's hasData event once, in Client.__init__; it stays
    connected across reconnections."""
    if getattr(client, "_linear_reader", None) is not None:
        return
    handler = on_socket_has_data.__get__(client)
    client.conn.hasData -= client._onSocketHasData
    client.conn.hasData += handler
    client._linear_reader = handler
