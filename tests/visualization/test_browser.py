"""The dashboard in a real headless Chromium: charts draw, numbers match Redis, pushes arrive;
contracts are named, stale data is flagged, one clock, session breaks, the Gateway's state.

Needs the Debian packages `chromium` and `chromium-driver` (.ci/run installs them) and the
`selenium` Python package; the test skips, saying which is missing, when they are absent.
Set DASHBOARD_SCREENSHOT=<path> to also save the screenshot there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn

from tests.support import OTHER_PAIR, eventually
from tests.visualization.conftest import dashboard_settings
from tests.visualization.seed import (
    BAR_S,
    NEXT_SESSION,
    POINTS,
    RISK_PROBLEMS,
    next_session_point,
    publish_point,
    seed,
    spread_point,
)
from trading import bus as b
from trading.bus import Bus
from trading.dashboard.app import create_app
from trading.redis_server import free_port
from trading.settings import Settings

pytestmark = pytest.mark.browser

ET = ZoneInfo("America/New_York")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


async def _with_bus(url: str, action):
    bus = await Bus.connect(url, "test-browser", attempts=20)
    try:
        return await action(bus)
    finally:
        await bus.close()


@contextlib.contextmanager
def serve(settings: Settings, redis_url: str) -> Iterator[str]:
    """The real app under uvicorn on a free port, in a thread; stopped even if the test fails."""
    app = create_app(settings, redis_url, heartbeat=True)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/"
    try:
        eventually(lambda: _answers(url + "healthz"), what="dashboard up")
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def dashboard_url(redis_url):
    with serve(dashboard_settings(redis_url), redis_url) as url:
        yield url


@pytest.fixture
def other_pair_url(redis_url):
    """The dashboard of another pair than the default (conftest's OTHER_PAIR)."""
    with serve(dashboard_settings(redis_url, OTHER_PAIR), redis_url) as url:
        yield url


@pytest.fixture
def browser():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1400,2600",
    ):  # fmt: skip
        options.add_argument(flag)
    profile = Path(os.environ.get("TMPDIR", "/tmp")) / f"chromium-profile-{os.getpid()}"
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def text(driver, selector: str) -> str:
    """An element's visible text, found and read in one script (see `row_texts`)."""
    return driver.execute_script(
        "return document.querySelector(arguments[0]).innerText.trim()", selector
    )


