"""The fault suite: each fault injected once into a running stack, then every invariant checked.

A fault makes the strategy trade (a premium shock: SHORT_SPREAD on +150 bp, LONG_SPREAD on -150
bp, alternating) and breaks something at the moment that matters: a service killed with SIGKILL
at a seam (`trading.seams`) or with an order working, Redis killed and restarted on its
append-only file, IB's link lost and the socket dropped, an order lost on a dying connection,
acknowledgements late, bad ticks. The recovery time runs from the fault to the moment the stack
is settled again (every heartbeat ok, nothing working at IB, the book equal to IB's positions).

    python -m tests.faults                 # every fault once: the table, exit 1 on a failure
    python -m tests.faults --runs 3        # three consecutive runs
    python -m tests.faults --only redis_killed ib_link_lost_and_socket_dropped
    python -m tests.faults --soak 30       # 30 minutes, a random fault every two minutes
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.faults.invariants import INVARIANTS, RECOVERY_BOUND_S, Check, Window, check, settled
from tests.faults.stack import ENTRY_BP, Stack, ib_positions, wait_for, working_at_ib
from trading.bus import IntentPurpose, Signal
from trading.runner import SERVICES

CRASH_AT = "TRADING_CRASH_AT"
SHOCKS = 3
TRADE_TIMEOUT_S = 60.0


@dataclass
class Outcome:
    fault: str
    recovery_s: float
    checks: list[Check]
    book: str
    orders: int = 0
    fills: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


@dataclass
class Run:
    """What a fault needs while it is injected: the stack and the direction of its shock."""

    stack: Stack
    sign: float
    notes: list[str] = field(default_factory=list)

    def shock(self) -> float:
        return self.stack.shock(self.sign * ENTRY_BP)

    def shock_until(self, condition: Callable[[], object], what: str) -> object:
        """Shock until `condition` holds: a shock can fall on a session's last minutes, or
        find the strategy blocked; the next one goes the other way."""
        for attempt in range(SHOCKS):
            self.shock()
            try:
                return wait_for(condition, TRADE_TIMEOUT_S / SHOCKS, what)
            except TimeoutError:
                if attempt == SHOCKS - 1:
                    raise
                self.notes.append(f"no {what} after a {self.sign * ENTRY_BP:+g} bp shock")
                self.sign = -self.sign
        raise AssertionError("unreachable")

    def enter(self) -> str:
        """Shock the premium until the strategy makes an entry intent; returns its id."""
        seen = {i.intent_id for i in self.stack.intents()}

        def found() -> str | None:
            for intent in self.stack.intents():
                if intent.purpose == IntentPurpose.ENTRY and intent.intent_id not in seen:
                    return intent.intent_id
            return None

        return str(self.shock_until(found, "entry intent"))

    def holding(self) -> dict[int, float]:
        return wait_for(lambda: ib_positions(self.stack.truth()), TRADE_TIMEOUT_S, "a position")

    def crash_at(self, service: str, seam: str) -> float:
        """Restart `service` armed to SIGKILL itself at `seam`; shock; wait for the crash and
        restart it unarmed. Returns the time of the crash."""
        self.stack.restart(service, {CRASH_AT: seam})
        wait_for(lambda: _beat_ok(self.stack, service), 60, f"{service} up, armed")
        self.shock_until(lambda: not self.stack.running(service), f"crash at {seam}")
        crashed = time.time()
        self.stack.restart(service)
        return crashed


def _beat_ok(stack: Stack, service: str) -> bool:
    beat = stack.heartbeats()[service]
    return beat is not None and beat.status == "ok" and time.time() - beat.ts < 2.0


# the faults: each returns the time it struck ------------------------------------------------


def strategy_killed_after_its_intent(run: Run) -> float:
    return run.crash_at("strategy", "strategy.intent_appended")


def risk_killed_after_the_placing_record(run: Run) -> float:
    return run.crash_at("risk-management", "risk.placing_recorded")


def risk_killed_between_the_legs(run: Run) -> float:
    return run.crash_at("risk-management", "risk.leg_sent")


def risk_killed_after_placing(run: Run) -> float:
    return run.crash_at("risk-management", "risk.order_sent")


def risk_killed_with_an_order_working_that_fills_while_down(run: Run) -> float:
    stack = run.stack
    stack.fault("hold_fills", symbols=["TLTW"])
    try:
        ref = run.enter()

        def legged() -> bool:
            mine = [o for o in stack.truth()["orders"] if o["order_ref"] == ref]
            return len(mine) == 2 and {o["status"] for o in mine} == {"Filled", "Submitted"}

        wait_for(legged, TRADE_TIMEOUT_S, "the BAG filled, TLTW working")
        stack.kill("risk-management")
        struck = time.time()
    finally:
        stack.fault("release_fills")
    wait_for(lambda: not working_at_ib(stack.truth()), 30, "TLTW filled while risk is down")
    stack.restart("risk-management")
    return struck


def _kill_in_position(service: str) -> Callable[[Run], float]:
    def fault(run: Run) -> float:
        run.enter()
        run.holding()
        run.stack.kill(service)
        struck = time.time()
        time.sleep(1.0)
        run.stack.restart(service)
        return struck

    fault.__name__ = f"{service.replace('-', '_')}_killed_in_position"
    return fault


def redis_killed_and_restarted(run: Run) -> float:
    run.enter()
    run.holding()
    run.stack.kill_redis()
    struck = time.time()
    time.sleep(2.0)
    run.stack.start_redis()
    return struck


def ib_link_lost_and_socket_dropped(run: Run) -> float:
    """The finding's sequence: an entry, then IB's 1100, the socket dropped, 1102."""
    stack = run.stack
    ref = run.enter()
    stack.fault("send_error", code=1100)
    struck = time.time()
    try:
        time.sleep(0.5)
        stack.fault("drop_connections")
        wait_for(lambda: _beat_ok(stack, "risk-management"), 60, "risk reconnected")
    finally:
        stack.fault("send_error", code=1102)
    run.notes.append(f"entry {ref} met 1100 and a dropped socket")
    return struck


def order_lost_with_its_connection(run: Run) -> float:
    stack = run.stack
    stack.fault("drop_on_next_place_order")
    ref = run.enter()
    struck = time.time()
    lost = wait_for(lambda: stack.truth()["lost"], 30, "the order lost at IB")
    wait_for(
        lambda: all(leg["state"] == "lost" for leg in stack.records()[ref]["legs"]),
        60,
        "risk resolved the entry as lost",
    )
    run.notes.append(f"{len(lost)} order(s) lost on the wire, entry {ref} resolved lost")
    return struck


def acknowledgements_late(run: Run) -> float:
    stack = run.stack
    stack.fault("delay_acks", seconds=5.0)  # the acknowledgement bound is 2 s
    try:
        run.enter()
        struck = time.time()
        run.holding()
        time.sleep(6.0)
    finally:
        stack.fault("delay_acks", seconds=0)
    return struck


def _bad_ticks(kind: str) -> Callable[[Run], float]:
    def fault(run: Run) -> float:
        stack = run.stack
        struck = time.time()
        run.shock()  # the strategy would enter, if it traded on what it cannot check
        end = time.monotonic() + 6.0  # twice the silence bound: TLTW's data is flagged stale
        while time.monotonic() < end:
            stack.fault("bad_quote", symbol="TLTW", kind=kind)
            time.sleep(0.05)
        return struck

    fault.__name__ = f"{kind}_ticks"
    return fault


FAULTS: dict[str, Callable[[Run], float]] = {
    f.__name__: f
    for f in (
        strategy_killed_after_its_intent,
        risk_killed_after_the_placing_record,
        risk_killed_between_the_legs,
        risk_killed_after_placing,
        risk_killed_with_an_order_working_that_fills_while_down,
        _kill_in_position("risk-management"),
        _kill_in_position("strategy"),
        _kill_in_position("data-ingestion"),
        _kill_in_position("visualization"),
        _kill_in_position("monitoring"),
        redis_killed_and_restarted,
        ib_link_lost_and_socket_dropped,
        order_lost_with_its_connection,
        acknowledgements_late,
        _bad_ticks("nan"),
        _bad_ticks("crossed"),
    )
}
FAST = (
    "risk_killed_between_the_legs",
    "risk_killed_with_an_order_working_that_fills_while_down",
    "order_lost_with_its_connection",
    "ib_link_lost_and_socket_dropped",
)
"""The subset `make test` runs (the whole suite is `make faults`)."""


def inject(stack: Stack, name: str, sign: float) -> Outcome:
    """One fault, then the wait for the stack to settle and for the pair to be closed, then
    every invariant."""
    run = Run(stack, sign)
    try:
        wait_for(lambda: settled(stack), RECOVERY_BOUND_S, "a settled stack before the fault")
    except TimeoutError as exc:
        notes = [str(exc), *diagnosis(stack)]
        return Outcome(
            name, float("inf"), [Check("settled before", False, notes[0])], "?", notes=notes
        )
    window = Window(time.time())
    fills_before = stack.redis.xlen("st:fills")
    orders_before = len(stack.truth()["orders"])
    try:
        try:
            struck = FAULTS[name](run)
        except TimeoutError as exc:
            run.notes += [f"the fault did not play out: {exc}", *diagnosis(stack)]
            for service, _ in SERVICES:
                if not stack.running(service) or service in ("strategy", "risk-management"):
                    stack.restart(service)  # unarmed
            struck = time.time()
        try:
            wait_for(lambda: settled(stack), RECOVERY_BOUND_S, "settled after the fault")
            recovery_s = time.time() - struck
        except TimeoutError:
            recovery_s = float("inf")
        try:  # the pair's exit, as the premium reverts (a fault may leave it flat already)
            wait_for(lambda: settled(stack) and not ib_positions(stack.truth()), 120, "the exit")
        except TimeoutError:
            run.notes.append("the pair was not closed within 120 s")
    finally:
        wait_for(lambda: window.close(stack) or True, 30, "the data-health history")
    truth = stack.truth()
    checks = check(stack, window, recovery_s)
    held = ib_positions(truth)
    if any(note.startswith("the fault did not play out") for note in run.notes):
        checks.append(Check("fault played out", False, run.notes[0]))
    return Outcome(
        name,
        recovery_s,
        checks,
        "flat" if not held else str(held),
        orders=len(truth["orders"]) - orders_before,
        fills=stack.redis.xlen("st:fills") - fills_before,
        notes=run.notes,
    )


def diagnosis(stack: Stack) -> list[str]:
    """Why a fault may not have played, or the stack not settled: the heartbeats that are not
    ok, what works at IB, the book against IB, and what the strategy said last."""
    out = []
    for service, beat in stack.heartbeats().items():
        if beat is None or beat.status != "ok" or service == "strategy":
            out.append(
                f"{service}: {beat.status if beat else 'no heartbeat'} {beat and beat.detail}"
            )
    truth = stack.truth()
    working = working_at_ib(truth)
    if working:
        out.append(f"working at IB: {[(o['order_ref'], o['status']) for o in working]}")
    if stack.positions() != ib_positions(truth):
        out.append(f"book {stack.positions()} != IB {ib_positions(truth)}")
    signals = stack.stream("st:signals", Signal)[-4:]
    out += [f"signal {s.action} {s.state} z={s.z:.2f}: {s.reason[:160]}" for s in signals]
    return out


def run_suite(stack: Stack, names: list[str], first_sign: float = 1.0) -> list[Outcome]:
    outcomes = []
    sign = first_sign
    for name in names:
        outcomes.append(inject(stack, name, sign))
        sign = -sign
    return outcomes


def soak(stack: Stack, minutes: float, seed: int = 0, every_s: float = 120.0) -> list[Outcome]:
    """A random fault every `every_s` for `minutes` (the stack keeps trading between them)."""
    rng = random.Random(seed)
    names = sorted(FAULTS)
    outcomes: list[Outcome] = []
    end = time.monotonic() + minutes * 60
    sign = 1.0
    while time.monotonic() < end:
        started = time.monotonic()
        outcomes.append(inject(stack, rng.choice(names), sign))
        sign = -sign
        time.sleep(max(0.0, every_s - (time.monotonic() - started)))
    return outcomes


def table(outcomes: list[Outcome]) -> str:
    """Faults x invariants, with the recovery time, orders, fills and the book at the end."""
    short = {name: f"I{i + 1}" for i, name in enumerate(INVARIANTS)}
    head = ["fault", *short.values(), "recovery s", "orders", "fills", "book at end"]
    rows = [head]
    for o in outcomes:
        marks = {c.invariant: ("ok" if c.ok else "FAIL") for c in o.checks}
        rows.append(
            [
                o.fault,
                *(marks.get(name, "-") for name in INVARIANTS),
                f"{o.recovery_s:.1f}",
                str(o.orders),
                str(o.fills),
                o.book,
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    legend = "; ".join(f"{code} {name}" for name, code in short.items())
    failures = [
        f"  {o.fault}: {c.invariant}: {c.detail}" for o in outcomes for c in o.checks if not c.ok
    ]
    notes = [f"  {o.fault}: {note}" for o in outcomes for note in o.notes]
    return "\n".join(
        [*lines, "", legend, *(["failures:", *failures] if failures else []),
         *(["notes:", *notes] if notes else [])]
    )  # fmt: skip
