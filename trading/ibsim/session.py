"""One API connection: handshake, startApi, and every request of the protocol catalogue."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Protocol

import trading.ibsim.messages as messages
from trading.ibsim.broker import Leg, LostOrder, OrderRejected
from trading.ibsim.config import ET
from trading.ibsim.history import (
    HistoryError,
    WhatToShow,
    bar_label,
    iter_bars,
    parse_bar_size,
    parse_end,
    window,
)
from trading.ibsim.instruments import ContractRequest, Instrument
from trading.ibsim.marketdata import (
    Subscription,
    market_data_type,
    snapshot_end,
    tick_req_params,
)
from trading.ibsim.protocol import (
    Fields,
    FrameReader,
    ProtocolError,
    frame,
    parse_place_order,
    parse_version_range,
)

if TYPE_CHECKING:
    from trading.ibsim.board import QuoteBoard
    from trading.ibsim.broker import Broker
    from trading.ibsim.config import SimConfig
    from trading.ibsim.market import MarketModel
    from trading.ibsim.protocol import OrderRequest


class GatewayCore(Protocol):
    """What a client session needs of the gateway it belongs to (`trading.ibsim.server`'s
    GatewayCore): the market, the broker, the other sessions and the account's frames. A
    protocol, so that the session does not import the server that creates it."""

    config: SimConfig
    model: MarketModel
    broker: Broker
    sessions: set[Session]
    market_data_stopped: bool
    pacing_violation_next: bool
    drop_next_place_order: bool
    lost_orders: list[LostOrder]
    ack_delay_s: float
    tau: float
    board: QuoteBoard

    def now_epoch(self) -> float: ...
    def today(self) -> date: ...
    def next_order_id(self, client_id: int) -> int: ...
    def board_for(self, delayed: bool) -> QuoteBoard: ...
    def account_update_frames(self, held: list | None = None) -> bytes: ...
    def account_multi_frames(self, req_id: int) -> bytes: ...
    def account_summary_frames(self, req_id: int, tags: frozenset[str]) -> bytes: ...
    def pnl_frame(self, req_id: int) -> bytes: ...
    def pnl_single_frame(self, req_id: int, con_id: int) -> bytes: ...
    def session_index(self) -> int: ...
    def what_if(self, request: OrderRequest, version: int, client_id: int) -> bytes: ...
    def hold_order_events(self, client_id: int, order_id: int, delay_s: float) -> None: ...


log = logging.getLogger("trading.ibsim.session")

ACCOUNT_SUMMARY_TAGS = {
    "AccountType": "INDIVIDUAL",
    "NetLiquidation": None,
    "TotalCashValue": None,
    "SettledCash": "TotalCashValue",
    "AccruedCash": 0.0,
    "BuyingPower": None,
    "EquityWithLoanValue": None,
    "GrossPositionValue": None,
    "InitMarginReq": None,
    "MaintMarginReq": None,
    "AvailableFunds": None,
    "ExcessLiquidity": None,
    "Cushion": None,
    "FullInitMarginReq": "InitMarginReq",
    "FullMaintMarginReq": "MaintMarginReq",
    "FullAvailableFunds": "AvailableFunds",
    "FullExcessLiquidity": "ExcessLiquidity",
    "Leverage": None,
}


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    req_id: int
    instrument: Instrument
    what: str
    bar_size: str
    bar_seconds: int
    start_tau: float
    end_tau: float
    live: bool


class Session(asyncio.Protocol):
    """The server side of one client connection; everything runs on the gateway loop."""

    def __init__(self, core: GatewayCore) -> None:
        self.core = core
        self.reader = FrameReader()
        self.transport: asyncio.Transport | None = None
        self.version = 0
        self.client_id: int | None = None
        self.data_type = 1
        self.market_data: dict[int, Subscription] = {}
        self.history_updates: dict[int, tuple[Instrument, str, int, int]] = {}
        self.account_updates = False
        self.positions = False
        self.summaries: dict[int, frozenset[str]] = {}
        self.multi_updates: set[int] = set()
        self.pnl: set[int] = set()
        self.pnl_single: dict[int, int] = {}
        self.writable = asyncio.Event()
        self.writable.set()
        self.closed = False
        self._tasks: set[asyncio.Task] = set()
        self._handlers = {
            1: self.req_market_data,
            2: self.cancel_market_data,
            3: self.place_order,
            4: self.cancel_order,
            5: self.req_open_orders,
            6: self.req_account_updates,
            7: self.req_executions,
            8: self.req_ids,
            9: self.req_contract_details,
            15: lambda f: None,  # reqAutoOpenOrders: there are no TWS manual orders
            16: self.req_all_open_orders,
            17: lambda f: self.send(frame([15, 1, self.core.config.account])),
            20: self.req_historical_data,
            25: lambda f: self.history_updates.pop(Fields(f, 2).int("reqId"), None),
            49: lambda f: self.send(frame([49, 1, int(self.core.now_epoch())])),
            58: lambda f: self.core.broker.cancel_all(self.core.now_epoch()),
            59: self.req_market_data_type,
            61: self.req_positions,
            62: self.req_account_summary,
            63: lambda f: self.summaries.pop(Fields(f, 2).int("reqId"), None),
            64: self.cancel_positions,
            71: self.start_api,
            74: self.req_positions_multi,
            75: lambda f: None,
            76: self.req_account_updates_multi,
            77: lambda f: self.multi_updates.discard(Fields(f, 2).int("reqId")),
            78: self.req_option_chain,
            87: self.req_head_timestamp,
            92: self.req_pnl,
            93: lambda f: self.pnl.discard(Fields(f).int("reqId")),
            94: self.req_pnl_single,
            95: lambda f: self.pnl_single.pop(Fields(f).int("reqId"), None),
            99: self.req_completed_orders,
        }

    # ----------------------------------------------------------------------------------------
    # Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.core.sessions.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.writable.set()
        self.core.sessions.discard(self)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def send(self, data: bytes) -> None:
        transport = self.transport
        if data and transport is not None and not self.closed and not transport.is_closing():
            transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        try:
            messages_in = self.reader.feed(data)
        except ProtocolError as error:
            log.error("closing connection: %s", error)
            self.close()
            return
        for fields in messages_in:
            if self.closed or (self.transport is not None and self.transport.is_closing()):
                return  # what followed in the same read is lost with the connection
            if self.version == 0:
                try:
                    self.handshake(fields[0])
                except ProtocolError as error:
                    log.error("closing connection: %s", error)
                    self.close()
                    return
                continue
            try:
                self.dispatch(fields)
            except (ProtocolError, ValueError, IndexError) as error:
                log.error("bad request %s: %s", fields[:3], error)
                self.error(_request_id(fields), 320, f"Error reading request: {error}")
            except Exception as error:  # a simulator bug must not take the connection down
                log.exception("request %s failed", fields[:3])
                self.error(_request_id(fields), 321, f"Error validating request: {error}")

    def handshake(self, text: str) -> None:
        low, high = parse_version_range(text)
        self.version = min(high, self.core.config.server_version)
        if self.version < low:
            log.error("client needs version >= %s, server offers %s", low, self.version)
        stamp = datetime.fromtimestamp(self.core.now_epoch(), ET).strftime("%Y%m%d %H:%M:%S EST")
        self.send(frame([self.version, stamp]))

    def dispatch(self, fields: list[str]) -> None:
        message_id = int(fields[0])
        if self.client_id is None and message_id != 71:
            raise ProtocolError(f"request {message_id} before startApi")
        handler = self._handlers.get(message_id)
        if handler is None:
            log.warning("unsupported request %s: %s", message_id, fields[:4])
            self.error(
                _request_id(fields), 10156, f"The simulator does not support request {message_id}"
            )
            return
        handler(fields)

    def error(self, req_id: int, code: int, text: str) -> None:
        self.send(messages.error(self.version, req_id, code, text))

    # ----------------------------------------------------------------------------------------
    # Start-up

    def start_api(self, fields: list[str]) -> None:
        f = Fields(fields, 2)
        client_id = f.int("clientId")
        if any(s.client_id == client_id for s in self.core.sessions if s is not self):
            self.error(
                -1,
                326,
                "Unable to connect as the client id is already in use. "
                "Retry with a unique client id.",
            )
            asyncio.get_running_loop().call_soon(self.close)
            return
        self.client_id = client_id
        self.send(frame([15, 1, self.core.config.account]))
        self.send(frame([9, 1, self.core.next_order_id(client_id)]))
        for code, text in (
            (2104, "Market data farm connection is OK:usfarm"),
            (2106, "HMDS data farm connection is OK:ushmds"),
            (2158, "Sec-def data farm connection is OK:secdefnj"),
        ):
            self.error(-1, code, text)

    def req_ids(self, fields: list[str]) -> None:
        self.send(frame([9, 1, self.core.next_order_id(self.client_id or 0)]))

    # ----------------------------------------------------------------------------------------
    # Contracts

    def resolve(self, request: ContractRequest, req_id: int) -> Instrument | None:
        """The one instrument a request names, or error 200 (unknown or ambiguous)."""
        matches = self.core.model.registry.match(request, self.core.today())
        if len(matches) != 1:
            self.error(req_id, 200, "No security definition has been found for the request")
            return None
        return matches[0]

    def req_contract_details(self, fields: list[str]) -> None:
        f = Fields(fields, 2)
        req_id = f.int("reqId")
        request = f.contract()
        include_expired = f.bool("includeExpired")
        f.skip(2)  # secIdType, secId
        if self.version >= 176:
            f.skip(1)  # issuerId
        f.expect_end()
        core = self.core
        found = core.model.registry.match(request, core.today(), include_expired)
        if not found:
            self.error(req_id, 200, "No security definition has been found for the request")
            return
        exchange = request.exchange.upper() or "SMART"
        hours = core.model.calendar.trading_hours(core.session_index())
        for instrument in found:
            self.send(messages.contract_data(self.version, req_id, instrument, exchange, hours))
        self.send(frame([52, 1, req_id]))

    def req_option_chain(self, fields: list[str]) -> None:
        f = Fields(fields)
        req_id = f.int("reqId")
        symbol = f.text("underlyingSymbol").upper()
        f.skip(3)  # futFopExchange, underlyingSecType, underlyingConId
        f.expect_end()
        registry = self.core.model.registry
        if symbol == registry.underlying.symbol:
            listed = registry.listed_expiries(self.core.today())
            expiries = [d.strftime("%Y%m%d") for d, _ in listed]
            strikes = sorted(set(registry.monthly_strikes) | set(registry.weekly_strikes))
            for exchange in ("SMART", "CBOE"):
                self.send(
                    messages.option_chain(req_id, exchange, registry.underlying, expiries, strikes)
                )
        self.send(frame([76, req_id]))

    # ----------------------------------------------------------------------------------------
    # Market data

    def _legs(self, f: Fields, req_id: int) -> tuple[Leg, ...] | None:
        legs = []
        for _ in range(f.int("comboLegsCount")):
            con_id, ratio, action, exchange = (
                f.int("leg.conId"),
                f.int("leg.ratio"),
                f.text("leg.action"),
                f.text("leg.exchange"),
            )
            instrument = self.core.model.registry.by_con_id(con_id)
            if instrument is None or ratio <= 0 or action not in ("BUY", "SELL"):
                self.error(req_id, 200, f"No security definition has been found for leg {con_id}")
                return None
            legs.append(Leg(instrument, ratio, action, exchange))
        return tuple(legs)

    def req_market_data(self, fields: list[str]) -> None:
        f = Fields(fields, 2)
        req_id = f.int("reqId")
        request = f.contract()
        legs: tuple[Leg, ...] | None = ()
        if request.sec_type.upper() == "BAG":
            legs = self._legs(f, req_id)
        if f.bool("deltaNeutralContract"):
            f.skip(3)
        generic_text = f.text("genericTickList")
        snapshot = f.bool("snapshot")
        regulatory = f.bool("regulatorySnapshot")
        f.skip(1)  # mktDataOptions
        f.expect_end()
        if legs is None:
            return
        instrument = None
        if not legs:
            instrument = self.resolve(request, req_id)
            if instrument is None:
                return
        generic = frozenset(int(g) for g in generic_text.split(",") if g.strip().isdigit())
        delayed = self.data_type in (3, 4)
        subscription = Subscription(req_id, instrument, legs, generic, delayed)
        self.send(tick_req_params(req_id))
        if self.data_type != 1:
            self.send(market_data_type(req_id, self.data_type))
        if delayed:
            self.error(
                req_id,
                10167,
                "Requested market data is not subscribed. Displaying delayed market data.",
            )
        board = self.core.board_for(delayed)
        if not self.core.market_data_stopped:
            self.send(subscription.ticks(board, first=True))
        if snapshot or regulatory:
            self.send(snapshot_end(req_id))
        else:
            self.market_data[req_id] = subscription

    def cancel_market_data(self, fields: list[str]) -> None:
        req_id = Fields(fields, 2).int("reqId")
        if self.market_data.pop(req_id, None) is None:
            self.error(req_id, 300, f"Can't find EId with tickerId:{req_id}")

    def req_market_data_type(self, fields: list[str]) -> None:
        data_type = Fields(fields, 2).int("marketDataType")
        if data_type not in (1, 2, 3, 4):
            raise ProtocolError(f"marketDataType must be 1-4, got {data_type}")
        self.data_type = data_type

    # ----------------------------------------------------------------------------------------
    # Historical data

    def req_historical_data(self, fields: list[str]) -> None:
        f = Fields(fields)
        req_id = f.int("reqId")
        request = f.contract()
        f.skip(1)  # includeExpired
        end_text = f.text("endDateTime")
        bar_size = f.text("barSizeSetting")
        duration = f.text("durationStr")
        f.skip(1)  # useRTH: the simulator has regular hours only
        what = f.text("whatToShow")
        format_date = f.int("formatDate", 1)
        if request.sec_type.upper() == "BAG":
            f.skip(4 * f.int("comboLegsCount"))
        keep_up_to_date = f.bool("keepUpToDate")
        f.skip(1)  # chartOptions
        f.expect_end()
        core = self.core
        prefix = "Historical Market Data Service error message:"
        if core.pacing_violation_next:
            core.pacing_violation_next = False
            self.error(req_id, 162, prefix + "Historical data request pacing violation")
            return
        if request.sec_type.upper() == "BAG":
            self.error(req_id, 162, prefix + "No historical data for combos in the simulator")
            return
        instrument = self.resolve(request, req_id)
        if instrument is None:
            return
        if instrument.is_option and instrument.expiry_date < core.today():
            # IB keeps no bars of expired options for most accounts.
            text = f"HMDS query returned no data: {instrument.local_symbol}@SMART {what}"
            self.error(req_id, 162, prefix + text)
            return
        try:
            end = parse_end(end_text)
            now = core.tau
            end_tau = now if end is None else min(core.model.calendar.tau(end), now)
            start_tau = window(core.model, end_tau, duration, live=end_tau >= now)
            bar_seconds = parse_bar_size(bar_size)
            WhatToShow(what.upper())
        except HistoryError as error:
            self.error(req_id, 162, prefix + str(error))
            return
        except ValueError:
            self.error(req_id, 162, prefix + f"No data of type {what} is available")
            return
        history = HistoryRequest(
            req_id, instrument, what, bar_size, bar_seconds, start_tau, end_tau, end is None
        )
        task = asyncio.get_running_loop().create_task(
            self._send_history(history, format_date, keep_up_to_date)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_history(
        self, request: HistoryRequest, format_date: int, keep_up_to_date: bool
    ) -> None:
        """Build the bars a session at a time, letting the market loop run in between."""
        model = self.core.model
        found = []
        for chunk in iter_bars(
            model,
            request.instrument,
            request.what,
            request.bar_size,
            request.start_tau,
            request.end_tau,
            request.live,
        ):
            found.extend(chunk)
            await asyncio.sleep(0)
        epoch = model.calendar.epoch
        out: list[object] = [17, request.req_id]
        out += [
            messages.ib_time(epoch(request.start_tau)),
            messages.ib_time(epoch(request.end_tau)),
        ]
        out.append(len(found))
        for bar in found:
            out += [
                bar_label(model, bar, request.bar_seconds, format_date),
                bar.open,
                bar.high,
                bar.low,
                bar.close,
                bar.volume,
                bar.wap,
                bar.count,
            ]
        self.send(frame(out))
        if keep_up_to_date:
            self.history_updates[request.req_id] = (
                request.instrument,
                request.what,
                request.bar_seconds,
                format_date,
            )

    # ----------------------------------------------------------------------------------------
    # Orders

    def place_order(self, fields: list[str]) -> None:
        request = parse_place_order(fields, self.version)
        core = self.core
        if request.what_if:
            try:
                self.send(core.what_if(request, self.version, self.client_id or 0))
            except OrderRejected as rejection:
                self.error(request.order_id, rejection.code, str(rejection))
            return
        client_id = self.client_id or 0
        if core.drop_next_place_order:
            # The fault of a connection that dies while an order is on the wire: the gateway
            # never acts on it, and the requests behind it in the same read are lost too.
            core.drop_next_place_order = False
            con_ids = tuple(leg.con_id for leg in request.legs) or (request.contract.con_id,)
            core.lost_orders.append(
                LostOrder(client_id, request.order_id, request.order_ref, con_ids)
            )
            log.warning("placeOrder %s lost with its connection (fault)", request.order_id)
            self.close()
            return
        if core.ack_delay_s > 0:
            core.hold_order_events(client_id, request.order_id, core.ack_delay_s)
        core.broker.place(client_id, request, core.board)

    def cancel_order(self, fields: list[str]) -> None:
        f = Fields(fields, 2)
        order_id = f.int("orderId")
        self.core.broker.cancel(self.client_id or 0, order_id, self.core.now_epoch())

    def _send_open_orders(self, client_id: int | None) -> None:
        for order in self.core.broker.open_orders(client_id):
            self.send(messages.open_order(self.version, order))
            self.send(messages.order_status(order))
        self.send(frame([53, 1]))

    def req_open_orders(self, fields: list[str]) -> None:
        self._send_open_orders(self.client_id)

    def req_all_open_orders(self, fields: list[str]) -> None:
        self._send_open_orders(None)

    def req_completed_orders(self, fields: list[str]) -> None:
        for order in self.core.broker.completed_orders():
            self.send(messages.completed_order(self.version, order))
        self.send(frame([102]))

    def req_executions(self, fields: list[str]) -> None:
        f = Fields(fields, 2)
        req_id = f.int("reqId")
        client_id = f.int("clientId")
        account = f.text("acctCode")
        since = f.text("time")
        symbol, sec_type = f.text("symbol").upper(), f.text("secType").upper()
        f.skip(1)  # exchange
        side = f.text("side").upper()
        f.expect_end()
        since_epoch = None
        if since:
            parsed = parse_end(since.replace("-", " ", 1) if "-" in since else since)
            since_epoch = parsed.timestamp() if parsed else None
        account_code = self.core.config.account
        underlying = self.core.model.registry.underlying.symbol  # a combo's (a buy-write)
        for execution in self.core.broker.executions:
            instrument = execution.instrument
            symbol_of = instrument.symbol if instrument else underlying
            sec_type_of = instrument.sec_type.value if instrument else "BAG"
            if (
                (client_id and execution.client_id != client_id)
                or (account and account != account_code)
                or (symbol and symbol != symbol_of)
                or (sec_type and sec_type != sec_type_of)
                or (side and not execution.side.startswith(side[:1]))
                or (since_epoch is not None and execution.epoch < since_epoch)
            ):
                continue
            self.send(messages.exec_details(req_id, execution, account_code))
            self.send(messages.commission_report(execution))
        self.send(frame([55, 1, req_id]))

    # ----------------------------------------------------------------------------------------
    # Account and positions

    def req_positions(self, fields: list[str]) -> None:
        self.positions = True
        account = self.core.config.account
        for held in self.core.broker.positions.values():
            if held.quantity:
                self.send(messages.position(account, held))
        self.send(frame([62, 1]))

    def cancel_positions(self, fields: list[str]) -> None:
        self.positions = False

    def req_positions_multi(self, fields: list[str]) -> None:
        f = Fields(fields, 2)
        req_id = f.int("reqId")
        account = self.core.config.account
        for held in self.core.broker.positions.values():
            if held.quantity:
                block = messages.contract_block(held.instrument, "")
                self.send(
                    frame([71, 1, req_id, account, *block, held.quantity, held.average_cost, ""])
                )
        self.send(frame([72, 1, req_id]))

    def req_account_updates(self, fields: list[str]) -> None:
        f = Fields(fields, 2)
        subscribe = f.bool("subscribe")
        self.account_updates = subscribe
        if subscribe:
            self.send(self.core.account_update_frames())
            self.send(frame([54, 1, self.core.config.account]))

    def req_account_updates_multi(self, fields: list[str]) -> None:
        f = Fields(fields, 2)
        req_id = f.int("reqId")
        self.multi_updates.add(req_id)
        self.send(self.core.account_multi_frames(req_id))
        self.send(frame([74, 1, req_id]))

    def req_account_summary(self, fields: list[str]) -> None:
        f = Fields(fields, 2)
        req_id = f.int("reqId")
        f.skip(1)  # group
        tags = frozenset(t.strip() for t in f.text("tags").split(",") if t.strip())
        self.summaries[req_id] = tags
        self.send(self.core.account_summary_frames(req_id, tags))
        self.send(frame([64, 1, req_id]))

    def req_pnl(self, fields: list[str]) -> None:
        req_id = Fields(fields).int("reqId")
        self.pnl.add(req_id)
        self.send(self.core.pnl_frame(req_id))

    def req_pnl_single(self, fields: list[str]) -> None:
        f = Fields(fields)
        req_id = f.int("reqId")
        f.skip(2)  # account, modelCode
        self.pnl_single[req_id] = f.int("conId")
        self.send(self.core.pnl_single_frame(req_id, self.pnl_single[req_id]))

    def req_head_timestamp(self, fields: list[str]) -> None:
        req_id = Fields(fields).int("reqId")
        first = self.core.model.calendar.open_epoch[0]
        self.send(
            frame(
                [88, req_id, datetime.fromtimestamp(float(first), ET).strftime("%Y%m%d-%H:%M:%S")]
            )
        )


def _request_id(fields: list[str]) -> int:
    """Best guess of the request id a bad message refers to (-1 if none)."""
    if not fields:
        return -1
    message_id = fields[0]
    index = 1 if message_id in ("3", "20", "78", "87", "92", "94") or len(fields) < 3 else 2
    try:
        return int(fields[index])
    except (ValueError, IndexError):
        return -1
