"""Fixtures: the dashboard app against the test's real Redis, in-process (httpx ASGI)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tests.support import pair_settings
from trading.dashboard.app import create_app
from trading.domain.pair import PairSpec
from trading.settings import Settings, load_settings

TOKEN = "s3cret-operator-token"


def dashboard_settings(redis_url: str, pair: PairSpec | None = None) -> Settings:
    """The dashboard's settings on the test's Redis with controls on; for ``pair`` when given
    (through the pair's settings, as TRADING_PAIR__* and TRADING_STRATEGY__PAIR_ID set it)."""
    overrides = {} if pair is None else pair_settings(pair)
    return load_settings(redis={"url": redis_url}, http={"token": TOKEN}, **overrides)


@pytest.fixture
def settings(redis_url):
    return dashboard_settings(redis_url)


@pytest.fixture
async def app(settings, bus) -> AsyncIterator[FastAPI]:
    application = create_app(settings, bus, heartbeat=False)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dashboard") as c:
        yield c