def row_texts(driver, table_id: str) -> list[list[str]]:
    """The table's cells, read in one script: the page re-renders its tables on every push, so
    reading row by row through WebDriver can hold a row the page has just replaced (a stale
    element), under load."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map("
        "row => Array.from(row.querySelectorAll('td')).map(cell => cell.innerText.trim()))",
        f"#{table_id} tbody tr",
    )


def test_dashboard_draws_charts_shows_redis_numbers_and_takes_pushes(
    redis_url, dashboard_url, browser, tmp_path
):
    seeded = asyncio.run(_with_bus(redis_url, seed))
    browser.get(dashboard_url)
    body = browser.find_element("tag name", "body")
    eventually(lambda: body.get_attribute("data-ready") == "true", what="panels loaded")
    for chart in ("chart-z", "chart-spread", "chart-prices", "chart-hedge"):
        box = browser.find_element("id", chart)
        eventually(lambda box=box: box.get_attribute("data-drawn") == "true", what=chart)
        assert box.find_element("css selector", "canvas").size["width"] > 200
    assert browser.find_element("id", "chart-z").get_attribute("data-points") == str(POINTS)

    latest = seeded.points[-1]
    assert text(browser, "#z-value") == f"{latest.z:.2f}"
    assert text(browser, "#pair-state") == latest.state
    assert text(browser, "#pnl-total") == f"{seeded.pnl.total:+.2f}"
    assert text(browser, "#risk-state") == seeded.risk.state
    assert text(browser, "#hedge-beta") == f"{latest.beta:.4f}"
    option = {r[0]: r[1] for r in row_texts(browser, "option-table")}
    assert option["delta (per share)"] == f"{seeded.option.delta:.4f}"
    assert option["vega $/vol pt (contract)"] == f"{seeded.option.vega_per_point * 100:.2f}"
    positions = {r[0]: r for r in row_texts(browser, "positions-table")}
    assert positions["TLTW"][2] == "-1100" and positions["TLT"][2] == "300"
    assert [r[6] for r in row_texts(browser, "fills-table")] == [
        "intent-3", "intent-2", "intent-1", "intent-0"
    ]  # fmt: skip
    prices = {r[0]: r for r in row_texts(browser, "prices-table")}
    assert prices["TLTW"][5] == f"{(23.42 - 23.40) / 23.40 * 1e4:.1f}"
    services = {r[0]: r for r in row_texts(browser, "services-table")}
    assert services["strategy"][1] == "ok" and services["data-ingestion"][1] == "silent"
    assert services["strategy"][2] == ""
    # A wedged service is shown degraded with its reasons beside it.
    assert services["risk-management"][1:3] == ["degraded", "; ".join(RISK_PROBLEMS)]
    limits = browser.find_elements("css selector", "#risk-limits .limit")
    assert [x.get_attribute("data-limit") for x in limits][:2] == ["orders_per_minute", "net_delta"]
    assert not browser.find_element("css selector", "button[data-command=halt]").get_attribute(
        "disabled"
    )

    # A new bar published by the strategy reaches the page without a reload.
    new_point = spread_point(POINTS + 7)
    asyncio.run(_with_bus(redis_url, lambda bus: publish_point(bus, new_point)))
    eventually(lambda: text(browser, "#z-value") == f"{new_point.z:.2f}", what="pushed z")
    eventually(
        lambda: (
            browser.find_element("id", "chart-z").get_attribute("data-points") == str(POINTS + 1)
        ),
        what="pushed point drawn",
    )

    shot = tmp_path / "dashboard.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if target := os.environ.get("DASHBOARD_SCREENSHOT"):
        shutil.copy(shot, target)


def test_dashboard_names_contracts_flags_stale_data_keeps_one_clock_and_breaks_sessions(
    redis_url, dashboard_url, browser
):
    seeded = asyncio.run(_with_bus(redis_url, seed))
    browser.get(dashboard_url)
    body = browser.find_element("tag name", "body")
    eventually(lambda: body.get_attribute("data-ready") == "true", what="panels loaded")

    # Contracts by symbol, expiry, strike and right: data health, positions, orders, fills.
    health = {r[0]: r for r in row_texts(browser, "data-health-table")}
    assert set(health) == {"TLT", "TLTW", "TLT 2026-12-18 90 C", "TLT 2026-12-18 91 C"}
    positions = [r[0] for r in row_texts(browser, "positions-table")]
    assert positions == ["TLT", "TLT 2026-12-18 90 C", "TLTW"]
    orders = [r[1] for r in row_texts(browser, "orders-table")]
    assert orders == ["TLTW", "TLT buy-write (100 TLT, short 1 TLT 2026-12-18 90 C)"]
    assert row_texts(browser, "fills-table")[0][1] == "TLT 2026-12-18 90 C"
    assert dict(row_texts(browser, "option-table"))["contract"] == "TLT 2026-12-18 90 C"

    # Ages are the time since the last update, and an old one is not "ok".
    assert health["TLT 2026-12-18 91 C"][1] == "stale"
    assert health["TLT 2026-12-18 91 C"][3] == "2 min ago"
    assert health["TLT 2026-12-18 90 C"][1] == "ok"
    assert health["TLT 2026-12-18 90 C"][3].endswith(" s ago")
    for row in health.values():
        assert row[1] != "ok" or row[3].endswith(" s ago"), row

    # One clock: the simulated market's, said so; the P&L's "as of" on it (the seed's market
    # day, not this machine's).
    market_day = f"{datetime.fromtimestamp(seeded.quotes['TLT'].ts_exchange, ET):%Y-%m-%d}"
    assert text(browser, "#clock-source") == "simulated market (ibsim, 60x)"
    assert text(browser, "#market-time").startswith(market_day)
    assert dict(row_texts(browser, "pnl-table"))["as of"].startswith(market_day)
    assert row_texts(browser, "fills-table")[0][0].startswith(market_day)

    # The next session's bars: the x data skips the night and the z line breaks there.
    points = [next_session_point(i) for i in range(5)]
    for point in points:
        asyncio.run(_with_bus(redis_url, lambda bus, p=point: publish_point(bus, p)))
    chart = browser.find_element("id", "chart-z")
    eventually(lambda: chart.get_attribute("data-points") == str(POINTS + 5), what="next session")
    assert chart.get_attribute("data-sessions") == "2"
    x, z = browser.execute_script(
        "const d = window.dashboard.charts['chart-z'].data; return [d[0], d[1]];"
    )
    assert len(x) == POINTS + 5 + 1 and z.count(None) == 1  # one null row: the break
    gap_x = x[POINTS + 1] - x[POINTS - 1]
    real_gap = NEXT_SESSION - (seeded.points[-1].ts)
    assert real_gap == 18.5 * 3600 + BAR_S and gap_x < 2 * 3600  # 18.5 h drawn as < 2 h
    to_time = browser.execute_script(
        "return window.dashboard.axes['chart-z'].toTs(arguments[0]);", x[-1]
    )
    assert to_time == points[-1].ts

    # The Gateway's state, in words.
    gateway = {
        "status": "unreachable", "host": "127.0.0.1", "port": 4002, "client_id": 11,
        "attempt": 3, "next_try_at": time.time() + 30.0, "error": "ConnectionRefusedError",
        "down_since": time.time() - 20.0,
    }  # fmt: skip
    beat = b.Heartbeat("data-ingestion", time.time(), "degraded", {"gateway": gateway})
    asyncio.run(_with_bus(redis_url, lambda bus: bus.beat(beat, ttl_s=60)))
    eventually(
        lambda: text(browser, "#gateway-state").startswith(
            "unreachable at 127.0.0.1:4002 (attempt 3, next try in "
        ),
        timeout_s=15,
        what="gateway state in the header",
    )
    assert dict(row_texts(browser, "gateway-table"))["data-ingestion"].startswith("unreachable")


def test_dashboard_of_another_pair_names_it_on_the_page_and_never_the_default(
    redis_url, other_pair_url, browser
):
    """Titles, chart legends and axes, tables: the configured pair's names, drawn from its
    data; nothing on the page says TLT (the default pair)."""
    asyncio.run(_with_bus(redis_url, lambda bus: seed(bus, pair=OTHER_PAIR)))
    browser.get(other_pair_url)
    body = browser.find_element("tag name", "body")
    eventually(lambda: body.get_attribute("data-ready") == "true", what="panels loaded")
    for chart in ("chart-prices", "chart-basis"):
        box = browser.find_element("id", chart)
        eventually(lambda box=box: box.get_attribute("data-drawn") == "true", what=chart)
    assert browser.title == "IEF buy-write / IEFW pair"
    assert text(browser, "h1") == "IEF buy-write / IEFW"
    labels = browser.execute_script(
        "const c = window.dashboard.charts['chart-prices'];"
        "return [c.series.map(s => s.label), c.axes.map(a => a.label || null)];"
    )
    assert labels[0][1:] == ["IEF", "IEFW"]
    assert labels[1][1:] == ["IEF (USD)", "IEFW (USD)"]
    # Both price lines have the pair's 50 seeded points, and the basis is drawn against IEF.
    prices = browser.execute_script("return window.dashboard.charts['chart-prices'].data;")
    assert [sum(v is not None for v in column) for column in prices[1:]] == [50, 50]
    basis = browser.execute_script("return window.dashboard.charts['chart-basis'].data[1];")
    assert sum(v is not None for v in basis) > 0
    assert [r[0] for r in row_texts(browser, "prices-table")] == ["IEF", "IEFW"]
    page = browser.execute_script("return document.body.innerText;")
    assert "IEF" in page and "TLT" not in page
    assert "TLT" not in browser.page_source


def _answers(url: str) -> bool:
    """True once the server answers 200; a server still starting refuses the connection."""
    try:
        return httpx.get(url).status_code == 200
    except httpx.HTTPError:
        return False
