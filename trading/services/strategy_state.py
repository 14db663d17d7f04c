"""The strategy's state in Redis, written every bar at the cost of the bar's news.

The engine's state is small except for its estimators' windows: with the default settings the
z-score's 15,600 spreads and the fit windows (spreads, log index, log TLTW: 15,600 each), 62,400
floats. Written whole each bar, that was 1.26 MB of JSON and about 8 ms of CPU before the bar's
intent could leave, and 1.26 MB appended to Redis's append-only file a bar. Here the state
(`Keys.STRATEGY_STATE`) is written without the windows' values; each window is a Redis list
(`Keys.strategy_window`) that grows by the values appended since the last write and is trimmed
to the window's length, in the same transaction as the state. The state records each list's
length and last value, and a restore takes a window only if its list matches them (else the
estimators are warmed up from history, as after a change of settings).

A write that may or may not have been applied (an error mid-round-trip) is never followed by a
delta: the next write sends every window whole, and so does one write in ``full_every``.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

from trading.bus import Batch, Bus, Keys
from trading.strategy.engine import StrategyEngine

FULL_EVERY = 390
"""Writes between two whole rewrites of every window (a session of one-minute bars)."""

_DOUBLE = struct.Struct("<d")


def _pack(values: list[float]) -> list[bytes]:
    return [_DOUBLE.pack(v) for v in values]


def _unpack(items: list[bytes]) -> list[float]:
    if any(len(item) != 8 for item in items):
        raise ValueError("a window's item is not an 8-byte float")
    return np.frombuffer(b"".join(items), "<f8").tolist() if items else []


class StateWriter:
    """Adds the state's writes to a bar's batch; `written` once the batch is in Redis."""

    def __init__(self, full_every: int = FULL_EVERY) -> None:
        if full_every < 1:
            raise ValueError(f"full_every must be >= 1, got {full_every!r}")
        self.full_every = full_every
        self.sent: dict[str, int] = {}
        """Values appended to each window as of the last write known to be in Redis."""
        self.writes = 0
        self._pending: dict[str, int] = {}

    def add(self, batch: Batch, engine: StrategyEngine, cursors: dict[str, str]) -> None:
        """The windows' lists, then the state, at the front of ``batch`` (the state is in
        Redis before anything the bar wrote after it)."""
        whole = self.writes % self.full_every == 0
        self._pending = {}
        lists = Batch()
        shapes: dict[str, list[Any]] = {}
        for name, window in engine.windows().items():
            key = Keys.strategy_window(name)
            sent = self.sent.get(name)
            new = None if sent is None or whole else window.appended - sent
            if new is None or new > len(window) or new < 0:
                lists.replace_list(key, _pack(list(window)))
            elif new:
                tail = [window[i] for i in range(len(window) - new, len(window))]
                lists.extend_list(key, _pack(tail), len(window))
            self._pending[name] = window.appended
            shapes[name] = [len(window), window[-1] if window else None]
        state = {
            "engine": engine.to_state(windows=False),
            "cursors": dict(cursors),
            "windows": shapes,
        }
        lists.set_latest(Keys.STRATEGY_STATE, orjson.dumps(state))
        batch.commands[:0] = lists.commands

    def written(self) -> None:
        """The batch of the last `add` is in Redis."""
        self.sent.update(self._pending)
        self.writes += 1

    def failed(self) -> None:
        """The batch of the last `add` may or may not be in Redis: send every window whole."""
        self.sent.clear()


async def read_state(bus: Bus) -> tuple[dict[str, Any] | None, dict[str, list[float]]]:
    """The saved state and the windows whose lists match it (a state saved whole, by an
    earlier version, carries its windows itself: none are read)."""
    state = await bus.get_state(Keys.STRATEGY_STATE)
    windows: dict[str, list[float]] = {}
    if state is None:
        return None, windows
    for name, (length, last) in (state.get("windows") or {}).items():
        try:
            values = _unpack(await bus.get_list(Keys.strategy_window(name)))
        except ValueError:
            continue
        if len(values) == length and (values[-1] if values else None) == last:
            windows[name] = values
    return state, windows
