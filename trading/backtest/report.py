"""The backtest report: one self-contained HTML file (charts as base64 PNGs) and a JSON dict.

Charts: equity, drawdown, the spread with its rolling mean and the z-score with the bands and
the trades (entries and exits marked where risk approved them), and the true premium against
the spread when the source knows it (sim). Metrics as a table (see `trading.backtest.metrics`),
the edge diagnostics and their verdict, the intents refused by reason, and every distribution
of the tape with what the book booked.
"""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trading.backtest.metrics import Metrics, equity_frame
from trading.backtest.replay import BacktestResult
from trading.bus import IntentPurpose
from trading.domain.market_hours import EXCHANGE_TIMEZONE

_FORMATS = {
    "total_return": "{:.3%}",
    "annual_return": "{:.2%}",
    "max_drawdown": "{:.3%}",
    "hit_rate": "{:.1%}",
    "sharpe": "{:.2f}",
    "sortino": "{:.2f}",
    "turnover": "{:.2f}",
    "turnover_annual": "{:.1f}",
    "r_squared_vs_truth": "{:.3f}",
}


def format_value(name: str, value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, list):
        return "; ".join(str(v) for v in value) or "-"
    if name in _FORMATS:
        return _FORMATS[name].format(value)
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def _times(ts: np.ndarray) -> pd.DatetimeIndex:
    return pd.to_datetime(ts, unit="s", utc=True).tz_convert(EXCHANGE_TIMEZONE)


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def charts(result: BacktestResult, premium: pd.Series | None = None) -> dict[str, str]:
    """Base64 PNGs by title. Bars are plotted by their index (trading time: no night gaps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, str] = {}
    frame = equity_frame(result)
    if not frame.empty:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
        top.plot(frame["equity_usd"].to_numpy(), lw=0.8)
        top.set_ylabel("equity (USD)")
        bottom.fill_between(np.arange(len(frame)), -frame["drawdown"].to_numpy() * 100, lw=0)
        bottom.set_ylabel("drawdown (%)")
        bottom.set_xlabel("bar")
        out["Equity and drawdown"] = _png(fig)
    points = result.spread_points
    if points:
        ts = np.array([p.ts for p in points])
        spread = np.array([p.spread for p in points]) * 1e4
        mean = np.array([p.mean for p in points]) * 1e4
        z = np.array([p.z for p in points])
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
        x = np.arange(len(points))
        top.plot(x, spread, lw=0.6, label="spread (bp)")
        top.plot(x, mean, lw=0.8, label="rolling mean")
        if premium is not None:
            truth = premium.reindex(ts).to_numpy() * 1e4
            top.plot(x, truth - np.nanmean(truth) + np.nanmean(spread), lw=0.6, alpha=0.7,
                     label="true premium (bp, centred)")  # fmt: skip
        top.legend(loc="upper left", fontsize=8)
        top.set_ylabel("log spread (bp)")
        bottom.plot(x, z, lw=0.5, color="0.3")
        first = points[0]
        for level, style in ((first.entry_z, "--"), (first.exit_z, ":"), (first.stop_z, "-.")):
            bottom.axhline(level, ls=style, color="tab:red", lw=0.7)
            bottom.axhline(-level, ls=style, color="tab:red", lw=0.7)
        index = {t: i for i, t in enumerate(ts)}
        for record in result.records:
            if not record.decision.approved or record.intent.ts not in index:
                continue
            i = index[record.intent.ts]
            entry = record.intent.purpose is IntentPurpose.ENTRY
            bottom.plot(i, z[i], "^" if entry else "v", color="tab:green" if entry else "tab:red",
                        ms=5)  # fmt: skip
        bottom.set_ylabel("z-score")
        bottom.set_ylim(-max(6.0, first.stop_z * 1.2), max(6.0, first.stop_z * 1.2))
        bottom.set_xlabel("bar (trades: ^ entry, v exit/stop)")
        out["Spread and z-score with trades"] = _png(fig)
    return out


def _rows(values: dict[str, Any]) -> str:
    return "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(format_value(k, v))}</td></tr>"
        for k, v in values.items()
    )


def metrics_table(metrics: Metrics) -> str:
    """The scalar figures; the edge and the refusals have their own tables."""
    values = {k: v for k, v in metrics.as_dict().items() if not isinstance(v, dict)}
    return f"<table>{_rows(values)}</table>"


def edge_table(metrics: Metrics) -> str:
    edge = dict(metrics.as_dict()["edge"])
    failures = edge.pop("failures", None) or []
    text = "".join(f"<li>{html.escape(str(f))}</li>" for f in failures)
    return f"<table>{_rows(edge)}</table>" + (f"<ul>{text}</ul>" if text else "")


def rejections_table(metrics: Metrics) -> str:
    if not metrics.rejections:
        return "<p>none</p>"
    return f"<table>{_rows(dict(metrics.rejections))}</table>"


def distributions_table(result: BacktestResult, metrics: Metrics) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(symbol)}</td><td>{d.ex_date.isoformat()}</td>"
        f"<td>{d.amount:.4f}</td><td>{d.pay_date.isoformat()}</td></tr>"
        for symbol, paid in sorted(result.distributions.items())
        for d in sorted(paid, key=lambda d: d.ex_date)
    )
    head = "<tr><th>symbol</th><th>ex-date</th><th>USD per share</th><th>paid</th></tr>"
    return (
        f"<p>Booked on the shares held over their ex-dates: "
        f"{html.escape(format_value('distributions_usd', metrics.distributions_usd))} USD.</p>"
        f"<table>{head}{rows}</table>"
    )


def trades_table(result: BacktestResult, limit: int = 500) -> str:
    rows = []
    for record in result.records[:limit]:
        intent = record.intent
        when = datetime.fromtimestamp(intent.ts, UTC).astimezone(EXCHANGE_TIMEZONE)
        legs = "; ".join(f"{leg.side} {leg.quantity} {leg.kind} @{leg.limit_price:.2f}"
                         for leg in intent.legs)  # fmt: skip
        fills = "; ".join(f"{e.price:.2f}" for e in record.executions)
        status = (
            "approved"
            if record.decision.approved
            else "rejected: " + ", ".join(r.code for r in record.decision.reasons)
        )
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(c))}</td>"
                for c in (
                    when.strftime("%Y-%m-%d %H:%M"),
                    intent.purpose,
                    intent.action,
                    record.source,
                    legs,
                    status,
                    fills,
                )
            )
            + "</tr>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("time (NY)", "purpose", "action", "by", "legs", "decision", "fill prices")
    )
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def render_html(
    result: BacktestResult,
    metrics: Metrics,
    title: str,
    description: dict[str, Any],
    premium: pd.Series | None = None,
) -> str:
    images = "".join(
        f"<h2>{html.escape(name)}</h2><img alt='{html.escape(name)}' "
        f"src='data:image/png;base64,{data}'>"
        for name, data in charts(result, premium).items()
    )
    settings = html.escape(json.dumps(description, indent=2, default=str))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 8px;
text-align:left}}img{{max-width:100%}}</style></head><body>
<h1>{html.escape(title)}</h1>
<h2>Metrics</h2>{metrics_table(metrics)}
<h2>Edge</h2>{edge_table(metrics)}
<h2>Refused intents by reason</h2>{rejections_table(metrics)}
<h2>Distributions</h2>{distributions_table(result, metrics)}
{images}
<h2>Intents ({len(result.records)})</h2>{trades_table(result)}
<h2>Run</h2><pre>{settings}</pre>
</body></html>
"""


