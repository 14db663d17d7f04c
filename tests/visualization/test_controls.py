"""Operator controls: a bearer token from the settings, or off; commands land in the stream."""

from __future__ import annotations

import httpx
import pytest

from tests.visualization.conftest import TOKEN
from trading.bus import Command, Groups, OperatorCommand, Streams
from trading.dashboard.app import create_app
from trading.dashboard.controls import ControlsOff, Unauthorized, check_token
from trading.settings import load_settings

AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_control_without_a_token_is_refused_with_401(client, bus):
    response = await client.post("/api/control/halt")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert await bus.read_range(Streams.COMMANDS, 10) == []


async def test_control_with_a_wrong_token_is_refused_with_401(client, bus):
    for header in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer ", f"Basic {TOKEN}"):
        response = await client.post("/api/control/flatten", headers={"Authorization": header})
        assert response.status_code == 401, header
    assert await bus.read_range(Streams.COMMANDS, 10) == []


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("halt", Command.HALT),
        ("reduce", Command.REDUCE),
        ("resume", Command.RESUME),
        ("flatten", Command.FLATTEN),
        ("kill", Command.KILL),
    ],
)
async def test_control_with_the_token_appends_the_command_for_risk(client, bus, command, expected):
    response = await client.post(
        f"/api/control/{command}",
        headers=AUTH,
        json={"reason": "operator test", "issued_by": "alice", "flatten": True},
    )
    assert response.status_code == 202, response.text
    body = response.json()
    # risk-management reads the stream through its consumer group: the command is there.
    await bus.ensure_group(Streams.COMMANDS, Groups.RISK)
    entries = await bus.read_group(Streams.COMMANDS, Groups.RISK, "risk-1", expect=OperatorCommand)
    assert len(entries) == 1 and entries[0].entry_id == body["entry_id"]
    sent = entries[0].message
    assert (sent.command, sent.command_id, sent.issued_by) == (
        expected,
        body["command_id"],
        "alice",
    )
    assert sent.reason == "operator test"
    assert sent.flatten is (expected is Command.KILL)  # the flag only qualifies a kill


async def test_unknown_control_is_a_422(client):
    assert (await client.post("/api/control/liquidate", headers=AUTH)).status_code == 422


async def test_controls_are_off_not_open_without_a_configured_token(redis_url, bus):
    for token in (None, ""):
        settings = load_settings(redis={"url": redis_url}, http={"token": token})
        app = create_app(settings, bus, heartbeat=False)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://d") as client:
                for headers in ({}, {"Authorization": "Bearer "}, AUTH):
                    response = await client.post("/api/control/halt", headers=headers)
                    assert response.status_code == 403, (token, headers)
                assert (await client.get("/api/control")).json()["enabled"] is False
                page = (await client.get("/")).text
                assert 'data-controls-enabled="false"' in page
                assert page.count("disabled>") == 5
    assert await bus.read_range(Streams.COMMANDS, 10) == []


async def test_page_enables_the_controls_when_a_token_is_configured(client):
    assert (await client.get("/api/control")).json()["enabled"] is True
    page = (await client.get("/")).text
    assert 'data-controls-enabled="true"' in page and "disabled>" not in page
    assert TOKEN not in page  # the token is typed by the operator, never served


def test_token_check_compares_the_whole_token():
    from pydantic import SecretStr

    check_token(SecretStr("abc"), "abc")
    for presented in (None, "", "ab", "abcd", "ABC"):
        with pytest.raises(Unauthorized):
            check_token(SecretStr("abc"), presented)
    with pytest.raises(ControlsOff):
        check_token(None, "abc")
    with pytest.raises(ControlsOff):
        check_token(SecretStr(""), "")
