"""An independent check of a request log against IB's historical-data pacing rules."""

from __future__ import annotations

from collections.abc import Hashable, Sequence


def pacing_violations(
    log: Sequence[tuple[float, Hashable]],
    identical_window_s: float = 15.0,
    burst_limit: int = 5,
    burst_window_s: float = 2.0,
    window_limit: int = 60,
    window_s: float = 600.0,
) -> list[tuple[str, float, Hashable]]:
    """Every (rule, time, key) that the (send time, request key) log breaks."""
    broken = []
    for i, (t, key) in enumerate(log):
        earlier = log[:i]
        if any(k == key and t - s < identical_window_s for s, k in earlier):
            broken.append(("identical", t, key))
        if sum(1 for s, _ in earlier if t - s < burst_window_s) + 1 > burst_limit:
            broken.append(("burst", t, key))
        if sum(1 for s, _ in earlier if t - s < window_s) + 1 > window_limit:
            broken.append(("window", t, key))
    return broken
