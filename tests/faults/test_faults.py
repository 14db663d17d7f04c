"""The fault suite's fast subset, in `make test` (the whole suite is `make faults`).

One stack on ibsim, four faults injected in turn: risk killed between the two legs of an
entry, risk killed with a leg working that fills while it is down (the naked-short finding),
an order lost on a dying connection (the wedge finding), IB's link lost then the socket
dropped. After each, every invariant of `tests.faults.invariants` is checked against ibsim's
own records of orders, executions and positions.
"""

from __future__ import annotations

import pytest

from tests.faults.stack import Stack
from tests.faults.suite import FAST, run_suite, table

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_the_fast_faults_hold_every_invariant(tmp_path):
    with Stack(tmp_path) as stack:
        stack.start()
        outcomes = run_suite(stack, list(FAST))
    print(table(outcomes))
    failed = [
        f"{o.fault}: {c.invariant}: {c.detail}" for o in outcomes for c in o.checks if not c.ok
    ]
    assert not failed, table(outcomes)
