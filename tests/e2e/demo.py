"""`make run` on its defaults, driven to its first whole cycle: shared by the demo test
(tests/e2e/test_demo.py, both client libraries) and the dashboard's screenshot after a cycle
(tests/visualization/test_demo_screenshot.py).

The runner starts as `make run` does (simulated gateway, embedded Redis, the five services, the
demo's settings), with nothing changed but ports, where Redis keeps its file, and the client
library. Everything below is read from the dashboard's JSON API, as an operator would.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.test_stack import _get, _held, _implied_pnl_usd, _poll
from tests.support import eventually
from trading import bus as b
from trading.redis_server import free_port
from trading.runner import Runner
from trading.settings import load_settings

CYCLE_WALL_S = 300.0
"""The promise: a whole cycle on the screen within five minutes of `make run`."""


@dataclass
class Cycle:
    """What the dashboard showed at the end of the first round trip."""

    dashboard: str
    seconds: float
    """Wall seconds from the runner's start to the flat book after the exit."""
    entry: list[b.Fill]
    fills: list[b.Fill]
    pnl: dict
    implied_pnl_usd: float
    """The P&L the dashboard's fills imply (cash less commissions; nothing is held)."""
    terminal: str


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


def dashboard_fills(panel: dict) -> list[b.Fill]:
    return [b.Fill(**{**f, "side": b.Side(f["side"])}) for f in panel.get("fills") or []]


def legs_filled(fills: list[b.Fill]) -> bool:
    """TLTW traded, and the buy-write's TLT and call."""
    stocks = {f.symbol for f in fills if f.sec_type == "STK"}
    return stocks >= {"TLT", "TLTW"} and any(f.sec_type == "OPT" for f in fills)


def run_demo_cycle(
    tmp_path: Path, library: str, while_up: Callable[[Cycle], None] | None = None
) -> Cycle:
    """Start the demo, wait (at most CYCLE_WALL_S from the start) for an entry with both legs
    filled, the pair on the book, the exit and a flat book; call ``while_up`` with what was
    seen while the stack still runs; stop it all (even on failure)."""
    runner, http_port, terminal = demo_runner(tmp_path, library)
    dashboard = f"http://127.0.0.1:{http_port}"
    started = time.monotonic()
    try:
        runner.start()
        narrator = runner._narrator()  # run_forever's narration, a poll at a time

        def left() -> float:
            return max(1.0, CYCLE_WALL_S - (time.monotonic() - started))

        def book() -> dict:
            runner._pump(0.05)
            if narrator is not None:
                narrator.poll()
            return _poll(f"{dashboard}/api/book")

        def entered() -> list[b.Fill] | None:
            entry = [f for f in dashboard_fills(book()) if "-entry-" in f.intent_id]
            return entry if legs_filled(entry) else None

        eventually(entered, timeout_s=left(), interval_s=0.5, what="an entry filled")

        def pair_shown() -> list[b.Fill] | None:
            # The book the dashboard shows is what its fills imply, and not flat. The fills are
            # read again at every poll: ibsim fills a large order in parts, so the first fills
            # seen may be a part of the pair (a held quantity taken once would never match).
            panel = book()
            fills = dashboard_fills(panel)
            held = {c: q for c, q in _held(fills).items() if abs(q) > 1e-9}
            shown = {p["con_id"]: p["quantity"] for p in panel.get("positions") or []}
            shown = {c: q for c, q in shown.items() if abs(q) > 1e-9}
            entry = [f for f in fills if "-entry-" in f.intent_id]
            return entry if held and shown == held else None

        entry = eventually(pair_shown, timeout_s=left(), interval_s=0.5, what="the pair shown")

        def closed() -> dict | None:
            panel = book()
            fills = dashboard_fills(panel)
            exits = [f for f in fills if "-entry-" not in f.intent_id]
            flat = all(abs(p["quantity"]) < 1e-9 for p in panel.get("positions") or [])
            nothing_held = not {c: q for c, q in _held(fills).items() if abs(q) > 1e-9}
            return panel if exits and legs_filled(exits) and flat and nothing_held else None

        panel = eventually(closed, timeout_s=left(), interval_s=0.5, what="the exit, flat")
        seconds = time.monotonic() - started
        fills = dashboard_fills(panel)
        implied = _implied_pnl_usd(fills, {})
        eventually(
            lambda: (narrator.poll(), "round trip closed" in terminal.getvalue())[1],
            timeout_s=10,
            what="the narration of the round trip",
        )
        cycle = Cycle(
            dashboard, seconds, entry, fills, _get(f"{dashboard}/api/book")["pnl"], implied,
            terminal.getvalue(),
        )  # fmt: skip
        if while_up is not None:
            while_up(cycle)
        return cycle
    finally:
        runner.stop()
