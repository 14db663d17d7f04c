"""The whole stack, as `make run` starts it, on ibsim: a premium blow-out is traded end to end.

Redis, ibsim and the five services run as separate processes (the runner behind `make run`).
The test shocks TLTW's premium through ibsim's admin API and checks what a user would see: both
legs of the entry filled; the whole pair on the dashboard's API (TLT +100 per buy-write unit, the
call short by the units under its OCC symbol, TLTW short) with a P&L equal to what the fills and
the marks imply; the exit; a flat book and a P&L equal to what the fills imply. The implied P&L
is computed here from `Streams.FILLS` alone, never from the book's code.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from tests.support import NO_DEMO, eventually
from trading import bus as b
from trading.redis_server import free_port
from trading.runner import Runner
from trading.settings import load_settings

pytestmark = pytest.mark.slow

Z_WINDOW = 120
SPEED = 600.0  # 10 simulated minutes per second: a trading day in 39 s


def _env(tmp_path: Path, http_port: int, admin_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_")}
    env.update(
        {
            "TRADING_REDIS__DATA_DIR": str(tmp_path / "redis"),
            "TRADING_HTTP__PORT": str(http_port),
            "TRADING_HTTP__TOKEN": "e2e-token",
            "TRADING_SIM__SEED": "3",
            "TRADING_SIM__SPEED": str(SPEED),
            "TRADING_SIM__ADMIN_PORT": str(admin_port),
            "TRADING_SIM__PREMIUM_BP": "2",  # a quiet premium, so the shock is the only signal
            "TRADING_STRATEGY__PRESET": "replica",
            "TRADING_STRATEGY__Z_WINDOW": str(Z_WINDOW),
            "TRADING_STRATEGY__ENTRY_Z": "6",  # far beyond the quiet premium's noise
            # The gate of the Kelly size is opened: a two-hour window of a quiet premium is too
            # short for the Engle-Granger test, and this test is about the pipeline.
            "TRADING_STRATEGY__COINTEGRATION_PVALUE": "0.99",
            "TRADING_STRATEGY__EDGE_GATE": "false",  # a short window: the stack is the subject
            "TRADING_STRATEGY__EXIT_Z": "0.5",
            # The quiet window fits an OU half-life of a few bars, so the default time stop (3
            # half-lives) closed the pair some 20 ms of wall time after its last fill at 600x:
            # no user (nor poll) could see the pair held. The exit then comes from the exit band
            # as the premium reverts, seconds later.
            "TRADING_STRATEGY__TIME_STOP_HALF_LIVES": "40",
            "TRADING_STRATEGY__STOP_Z": "50",
            "TRADING_STRATEGY__MIN_SPREAD_BP": "25",
            # At 600x a tenth of a wall second is a simulated minute, and under a loaded CI
            # machine an intent can take seconds (tens of simulated minutes) to become an
            # order: limits cross by 1% (risk's price band widened to allow it), so the entry
            # fills where it would at real speed instead of resting to the close.
            "TRADING_STRATEGY__ORDER_PRICE_OFFSET_BP": "100",
            "TRADING_RISK__PRICE_BAND_BP": "200",
            "TRADING_INGESTION__BACKFILL_DURATION": "1 D",
            "TRADING_RISK__STALE_AFTER_S": "30",
            "TRADING_METRICS__PORT": "0",
        }
    )
    return env


def _get(url: str, token: str | None = None, data: bytes | None = None) -> dict:
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read() or b"{}")


def _poll(url: str) -> dict:
    """GET for polling: a server still starting answers {} instead of raising."""
    try:
        return _get(url)
    except OSError:
        return {}


async def _read(url: str, stream: str, expect: type[b.M]) -> list[b.M]:
    bus = await b.Bus.connect(url, "e2e-test", attempts=5)
    try:
        return [e.message for e in await bus.read_after(stream, expect=expect)]
    finally:
        await bus.close()


async def _stream_length(url: str, stream: str) -> int:
    bus = await b.Bus.connect(url, "e2e-test", attempts=5)
    try:
        return await bus.redis.xlen(stream)
    finally:
        await bus.close()


def _fills(url: str) -> list[b.Fill]:
    return asyncio.run(_read(url, b.Streams.FILLS, b.Fill))


def _intents(url: str) -> list[b.OrderIntent]:
    return asyncio.run(_read(url, b.Streams.INTENTS, b.OrderIntent))


def _implied_pnl_usd(fills: list[b.Fill], marks: dict[int, float]) -> float:
    """P&L from the executions alone: the cash of every leg fill (sells in, buys out, option
    prices per share times the multiplier), less every commission (the BAG-level execution's
    too: it moves no cash of its own, its legs do), plus what is still held at its mark."""
    legs = [f for f in fills if f.sec_type != "BAG"]
    cash = math.fsum(
        (-1 if f.side == b.Side.BUY else 1) * f.quantity * f.price * f.multiplier for f in legs
    )
    commissions = math.fsum(f.commission for f in fills)
    held = _held(fills)
    multiplier = {f.con_id: f.multiplier for f in legs}
    value = math.fsum(held[c] * marks[c] * multiplier[c] for c in held if abs(held[c]) > 1e-9)
    return cash - commissions + value


def _held(fills: list[b.Fill]) -> dict[int, float]:
    """Net quantity by conId from the leg executions."""
    out: dict[int, float] = {}
    for f in fills:
        if f.sec_type != "BAG":
            signed = f.quantity if f.side == b.Side.BUY else -f.quantity
            out[f.con_id] = out.get(f.con_id, 0.0) + signed
    return out


def _occ_symbol(leg: b.IntentLeg) -> str:
    """The call's OCC local symbol: root padded to 6, yymmdd, C, strike x 1000 in 8 digits."""
    assert leg.option_expiry and leg.option_strike
    return f"{leg.symbol:<6}{leg.option_expiry[2:]}C{round(leg.option_strike * 1000):08d}"


