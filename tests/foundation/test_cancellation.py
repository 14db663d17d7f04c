"""A service stops when it is cancelled: no await in the running code may swallow the cancel.

Python 3.11's `asyncio.wait_for` returns the inner result when the task is cancelled at the
moment the inner awaitable completes (cpython gh-86296, rewritten in 3.12): the cancellation
is lost. A service loop (``while True: await monitor.cycle()``) then runs on after SIGTERM or
Ctrl-C: the monitoring service was seen doing so under a loaded test run (its test waited 240 s
for a cancelled task). `asyncio.timeout` keeps the cancellation, so the services use it.

redis-py (8.1) can lose a cancellation too, inside its own calls, which the services cannot
avoid: the same monitor test, with `asyncio.timeout`, then hung for half an hour (the task
"cancelling", its loop beating on). So every stop cancels again until the task ends
(`trading.aio.stop_tasks`), SIGTERM included.
"""

from __future__ import annotations

import ast
import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNNING_CODE = ("trading", "data-ingestion", "strategy", "risk-management", "visualization",
                "monitoring")  # fmt: skip


async def _cancel_as_it_completes(wrap) -> str:
    """Cancel a task in the same loop turn as the future it awaits gets its result."""
    loop = asyncio.get_running_loop()
    inner = loop.create_future()

    async def waiter() -> str:
        await wrap(inner)
        return "ran on"

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0)  # the task now awaits `inner`
    inner.set_result(None)
    task.cancel()
    try:
        return await task
    except asyncio.CancelledError:
        return "cancelled"


async def _with_timeout(inner: asyncio.Future) -> None:
    async with asyncio.timeout(10):
        await inner


async def _with_wait_for(inner: asyncio.Future) -> None:
    await asyncio.wait_for(inner, 10)


def test_asyncio_timeout_keeps_a_cancellation_that_arrives_as_the_awaited_call_completes():
    assert asyncio.run(_cancel_as_it_completes(_with_timeout)) == "cancelled"


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="wait_for keeps the cancel from 3.12")
def test_wait_for_loses_it_on_this_python():
    """Why the rule below exists (on 3.12 and later wait_for is built on asyncio.timeout)."""
    assert asyncio.run(_cancel_as_it_completes(_with_wait_for)) == "ran on"


def test_the_running_code_never_calls_asyncio_wait_for():
    calls = []
    for folder in RUNNING_CODE:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "wait_for"
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "asyncio"
                ):
                    calls.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert calls == [], "use `async with asyncio.timeout(s)` (see the module docstring)"


SWALLOWS_ITS_FIRST_CANCEL = textwrap.dedent("""
    import asyncio
    from trading.services.shell import run_service

    async def main(ctx):
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            print("cancel lost", flush=True)  # as redis-py may do
        while True:
            await asyncio.sleep(0.05)

    run_service("swallower", main)
""")


def test_sigterm_stops_a_service_whose_loop_lost_the_first_cancel(redis_url):
    env = {**os.environ, "TRADING_REDIS__URL": redis_url, "TRADING_METRICS__PORT": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SWALLOWS_ITS_FIRST_CANCEL],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the service is up once it has logged its start
            if "service started" in line:
                break
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert "cancel lost" in out
        assert proc.returncode == 0
    finally:
        proc.kill()
        proc.wait()
