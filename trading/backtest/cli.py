"""`python -m trading backtest SOURCE ...`: replay history, print the metrics, write the report.

Sources:
  sim   ibsim's seeded market model:   backtest sim --seed 1 --start 2026-06-01 --end 2026-10-30
        (--premium-bp 50 --half-life-days 1; --export-csv PATH writes the tape in the CSV format)
  csv   a file in the documented format (trading/backtest/csvfile.py): backtest csv PATH
  daily public daily data: closes of TLT and TLTW, TLTW's NAV, distributions, and option quotes
        or a daily implied vol (trading/backtest/daily.py); daily bars:
        backtest daily data.csv --set strategy.bar_seconds=86400 --set strategy.z_window=40
        --set strategy.ols_window=20 --set strategy.refit_bars=1
  ib    IB historical bars (reqHistoricalData) from the gateway in settings (TRADING_IB__HOST/PORT;
        --host/--port/--client-id override): backtest ib --start 2026-10-26 --end 2026-10-30
        (--extra-csv PATH adds TLTW NAV and distributions, which IB has no history of)

Research mode (vectorized over whole arrays, no engines; for parameter sweeps, see
docs/backtest.md): backtest research --seed 2 --start 2026-06-01 --end 2026-10-30 --events
(the options of `python -m trading.backtest.vectorized`).

Side by side (presets and hedge methods on the same seeded tapes, HTML report with the table and
the equity curves): backtest compare --seeds 1 2 3 4 5 --sessions 150 --suite hedges \
    --html reports/compare.html (the options of `python -m trading.backtest.compare`).

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

from trading.domain.common import HedgeMethod, Preset
from trading.settings import SettingsError, load_settings


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
    sim.add_argument(
        "--premium-drift-bp-year",
        type=float,
        default=None,
        help="TLTW's NAV drifts against its index by this much a year (default TRADING_SIM__...)",
    )
    sim.add_argument(
        "--warm-up-sessions",
        type=int,
        default=None,
        help="sessions before --start replayed with trading off (default: what the z window, "
        "and an OLS hedge's window, need; 0 = none)",
    )
    sim.add_argument("--export-csv", type=Path, default=None, help="also write the tape as CSV")
    csv = sources.add_parser("csv", help="a CSV file (see trading/backtest/csvfile.py)")
    csv.add_argument("path", type=Path)
    daily = sources.add_parser("daily", help="public daily data (trading/backtest/daily.py)")
    daily.add_argument("path", type=Path)
    daily.add_argument("--rate", type=float, default=None, help="default ingestion.backfill_rate")
    daily.add_argument(
        "--div-yield", type=float, default=None, help="default ingestion.backfill_div_yield"
    )
    daily.add_argument("--expiries", type=int, default=2, help="modelled monthlies per session")
    daily.add_argument(
        "--strike-range", type=float, nargs=2, default=(0.85, 1.15), metavar=("LOW", "HIGH"),
        help="modelled strikes: whole dollars in LOW..HIGH x TLT's close",
    )  # fmt: skip
    ib = sources.add_parser("ib", help="IB historical bars (reqHistoricalData)")
    ib.add_argument("--start", required=True, help="first session, YYYY-MM-DD")
    ib.add_argument("--end", required=True, help="last session, YYYY-MM-DD (completed)")
    ib.add_argument("--host", default=None, help="gateway host (default TRADING_IB__HOST)")
    ib.add_argument("--port", type=int, default=None, help="gateway port (TRADING_IB__PORT)")
    ib.add_argument("--client-id", type=int, default=None, help="default: backtest's (13)")
    ib.add_argument("--expiries", type=int, default=2, help="front monthlies per session")
    ib.add_argument(
        "--strike-range",
        type=float,
        nargs=2,
        default=(0.97, 1.05),
        metavar=("LOW", "HIGH"),
        help="calls with strikes in LOW..HIGH x the session's opening mid (sticky once asked)",
    )
    ib.add_argument(
        "--extra-csv",
        type=Path,
        default=None,
        help="nav and dividend rows in the csv source's format, merged into the tape",
    )
    ib.add_argument(
        "--requests-per-10min",
        type=int,
        default=60,
        help="pacing: historical requests in any 10 minutes (IB's small-bar rule: 60)",
    )
    for sub in (sim, csv, daily, ib):
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
    if argv[:1] == ["research"]:
        from trading.backtest.vectorized import main as research

        return research(argv[1:])
    if argv[:1] == ["compare"]:
        from trading.backtest.compare import main as compare

        compare(argv[1:])
        return 0
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(**overrides(args))
        run, description = _run(args, settings)
    except (SettingsError, ValueError) as exc:
        print(f"backtest: {exc}", file=sys.stderr)
        return 2
    from trading.backtest.report import format_value, write_report
    from trading.backtest.run import no_signal_reason

    reason = no_signal_reason(settings, run)
    if reason:
        description["no_signal"] = reason
    metrics = run.metrics.as_dict()
    width = max(len(k) for k in metrics)
    for name, value in metrics.items():
        if isinstance(value, dict):
            print(f"{name}:")
            for key, item in value.items():
                print(f"  {key:<{width - 2}}  {format_value(key, item)}")
        else:
            print(f"{name:<{width}}  {format_value(name, value)}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path("reports") / f"backtest-{stamp}.html"
    title = f"Backtest: {description['source']} {metrics['start']} to {metrics['end']}"
    write_report(out, run.result, run.metrics, title, description, run.premium)
    if reason:
        print(reason)
    print(f"report: {out}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(metrics, indent=2))
    return 0


def _run(args: argparse.Namespace, settings) -> tuple[Any, dict[str, Any]]:
    from trading.backtest.run import (
        BARS_PER_SESSION,
        backtest_messages,
        backtest_sim,
        warm_up_sessions,
        window_bars,
    )
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
            premium_drift_bp_year=settings.sim.premium_drift_bp_year
            if args.premium_drift_bp_year is None
            else args.premium_drift_bp_year,
            warm_up_sessions=warm_up_sessions(settings)
            if args.warm_up_sessions is None
            else args.warm_up_sessions,
            pair=settings.pair_spec(),
        )
        if source.warm_up_sessions:
            days = source.warm_up_days()
            description["warm_up"] = (
                f"{len(days)} sessions before {source.start} ({days[0]} to {days[-1]}) replayed "
                f"with trading off, so the z window ({window_bars(settings):,} bars) is full "
                "from the first session"
            )
            print(f"warm-up: {description['warm_up']}", file=sys.stderr)
        description["sim"] = {
            "seed": source.seed,
            "premium_bp": source.premium_bp,
            "premium_half_life_days": source.premium_half_life_days,
            "premium_drift_bp_year": source.premium_drift_bp_year,
        }
        if args.export_csv:
            from trading.backtest.csvfile import write_messages

            rows = write_messages(source.messages(), args.export_csv)
            print(f"csv: {rows} rows written to {args.export_csv}", file=sys.stderr)
        return backtest_sim(settings, source, progress=progress), description
    if args.source == "csv":
        from trading.backtest.csvfile import read_messages

        messages = read_messages(args.path, settings.pair_spec())
        description["path"] = str(args.path)
        sessions = len({int(m.ts_exchange // 86400) for m in messages if hasattr(m, "ts_exchange")})
        return backtest_messages(
            settings, messages, total_bars=sessions * BARS_PER_SESSION, progress=progress
        ), description
    if args.source == "daily":
        return _run_daily(args, settings, description, progress)
    return _run_ib(args, settings, description, progress)


def _run_daily(
    args: argparse.Namespace, settings, description: dict[str, Any], progress: bool
) -> tuple[Any, dict[str, Any]]:
    """The daily source: one close a session, so daily bars (a session's bar or longer)."""
    from trading.backtest.daily import DailyModel, daily_messages
    from trading.backtest.run import backtest_messages
    from trading.bus import OptionChain
    from trading.domain.market_hours import REGULAR_SESSION_SECONDS

    if settings.strategy.bar_seconds < REGULAR_SESSION_SECONDS:
        raise ValueError(
            f"the daily source has one close a session: set --set strategy.bar_seconds=86400 "
            f"(TRADING_STRATEGY__BAR_SECONDS is {settings.strategy.bar_seconds}) and windows "
            f"in sessions (z_window, ols_window, refit_bars)"
        )
    ingestion = settings.ingestion
    low, high = args.strike_range
    model = DailyModel(
        rate=ingestion.backfill_rate if args.rate is None else args.rate,
        div_yield=ingestion.backfill_div_yield if args.div_yield is None else args.div_yield,
        expiries=args.expiries,
        strike_low=low,
        strike_high=high,
    )
    messages = daily_messages(args.path, model, pair=settings.pair_spec())
    description["path"] = str(args.path)
    description["daily_model"] = {
        "rate": model.rate, "div_yield": model.div_yield, "expiries": model.expiries,
        "strike_range": [model.strike_low, model.strike_high],
    }  # fmt: skip
    sessions = len({m.ts for m in messages if isinstance(m, OptionChain)})
    run = backtest_messages(settings, messages, total_bars=sessions, progress=progress)
    return run, description


def _run_ib(
    args: argparse.Namespace, settings, description: dict[str, Any], progress: bool
) -> tuple[Any, dict[str, Any]]:
    """The ib source: fetch the bars (paced), turn them into bus messages, replay them."""
    from trading.backtest.ibsource import (
        IBHistoryRequest,
        TapeStats,
        fetch_history,
        read_extra,
        tape_messages,
    )
    from trading.backtest.run import BARS_PER_SESSION, backtest_messages
    from trading.backtest.sources import parse_day
    from trading.broker.pacing import PacingRules
    from trading.bus import EtfNav, Quote
    from trading.settings import IBSettings

    changes = {
        name: value
        for name, value in (("host", args.host), ("port", args.port))
        if value is not None
    }
    try:
        ib_settings = IBSettings.model_validate({**settings.ib.model_dump(), **changes})
    except Exception as exc:  # pydantic's ValidationError: name the option
        raise ValueError(f"--host/--port: {exc}") from None
    client_id = args.client_id if args.client_id is not None else settings.ib_client_id("backtest")
    if client_id < 0:
        raise ValueError(f"--client-id {client_id} must be >= 0")
    if args.requests_per_10min < 1:
        raise ValueError(f"--requests-per-10min {args.requests_per_10min} must be >= 1")
    low, high = args.strike_range
    request = IBHistoryRequest(
        start=parse_day(args.start),
        end=parse_day(args.end),
        expiries=args.expiries,
        strike_low=low,
        strike_high=high,
        rules=PacingRules(window_limit=args.requests_per_10min),
        pair=settings.pair_spec(),
    )
    extra = read_extra(args.extra_csv, request.pair) if args.extra_csv else []
    tape = fetch_history(ib_settings, client_id, request, progress=progress)
    stats = TapeStats()
    ingestion = settings.ingestion
    messages = tape_messages(
        tape,
        ingestion.backfill_rate,
        ingestion.backfill_div_yield,
        ingestion.max_implied_vol,
        extra,
        stats,
    )
    for missing in tape.missing[:20]:
        print(f"ib: missing {missing}", file=sys.stderr)
    if len(tape.missing) > 20:
        print(f"ib: ... and {len(tape.missing) - 20} more missing", file=sys.stderr)
    if not any(isinstance(m, Quote) for m in messages):
        raise ValueError(
            f"IB gave no TLT/TLTW quotes for {request.start}..{request.end} "
            f"({len(tape.missing)} requests without data)"
        )
    description["ib"] = {
        "gateway": f"{ib_settings.host}:{ib_settings.port}",
        "client_id": client_id,
        "sessions": len(tape.sessions),
        "requests": tape.requests,
        "calls": len(tape.options),
        "missing": [str(m) for m in tape.missing],
        "left_out": stats.as_dict(),
        "extra_csv": str(args.extra_csv) if args.extra_csv else None,
        "nav": "from --extra-csv" if any(isinstance(m, EtfNav) for m in extra) else "none",
    }
    run = backtest_messages(
        settings, messages, total_bars=len(tape.sessions) * BARS_PER_SESSION, progress=progress
    )
    return run, description
