"""Columnar, incrementally refreshed copies of capped Redis streams, for the dashboard's charts.

A chart wants the newest few thousand points of a stream on every request. Decoding them each
time would cost milliseconds; instead each `StreamColumns` keeps the newest `capacity` rows in
memory and a refresh asks Redis only for the newest entry id (one round trip), reading the
entries after the last one it holds when there are new ones. A stream that was trimmed below
what we hold, or deleted and recreated (the newest entry we hold is gone), is reloaded.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

from trading.bus import Bus, Message, MessageError, decode
from trading.bus.client import RawEntries

log = logging.getLogger(__name__)

Row = tuple[Any, ...]
RowMaker = Callable[[Message], Row | None]
"""Turns a decoded message into a row (first column: its timestamp), or None to skip it."""


def parse_entry_id(entry_id: str) -> tuple[int, int]:
    """A stream entry id "<ms>-<seq>" as a comparable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _id(entry_id: tuple[int, int]) -> str:
    return f"{entry_id[0]}-{entry_id[1]}"


class StreamColumns:
    """The newest `capacity` rows of one stream, as columns. Column 0 is the timestamp."""

    def __init__(
        self, bus: Bus, stream: str, columns: Sequence[str], row: RowMaker, capacity: int
    ) -> None:
        self.bus = bus
        self.stream = stream
        self.names = tuple(columns)
        self._row = row
        self.capacity = capacity
        self._columns: list[deque[Any]] = [deque(maxlen=capacity) for _ in self.names]
        self._last_id: tuple[int, int] | None = None
        self._lock = asyncio.Lock()
        self.skipped = 0

    def __len__(self) -> int:
        return len(self._columns[0])

    async def refresh(self) -> None:
        """Bring the columns up to date with the stream (one round trip when nothing is new)."""
        async with self._lock:
            held = self._last_id
            async with self.bus.redis.pipeline(transaction=False) as pipe:
                pipe.xrevrange(self.stream, count=1)
                if held is not None:  # does the newest entry we hold still exist?
                    pipe.xrange(self.stream, min=_id(held), max=_id(held), count=1)
                replies = await pipe.execute()
            newest = replies[0]
            if not newest:
                self._clear()
                return
            newest_id = parse_entry_id(newest[0][0].decode())
            if newest_id == held:
                return
            if held is None or newest_id < held or not replies[1]:
                # Recreated, or trimmed past everything we hold: start again from the newest.
                self._clear()
                await self._load_newest()
                return
            raw = cast(
                RawEntries,
                await self.bus.redis.xrange(self.stream, min="(" + _id(held), count=self.capacity),
            )
            if len(raw) == self.capacity and parse_entry_id(raw[-1][0].decode()) != newest_id:
                self._clear()  # more new entries than we keep: only the newest matter
                await self._load_newest()
                return
            self._extend(raw)

    async def _load_newest(self) -> None:
        raw = cast(RawEntries, await self.bus.redis.xrevrange(self.stream, count=self.capacity))
        self._extend(raw[::-1])

    def _clear(self) -> None:
        for column in self._columns:
            column.clear()
        self._last_id = None

    def _extend(self, raw: RawEntries) -> None:
        for entry_id, fields in raw:
            self._last_id = parse_entry_id(entry_id.decode())
            try:
                row = self._row(decode(fields[b"m"]))
            except (MessageError, KeyError) as exc:
                self.skipped += 1
                log.warning(
                    "malformed entry %s %s not plotted: %s",
                    self.stream,
                    entry_id,
                    exc,
                    extra={"event.action": "bad_stream_entry"},
                )
                continue
            if row is None:
                continue
            for column, value in zip(self._columns, row, strict=True):
                column.append(value)

    def newest(self, limit: int, since_ts: float | None = None) -> dict[str, list[Any]]:
        """The newest `limit` rows (oldest first), only those with timestamp > since_ts if given.

        Timestamps are assumed non-decreasing along the stream (each writer stamps in order).
        """
        size = len(self)
        start = max(0, size - limit)
        if since_ts is not None:
            times = self._columns[0]
            first_new = size
            while first_new > start and times[first_new - 1] > since_ts:
                first_new -= 1
            start = first_new
        count = size - start
        # From the right end: O(count), where slicing a deque from the left would be O(size).
        return {
            name: list(itertools.islice(reversed(column), count))[::-1]
            for name, column in zip(self.names, self._columns, strict=True)
        }

    def first_ts(self, limit: int) -> float | None:
        """Timestamp of the oldest of the newest `limit` rows."""
        size = len(self)
        return self._columns[0][size - min(limit, size)] if size else None

    @property
    def last_write_ts(self) -> float | None:
        """Wall-clock time Redis appended the newest entry held (its id's milliseconds)."""
        return None if self._last_id is None else self._last_id[0] / 1000.0

    def last(self, column: str) -> Any | None:
        values = self._columns[self.names.index(column)]
        return values[-1] if values else None
