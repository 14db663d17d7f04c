"""`python -m trading backtest SOURCE ...`: replay history, print the metrics, write the report.

Sources:
  sim   ibsim's seeded market model:   backtest sim --seed 1 --start 2026-06-01 --end 2026-10-30
        (--premium-bp 50 --half-life-days 1; --export-csv PATH writes the tape in the CSV format)
  csv   a file in the documented format (trading/backtest/csvfile.py): backtest csv PATH
  ib    IB historical bars (reqHistoricalData): not implemented yet

Settings come from the environment like the live services (TRADING_STRATEGY__..., TRADING_RISK__
...); --preset, --hedge and --set group.field=value override them. The report is HTML
(--out, default reports/backtest-<UTC time>.html); --json PATH also writes the metrics as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trading.settings import HedgeMethod, Preset, SettingsError, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trading backtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sources = parser.add_subparsers(dest="source", required=True)
    sim = sources.add_parser("sim", help="ibsim's seeded market model")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--start", required=True, help="first session, YYYY-MM-DD")
    sim.add_argument("--end", required=True, help="last session, YYYY-MM-DD")
    sim.add_argument("--premium-bp", type=float, default=None, help="default TRADING_SIM__...")
    sim.add_argument("--half-life-days", type=float, default=None)
    sim.add_argument("--export-csv", type=Path, default=None, help="also write the tape as CSV")
    csv = sources.add_parser("csv", help="a CSV file (see trading/backtest/csvfile.py)")
    csv.add_argument("path", type=Path)
    ib = sources.add_parser("ib", help="IB historical bars (reqHistoricalData)")
    ib.add_argument("--start", required=True)
    ib.add_argument("--end", required=True)
    for sub in (sim, csv, ib):
        sub.add_argument("--preset", choices=[p.value for p in Preset], default=None)
        sub.add_argument("--hedge", choices=[h.value for h in HedgeMethod], default=None)
        sub.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="GROUP.FIELD=VALUE",
            help="a settings override, e.g. strategy.z_window=780 (repeatable)",
        )
        sub.add_argument("--out", type=Path, default=None, help="HTML report path")
        sub.add_argument("--json", type=Path, default=None, help="metrics as JSON")
        sub.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Settings overrides from --preset, --hedge and --set (ValueError naming a bad one)."""
    out: dict[str, dict[str, Any]] = {}
    for text in args.set:
        name, sep, value = text.partition("=")
        group, dot, field = name.partition(".")
        if not sep or not dot or not group or not field:
            raise ValueError(f"--set {text!r}: expected GROUP.FIELD=VALUE")
        out.setdefault(group, {})[field] = value
    if args.preset:
        out.setdefault("strategy", {})["preset"] = args.preset
    if args.hedge:
        out.setdefault("strategy", {})["hedge_method"] = args.hedge
    return out


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(**overrides(args))
        run, description = _run(args, settings)
    except (SettingsError, ValueError) as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 2
    from trading.backtest.report import format_value, write_report

    metrics = run.metrics.as_dict()
    width = max(len(k) for k in metrics)
    for name, value in metrics.items():
        print(f"{name:<{width}}  {format_value(name, value)}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path("reports") / f"backtest-{stamp}.html"
    title = f"Backtest: {description['source']} {metrics['start']} to {metrics['end']}"
    write_report(out, run.result, run.metrics, title, description, run.premium)
    print(f"report: {out}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(metrics, indent=2))
    return 0


def _run(args: argparse.Namespace, settings) -> tuple[Any, dict[str, Any]]:
    from trading.backtest.run import BARS_PER_SESSION, backtest_messages, backtest_sim
    from trading.backtest.sources import SimSource, parse_day

    progress = not args.no_progress
    description: dict[str, Any] = {
        "source": args.source,
        "strategy": settings.strategy.model_dump(mode="json"),
        "risk": settings.risk.model_dump(mode="json"),
    }
    if args.source == "sim":
        source = SimSource(
            seed=args.seed,
            start=parse_day(args.start),
            end=parse_day(args.end),
            premium_bp=settings.sim.premium_bp if args.premium_bp is None else args.premium_bp,
            premium_half_life_days=settings.sim.premium_half_life_days
            if args.half_life_days is None
            else args.half_life_days,
        )
        description["sim"] = {
            "seed": source.seed,
            "premium_bp": source.premium_bp,
            "premium_half_life_days": source.premium_half_life_days,
        }
        if args.export_csv:
            from trading.backtest.csvfile import write_messages

            rows = write_messages(source.messages(), args.export_csv)
            print(f"csv: {rows} rows written to {args.export_csv}", file=sys.stderr)
        return backtest_sim(settings, source, progress=progress), description
    if args.source == "csv":
        from trading.backtest.csvfile import read_messages

        messages = read_messages(args.path)
        description["path"] = str(args.path)
        sessions = len({int(m.ts_exchange // 86400) for m in messages if hasattr(m, "ts_exchange")})
        return backtest_messages(
            settings, messages, total_bars=sessions * BARS_PER_SESSION, progress=progress
        ), description
    parse_day(args.start), parse_day(args.end)
    # Not built yet: IB historical bars (TRADES/BID_ASK per instrument, options without
    # Greeks) need the broker's pacing limiter and translators; see docs/backtest.md.
    raise ValueError("the ib source is not implemented yet: use sim or csv")
