"""Named points in the services where a fault test stops one (crash-only tests).

``await seam("risk.leg_sent")`` does nothing unless a test armed that name:

* in-process, ``arm(name, hook)``: the hook is awaited there (a test hangs the service at the
  seam, then cancels it as a kill would), and ``disarm(name)`` removes it;
* in a separate process, ``TRADING_CRASH_AT=<name>`` in its environment: the process sends
  itself SIGKILL the first time it reaches the seam (the fault suite restarts it without).

Nothing in the services arms a seam; an unknown name raises, so a typo cannot silently test
nothing.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable

CRASH_ENV = "TRADING_CRASH_AT"
SEAMS = frozenset(
    {
        "strategy.intent_appended",  # the strategy's intent is in the stream, its state not saved
        "risk.approved",  # an intent approved, its order ids taken; nothing recorded or sent
        "risk.placing_recorded",  # the "placing" record is written, no placeOrder sent yet
        "risk.leg_sent",  # one leg's placeOrder is handed to the socket (the next is not)
        "risk.order_sent",  # every leg is sent, the "placed" record is not written yet
    }
)

_hooks: dict[str, Callable[[], Awaitable[None]]] = {}


def _check(name: str) -> None:
    if name not in SEAMS:
        raise ValueError(f"seam {name!r} is not one of {sorted(SEAMS)}")


def arm(name: str, hook: Callable[[], Awaitable[None]]) -> None:
    _check(name)
    _hooks[name] = hook


def disarm(name: str) -> None:
    _check(name)
    _hooks.pop(name, None)


async def seam(name: str) -> None:
    hook = _hooks.get(name)
    if hook is not None:
        await hook()
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def check_environment() -> None:
    """Refuse a misspelled TRADING_CRASH_AT at start (it would crash nothing)."""
    name = os.environ.get(CRASH_ENV)
    if name:
        _check(name)
