"""Schemathesis over the OpenAPI document, in-process (ASGI): no input may cause a server error,
and every response must match the documented schema and status codes."""

from __future__ import annotations

import asyncio

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from prometheus_client import REGISTRY

from tests.visualization.conftest import TOKEN
from tests.visualization.seed import seed
from trading.bus import Bus
from trading.dashboard.app import create_app
from trading.settings import load_settings


async def _seed(url: str) -> None:
    bus = await Bus.connect(url, "test-seed", attempts=20)
    try:
        await seed(bus, points=50)
    finally:
        await bus.close()


@pytest.mark.parametrize("token", [TOKEN, None], ids=["controls-on", "controls-off"])
def test_no_input_causes_a_server_error_or_breaks_the_schema(redis_url, token):
    asyncio.run(_seed(redis_url))
    settings_ = load_settings(redis={"url": redis_url}, http={"token": token})
    app = create_app(settings_, redis_url, heartbeat=False)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    # (schemathesis.pytest.from_fixture does not run under pytest 9: drive hypothesis directly.)
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            case.call_and_validate()

        check()
    # Requests really reached the app (through its lifespan, its Redis and its routes).
    assert _requests("/api/spread") > 0 and _requests("/api/control/{command}") > 0


def _requests(route: str) -> float:
    return REGISTRY.get_sample_value("trading_dashboard_request_seconds_count", {"route": route})
