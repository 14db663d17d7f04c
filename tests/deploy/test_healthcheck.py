"""`python -m trading.healthcheck`: the liveness probe reads the service's own heartbeat."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.support import async_eventually
from trading.aio import stop_tasks
from trading.bus import Heartbeat, Keys, encode
from trading.healthcheck import check_heartbeat, check_tcp, judge_heartbeat, main
from trading.redis_server import free_port
from trading.services.shell import serve
from trading.settings import load_settings

NOW_S = 1_800_000_000.0


def beat(status: str = "ok", ts: float = NOW_S, service: str = "strategy") -> bytes:
    return encode(Heartbeat(service, ts, status, {"bars": 3}))


# The verdict on stored bytes -----------------------------------------------------------------


def test_fresh_ok_heartbeat_is_healthy():
    assert judge_heartbeat(beat(ts=NOW_S - 1.0), "strategy", NOW_S, max_age_s=6.0).healthy


def test_degraded_and_starting_services_stay_alive():
    # Reconnecting to the broker is not cured by a restart.
    for status in ("degraded", "starting"):
        assert judge_heartbeat(beat(status), "strategy", NOW_S, max_age_s=6.0).healthy


def test_missing_heartbeat_is_unhealthy():
    verdict = judge_heartbeat(None, "strategy", NOW_S, max_age_s=6.0)
    assert not verdict.healthy
    assert Keys.heartbeat("strategy") in verdict.reason


def test_heartbeat_older_than_max_age_is_unhealthy():
    assert judge_heartbeat(beat(ts=NOW_S - 6.0), "strategy", NOW_S, max_age_s=6.0).healthy
    assert not judge_heartbeat(beat(ts=NOW_S - 6.01), "strategy", NOW_S, max_age_s=6.0).healthy


def test_heartbeat_from_the_future_beyond_max_age_is_unhealthy():
    assert judge_heartbeat(beat(ts=NOW_S + 1.0), "strategy", NOW_S, max_age_s=6.0).healthy
    verdict = judge_heartbeat(beat(ts=NOW_S + 60.0), "strategy", NOW_S, max_age_s=6.0)
    assert not verdict.healthy
    assert "future" in verdict.reason


@pytest.mark.parametrize("status", ["failing", "error"])
def test_failing_status_is_unhealthy(status):
    assert not judge_heartbeat(beat(status), "strategy", NOW_S, max_age_s=6.0).healthy


def test_heartbeat_of_another_service_is_unhealthy():
    raw = beat(service="risk-management")
    assert not judge_heartbeat(raw, "strategy", NOW_S, max_age_s=6.0).healthy


@pytest.mark.parametrize("raw", [b"not json", b'{"kind": "heartbeat"}', b'{"kind": "quote"}'])
def test_malformed_heartbeat_is_unhealthy(raw):
    verdict = judge_heartbeat(raw, "strategy", NOW_S, max_age_s=6.0)
    assert not verdict.healthy
    assert "malformed" in verdict.reason


# Against a real Redis and a real service shell -----------------------------------------------


async def test_probe_follows_a_running_service_heartbeat_and_its_expiry(redis_url):
    settings = load_settings(redis={"url": redis_url}, heartbeat_interval_s=0.1)

    async def idle(ctx) -> None:
        ctx.status["state"] = "ok"
        await asyncio.Event().wait()

    task = asyncio.create_task(serve("strategy", idle, settings, redis_url, metrics_port=0))
    try:

        async def healthy() -> bool:
            return (await check_heartbeat(redis_url, "strategy", max_age_s=0.3)).healthy

        await async_eventually(healthy, timeout_s=10, what="heartbeat seen")
        other = await check_heartbeat(redis_url, "risk-management", max_age_s=0.3)
        assert not other.healthy
    finally:
        await stop_tasks([task])

    async def expired() -> bool:
        return not (await check_heartbeat(redis_url, "strategy", max_age_s=0.3)).healthy

    # The key's TTL is three intervals: once the service stops, the probe fails.
    await async_eventually(expired, timeout_s=5, what="heartbeat expired")


async def test_probe_reports_a_service_that_says_it_is_failing(redis_url, bus):
    await bus.beat(Heartbeat("monitoring", time.time(), "failing", {"why": "x"}), ttl_s=30)
    verdict = await check_heartbeat(redis_url, "monitoring", max_age_s=6.0)
    assert not verdict.healthy
    assert "failing" in verdict.reason


async def test_unreachable_redis_is_unhealthy_within_the_timeout():
    started = time.monotonic()
    verdict = await check_heartbeat(
        f"redis://127.0.0.1:{free_port()}/0", "strategy", max_age_s=6.0, timeout_s=1.0
    )
    assert not verdict.healthy
    assert "unreachable" in verdict.reason
    assert time.monotonic() - started < 5.0


def test_command_line_exit_codes_match_the_heartbeat(redis_server, redis_url):
    # The exact command the Dockerfile HEALTHCHECK and the Kubernetes probe run.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_")}
    env["TRADING_REDIS__URL"] = redis_url
    command = [sys.executable, "-m", "trading.healthcheck", "strategy"]

    absent = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert absent.returncode == 1, absent.stderr

    import redis

    client = redis.Redis.from_url(redis_url)
    client.set(Keys.heartbeat("strategy"), encode(Heartbeat("strategy", time.time(), "ok")))
    client.close()
    present = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert present.returncode == 0, present.stderr


def test_command_line_refuses_a_bad_configuration(monkeypatch, capsys):
    for key in [k for k in os.environ if k.startswith("TRADING_")]:
        monkeypatch.delenv(key)
    assert main(["strategy"]) == 2  # no TRADING_REDIS__URL: nothing to read
    monkeypatch.setenv("TRADING_REDIS__URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("TRADING_IB__PORT", "4001")  # live port without allow_live
    assert main(["strategy"]) == 2
    assert "TRADING_IB__PORT" in capsys.readouterr().err


def test_tcp_check_sees_a_listener_and_its_absence():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert check_tcp(port, timeout_s=1.0).healthy
    assert not check_tcp(port, timeout_s=1.0).healthy
