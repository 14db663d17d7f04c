"""Server-side PNGs: real PNG files of the requested size, with or without data."""

from __future__ import annotations

import struct

import pytest

from tests.visualization.seed import next_session_point, seed
from trading.bus import Streams

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk (the first chunk, right after the signature)."""
    assert data[:8] == PNG_SIGNATURE, data[:8]
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("name", ["spread", "prices", "hedge", "risk"])
async def test_plot_is_a_png_of_the_requested_size(client, bus, name):
    await seed(bus, points=60)
    response = await client.get(f"/plots/{name}.png", params={"width": 640, "height": 360})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert png_size(response.content) == (640, 360)


@pytest.mark.parametrize("name", ["spread", "prices", "hedge", "risk"])
async def test_plot_without_data_is_still_a_png(client, name):
    response = await client.get(f"/plots/{name}.png")
    assert response.status_code == 200
    assert png_size(response.content) == (1000, 500)


async def test_plot_size_and_name_are_validated(client):
    assert (await client.get("/plots/spread.png", params={"width": 10})).status_code == 422
    assert (await client.get("/plots/spread.png", params={"height": 99999})).status_code == 422
    assert (await client.get("/plots/pnl.png")).status_code == 422


@pytest.mark.parametrize("name", ["spread", "prices", "hedge"])
async def test_plot_across_two_sessions_is_a_png(client, bus, name):
    """The closed market between two sessions is cut out of the x axis (see test_sessions)."""
    await seed(bus, points=60)
    for i in range(30):
        await bus.append(Streams.SPREAD, next_session_point(i))
    response = await client.get(f"/plots/{name}.png", params={"width": 800, "height": 400})
    assert response.status_code == 200
    assert png_size(response.content) == (800, 400)
