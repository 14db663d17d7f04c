"""Helpers for driving the real client libraries against ibsim."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import Any

from trading.ibsim import SimulatedGateway


@contextlib.asynccontextmanager
async def connected(
    ibm: ModuleType, gateway: SimulatedGateway | int, client_id: int = 1
) -> AsyncIterator[Any]:
    """An IB() of library ``ibm`` connected to ``gateway`` (or a port); disconnected after."""
    port = gateway if isinstance(gateway, int) else gateway.port
    ib = ibm.IB()
    await ib.connectAsync("127.0.0.1", port, clientId=client_id, timeout=5)
    try:
        yield ib
    finally:
        ib.disconnect()


async def eventually(condition: Callable[[], Any], timeout_s: float = 5.0, what: str = "") -> Any:
    """Poll ``condition`` on the client's event loop until truthy (returned) or fail."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout_s}s: {what or condition}")
        await asyncio.sleep(0.01)


def error_codes(ib: Any) -> list[tuple[int, int, str]]:
    """Collect (reqId, code, message) of every error event of ``ib`` into the returned list."""
    seen: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req_id, code, message, *rest: seen.append((req_id, code, message))
    return seen


async def qualified(ib: Any, *contracts: Any) -> list[Any]:
    result = await ib.qualifyContractsAsync(*contracts)
    assert all(c is not None and c.conId for c in result), result
    return result
