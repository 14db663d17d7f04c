"""`make run` on its defaults tells the story within five minutes, with either client library.

The simulator plants its first premium excursion 30 simulated minutes after the open (printed
in its log); the test reads only the dashboard's JSON API (tests/e2e/demo.py) until it has seen
a whole cycle: an entry whose two legs are filled (TLTW and the buy-write's TLT and call), the
position on the book, an exit, a flat book, and a P&L equal to what the fills imply (computed
from the fills the dashboard lists, not by the book's code). The terminal must have said it in
words. The wall time from the start to the closed round trip is printed.
"""

from __future__ import annotations

import pytest

from tests.e2e.demo import run_demo_cycle

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("library", ["ib_async", "ib_insync"])
def test_make_run_shows_a_whole_cycle_within_five_minutes(tmp_path, library):
    cycle = run_demo_cycle(tmp_path, library)

    assert len({f.intent_id for f in cycle.fills}) == 2, "one entry and one exit on the book"
    pnl = cycle.pnl
    assert pnl["total"] == pytest.approx(cycle.implied_pnl_usd, abs=0.01)
    assert pnl["realized"] - pnl["commissions"] == pytest.approx(cycle.implied_pnl_usd, abs=0.01)
    assert pnl["unrealized"] == pytest.approx(0.0, abs=0.01)

    # The terminal said it in words, and the simulator printed its schedule.
    said = cycle.terminal
    assert "entered SHORT_SPREAD" in said, said[-3000:]
    assert f"realized P&L {cycle.implied_pnl_usd:+,.2f} USD from its fills" in said, said[-3000:]
    assert "planted premium excursions" in (tmp_path / "logs" / "ibsim.log").read_text()
    print(f"{library}: whole cycle {cycle.seconds:.0f} s after start, P&L "
          f"{cycle.implied_pnl_usd:+.2f} USD")  # fmt: skip
