"""Shared fixtures: a real redis-server per test, and a connected bus."""

from __future__ import annotations

import pytest

from trading.bus import Bus
from trading.redis_server import EmbeddedRedis


@pytest.fixture
def redis_server():
    """A fresh redis-server on a free port, stopped after the test even when it fails."""
    server = EmbeddedRedis().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server) -> str:
    return redis_server.url


@pytest.fixture
async def bus(redis_url):
    b = await Bus.connect(redis_url, "test", attempts=20)
    try:
        yield b
    finally:
        await b.close()
