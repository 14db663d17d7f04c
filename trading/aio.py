"""asyncio helpers shared by the services and the dashboard."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


async def stop_tasks(tasks: list[asyncio.Task], grace_s: float = 1.0, attempts: int = 3) -> None:
    """Cancel tasks and wait for them, cancelling again any that is still running after grace_s.

    redis-py (8.1, Python 3.11) can lose a cancellation that lands inside one of its calls: the
    task stays "cancelling" and goes on (seen opening a pub/sub connection, and in the monitor's
    loop, which then beat for half an hour after the test had cancelled it). A second cancel
    ends it. Every stop of a service or of a task group goes through here, or shutdown hangs.
    """
    pending = [task for task in tasks if not task.done()]
    for _ in range(attempts):
        if not pending:
            break
        for task in pending:
            task.cancel()
        _, still = await asyncio.wait(pending, timeout=grace_s)
        pending = list(still)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.warning("task %s ended with %r", task.get_name(), task.exception())
    if pending:
        log.error("tasks did not stop: %s", [t.get_name() for t in pending])
