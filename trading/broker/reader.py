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
"""

from __future__ import annotations

import logging
import struct
from typing import Any

_LENGTH = struct.Struct(">I")
OPTION_COMPUTATION = "21"
UNREAD_COMPUTATIONS = frozenset({"10", "11", "12", "80", "81", "82"})


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
    tickers = client.wrapper.reqId2Ticker
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
