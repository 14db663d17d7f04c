"""Faults on demand and ground truth: a thread-safe Python API and the same over HTTP.

HTTP (stdlib asyncio, JSON): ``GET /truth`` (the market's), ``GET /broker`` (the account's
orders, executions, positions and lost orders), ``GET /sends`` (each market step's sim epoch
and the wall time it was sent, ``{"since": wall}`` to bound it), ``POST /reset``,
``POST /faults/<name>`` with the method's keyword arguments as a JSON object, e.g.
``curl -X POST localhost:8081/faults/send_error -d '{"code": 1100}'``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from trading.ibsim.broker import BrokerTruth
from trading.ibsim.server import GatewayCore

log = logging.getLogger("trading.ibsim.admin")

ERROR_MESSAGES = {
    1100: "Connectivity between IB and Trader Workstation has been lost.",
    1101: "Connectivity between IB and Trader Workstation has been restored - data lost.",
    1102: "Connectivity between IB and Trader Workstation has been restored - data maintained.",
    2103: "Market data farm connection is broken:usfarm",
    2104: "Market data farm connection is OK:usfarm",
    2105: "HMDS data farm connection is broken:ushmds",
    2106: "HMDS data farm connection is OK:ushmds",
    2158: "Sec-def data farm connection is OK:secdefnj",
    10167: "Requested market data is not subscribed. Displaying delayed market data.",
    354: "Requested market data is not subscribed.",
}
BAD_QUOTE_KINDS = frozenset({"nan", "crossed"})
CALL_TIMEOUT_S = 30.0


class Faults:
    """Failures on demand. Every method is thread-safe: it runs on the gateway loop and
    returns once the fault has taken effect (bad input raises ValueError in the caller)."""

    def __init__(self, core: GatewayCore, loop: asyncio.AbstractEventLoop) -> None:
        """Built on the gateway's thread, which is remembered as the loop's thread."""
        self._core = core
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function(*args)`` on the gateway loop and return its result (or raise)."""
        if threading.get_ident() == self._loop_thread:
            return function(*args)

        async def run() -> Any:
            return function(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(CALL_TIMEOUT_S)

    def drop_connections(self) -> None:
        """Close every client socket at once (the clients see the peer close)."""
        self.call(self._core.drop_connections)

    def stop_market_data(self) -> None:
        """Stop sending ticks (the market and the order book keep running)."""
        self.call(setattr, self._core, "market_data_stopped", True)

    def resume_market_data(self) -> None:
        self.call(setattr, self._core, "market_data_stopped", False)

    def send_error(self, code: int, req_id: int = -1, message: str | None = None) -> None:
        """Send error ``code`` to every client (1101 also drops their market data streams)."""
        if not isinstance(code, int):
            raise ValueError(f"code must be an int, got {code!r}")
        text = (
            message if message is not None else ERROR_MESSAGES.get(code, f"Simulated error {code}")
        )
        self.call(self._core.broadcast_error, code, int(req_id), text)

    def reject_next_order(self, reason: str = "simulated rejection") -> None:
        """The next placeOrder from any client gets error 201 with this reason."""
        self.call(setattr, self._core.broker, "reject_next", str(reason))

    def pacing_violation_next_historical(self) -> None:
        """The next reqHistoricalData gets error 162 (pacing violation)."""
        self.call(setattr, self._core, "pacing_violation_next", True)

    def bad_quote(self, symbol: str, kind: str = "nan") -> None:
        """The next tick batch of ``symbol`` (a local symbol: a stock's or an OCC option symbol)
        carries a NaN ('nan') or crossed ('crossed') bid/ask; the batch after it is clean."""
        if kind not in BAD_QUOTE_KINDS:
            raise ValueError(f"kind must be one of {sorted(BAD_QUOTE_KINDS)}, got {kind!r}")

        def apply() -> None:
            self._core.bad_quotes[symbol] = kind

        self.call(apply)

    def assign_early(self, contract: int | str) -> None:
        """Assign every short contract of an option now (conId or OCC local symbol)."""

        def apply() -> None:
            core = self._core
            registry = core.model.registry
            instrument = None
            if isinstance(contract, int) or str(contract).isdigit():
                instrument = registry.by_con_id(int(contract))
            else:
                for held in core.broker.positions.values():
                    if held.instrument.local_symbol == contract:
                        instrument = held.instrument
            if instrument is None or not instrument.is_option:
                raise ValueError(f"contract {contract!r} is not a known option")
            short = core.broker.positions.get(instrument.con_id)
            if short is None or short.quantity >= 0:
                raise ValueError(f"no short position in {instrument.local_symbol!r} to assign")
            core.broker.settle(
                instrument, short.quantity, core.board.snapshot.tlt_mid, core.now_epoch(), True
            )

        self.call(apply)

    def drop_on_next_place_order(self) -> None:
        """The next placeOrder from any client is lost: the gateway drops that connection as
        the order arrives and never acts on it (nor on anything behind it in the same read).
        It is listed in ``broker_truth().lost``."""
        self.call(setattr, self._core, "drop_next_place_order", True)

    def delay_acks(self, seconds: float) -> None:
        """Orders placed from now on are worked at once, but every message about them (their
        openOrder, orderStatus, executions) reaches the client ``seconds`` wall seconds late;
        reqOpenOrders and reqExecutions still answer with them. 0 turns it off."""
        if not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        self.call(setattr, self._core, "ack_delay_s", float(seconds))

    def hold_fills(self, symbols: list[str]) -> None:
        """Orders on these symbols (a BAG: on any of its legs) rest unfilled, marketable or
        not, until ``release_fills``; with the client connected or not."""
        if isinstance(symbols, str) or not all(isinstance(x, str) for x in symbols):
            raise ValueError(f"symbols must be a list of symbols, got {symbols!r}")
        self.call(setattr, self._core.broker, "held_symbols", frozenset(symbols))

    def release_fills(self) -> None:
        """Orders held by ``hold_fills`` fill again (on the next market step)."""
        self.call(setattr, self._core.broker, "held_symbols", frozenset())

    def broker_truth(self) -> BrokerTruth:
        """Every order (with its orderRef and status), execution and position of the account,
        and the orders lost with a connection: the broker's truth for tests to check against."""
        return self.call(self._core.broker_truth)

    def shock_premium(self, bp: float) -> None:
        """TLTW's premium jumps to ``bp`` basis points now, then mean-reverts."""
        if not isinstance(bp, int | float) or not math.isfinite(bp):
            raise ValueError(f"bp must be a finite number, got {bp!r}")
        self.call(lambda: self._core.model.shock_premium(self._core.tau, float(bp)))

    def set_speed(self, speed: float) -> None:
        """The sim clock runs at ``speed`` x wall time from now on (a burst, then back)."""
        if not isinstance(speed, int | float) or not math.isfinite(speed) or speed <= 0:
            raise ValueError(f"speed must be a finite number > 0, got {speed!r}")
        self.call(self._core.clock.set_speed, float(speed))

    def step_sends(self, since_wall: float = 0.0) -> list[tuple[float, float]]:
        """(sim epoch, wall time) of each market step sent at or after ``since_wall``."""
        return self.call(lambda: [s for s in self._core.step_sends if s[1] >= since_wall])


_FAULT_NAMES = frozenset(
    {
        "drop_connections",
        "stop_market_data",
        "resume_market_data",
        "send_error",
        "reject_next_order",
        "pacing_violation_next_historical",
        "bad_quote",
        "assign_early",
        "shock_premium",
        "set_speed",
        "drop_on_next_place_order",
        "delay_acks",
        "hold_fills",
        "release_fills",
    }
)


class AdminServer:
    """A minimal HTTP/1.1 JSON server (one request per connection) for the faults."""

    def __init__(self, faults: Faults, core: GatewayCore) -> None:
        self._faults = faults
        self._core = core
        self._server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._handle, host, port)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, body = await self._respond(reader)
        except Exception as error:  # a bad request must not kill the admin server
            log.exception("admin request failed")
            status, body = 500, {"error": str(error)}
        data = json.dumps(body).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Error"}[status]
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + data
        )
        await writer.drain()
        writer.close()

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[int, dict]:
        request_line = (await reader.readline()).decode().split()
        if len(request_line) < 2:
            return 400, {"error": "malformed request line"}
        method, path = request_line[0].upper(), request_line[1].split("?")[0]
        length = 0
        while True:
            line = (await reader.readline()).decode().strip()
            if not line:
                break
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        raw = await reader.readexactly(length) if length else b""
        try:
            arguments = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as error:
            return 400, {"error": f"body is not JSON: {error}"}
        if not isinstance(arguments, dict):
            return 400, {"error": "body must be a JSON object"}
        if method == "GET" and path == "/truth":
            truth = self._core.truth()
            values = asdict(truth)
            values["time"] = truth.time.isoformat()
            return 200, values
        if method == "GET" and path == "/broker":
            return 200, asdict(self._faults.broker_truth())
        if method == "GET" and path == "/sends":
            return 200, {"sends": self._faults.step_sends(float(arguments.get("since", 0.0)))}
        if method == "POST" and path == "/reset":
            self._core.reset()
            return 200, {"ok": True}
        if method == "POST" and path.startswith("/faults/"):
            name = path.removeprefix("/faults/")
            if name not in _FAULT_NAMES:
                return 404, {"error": f"unknown fault {name!r}", "faults": sorted(_FAULT_NAMES)}
            try:
                getattr(self._faults, name)(**arguments)
            except (TypeError, ValueError) as error:
                return 400, {"error": str(error)}
            return 200, {"ok": True}
        return 404, {"error": f"no route {method} {path}"}
