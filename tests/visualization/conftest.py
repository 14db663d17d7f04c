"""Fixtures: the dashboard app against the test's real Redis, in-process (httpx ASGI)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from trading.dashboard.app import create_app
from trading.settings import load_settings

TOKEN = "s3cret-operator-token"


@pytest.fixture
def settings(redis_url):
    return load_settings(redis={"url": redis_url}, http={"token": TOKEN})


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
