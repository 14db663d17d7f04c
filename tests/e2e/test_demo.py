"""`make run` on its defaults tells the story within five minutes, with either client library.

The runner starts as `make run` does (simulated gateway, embedded Redis, the five services, the
demo's settings), with nothing changed but ports, where Redis keeps its file, and the client
library. The simulator plants its first premium excursion 30 simulated minutes after the open
(printed in its log); the test then reads only the dashboard's JSON API, as an operator would,
until it has seen a whole cycle: an entry whose two legs are filled (TLTW and the buy-write's
TLT and call), the position on the book, an exit, a flat book, and a P&L equal to what the fills
imply (computed here from the fills the dashboard lists, not by the book's code). The terminal
must have said it in words. The wall time from the start to the closed round trip is printed.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from tests.e2e.test_stack import _get, _held, _implied_pnl_usd, _poll
from tests.support import eventually
from trading import bus as b
from trading.redis_server import free_port
from trading.runner import Runner
from trading.settings import load_settings

pytestmark = pytest.mark.slow

CYCLE_WALL_S = 300.0
"""The promise: a whole cycle on the screen within five minutes of `make run`."""


def demo_runner(tmp_path: Path, library: str) -> tuple[Runner, int, io.StringIO]:
    """The runner of `make run` on its defaults (other than ports, Redis's directory and the
    client library); its terminal goes to the returned buffer."""
    http_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_")}
    env.update(
        {
            "TRADING_REDIS__DATA_DIR": str(tmp_path / "redis"),
            "TRADING_HTTP__PORT": str(http_port),
            "TRADING_METRICS__PORT": "0",  # beside other runs on this machine
            "TRADING_IB__LIBRARY": library,
        }
    )
    settings = load_settings(redis={"data_dir": str(tmp_path / "redis")}, ib={"library": library})
    terminal = io.StringIO()
    runner = Runner(settings, env=env, output=terminal, log_dir=tmp_path / "logs")
    return runner, http_port, terminal


def _fills(panel: dict) -> list[b.Fill]:
    return [b.Fill(**{**f, "side": b.Side(f["side"])}) for f in panel.get("fills") or []]


def _legs_filled(fills: list[b.Fill]) -> bool:
    """TLTW traded, and the buy-write's TLT and call, for one intent."""
    stocks = {f.symbol for f in fills if f.sec_type == "STK"}
    return stocks >= {"TLT", "TLTW"} and any(f.sec_type == "OPT" for f in fills)


@pytest.mark.parametrize("library", ["ib_async", "ib_insync"])
def test_make_run_shows_a_whole_cycle_within_five_minutes(tmp_path, library):
    runner, http_port, terminal = demo_runner(tmp_path, library)
    dashboard = f"http://127.0.0.1:{http_port}"
    started = time.monotonic()
    try:
        runner.start()
        left = lambda: max(1.0, CYCLE_WALL_S - (time.monotonic() - started))  # noqa: E731

        # run_forever's narration, one poll at a time, while the test waits.
        narrator = runner._narrator()

        def book() -> dict:
            runner._pump(0.05)
            if narrator is not None:
                narrator.poll()
            return _poll(f"{dashboard}/api/book")

        def entered() -> list[b.Fill] | None:
            fills = _fills(book())
            entry = [f for f in fills if "-entry-" in f.intent_id]
            return entry if _legs_filled(entry) else None

        entry = eventually(entered, timeout_s=left(), interval_s=0.5, what="an entry filled")
        entry_id = entry[0].intent_id

        # The position is on the book: the pair the entry's fills hold.
        held = {c: q for c, q in _held(entry).items() if q}

        def pair_shown() -> bool:
            shown = {p["con_id"]: p["quantity"] for p in book().get("positions") or []}
            return {c: q for c, q in shown.items() if q} == held

        eventually(pair_shown, timeout_s=left(), interval_s=0.5, what=f"the pair {held} shown")

        def closed() -> dict | None:
            panel = book()
            fills = _fills(panel)
            exits = [f for f in fills if f.intent_id != entry_id and "-entry-" not in f.intent_id]
            flat = all(abs(p["quantity"]) < 1e-9 for p in panel.get("positions") or [])
            nothing_held = not {c: q for c, q in _held(fills).items() if abs(q) > 1e-9}
            return panel if exits and _legs_filled(exits) and flat and nothing_held else None

        panel = eventually(closed, timeout_s=left(), interval_s=0.5, what="the exit, flat")
        cycle_s = time.monotonic() - started
        fills = _fills(panel)
        assert len({f.intent_id for f in fills}) == 2, "one entry and one exit on the book"
        pnl = _get(f"{dashboard}/api/book")["pnl"]
        implied = _implied_pnl_usd(fills, {})
        assert pnl["total"] == pytest.approx(implied, abs=0.01)
        assert pnl["realized"] - pnl["commissions"] == pytest.approx(implied, abs=0.01)
        assert pnl["unrealized"] == pytest.approx(0.0, abs=0.01)

        # The terminal said it in words, and the simulator printed its schedule.
        said = (
            eventually(
                lambda: (narrator.poll(), terminal.getvalue())[1].count("round trip closed") > 0,
                timeout_s=10,
                what="the narration",
            )
            and terminal.getvalue()
        )
        assert "entered SHORT_SPREAD" in said, said[-3000:]
        assert f"realized P&L {implied:+,.2f} USD from its fills" in said, said[-3000:]
        schedule = (tmp_path / "logs" / "ibsim.log").read_text()
        assert "planted premium excursions" in schedule
        print(f"{library}: whole cycle {cycle_s:.0f} s after start, P&L {implied:+.2f} USD")
    finally:
        runner.stop()
