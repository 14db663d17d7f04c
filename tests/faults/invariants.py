"""What must hold after every fault, checked against the broker's truth (ibsim's records).

1. one order per orderRef and contract: IB never got an intent's leg twice;
2. every intent decided: risk has a record, "placed" or "rejected" (none left "placing"); a
   placed intent has exactly one IB order per leg, except a leg IB never received (LOST), which
   has none; a rejection has a reason;
3. positions agree: the book risk publishes in Redis equals IB's positions;
4. flat or whole pairs at IB: TLT = -100 x the calls, and TLTW held exactly when calls are, on
   the other side (an unbalanced leg was closed by the unwind);
5. few ORDER_WORKING refusals: at most `MAX_ORDER_WORKING` in the fault's window;
6. healthy again: every service's heartbeat "ok" within `RECOVERY_BOUND_S` (the recovery time is
   measured: from the fault until settled);
7. nothing entered on flagged data: no entry order reached IB while TLT's or TLTW's data health
   was flagged (not ok) in Redis, by the Redis time of each flag and its clearing (1 ms).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from tests.faults.stack import Stack, ib_positions, working_at_ib
from trading.bus import DataHealth, DataStatus
from trading.ibsim.instruments import TLT, TLTW_CON_ID

TLT_ID = TLT.con_id
MAX_ORDER_WORKING = 5
RECOVERY_BOUND_S = 90.0
INVARIANTS = (
    "one order per ref",
    "every intent decided",
    "positions agree",
    "flat or whole pairs",
    "few ORDER_WORKING",
    "healthy again",
    "no entry on flagged data",
)


@dataclass(frozen=True, slots=True)
class Check:
    invariant: str
    ok: bool
    detail: str = ""


FLAGGED_SYMBOLS = ("TLT", "TLTW")


@dataclass
class Window:
    """One fault's time window, and the intervals TLT's or TLTW's data was flagged in Redis.

    The intervals come from data-ingestion's `st:health` stream, written in one transaction
    with `md:health`: an entry's id is the Redis time (ms) the flag, or its clearing, became
    visible to every reader, risk's included. (A 50 ms sampler of `md:health` used before kept
    an interval open until its next sample after the flag was cleared: an entry placed 27 ms
    after TLTW was ok again, on the fresh quote, was counted as placed on flagged data.)"""

    started: float
    flagged: list[tuple[float, float]] = field(default_factory=list)

    def close(self, stack: Stack) -> None:
        intervals = flagged_intervals(stack.health_history(), time.time())
        self.flagged = [(max(a, self.started), z) for a, z in intervals if z > self.started]


def flagged_intervals(
    history: list[tuple[float, DataHealth]], until: float
) -> list[tuple[float, float]]:
    """[start, end) intervals in which any of `FLAGGED_SYMBOLS` was not ok, from the health
    changes in Redis order with the time each became visible; one still open ends `until`."""
    status: dict[str, DataStatus] = {}
    out = []
    since = None
    for at, health in history:
        if health.symbol not in FLAGGED_SYMBOLS:
            continue
        status[health.symbol] = health.status
        flagged = any(s is not DataStatus.OK for s in status.values())
        if flagged and since is None:
            since = at
        elif not flagged and since is not None:
            out.append((since, at))
            since = None
    if since is not None:
        out.append((since, until))
    return out


def contracts_of(leg: dict) -> tuple[int, ...]:
    """The conIds IB's order for an intent leg carries (a BAG: its legs)."""
    inner = leg["leg"]
    if inner["kind"] == "buy_write":
        return tuple(sorted((inner["con_id"], inner["option_con_id"])))
    return (inner["con_id"],)


def settled(stack: Stack) -> bool:
    """Every heartbeat ok, every intent decided (a service's heartbeat key outlives its crash
    by its TTL: a restarted risk may not have re-read its pending intents yet), nothing working
    at IB, the book in Redis equal to IB's positions."""
    beats = stack.heartbeats()
    if not all(beat is not None and beat.status == "ok" for beat in beats.values()):
        return False
    records = stack.records()
    if any(
        records.get(i.intent_id, {}).get("status") not in ("placed", "rejected")
        for i in stack.intents()
    ):
        return False
    truth = stack.truth()
    return not working_at_ib(truth) and stack.positions() == ib_positions(truth)


def whole(positions: dict[int, float]) -> tuple[bool, str]:
    tlt = positions.get(TLT_ID, 0.0)
    tltw = positions.get(TLTW_CON_ID, 0.0)
    calls = sum(q for c, q in positions.items() if c not in (TLT_ID, TLTW_CON_ID))
    ok = abs(tlt + 100 * calls) < 1e-6 and ((calls == 0) == (tltw == 0)) and tlt * tltw <= 0
    return ok, f"TLT {tlt:+g}, calls {calls:+g}, TLTW {tltw:+g}"


def check(stack: Stack, window: Window, recovery_s: float) -> list[Check]:
    truth = stack.truth()
    records = stack.records()
    out = []

    refs = Counter((o["order_ref"], tuple(sorted(o["con_ids"]))) for o in truth["orders"])
    twice = [f"{ref} {cons}" for (ref, cons), n in refs.items() if n > 1]
    out.append(Check("one order per ref", not twice, "; ".join(twice)))

    problems = []
    for intent in stack.intents():
        rec = records.get(intent.intent_id)
        if rec is None or rec["status"] not in ("placed", "rejected"):
            problems.append(f"{intent.intent_id}: {rec and rec['status']}")
            continue
        if rec["status"] == "rejected":
            if '"reasons":[]' in rec["decision"]:
                problems.append(f"{intent.intent_id}: rejected without a reason")
            continue
        for leg in rec["legs"]:
            at_ib = refs.get((intent.intent_id, contracts_of(leg)), 0)
            expected = 0 if leg["state"] == "lost" else 1
            if at_ib != expected:
                problems.append(
                    f"{intent.intent_id} leg {leg['leg_index']} ({leg['state']}): "
                    f"{at_ib} orders at IB"
                )
    out.append(Check("every intent decided", not problems, "; ".join(problems[:4])))

    at_ib, booked = ib_positions(truth), stack.positions()
    out.append(
        Check("positions agree", at_ib == booked, "" if at_ib == booked else f"{booked} != {at_ib}")
    )
    ok, held = whole(at_ib)
    out.append(Check("flat or whole pairs", ok, held))

    working = [
        d
        for d in stack.decisions()
        if d.ts >= window.started and any(r.code == "ORDER_WORKING" for r in d.reasons)
    ]
    out.append(Check("few ORDER_WORKING", len(working) <= MAX_ORDER_WORKING, f"{len(working)}"))

    out.append(Check("healthy again", recovery_s <= RECOVERY_BOUND_S, f"{recovery_s:.1f} s"))

    entries = {i.intent_id for i in stack.intents() if i.purpose == "entry"}
    on_flagged = [
        o["order_ref"]
        for o in truth["orders"]
        if o["order_ref"] in entries and any(a <= o["received_wall"] < z for a, z in window.flagged)
    ]
    flagged_s = sum(z - a for a, z in window.flagged)
    out.append(
        Check(
            "no entry on flagged data",
            not on_flagged,
            f"{', '.join(on_flagged)}" if on_flagged else f"flagged {flagged_s:.1f} s",
        )
    )
    return out
