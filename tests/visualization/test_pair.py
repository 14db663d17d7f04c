"""A dashboard started for another pair names that pair everywhere and never the default one.

The pair is the settings' (TRADING_PAIR__*, TRADING_STRATEGY__PAIR_ID): here IEF against a
made-up IEFW with their own con ids, its data written to the test's real Redis under those
names. Every panel, the page and the API's title must carry IEF/IEFW; "TLT" must appear in none
of them (the default pair's symbols were spelled in the dashboard before it took a PairSpec).
"""

from __future__ import annotations

import pytest

from tests.support import OTHER_PAIR
from tests.visualization.conftest import dashboard_settings
from tests.visualization.seed import BAR_S, POINTS, T0, seed, spread_point
from trading.bus import Keys
from trading.dashboard.models import PanelName, PricesPanel
from trading.dashboard.plots import prices_figure

OTHER = OTHER_PAIR
DEFAULT_NAME = "TLT"
"""The default pair's underlying: a substring of its ETF and pair id too."""


@pytest.fixture
def settings(redis_url):
    """Overrides conftest's: the same app settings, for the other pair."""
    return dashboard_settings(redis_url, OTHER)


async def test_prices_panel_names_the_configured_pair(settings, client, bus):
    spec = settings.pair_spec()
    assert (spec.underlying, spec.etf, spec.pair_id) == ("IEF", "IEFW", "IEFBW-IEFW")
    await seed(bus, pair=OTHER)
    body = (await client.get("/api/prices")).json()
    assert body["pair"] == {"underlying": "IEF", "etf": "IEFW", "pair_id": "IEFBW-IEFW"}
    underlying, etf = body["instruments"]
    assert (underlying["symbol"], etf["symbol"]) == ("IEF", "IEFW")
    assert underlying["quote"]["con_id"] == OTHER.underlying_con_id
    assert underlying["mid"] == pytest.approx(90.02)
    assert etf["premium_bp"] == pytest.approx((23.42 - 23.40) / 23.40 * 1e4)
    assert set(body["series"]) == {"IEF", "IEFW", "buy_write_index"}
    assert body["series"]["IEF"]["ts"][:2] == [T0, T0 + BAR_S]
    assert body["series"]["IEFW"]["price"][1] == pytest.approx((23.42 + 23.44) / 2)
    assert body["buy_write_index"] == spread_point(POINTS - 1).index_value


async def test_every_panel_page_and_title_carry_the_pair_and_never_the_default(client, bus):
    await seed(bus, pair=OTHER)
    texts = {}
    for panel in PanelName:
        response = await client.get(f"/api/{panel}")
        assert response.status_code == 200, panel
        texts[panel] = response.text
    for panel in (PanelName.PRICES, PanelName.HEALTH, PanelName.BOOK, PanelName.OPTION):
        assert "IEF" in texts[panel], panel
    health = (await client.get("/api/health")).json()
    assert [i["name"] for i in health["instruments"]] == [
        "IEF",
        "IEFW",
        "IEF 2026-12-18 90 C",
        "IEF 2026-12-18 91 C",
    ]  # fmt: skip: the pair's stocks first, then the calls by name
    clock = (await client.get("/api/clock")).json()
    assert clock["market_ts"] is not None  # from the pair's quotes
    healthz = (await client.get("/healthz")).json()
    sources = {s["source"]: s["ts"] for s in healthz["sources"]}
    assert sources["quote:IEF"] is not None and sources["quote:IEFW"] is not None

    page = await client.get("/")
    assert "<title>IEF buy-write / IEFW pair</title>" in page.text
    assert "<h1>IEF buy-write / IEFW</h1>" in page.text
    assert "IEF and IEFW (each on its own scale)" in page.text
    schema = (await client.get("/openapi.json")).json()
    assert schema["info"]["title"] == "IEF/IEFW pairs trading dashboard"
    script = await client.get("/static/dashboard.js")
    assert script.status_code == 200
    for name, text in {**texts, "page": page.text, "script": script.text}.items():
        assert DEFAULT_NAME not in text, name


async def test_option_without_a_quote_is_named_on_the_pair_underlying(client, bus):
    await seed(bus, pair=OTHER)
    await bus.redis.delete(Keys.option(spread_point(0).call_con_id))
    body = (await client.get("/api/option")).json()
    assert body["quote"] is None
    assert body["name"] == "IEF 2026-12-18 90 C"


async def test_prices_plot_draws_and_labels_the_pair(client, bus):
    """The PNG's figure, from the panel the API serves: both stocks drawn under their names,
    the basis against the underlying."""
    await seed(bus, pair=OTHER)
    panel = PricesPanel.model_validate((await client.get("/api/prices")).json())
    top, bottom, right = prices_figure(panel).axes
    assert (top.get_ylabel(), right.get_ylabel()) == ("IEF (USD)", "IEFW (USD)")
    assert bottom.get_ylabel() == "index − IEF (USD)"
    drawn = {line.get_label(): len(line.get_xdata()) for line in top.lines + right.lines}
    assert drawn == {"IEF": 50, "IEFW": 50}
    [basis] = bottom.lines
    assert basis.get_label() == "buy-write index − IEF"
    labels = [t.get_text() for ax in (top, bottom, right) for t in ax.texts]
    labels += [t.get_text() for t in top.get_legend().get_texts()]
    assert not any(DEFAULT_NAME in label for label in labels), labels
    response = await client.get("/plots/prices.png")
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG")
