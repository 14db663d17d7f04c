"""The README documents every setting, and the two commands CI relies on exist."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from trading.cli import readme_with_settings

ROOT = Path(__file__).resolve().parents[2]


def test_readme_settings_table_is_current():
    readme = (ROOT / "README.md").read_text()
    assert readme_with_settings(readme) == readme, (
        "README settings table is stale: run `python -m trading settings --readme`"
    )


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make run" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def readme_backtest_commands() -> list[list[str]]:
    """The `python -m trading backtest ...` commands of the README's backtest block, as argv
    after `python -m trading` (continuation lines joined, comments dropped)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Backtests and the presets") :]
    block = section[section.index("```bash") + len("```bash") : section.index("```\n", 8)]
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        argv = shlex.split(line, comments=True)
        if argv:
            assert argv[:3] == ["python", "-m", "trading"], line
            commands.append(argv[3:])
    return commands


def _shortened(argv: list[str], gateway_port: int) -> list[str]:
    """The same command on a short range: three sessions from its start (one from IB, with
    the pacing window opened: the simulated gateway does not enforce it, and 60 requests in ten
    minutes would hold a test for ten), one seed, two sessions per seed, the test's gateway;
    everything else as written."""
    out = list(argv)
    ib = out[:2] == ["backtest", "ib"]
    if "--start" in out and "--end" in out:
        start = date.fromisoformat(out[out.index("--start") + 1])
        out[out.index("--end") + 1] = (start + timedelta(days=0 if ib else 2)).isoformat()
    if ib:
        out += ["--requests-per-10min", "1000"]
    if "--seeds" in out:
        i = out.index("--seeds") + 1
        while i + 1 < len(out) and not out[i + 1].startswith("--"):
            del out[i + 1]
    if "--sessions" in out:
        out[out.index("--sessions") + 1] = "2"
    if "--port" in out:
        out[out.index("--port") + 1] = str(gateway_port)
    return out


@pytest.mark.slow
@pytest.mark.timeout(900)  # six commands: 145 s alone, several times that on a loaded machine
def test_every_backtest_command_of_the_readme_runs_and_says_something(tmp_path):
    """Each command, in the README's order (the csv line reads the tape the sim line wrote),
    in a scratch directory, on short ranges, with a one-session z window (the warm-up it needs
    stays one session): it exits 0, and a run prints its figures and writes its report."""
    from trading.ibsim import SimConfig, SimulatedGateway

    commands = readme_backtest_commands()
    assert [c[:2] for c in commands] == [
        ["backtest", "sim"], ["backtest", "csv"], ["backtest", "ib"], ["backtest", "compare"],
        ["backtest", "research"], ["backtest", "--help"],
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_")}
    env["TRADING_STRATEGY__Z_WINDOW"] = "390"
    with SimulatedGateway(SimConfig(seed=1, speed=1.0), port=0) as gateway:
        for argv in commands:
            argv = _shortened(argv, gateway.port)
            done = subprocess.run(
                [sys.executable, "-m", "trading", *argv, *(["--no-progress"] if argv[1] in
                 ("sim", "csv", "ib") else [])],
                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            said = done.stdout + done.stderr
            assert done.returncode == 0, f"{argv}: {said[-3000:]}"
            if argv[1] in ("sim", "csv", "ib"):
                report = re.search(r"^report: (.+)$", done.stdout, re.M)
                assert report and (tmp_path / report[1]).exists(), said[-3000:]
                assert re.search(r"^intents\s+\d+", done.stdout, re.M), said[-3000:]
            if argv[1] == "sim":
                metrics = json.loads((tmp_path / "replica.json").read_text())
                # Warmed up, it has a spread (tracking the true premium) from the first session,
                # and it trades, or its edge gate says why not (three sessions are few).
                assert metrics["r_squared_vs_truth"] > 0.3, said[-3000:]
                assert metrics["intents"] > 0 or "failures" in done.stdout, said[-3000:]
                assert "no signal was possible" not in done.stdout
                assert "warm-up: 1 sessions before" in done.stderr
    assert (tmp_path / "reports" / "compare.html").exists()


def test_a_run_too_short_for_its_windows_says_no_signal_was_possible(tmp_path):
    """No warm-up and two sessions against the default 40-day z window: no intent, and the
    output says why instead of an empty report."""
    done = subprocess.run(
        [sys.executable, "-m", "trading", "backtest", "sim", "--seed", "1", "--start",
         "2026-09-01", "--end", "2026-09-02", "--warm-up-sessions", "0", "--no-progress",
         "--out", str(tmp_path / "r.html")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("TRADING_")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"^intents\s+0$", done.stdout, re.M)
    assert (
        "no signal was possible: the z-score needs 15,600 bars in its window "
        "(TRADING_STRATEGY__Z_WINDOW, 40 sessions) and this run had 780 (2.0 sessions)"
    ) in done.stdout
