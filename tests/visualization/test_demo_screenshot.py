"""The dashboard after `make run`'s first whole cycle, in headless Chromium: what the README's
first screen shows.

The demo runs on its defaults to a closed round trip (tests/e2e/demo.py); the page then names
every contract the trade touched (TLTW, TLT, the call by expiry, strike and right, the
buy-write), lists the entry's and the exit's fills, shows a flat book and the P&L the fills
imply. The screenshot goes to the test's directory, and to docs/dashboard-demo.png (the README's
picture) when DASHBOARD_DEMO_SCREENSHOT=1, so a run regenerates it: `make screenshot`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.e2e.demo import Cycle, run_demo_cycle
from tests.support import eventually
from tests.visualization.test_browser import browser, row_texts, text  # noqa: F401 (fixture)
from trading.dashboard.contracts import contract_name

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
README_SCREENSHOT = ROOT / "docs" / "dashboard-demo.png"


def test_the_dashboard_after_a_demo_cycle_names_the_trade(tmp_path, browser):  # noqa: F811
    shot = tmp_path / "dashboard-demo.png"

    def look(cycle: Cycle) -> None:
        browser.get(cycle.dashboard + "/")
        body = browser.find_element("tag name", "body")
        eventually(lambda: body.get_attribute("data-ready") == "true", what="panels loaded")
        named = {contract_name(f.symbol, f.sec_type, f.local_symbol) for f in cycle.fills}
        assert {"TLT", "TLTW", "TLT buy-write"} <= named
        assert any(n.startswith("TLT 20") and n.endswith(" C") for n in named), named  # call
        refs = {f.intent_id for f in cycle.fills}

        def fills_shown() -> bool:
            rows = row_texts(browser, "fills-table")
            return {r[1] for r in rows} >= named and {r[6] for r in rows} >= refs

        eventually(fills_shown, timeout_s=20, what=f"the fills of {refs} named {named}")
        positions = row_texts(browser, "positions-table")
        assert all(r[2] == "0" for r in positions if len(r) > 2), positions
        eventually(
            lambda: text(browser, "#pnl-total") == f"{cycle.implied_pnl_usd:+.2f}",
            timeout_s=20,
            what=f"the P&L {cycle.implied_pnl_usd:+.2f}",
        )
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

    run_demo_cycle(tmp_path, "ib_async", while_up=look)
    if os.environ.get("DASHBOARD_DEMO_SCREENSHOT"):
        shutil.copy(shot, README_SCREENSHOT)