def stack_runner(tmp_path: Path, runner_type: type[Runner] = Runner) -> tuple[Runner, int, int]:
    """The runner of this scenario (in-process children, or containers), with its dashboard
    and ibsim admin ports."""
    http_port, admin_port = free_port(), free_port()
    env = _env(tmp_path, http_port, admin_port)
    settings = load_settings(
        redis={"data_dir": str(tmp_path / "redis")},
        sim={"seed": 3, "speed": SPEED, "admin_port": admin_port, "premium_bp": 2.0, **NO_DEMO},
    )
    runner = runner_type(settings, json_logs=True, env=env, log_dir=tmp_path / "logs")
    return runner, http_port, admin_port


def test_premium_blowout_is_entered_filled_shown_exited_and_accounted(tmp_path):
    runner, http_port, admin_port = stack_runner(tmp_path)
    premium_blowout_is_entered_filled_shown_exited_and_accounted(
        runner, http_port, admin_port, tmp_path / "logs"
    )


def premium_blowout_is_entered_filled_shown_exited_and_accounted(
    runner: Runner, http_port: int, admin_port: int, log_dir: Path
) -> None:
    """The scenario, on a runner not yet started (stopped here, even on failure)."""
    try:
        runner.start()
        redis_url = runner.env["TRADING_REDIS__URL"]
        dashboard = f"http://127.0.0.1:{http_port}"
        admin = f"http://127.0.0.1:{admin_port}"

        # The system is up: data flowing, a spread point on the dashboard, and a full z window
        # of live bars behind it (the Kelly size needs its fits).
        eventually(
            lambda: _poll(f"{dashboard}/api/spread").get("latest"), timeout_s=90, what="spread"
        )
        eventually(
            lambda: asyncio.run(_stream_length(redis_url, b.Streams.SPREAD)) > Z_WINDOW + 30,
            timeout_s=90,
            what="a z window of live bars",
        )

        # TLTW's premium blows out to 150 bp over NAV: TLTW is rich, so SHORT_SPREAD.
        shock_ts = datetime.fromisoformat(_get(f"{admin}/truth")["time"]).timestamp()
        _get(f"{admin}/faults/shock_premium", data=json.dumps({"bp": 150.0}).encode())
        entry = eventually(
            lambda: [
                i
                for i in _intents(redis_url)
                if i.purpose == b.IntentPurpose.ENTRY and i.ts >= shock_ts
            ],
            timeout_s=90,
            what="an entry intent",
        )[0]
        assert entry.action == b.SignalAction.ENTER_SHORT_SPREAD
        sides = {leg.kind: leg.side for leg in entry.legs}
        assert sides == {b.LegKind.STOCK: b.Side.SELL, b.LegKind.BUY_WRITE: b.Side.BUY}

        # Both legs of the entry fill; the dashboard shows the position.
        def entry_filled() -> bool:
            fills = [f for f in _fills(redis_url) if f.intent_id == entry.intent_id]
            return {f.symbol for f in fills if f.sec_type == "STK"} >= {"TLT", "TLTW"} and any(
                f.sec_type == "OPT" for f in fills
            )

        eventually(entry_filled, timeout_s=60, what="both legs of the entry filled")

        # The whole pair on the dashboard: TLT +100 per unit, the call short, TLTW short, and
        # a P&L that is the fills' cash plus the holdings at the marks of the same snapshot.
        bw_leg = next(leg for leg in entry.legs if leg.kind == b.LegKind.BUY_WRITE)
        tltw_leg = next(leg for leg in entry.legs if leg.kind == b.LegKind.STOCK)
        expected = {
            "TLT": 100.0 * bw_leg.quantity,
            _occ_symbol(bw_leg): -float(bw_leg.quantity),
            "TLTW": -float(tltw_leg.quantity),
        }

        def pair_on_dashboard() -> dict | None:
            panel = _poll(f"{dashboard}/api/book")
            held = {p["local_symbol"]: p["quantity"] for p in panel.get("positions") or []}
            return panel if {k: q for k, q in held.items() if q} == expected else None

        panel = eventually(pair_on_dashboard, timeout_s=30, what=f"the pair {expected} shown")
        entry_fills = [f for f in _fills(redis_url) if f.intent_id == entry.intent_id]
        shown = {p["con_id"]: p for p in panel["positions"] if p["quantity"]}
        held = {c: q for c, q in _held(entry_fills).items() if q}
        assert {shown[c]["local_symbol"]: q for c, q in held.items()} == expected
        marks = {c: p["market_price"] for c, p in shown.items()}
        assert all(m is not None and m > 0 for m in marks.values()), marks
        assert panel["pnl"]["total"] == pytest.approx(
            _implied_pnl_usd(entry_fills, marks), abs=0.01
        )

        # The premium reverts (one-day half-life): the exit follows and the book goes flat.
        exit_intent = eventually(
            lambda: [
                i for i in _intents(redis_url)
                if i.purpose in (b.IntentPurpose.EXIT, b.IntentPurpose.STOP)
            ],
            timeout_s=120,
            what="an exit intent",
        )[0]  # fmt: skip
        assert {leg.kind: leg.side for leg in exit_intent.legs} == {
            b.LegKind.STOCK: b.Side.BUY,
            b.LegKind.BUY_WRITE: b.Side.SELL,
        }

        def flat() -> bool:
            # Seen once under load (containerised run): the dashboard flat while the fills read
            # just after still summed to -153 of one leg. Both must agree; a fill that never
            # reaches the stream still fails here, after the timeout.
            positions = _get(f"{dashboard}/api/book").get("positions") or []
            held = {c: q for c, q in _held(_fills(redis_url)).items() if abs(q) > 1e-9}
            return all(abs(p["quantity"]) < 1e-9 for p in positions) and not held

        eventually(flat, timeout_s=60, what="flat after the exit, on the dashboard and in fills")

        # P&L equals what the fills imply: nothing is held, so the cash less the commissions.
        fills = _fills(redis_url)
        pnl = _get(f"{dashboard}/api/book")["pnl"]
        assert pnl["total"] == pytest.approx(_implied_pnl_usd(fills, {}), abs=0.01)
        assert pnl["unrealized"] == pytest.approx(0.0, abs=0.01)
    finally:
        runner.stop()
        for log in sorted(log_dir.glob("*.log")):
            errors = [
                line for line in log.read_text().splitlines() if '"log.level": "error"' in line
            ]
            if errors:
                print(f"--- {log.name}: {len(errors)} error lines, first: {errors[0][:500]}")
