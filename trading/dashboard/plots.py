"""Server-side PNGs of the dashboard's charts (matplotlib, Agg), for reports and embedding.

Each renderer takes a panel model (the same one the JSON API returns) and a size in pixels and
returns PNG bytes. Figures are built with the object API (`Figure`, not pyplot), so renders in
worker threads share no global state. An empty panel draws an empty chart saying "no data yet".
Times on the x axis are New York (exchange) time, as on the page, without the closed market
(`trading.dashboard.sessions`): lines break at a session boundary, a dashed line marks it.
"""

from __future__ import annotations

import bisect
import io
import math
import warnings
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MultipleLocator

from trading.bus import SignalAction
from trading.dashboard.models import HedgePanel, PricesPanel, RiskPanel, SpreadPanel
from trading.dashboard.sessions import BREAK_AFTER_S, SessionAxis, session_axis

MARKET_TZ = ZoneInfo("America/New_York")
TICK_STEPS_S = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)
"""Tick spacings in seconds of chart time: whole minutes and hours land on round times (the
session axis removes whole hours)."""
DPI = 100
MIN_SIDE_PX = 200
MAX_SIDE_PX = 4000

_MARKER_STYLE = {
    SignalAction.ENTER_LONG_SPREAD: ("^", "tab:green", "enter long"),
    SignalAction.ENTER_SHORT_SPREAD: ("v", "tab:red", "enter short"),
    SignalAction.EXIT: ("o", "tab:blue", "exit"),
    SignalAction.STOP: ("X", "black", "stop"),
    SignalAction.TIME_STOP: ("s", "tab:gray", "time stop"),
}


def _figure(width_px: int, height_px: int) -> Figure:
    for name, value in (("width_px", width_px), ("height_px", height_px)):
        if not MIN_SIDE_PX <= value <= MAX_SIDE_PX:
            raise ValueError(f"{name}: must be in [{MIN_SIDE_PX}, {MAX_SIDE_PX}], got {value!r}")
    return Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout="constrained")


def _axis(*series_ts: Sequence[float]) -> SessionAxis:
    """One session axis for every series drawn on it (on their timestamps' union)."""
    return session_axis(sorted({t for ts in series_ts for t in ts}))


def _xy(axis: SessionAxis, ts: Sequence[float], ys: Sequence[float]) -> tuple[list, list]:
    """Chart x and y, with a NaN in each closed-market gap so the line breaks there."""
    x_out: list[float] = []
    y_out: list[float] = []
    for i, (t, y) in enumerate(zip(ts, ys, strict=True)):
        if i and t - ts[i - 1] > BREAK_AFTER_S:
            x_out.append(math.nan)
            y_out.append(math.nan)
        x_out.append(axis.x_of(t))
        y_out.append(y)
    return x_out, y_out


def _session_ticks(ax, axis: SessionAxis) -> None:
    """Ticks labelled in exchange time; a dashed line and the date at each session start."""

    def label(x: float, _pos: int) -> str:
        t = axis.time_at(x)
        return "" if t is None else datetime.fromtimestamp(t, MARKET_TZ).strftime("%m-%d %H:%M")

    span = max(axis.x[-1] - axis.x[0], 1.0) if axis.x else 1.0
    step = next((t for t in TICK_STEPS_S if span / t <= 8), TICK_STEPS_S[-1])
    ax.xaxis.set_major_locator(MultipleLocator(step))
    ax.xaxis.set_major_formatter(FuncFormatter(label))
    for b in axis.breaks:
        ax.axvline(b.x, color="gray", ls="--", lw=0.8)
        day = datetime.fromtimestamp(b.ts, MARKET_TZ).strftime("%Y-%m-%d")
        ax.text(b.x, 1.0, f" {day}", transform=ax.get_xaxis_transform(), va="top",
                fontsize=8, color="dimgray")  # fmt: skip


def _value_at(ts: Sequence[float], values: Sequence[float], t: float) -> float | None:
    """The value at or before time t (None before the first)."""
    i = bisect.bisect_right(ts, t)
    return values[i - 1] if i else None