def write_report(
    path: Path,
    result: BacktestResult,
    metrics: Metrics,
    title: str,
    description: dict[str, Any],
    premium: pd.Series | None = None,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(result, metrics, title, description, premium))
    return path


# ---------------------------------------------------------------------------------------------
# Side by side: many configurations on the same seeded tapes (trading.backtest.compare)

_COMPARISON_COLUMNS = (
    ("pnl_usd", "P&L net (USD)", "{:,.0f}"),
    ("costs_usd", "costs (USD)", "{:,.0f}"),
    ("round_trips", "round trips", "{:.1f}"),
    ("hit_rate", "hit rate", "{:.0%}"),
    ("sharpe", "Sharpe", "{:.2f}"),
    ("max_drawdown", "max drawdown", "{:.2%}"),
    ("rejected_intents", "refused", "{:.0f}"),
    ("r2_levels", "R\u00b2 levels", "{:.2f}"),
    ("r2_daily_changes", "R\u00b2 1-day changes", "{:.2f}"),
)


def comparison_table(rows: list[dict[str, Any]]) -> str:
    """One line per (configuration, premium): the mean over seeds of each column, with the
    P&L of every seed beside it."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["config"], row["premium_bp"]), []).append(row)
    head = "".join(f"<th>{html.escape(label)} (mean)</th>" for _, label, _ in _COMPARISON_COLUMNS)
    body = []
    for (config, premium), group in groups.items():
        cells = []
        for key, _, fmt in _COMPARISON_COLUMNS:
            values = np.array([float(r[key]) for r in group], dtype=float)
            finite = values[np.isfinite(values)]
            cells.append(f"<td>{fmt.format(finite.mean()) if finite.size else 'n/a'}</td>")
        seeds = ", ".join(f"{r['seed']}: {r['pnl_usd']:,.0f}" for r in group)
        body.append(
            f"<tr><td>{html.escape(config)}</td><td>{premium:g}</td>{''.join(cells)}"
            f"<td>{html.escape(seeds)}</td></tr>"
        )
    return (
        f"<table><tr><th>configuration</th><th>premium (bp)</th>{head}"
        f"<th>P&amp;L by seed (USD)</th></tr>{''.join(body)}</table>"
    )


def comparison_chart(curves: dict[tuple[str, int], pd.DataFrame]) -> str:
    """Equity of every configuration, one panel per seed (a base64 PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = sorted({seed for _, seed in curves})
    fig, axes = plt.subplots(len(seeds), 1, figsize=(11, 3.2 * len(seeds)), squeeze=False)
    for axis, seed in zip(axes[:, 0], seeds, strict=True):
        for (config, curve_seed), frame in curves.items():
            if curve_seed == seed and not frame.empty:
                axis.plot(_times(frame["ts"].to_numpy()), frame["equity_usd"], label=config)
        axis.set_title(f"seed {seed}: equity (USD)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def write_comparison(
    path: Path,
    rows: list[dict[str, Any]],
    curves: dict[tuple[str, int], pd.DataFrame],
    title: str,
    description: dict[str, Any],
) -> Path:
    """The comparison report: the side-by-side table, the equity curves, the run's settings."""
    chart = f"<img alt='equity' src='data:image/png;base64,{comparison_chart(curves)}'>"
    settings = html.escape(json.dumps(description, indent=2, default=str))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1300px}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 8px;
text-align:left}}img{{max-width:100%}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Each configuration replays the same seeded tape; P&amp;L is net of commissions and the half
spread; R&sup2; is the spread against log(1 + ibsim's true premium).</p>
<h2>Side by side</h2>{comparison_table(rows)}
<h2>Equity</h2>{chart}
<h2>Run</h2><pre>{settings}</pre>
</body></html>
""")
    return path
