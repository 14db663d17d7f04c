"""The gateway: the sim clock, the market loop and fan-out to sessions (`GatewayCore`); the
threaded runner with its admin API is `trading.ibsim.gateway.SimulatedGateway`."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from typing import Any

import trading.ibsim.messages as messages
from trading.ibsim.board import QuoteBoard
from trading.ibsim.broker import Broker, BrokerTruth, Execution, LostOrder, WorkingOrder
from trading.ibsim.config import SimConfig
from trading.ibsim.history import bar_label, current_bar
from trading.ibsim.instruments import Instrument
from trading.ibsim.market import MarketModel, Truth
from trading.ibsim.marketdata import DELAY_SECONDS
from trading.ibsim.protocol import OrderRequest, frame
from trading.ibsim.session import ACCOUNT_SUMMARY_TAGS, Session

log = logging.getLogger("trading.ibsim")

ACCOUNT_PUSH_SECONDS = 180.0
PNL_PUSH_SECONDS = 1.0
BAR_PUSH_SECONDS = 1.0
FIREHOSE_STEPS_PER_YIELD = 64
STEP_GAP_S = 0.002
"""Wall time the market loop sleeps between two steps when the clock is already due again
(a fast clock): steps are then conflated (the next one jumps to the clock's present) instead of
run back to back. A loop that never sleeps holds the GIL, and a client in the same process
(the tests') waits a whole switch interval for each of its socket reads: a convoy that slowed
the pipeline tests 10-fold, intermittently."""
STEP_SENDS_KEPT = 100_000
"""Market steps whose send time is kept (``GatewayCore.step_sends``: the chain benchmark's
start of the clock)."""


class SimClock:
    """Sim trading time = origin + speed x wall seconds since the origin was set."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.reset(0.0)

    def reset(self, tau: float) -> None:
        self._origin_tau = tau
        self._origin_wall = time.monotonic()

    def target(self) -> float:
        return self._origin_tau + self.speed * (time.monotonic() - self._origin_wall)

    def set_speed(self, speed: float) -> None:
        """From now on, ``speed`` sim seconds per wall second (the time so far is kept)."""
        self.reset(self.target())
        self.speed = speed


class GatewayCore:
    """All state of one simulated gateway; every method runs on its event loop."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.model = MarketModel(config)
        self.broker = Broker(config, self.model.registry, self)
        self.sessions: set[Session] = set()
        self.clock = SimClock(config.speed)
        self._server: asyncio.AbstractServer | None = None
        self._market_task: asyncio.Task | None = None
        self._reset_state()

    def _reset_state(self) -> None:
        self.tau = self.model.calendar.anchor_tau
        self._step = 0
        self.conflated_steps = 0
        self.step_sends: deque[tuple[float, float]] = deque(maxlen=STEP_SENDS_KEPT)
        """(sim epoch, wall time) of each market step's send to the sessions, the newest last:
        when the gateway sent a tick (the chain benchmark measures from it)."""
        """Market steps a session missed because its socket was backed up (flow control)."""
        self.clock.reset(self.tau)
        self.market_data_stopped = False
        self.pacing_violation_next = False
        self.bad_quotes: dict[str, str] = {}
        self.drop_next_place_order = False
        """Fault: the next placeOrder (from any client) is lost with its connection."""
        self.lost_orders: list[LostOrder] = []
        self.ack_delay_s = 0.0
        """Fault: every message about an order placed while this is > 0 (its openOrder,
        orderStatus, executions) reaches the client this many wall seconds late; the broker
        works the order at once, and requests (reqOpenOrders, reqExecutions) answer with it."""
        self._held_events: dict[tuple[int, int], list[Callable[[], None]]] = {}
        self.board = QuoteBoard(self.model, self.model.snapshot(self.tau))
        self._delayed_board: QuoteBoard | None = None
        self._last_account_push = self.tau
        self._last_pnl_push = self.tau
        self._last_bar_push = self.tau
        self._excursions_told = 0
        """Planted excursions announced in the log so far (each as it starts)."""
        self._session_base(self.board)

    def _session_base(self, board: QuoteBoard) -> None:
        self._open_net_liquidation = self.broker.account_values(board)["NetLiquidation"]
        self._open_marks = {
            con_id: board.mark(held.instrument) for con_id, held in self.broker.positions.items()
        }

    def reset(self) -> None:
        """Clear orders, positions, executions and faults; restart the market at ``start``."""
        self.broker.reset()
        self.model.clear_shocks()
        self._reset_state()

    # ----------------------------------------------------------------------------------------
    # Serving

    async def start(self, host: str, port: int) -> int:
        self._tell_schedule()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Session(self), host, port)
        self._market_task = loop.create_task(self._market_loop())
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for session in list(self.sessions):
            session.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def now_epoch(self) -> float:
        return self.board.snapshot.epoch

    def today(self) -> date:
        return self.model.calendar.dates[self.board.snapshot.session]

    def session_index(self) -> int:
        return self.board.snapshot.session

    def next_order_id(self, client_id: int) -> int:
        ids = [order_id for (owner, order_id) in self.broker.orders if owner == client_id]
        return max(ids, default=0) + 1

    def board_for(self, delayed: bool) -> QuoteBoard:
        if not delayed:
            return self.board
        if self._delayed_board is None:
            tau = max(self.tau - DELAY_SECONDS, float(self.model.calendar.start_tau[0]))
            self._delayed_board = QuoteBoard(
                self.model, self.model.snapshot(tau), self._subscribed_options(delayed=True)
            )
        return self._delayed_board

    def _subscribed_options(self, delayed: bool) -> list[Instrument]:
        """The options the sessions' live (or delayed) market data quotes: a board computes
        them together."""
        return [
            option
            for session in self.sessions
            for subscription in session.market_data.values()
            if subscription.delayed == delayed
            for option in subscription.options
        ]

    def truth(self) -> Truth:
        return self.model.truth(self.tau)

    def broker_truth(self) -> BrokerTruth:
        return replace(self.broker.truth(), lost=tuple(self.lost_orders))

    def hold_order_events(self, client_id: int, order_id: int, delay_s: float) -> None:
        """Deliver the events of this order ``delay_s`` wall seconds late (in their order)."""
        key = (client_id, order_id)
        self._held_events.setdefault(key, [])
        asyncio.get_running_loop().call_later(delay_s, self._release_order_events, key)

    def _release_order_events(self, key: tuple[int, int]) -> None:
        for send in self._held_events.pop(key, []):
            send()

    def _deliver(self, client_id: int, order_id: int, frames: list[tuple[Session, bytes]]) -> None:
        """Send now, or queue behind the order's held events (rendered now: the order changes)."""

        def send() -> None:
            for session, data in frames:
                session.send(data)

        held = self._held_events.get((client_id, order_id)) if order_id else None
        if held is None:
            send()
        else:
            held.append(send)

    # ----------------------------------------------------------------------------------------
    # The market loop

    async def _market_loop(self) -> None:
        interval = self.config.tick_interval_s
        anchor = self.model.calendar.anchor_tau
        try:
            while True:
                if self.config.firehose:
                    await self._writable()
                    for _ in range(FIREHOSE_STEPS_PER_YIELD):
                        self._step += 1
                        self._advance_logged(anchor + self._step * interval)
                    await asyncio.sleep(0)
                    continue
                target = self.clock.target()
                due = math.floor((target - anchor) / interval + 1e-9)
                if due <= self._step:
                    wait = (anchor + (self._step + 1) * interval - target) / self.clock.speed
                    await asyncio.sleep(max(wait, 0.0005))
                    continue
                self._step = due
                self._advance_logged(anchor + due * interval)
                # At high speed the clock is always due again: let the clients' I/O in.
                await asyncio.sleep(STEP_GAP_S)
        except asyncio.CancelledError:
            raise

    def _advance_logged(self, tau: float) -> None:
        """advance(), logging a failure instead of ending the market loop."""
        try:
            self.advance(tau)
        except Exception:
            log.exception("market step at tau %.3f failed", tau)

    async def _writable(self) -> None:
        for session in list(self.sessions):
            if not session.writable.is_set():
                await session.writable.wait()

    def advance(self, tau: float) -> None:
        """Move the market to ``tau``: session events, fills, then market data."""
        calendar = self.model.calendar
        previous = self.board.snapshot.session
        current = calendar.session_at(tau)
        for session in range(previous, current):
            self._session_close(session)
            self._session_open(session + 1)
        self.tau = tau
        self._tell_excursion()
        self.board = QuoteBoard(
            self.model, self.model.snapshot(tau), self._subscribed_options(delayed=False)
        )
        self._delayed_board = None
        self.broker.on_step(self.board)
        self._publish()
        if tau - self._last_account_push >= ACCOUNT_PUSH_SECONDS:
            self._last_account_push = tau
            self._push_account(list(self.broker.positions), changed=False)
        if tau - self._last_pnl_push >= PNL_PUSH_SECONDS:
            self._last_pnl_push = tau
            self._push_pnl()

    def _tell_schedule(self, count: int = 4) -> None:
        """Log the planted premium excursions' schedule (SimConfig.excursion_bp), if any."""
        schedule = self.model.excursion_schedule(count)
        if not schedule:
            return
        c = self.config
        times = ", ".join(f"{start:%a %H:%M}" for start, _, _ in schedule)
        etf = self.model.registry.etf.symbol
        log.info(
            "planted premium excursions: %s's premium moves %+.0f bp off its own path in %.0f "
            "simulated minutes, stays %.0f, comes back in %.0f; every %.0f simulated minutes "
            "from %s (New York time): %s, ...",
            etf, c.excursion_bp, c.excursion_rise_minutes, c.excursion_hold_minutes,
            c.excursion_fall_minutes, c.excursion_every_minutes,
            f"{schedule[0][0]:%Y-%m-%d %H:%M}", times,
        )  # fmt: skip

    def _tell_excursion(self) -> None:
        """Log each planted excursion as it starts: when it peaks and when it is over."""
        c = self.config
        if c.excursion_bp == 0.0:
            return
        first = self.model.calendar.anchor_tau + c.excursion_first_minutes * 60.0
        due = math.floor((self.tau - first) / (c.excursion_every_minutes * 60.0)) + 1
        if due <= self._excursions_told:
            return
        self._excursions_told = due
        start, top, back = self.model.excursion_schedule(due)[-1]
        log.info(
            "premium excursion %d starts now (%s New York): %s's premium %+.0f bp off its "
            "own path from %s, back on it by %s",
            due, f"{start:%H:%M}", self.model.registry.etf.symbol, c.excursion_bp,
            f"{top:%H:%M}", f"{back:%H:%M}",
        )  # fmt: skip

    def _session_close(self, session: int) -> None:
        """At a close: DAY orders expire, expiring options settle at the closing spot."""
        calendar = self.model.calendar
        spot = self.model.tlt_mid(calendar.end_tau(session) - 1e-6)
        self.broker.end_of_session(
            calendar.dates[session], spot, float(calendar.close_epoch[session])
        )

    def _session_open(self, session: int) -> None:
        """At an open: the ETF's distribution goes ex and is paid to holders."""
        etf_con_id = self.model.registry.etf.con_id
        held = self.broker.positions.get(etf_con_id)
        distribution = self.model.tltw_distribution(session)
        if held is not None and held.quantity and distribution:
            self.broker.credit(held.quantity * distribution)
            self._push_account([etf_con_id])
        tau = float(self.model.calendar.start_tau[session])
        self._session_base(QuoteBoard(self.model, self.model.snapshot(tau)))

    def _publish(self) -> None:
        if self.market_data_stopped:
            return
        faults, self.bad_quotes = self.bad_quotes, {}
        push_bars = self.tau - self._last_bar_push >= BAR_PUSH_SECONDS
        if push_bars:
            self._last_bar_push = self.tau
        outgoing: list[tuple[Session, bytes]] = []
        for session in list(self.sessions):
            if not session.writable.is_set():
                # The client is not reading as fast as we write (its socket buffer is full):
                # conflate, as IB does, instead of queueing without bound. Ticks are sent as
                # changes from what this session was last sent, so the next step catches up.
                self.conflated_steps += 1
                continue
            chunks = []
            for subscription in session.market_data.values():
                board = self.board_for(subscription.delayed)
                instrument = subscription.instrument
                fault = None
                if faults and instrument is not None:
                    fault = faults.get(instrument.local_symbol)
                chunks.append(subscription.ticks(board, fault))
            if push_bars:
                for req_id, (instrument, what, bar_seconds, format_date) in list(
                    session.history_updates.items()
                ):
                    bar = current_bar(self.model, instrument, what, bar_seconds, self.tau)
                    label = bar_label(self.model, bar, bar_seconds, format_date)
                    chunks.append(
                        frame(
                            [
                                90,
                                req_id,
                                bar.count,
                                label,
                                bar.open,
                                bar.close,
                                bar.high,
                                bar.low,
                                bar.wap,
                                bar.volume,
                            ]
                        )
                    )
            if chunks:
                outgoing.append((session, b"".join(chunks)))
        # Every session's ticks are built first, then sent together, stamped at the send.
        self.step_sends.append((self.board.snapshot.epoch, time.time()))
        for session, data in outgoing:
            session.send(data)

    # ----------------------------------------------------------------------------------------
    # Broker events -> sessions

    def _owner(self, client_id: int) -> list[Session]:
        """The session of the client that placed an order, and the master client's."""
        master = self.config.master_client_id
        return [s for s in self.sessions if s.client_id in (client_id, master)]

    def order_changed(self, order: WorkingOrder, open_order: bool) -> None:
        frames = []
        for session in self._owner(order.client_id):
            data = messages.order_status(order)
            if open_order:
                data = messages.open_order(session.version, order) + data
            frames.append((session, data))
        self._deliver(order.client_id, order.order_id, frames)

    def order_error(self, client_id: int, order_id: int, code: int, message: str) -> None:
        # Only the placing client: its order id may be another client's pending request id.
        for session in (s for s in self.sessions if s.client_id == client_id):
            session.error(order_id, code, message)

    def _execution_sessions(self, execution: Execution) -> list[Session]:
        if execution.order_id == 0:  # exercise, assignment: the account's, so everyone's
            return [s for s in self.sessions if s.client_id is not None]
        return self._owner(execution.client_id)

    def executed(self, execution: Execution) -> None:
        frames = [
            (session, messages.exec_details(-1, execution, self.config.account))
            for session in self._execution_sessions(execution)
        ]
        self._deliver(execution.client_id, execution.order_id, frames)

    def commission_reported(self, execution: Execution) -> None:
        frames = [
            (session, messages.commission_report(execution))
            for session in self._execution_sessions(execution)
        ]
        self._deliver(execution.client_id, execution.order_id, frames)

    def positions_changed(self, con_ids: list[int]) -> None:
        self._push_account(con_ids)
        self._push_pnl()

    def _push_account(self, con_ids: list[int], changed: bool = True) -> None:
        """Account updates, summaries and per-account values for ``con_ids``' positions (IB
        sends them every three minutes and when a position changes); position messages to
        reqPositions subscribers only when ``changed`` (IB sends those on a change alone)."""
        account = self.config.account
        held = [
            self.broker.positions[c] for c in dict.fromkeys(con_ids) if c in self.broker.positions
        ]
        for session in list(self.sessions):
            if session.positions and changed:
                session.send(b"".join(messages.position(account, p) for p in held))
            if session.account_updates:
                session.send(self.account_update_frames(held))
            for req_id, tags in session.summaries.items():
                session.send(self.account_summary_frames(req_id, tags))
            for req_id in session.multi_updates:
                session.send(self.account_multi_frames(req_id))

    def _push_pnl(self) -> None:
        for session in list(self.sessions):
            for req_id in session.pnl:
                session.send(self.pnl_frame(req_id))
            for req_id, con_id in session.pnl_single.items():
                session.send(self.pnl_single_frame(req_id, con_id))

    # ----------------------------------------------------------------------------------------
    # Account messages

    def account_update_frames(self, held: list | None = None) -> bytes:
        account = self.config.account
        values = self.broker.account_values(self.board)
        out = [messages.account_value(key, value, "USD", account) for key, value in values.items()]
        out.append(messages.account_value("AccountCode", account, "", account))
        out.append(messages.account_value("AccountType", "INDIVIDUAL", "", account))
        out.append(messages.account_value("Currency", "USD", "USD", account))
        positions = list(self.broker.positions.values()) if held is None else held
        for position in positions:
            if held is not None or position.quantity:
                mark = self.board.mark(position.instrument)
                out.append(messages.portfolio(account, position, mark))
        stamp = self.model.calendar.datetime(self.tau).strftime("%H:%M")
        out.append(frame([8, 1, stamp]))
        return b"".join(out)

    def account_multi_frames(self, req_id: int) -> bytes:
        account = self.config.account
        values = self.broker.account_values(self.board)
        return b"".join(
            frame([73, 1, req_id, account, "", key, f"{value:.2f}", "USD"])
            for key, value in values.items()
        )

    def account_summary_frames(self, req_id: int, tags: frozenset[str]) -> bytes:
        account = self.config.account
        values: dict[str, Any] = self.broker.account_values(self.board)
        net = values["NetLiquidation"]
        values["Cushion"] = values["ExcessLiquidity"] / net if net else 0.0
        values["Leverage"] = values["GrossPositionValue"] / net if net else 0.0
        out = []
        for tag, source in ACCOUNT_SUMMARY_TAGS.items():
            if tags and tag not in tags and "All" not in tags:
                continue
            if tag == "AccountType":
                out.append(frame([63, 1, req_id, account, tag, source, ""]))
                continue
            value = values[source] if isinstance(source, str) else source
            value = values[tag] if value is None else value
            out.append(frame([63, 1, req_id, account, tag, f"{value:.2f}", "USD"]))
        return b"".join(out)

    def pnl_frame(self, req_id: int) -> bytes:
        values = self.broker.account_values(self.board)
        daily = values["NetLiquidation"] - self._open_net_liquidation
        return frame([94, req_id, daily, values["UnrealizedPnL"], values["RealizedPnL"]])

    def pnl_single_frame(self, req_id: int, con_id: int) -> bytes:
        held = self.broker.positions.get(con_id)
        if held is None:
            return frame([95, req_id, 0.0, 0.0, 0.0, 0.0, 0.0])
        instrument = held.instrument
        mark = self.board.mark(instrument)
        value = held.quantity * mark * instrument.multiplier
        unrealized = value - held.quantity * held.average_cost
        opened = self._open_marks.get(con_id, mark)
        daily = held.quantity * (mark - opened) * instrument.multiplier
        return frame([95, req_id, held.quantity, daily, unrealized, held.realized_pnl, value])

    def what_if(self, request: OrderRequest, version: int, client_id: int) -> bytes:
        """openOrder with whatIf=1 and margin estimates (the order is not placed)."""
        instrument, legs = self.broker.resolve(request, self.today())
        order = WorkingOrder(request, client_id, 0, instrument, legs)
        sides = [(leg.instrument, leg.ratio) for leg in legs]
        if not sides:
            assert instrument is not None  # None only for a BAG, which has legs
            sides = [(instrument, 1)]
        notional = sum(
            request.quantity * ratio * self.board.mark(item) * item.multiplier
            for item, ratio in sides
        )
        before = self.broker.account_values(self.board)
        change = 0.25 * abs(notional)
        margins = {
            "initMarginBefore": before["InitMarginReq"],
            "maintMarginBefore": before["MaintMarginReq"],
            "equityWithLoanBefore": before["EquityWithLoanValue"],
            "initMarginChange": change,
            "maintMarginChange": change,
            "equityWithLoanChange": 0.0,
            "initMarginAfter": before["InitMarginReq"] + change,
            "maintMarginAfter": before["MaintMarginReq"] + change,
            "equityWithLoanAfter": before["EquityWithLoanValue"],
        }
        text = {key: f"{value:.2f}" for key, value in margins.items()}
        return messages.open_order(version, order, text)

    # ----------------------------------------------------------------------------------------
    # Faults (see admin.Faults for the public, thread-safe API)

    def drop_connections(self) -> None:
        for session in list(self.sessions):
            session.close()

    def broadcast_error(self, code: int, req_id: int, message: str) -> None:
        for session in list(self.sessions):
            if session.client_id is not None:
                session.error(req_id, code, message)
                if code == 1101:  # "data lost": the subscriptions are gone
                    session.market_data.clear()
                    session.history_updates.clear()