def _no_data(ax) -> None:
    ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes,
            color="gray", fontsize=14)  # fmt: skip


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # At the smallest sizes constrained layout gives up and says so; the PNG is still drawn.
        warnings.filterwarnings("ignore", "constrained_layout not applied", UserWarning)
        fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def render_spread(panel: SpreadPanel, width_px: int = 1000, height_px: int = 500) -> bytes:
    """Top: the spread and its rolling mean +- entry_z std. Bottom: z with the entry/exit/stop
    bands and a marker at each signal that acted."""
    fig = _figure(width_px, height_px)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(1, 1))
    s, bands = panel.series, panel.bands
    top.set_ylabel("spread (log)")
    bottom.set_ylabel("z-score")
    if not s.ts:
        _no_data(top)
        _no_data(bottom)
        return _png(fig)
    axis = _axis(s.ts)
    top.plot(*_xy(axis, s.ts, s.spread), color="tab:blue", lw=1, label="spread")
    top.plot(*_xy(axis, s.ts, s.mean), color="gray", lw=1, label="mean")
    x, lower = _xy(axis, s.ts, [m - bands.entry_z * d for m, d in zip(s.mean, s.std, strict=True)])
    _, upper = _xy(axis, s.ts, [m + bands.entry_z * d for m, d in zip(s.mean, s.std, strict=True)])
    top.fill_between(x, lower, upper, color="gray", alpha=0.15,
                     label=f"mean ± {bands.entry_z:g} std")  # fmt: skip
    top.legend(loc="upper left", fontsize=8)
    bottom.plot(*_xy(axis, s.ts, s.z), color="tab:purple", lw=1, label="z")
    for level, color, style in (
        (bands.entry_z, "tab:orange", "--"),
        (bands.exit_z, "tab:green", ":"),
        (bands.stop_z, "tab:red", "-."),
    ):
        for sign in (1, -1):
            bottom.axhline(sign * level, color=color, ls=style, lw=0.8)
    seen = set()
    for marker in panel.markers:
        shape, color, label = _MARKER_STYLE.get(marker.action, ("d", "black", marker.action))
        bottom.scatter(
            [axis.x_of(marker.ts)], [marker.z], marker=shape, color=color, s=50, zorder=3,
            label=None if label in seen else label,
        )  # fmt: skip
        seen.add(label)
    bottom.legend(loc="upper left", fontsize=8, ncols=3)
    _session_ticks(top, axis)
    _session_ticks(bottom, axis)
    return _png(fig)


def render_prices(panel: PricesPanel, width_px: int = 1000, height_px: int = 500) -> bytes:
    """`prices_figure` as a PNG."""
    return _png(prices_figure(panel, width_px, height_px))


def prices_figure(panel: PricesPanel, width_px: int = 1000, height_px: int = 500) -> Figure:
    """Top: the pair's underlying (left axis) and ETF (right axis), each on its own scale, named
    from ``panel.pair``. Bottom: the buy-write index less the underlying's mid at or before each
    of its points (USD per share)."""
    fig = _figure(width_px, height_px)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    right = top.twinx()
    names = (panel.pair.underlying, panel.pair.etf)
    top.set_ylabel(f"{names[0]} (USD)", color="tab:blue")
    right.set_ylabel(f"{names[1]} (USD)", color="tab:orange")
    bottom.set_ylabel(f"index − {names[0]} (USD)")
    empty: dict[str, list[float]] = {"ts": [], "price": []}
    underlying, etf, index = (
        panel.series[k].model_dump() if k in panel.series else empty
        for k in (*names, "buy_write_index")
    )
    if not (underlying["ts"] or etf["ts"] or index["ts"]):
        _no_data(top)
        return fig
    axis = _axis(underlying["ts"], etf["ts"], index["ts"])
    for ax, series, color, name in (
        (top, underlying, "tab:blue", names[0]),
        (right, etf, "tab:orange", names[1]),
    ):
        if series["ts"]:
            ax.plot(*_xy(axis, series["ts"], series["price"]), color=color, lw=1, label=name)
    basis = [
        (t, value - mid)
        for t, value in zip(index["ts"], index["price"], strict=True)
        if (mid := _value_at(underlying["ts"], underlying["price"], t)) is not None
    ]
    if basis:
        ts, diff = zip(*basis, strict=True)
        bottom.plot(*_xy(axis, ts, diff), color="tab:green", lw=1,
                    label=f"buy-write index − {names[0]}")  # fmt: skip
        bottom.legend(loc="upper left", fontsize=8)
    lines = top.get_lines() + right.get_lines()
    top.legend(lines, [line.get_label() for line in lines], loc="upper left", fontsize=8)
    _session_ticks(top, axis)
    _session_ticks(bottom, axis)
    return fig


def render_hedge(panel: HedgePanel, width_px: int = 1000, height_px: int = 500) -> bytes:
    fig = _figure(width_px, height_px)
    ax = fig.subplots()
    ax.set_ylabel(f"hedge ratio beta ({panel.method or 'n/a'})")
    if not panel.series.ts:
        _no_data(ax)
        return _png(fig)
    axis = _axis(panel.series.ts)
    ax.plot(*_xy(axis, panel.series.ts, panel.series.beta), color="tab:blue", lw=1)
    _session_ticks(ax, axis)
    return _png(fig)


def render_risk(panel: RiskPanel, width_px: int = 1000, height_px: int = 500) -> bytes:
    """Each limit's use as a horizontal bar (1.0 = at the limit), red when breached."""
    fig = _figure(width_px, height_px)
    ax = fig.subplots()
    ax.set_title(f"risk state: {panel.state or 'unknown'}")
    if not panel.limits:
        _no_data(ax)
        return _png(fig)
    names = [limit.name for limit in panel.limits][::-1]
    used = [limit.used for limit in panel.limits][::-1]
    colors = ["tab:red" if u >= 1 else "tab:orange" if u >= 0.8 else "tab:green" for u in used]
    ax.barh(names, used, color=colors)
    ax.axvline(1.0, color="black", lw=1)
    ax.set_xlabel("fraction of limit used")
    ax.set_xlim(0, max(1.1, max(used) * 1.05))
    return _png(fig)
