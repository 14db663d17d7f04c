"""`make run` pointed at a Gateway that is not there: the dashboard comes up at once and says
why nothing flows; Ctrl-C stops everything at once, from the wait for the Gateway.

The runner (`python -m trading run`, what `make run` starts) runs as the operator runs it, in
its own process, with TRADING_SIM__ENABLED=false and nothing listening on the IB port.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support import eventually
from trading.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def _get(url: str) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.loads(response.read())
    except OSError:
        return {}


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _processes_with(marker: str) -> list[int]:
    """Pids of the processes whose environment holds `marker` (this run's children)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_without_a_gateway_the_dashboard_says_why_at_once_and_ctrl_c_stops_everything(tmp_path):
    ib_port, http_port = free_port(), free_port()
    assert not _listening(ib_port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_")}
    env.update(
        {
            "TRADING_SIM__ENABLED": "false",
            "TRADING_IB__HOST": "127.0.0.1",
            "TRADING_IB__PORT": str(ib_port),
            "TRADING_HTTP__PORT": str(http_port),
            "TRADING_METRICS__PORT": "0",
            "TRADING_REDIS__DATA_DIR": str(tmp_path / "redis"),
        }
    )
    marker = f"TRADING_HTTP__PORT={http_port}"
    output = tmp_path / "run.out"
    started = time.monotonic()
    with open(output, "wb") as sink:
        runner = subprocess.Popen(
            [sys.executable, "-m", "trading", "run"], cwd=ROOT, env=env, stdout=sink,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:

        def gateway_state() -> dict | None:
            states = _get(f"http://127.0.0.1:{http_port}/api/health").get("gateway", [])
            return next((s for s in states if s["status"] == "unreachable"), None)

        state = eventually(gateway_state, timeout_s=45, interval_s=0.2, what="gateway state")
        shown_after_s = time.monotonic() - started
        assert (state["service"], state["host"], state["port"]) == (
            "data-ingestion", "127.0.0.1", ib_port,
        )  # fmt: skip
        assert state["attempt"] >= 1 and 0 <= state["next_try_in_s"] <= 60
        assert "ConnectionRefused" in state["error"]
        # The runner waits for the Gateway before starting the strategy; the rest is up.
        services = {
            s["service"]: s["status"]
            for s in _get(f"http://127.0.0.1:{http_port}/api/health")["services"]
        }
        assert services["strategy"] == "silent" and services["visualization"] == "ok"
        # The old runner showed no dashboard before its 60 s wait for a backfill had ended.
        assert shown_after_s < 40, shown_after_s
        # ... and the terminal says it in words.
        eventually(
            lambda: f"IB Gateway unreachable at 127.0.0.1:{ib_port} (attempt" in output.read_text(),
            timeout_s=15, what="the runner's words",
        )  # fmt: skip
        children = _processes_with(marker)
        assert len(children) >= 5, children  # Redis, dashboard, ingestion, risk, monitoring

        stop_at = time.monotonic()
        runner.send_signal(signal.SIGINT)  # Ctrl-C, mid-wait for the Gateway
        assert runner.wait(timeout=30) == 0
        stopped_in_s = time.monotonic() - stop_at
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait(10)
    text = output.read_text()
    assert "stopped; nothing left running" in text
    assert not re.search(r"^\s*strategy \|", text, re.MULTILINE), "the strategy was started"
    assert stopped_in_s < 15, stopped_in_s
    assert not _listening(http_port)
    redis_port = int(re.search(r"embedded Redis on redis://127\.0\.0\.1:(\d+)", text)[1])
    assert not _listening(redis_port)
    assert _processes_with(marker) == []
