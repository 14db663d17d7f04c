"""``python -m trading.ibsim`` serves the real client on the given port and stops on SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import ib_async

from tests.ibsim.clients import connected


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_listening(port: int, process: subprocess.Popen, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"ibsim did not listen on {port} within {timeout_s}s")


async def test_command_line_gateway_serves_a_client():
    port = _free_port()
    command = [sys.executable, "-m", "trading.ibsim", "--port", str(port), "--seed", "3"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        _wait_listening(port, process)
        async with connected(ib_async, port) as ib:
            (tlt,) = await ib.qualifyContractsAsync(ib_async.Stock("TLT", "SMART", "USD"))
            assert tlt.conId == 15547841
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
