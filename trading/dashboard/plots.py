"""Server-side PNGs of the dashboard's charts (matplotlib, Agg), for reports and embedding.

Each renderer takes a panel model (the same one the JSON API returns) and a size in pixels and
returns PNG bytes. Figures are built with the object API (`Figure`, not pyplot), so renders in
worker threads share no global state. An empty panel draws an empty chart saying "no data yet".
Times on the x axis are New York (exchange) time, as on the page.
"""

from __future__ import annotations

import io
import warnings
from datetime import datetime
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")

from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from trading.bus import SignalAction
from trading.dashboard.models import HedgePanel, PricesPanel, RiskPanel, SpreadPanel

MARKET_TZ = ZoneInfo("America/New_York")
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


def _times(ts: list[float]) -> list[datetime]:
    return [datetime.fromtimestamp(t, MARKET_TZ) for t in ts]


def _date_axis(ax) -> None:
    locator = AutoDateLocator(tz=MARKET_TZ)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz=MARKET_TZ))


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
    x = _times(s.ts)
    top.plot(x, s.spread, color="tab:blue", lw=1, label="spread")
    top.plot(x, s.mean, color="gray", lw=1, label="mean")
    top.fill_between(
        x,
        [m - bands.entry_z * d for m, d in zip(s.mean, s.std, strict=True)],
        [m + bands.entry_z * d for m, d in zip(s.mean, s.std, strict=True)],
        color="gray", alpha=0.15, label=f"mean ± {bands.entry_z:g} std",
    )  # fmt: skip
    top.legend(loc="upper left", fontsize=8)
    bottom.plot(x, s.z, color="tab:purple", lw=1, label="z")
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
            _times([marker.ts]), [marker.z], marker=shape, color=color, s=50, zorder=3,
            label=None if label in seen else label,
        )  # fmt: skip
        seen.add(label)
    bottom.legend(loc="upper left", fontsize=8, ncols=3)
    _date_axis(bottom)
    return _png(fig)


def render_prices(panel: PricesPanel, width_px: int = 1000, height_px: int = 500) -> bytes:
    """TLT and the buy-write index (left axis, per share) and TLTW (right axis)."""
    fig = _figure(width_px, height_px)
    left = fig.subplots()
    right = left.twinx()
    left.set_ylabel("TLT, buy-write index (USD)")
    right.set_ylabel("TLTW (USD)")
    drawn = False
    for axis, key, color in (
        (left, "TLT", "tab:blue"),
        (left, "buy_write_index", "tab:green"),
        (right, "TLTW", "tab:orange"),
    ):
        series = panel.series.get(key)
        if series is not None and series.ts:
            axis.plot(_times(series.ts), series.price, color=color, lw=1, label=key)
            drawn = True
    if not drawn:
        _no_data(left)
        return _png(fig)
    lines = left.get_lines() + right.get_lines()
    left.legend(lines, [line.get_label() for line in lines], loc="upper left", fontsize=8)
    _date_axis(left)
    return _png(fig)


def render_hedge(panel: HedgePanel, width_px: int = 1000, height_px: int = 500) -> bytes:
    fig = _figure(width_px, height_px)
    ax = fig.subplots()
    ax.set_ylabel(f"hedge ratio beta ({panel.method or 'n/a'})")
    if not panel.series.ts:
        _no_data(ax)
        return _png(fig)
    ax.plot(_times(panel.series.ts), panel.series.beta, color="tab:blue", lw=1)
    _date_axis(ax)
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
