"""The dashboard's JSON API against a real Redis seeded through the Bus."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.visualization.seed import (
    BAR_S,
    CALL_CON_ID,
    OLD_CALL_CON_ID,
    POINTS,
    RISK_PROBLEMS,
    T0,
    seed,
    spread_point,
)
from trading import bus as b
from trading.bus import Keys, Streams
from trading.dashboard.app import create_app
from trading.dashboard.queries import quote_mid
from trading.settings import load_settings

PANELS = ("clock", "spread", "prices", "hedge", "option", "book", "risk", "health", "alerts")


async def test_every_panel_answers_no_data_on_an_empty_redis(client):
    bodies = {}
    for panel in PANELS:
        response = await client.get(f"/api/{panel}")
        assert response.status_code == 200, (panel, response.text)
        bodies[panel] = response.json()
    assert bodies["spread"]["latest"] is None
    assert bodies["spread"]["series"]["ts"] == []
    assert bodies["spread"]["bands"] == {"entry_z": 2.0, "exit_z": 0.5, "stop_z": 4.0}
    assert bodies["option"]["con_id"] is None
    assert bodies["book"] == {
        "positions": [], "pnl": None, "open_orders": [], "fills": [], "contracts": {},
        "orders": {},
    }  # fmt: skip
    assert bodies["clock"]["market_ts"] is None
    assert bodies["risk"]["state"] is None and bodies["risk"]["limits"] == []
    assert {s["status"] for s in bodies["health"]["services"]} == {"silent"}
    healthz = (await client.get("/healthz")).json()
    assert healthz["status"] == "no_data" and healthz["newest_data_age_s"] is None


async def test_spread_panel_returns_the_seeded_series_bands_and_acting_signals(client, bus):
    seeded = await seed(bus)
    body = (await client.get("/api/spread")).json()
    assert body["series"]["ts"] == [p.ts for p in seeded.points]
    assert body["series"]["z"] == [p.z for p in seeded.points]
    assert body["series"]["beta"] == [p.beta for p in seeded.points]
    assert body["latest"]["z"] == seeded.points[-1].z
    assert body["bands"] == {"entry_z": 2.0, "exit_z": 0.5, "stop_z": 4.0}
    # The NONE signal is not a trade: two markers, in order.
    assert [(m["ts"], m["action"]) for m in body["markers"]] == [
        (T0 + 32 * BAR_S, "ENTER_SHORT_SPREAD"),
        (T0 + 61 * BAR_S, "EXIT"),
    ]
    assert 0 <= body["age_s"] < 30


async def test_spread_limit_and_since_select_the_newest_points(client, bus):
    await seed(bus)
    newest = (await client.get("/api/spread", params={"limit": 10})).json()["series"]["ts"]
    assert newest == [T0 + i * BAR_S for i in range(POINTS - 10, POINTS)]
    since = T0 + (POINTS - 4) * BAR_S
    after = (await client.get("/api/spread", params={"since": since})).json()["series"]["ts"]
    assert after == [T0 + i * BAR_S for i in range(POINTS - 3, POINTS)]
    assert (await client.get("/api/spread", params={"limit": 0})).status_code == 422


async def test_series_follow_appends_and_a_recreated_stream(client, bus):
    await seed(bus, points=5)
    for i in range(5, 8):
        await bus.append(Streams.SPREAD, spread_point(i))
    body = (await client.get("/api/hedge")).json()
    assert body["series"]["ts"] == [T0 + i * BAR_S for i in range(8)]
    # The stream is deleted and rewritten (e.g. a fresh Redis): the old points must go.
    await bus.redis.delete(Streams.SPREAD)
    await bus.append(Streams.SPREAD, spread_point(100))
    body = (await client.get("/api/hedge")).json()
    assert body["series"]["ts"] == [T0 + 100 * BAR_S]
    assert body["series"]["beta"] == [spread_point(100).beta]


async def test_prices_panel_computes_mid_quote_spread_and_nav_premium(client, bus):
    await seed(bus)
    body = (await client.get("/api/prices")).json()
    tlt, tltw = body["instruments"]
    assert tlt["symbol"] == "TLT" and tltw["symbol"] == "TLTW"
    assert tlt["mid"] == pytest.approx(90.02)
    assert tlt["spread_bp"] == pytest.approx(0.02 / 90.02 * 1e4)
    assert tlt["nav"] is None and tlt["premium_bp"] is None
    assert tltw["premium_bp"] == pytest.approx((23.42 - 23.40) / 23.40 * 1e4)
    assert tltw["age_s"] == pytest.approx(2.0, abs=1.0)
    # History of quotes: mid per tick, at exchange time.
    assert body["series"]["TLT"]["ts"][:2] == [T0, T0 + BAR_S]
    assert body["series"]["TLT"]["price"][1] == pytest.approx((90.02 + 90.04) / 2)
    assert body["series"]["buy_write_index"]["price"][-1] == spread_point(POINTS - 1).index_value
    assert body["buy_write_index"] == spread_point(POINTS - 1).index_value


def test_mid_refuses_one_sided_and_crossed_quotes():
    assert quote_mid(90.0, 90.1, None) == pytest.approx(90.05)
    assert quote_mid(90.2, 90.1, 90.15) == 90.15  # crossed: last trade, not a bogus mid
    assert quote_mid(0.0, 90.1, None) is None
    assert quote_mid(-1.0, -1.0, 0.0) is None


async def test_option_panel_shows_the_written_call_with_per_contract_greeks(client, bus):
    seeded = await seed(bus)
    body = (await client.get("/api/option")).json()
    assert body["con_id"] == CALL_CON_ID
    assert body["quote"]["local_symbol"] == seeded.option.local_symbol
    assert body["mid"] == pytest.approx(1.54)
    assert body["delta_shares_per_contract"] == pytest.approx(52.13)
    assert body["gamma_shares_per_contract"] == pytest.approx(9.12)
    assert body["vega_usd_per_point_per_contract"] == pytest.approx(11.34)
    assert body["theta_usd_per_day_per_contract"] == pytest.approx(-3.12)


async def test_book_panel_lists_positions_pnl_open_orders_and_newest_fills_first(client, bus):
    seeded = await seed(bus)
    body = (await client.get("/api/book", params={"fills": 2})).json()
    assert [p["local_symbol"] for p in body["positions"]] == [
        "TLT",
        "TLT   261218C00090000",
        "TLTW",
    ]
    assert body["pnl"]["total"] == 73.45 and body["pnl"]["realized"] == -12.34
    assert body["pnl"]["distributions"] == 0.0 and body["pnl"]["distributions_accrued"] == 0.0
    assert [o["order_id"] for o in body["open_orders"]] == [41, 42]
    assert [f["exec_id"] for f in body["fills"]] == ["exec-3", "exec-2"]
    assert body["fills"][1]["price"] == seeded.fills[2].price


async def test_book_panel_names_every_contract_by_symbol_expiry_strike_and_right(client, bus):
    await seed(bus)
    body = (await client.get("/api/book")).json()
    assert body["contracts"] == {
        "15547841": "TLT",
        str(CALL_CON_ID): "TLT 2026-12-18 90 C",
        "640000001": "TLTW",
    }
    # The buy-write order names the call its intent writes (risk's record of the intent).
    assert body["orders"] == {
        "41": "TLTW",
        "42": "TLT buy-write (100 TLT, short 1 TLT 2026-12-18 90 C)",
    }


async def test_clock_is_the_markets_advanced_at_the_simulators_speed(client, bus):
    seeded = await seed(bus)
    body = (await client.get("/api/clock")).json()
    assert body["simulated"] is True and body["rate"] == 60.0
    assert body["source"] == "ibsim, 60x" and body["timezone"] == "America/New_York"
    # The newest quote (TLT, exchange time T0) was received 1 s before the seed's `now`: the
    # market is at T0 + 60 s per wall second since.
    wall_since = body["wall_ts"] - seeded.quotes["TLT"].ts_recv
    assert body["market_ts"] == pytest.approx(T0 + 60.0 * wall_since, abs=1e-3)


async def test_risk_panel_orders_limits_by_use_and_flags_breaches(client, bus):
    await seed(bus)
    body = (await client.get("/api/risk")).json()
    assert body["state"] == "REDUCING" and body["reason"] == "net delta near limit"
    assert [(x["name"], x["used"], x["breached"]) for x in body["limits"]] == [
        ("orders_per_minute", 1.07, True),
        ("net_delta", 0.83, False),
        ("gross_notional", 0.412, False),
        ("daily_loss", 0.0, False),
    ]


async def test_health_panel_shows_data_health_and_silent_services(client, bus):
    seeded = await seed(bus)
    body = (await client.get("/api/health")).json()
    rows = [(i["name"], i["status"], i["reported_status"]) for i in body["instruments"]]
    assert rows == [
        ("TLT", "ok", "ok"),
        ("TLTW", "stale", "stale"),
        ("TLT 2026-12-18 90 C", "ok", "ok"),
        ("TLT 2026-12-18 91 C", "stale", "ok"),  # ok by its last word, no quote for 122 s
    ]
    # The age is the time since the newest quote, not since the status last changed (130 s).
    updated = {i["name"]: i["updated_ts"] for i in body["instruments"]}
    assert updated["TLT 2026-12-18 90 C"] == seeded.now - 1.5
    assert updated["TLT 2026-12-18 91 C"] == seeded.now - 122.0
    ages = {i["name"]: i["age_s"] for i in body["instruments"]}
    assert 1.5 <= ages["TLT 2026-12-18 90 C"] <= 1.5 + (time.time() - seeded.now)
    old = next(i for i in body["instruments"] if i["symbol"] == str(OLD_CALL_CON_ID))
    assert old["reason"].startswith("no update for 12")
    services = {s["service"]: s["status"] for s in body["services"]}
    assert services == {
        "data-ingestion": "silent",
        "monitoring": "silent",
        "risk-management": "degraded",
        "strategy": "ok",
        "visualization": "silent",  # this test's app runs without its heartbeat
    }
    # A degraded service says why; a working one has nothing to explain.
    problems = {s["service"]: s["problems"] for s in body["services"]}
    assert problems["risk-management"] == list(RISK_PROBLEMS)
    assert problems["strategy"] == [] and problems["data-ingestion"] == []


async def test_health_panel_shows_where_the_gateway_connection_stands(client, bus):
    now = time.time()
    gateway = {
        "status": "unreachable", "host": "127.0.0.1", "port": 4002, "client_id": 11,
        "attempt": 3, "next_try_at": now + 7.0, "error": "ConnectionRefusedError: refused",
        "down_since": now - 20.0,
    }  # fmt: skip
    beat = b.Heartbeat("data-ingestion", now, "degraded", {"gateway": gateway})
    await bus.beat(beat, ttl_s=60)
    [state] = (await client.get("/api/health")).json()["gateway"]
    assert (state["service"], state["status"], state["host"], state["port"]) == (
        "data-ingestion", "unreachable", "127.0.0.1", 4002,
    )  # fmt: skip
    assert state["attempt"] == 3 and state["next_try_in_s"] == pytest.approx(7.0, abs=1.0)


async def test_healthz_reports_the_age_of_the_newest_data(client, bus):
    now = time.time()
    old = b.Quote("TLT", 1, 90.0, 90.1, 1.0, 1.0, None, T0, now - 100.0)
    await bus.set_latest(Keys.quote("TLT"), old)
    body = (await client.get("/healthz")).json()
    assert body["status"] == "stale"
    assert body["newest_data_age_s"] == pytest.approx(100.0, abs=2.0)
    await bus.set_latest(Keys.quote("TLTW"), b.Quote("TLTW", 2, 23.4, 23.5, 1, 1, None, T0, now))
    body = (await client.get("/healthz")).json()
    assert body["status"] == "ok" and body["newest_data_age_s"] < 2.0
    ages = {s["source"]: s["age_s"] for s in body["sources"]}
    assert ages["quote:TLT"] == pytest.approx(100.0, abs=2.0) and ages["spread"] is None


async def test_malformed_values_in_redis_show_as_missing_not_as_errors(client, bus):
    await seed(bus, points=3)
    await bus.redis.set(Keys.PNL, b'{"kind": "pnl", "total": NaN}')
    await bus.redis.hset(Keys.POSITIONS, "999", b"not json")
    await bus.redis.xadd(Streams.SPREAD, {b"m": b'{"kind": "spread_point", "z": "high"}'})
    await bus.append(Streams.SPREAD, spread_point(3))
    book = (await client.get("/api/book")).json()
    assert book["pnl"] is None and len(book["positions"]) == 3
    spread = (await client.get("/api/spread")).json()
    assert spread["series"]["ts"] == [T0 + i * BAR_S for i in range(4)]


async def test_panels_answer_503_when_redis_is_down(redis_server, bus):
    settings = load_settings(redis={"url": redis_server.url})
    app = create_app(settings, bus, heartbeat=False, query_timeout_s=0.3)
    async with app.router.lifespan_context(app):
        redis_server.stop()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://d") as client:
            for path in ("/api/book", "/healthz"):
                response = await client.get(path)
                assert response.status_code == 503, path
                assert "redis" in response.json()["detail"]


async def test_openapi_document_lists_every_panel_plot_and_control(client):
    paths = (await client.get("/openapi.json")).json()["paths"]
    for panel in PANELS:
        assert f"/api/{panel}" in paths
    assert "/plots/{name}.png" in paths and "/healthz" in paths
    assert "post" in paths["/api/control/{command}"]
