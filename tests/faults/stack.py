"""The whole stack on ibsim for the fault suite: its processes, its faults and what it holds.

Redis (with its append-only file, so it can be killed and restarted), ibsim (admin API on) and
the five services run as separate processes through the runner behind `make run`, each on a
free port, at 600x. Every read goes to the source: the broker's truth from ibsim's admin API,
the system's beliefs from Redis (the keys and streams the services write).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from tests.support import NO_DEMO
from trading import bus as b
from trading.redis_server import free_port
from trading.runner import SERVICES, Runner
from trading.settings import load_settings

SPEED = 600.0
"""Simulated seconds per wall second: ten one-minute bars a second."""
Z_WINDOW = 120
Z_WINDOW_WALL_S = 1.25 * Z_WINDOW * 60.0 / SPEED
"""Wall seconds for a shock to leave the z window (one-minute bars), with a margin."""
HEARTBEAT_SERVICES = tuple(name for name, _ in SERVICES)
ENTRY_BP = 150.0
"""The premium shock that makes the strategy enter (the quiet premium is 2 bp)."""


def stack_env(workdir: Path, http_port: int, admin_port: int) -> dict[str, str]:
    """The settings of the tests' whole-stack runs (see tests/e2e/test_stack.py for why each
    differs from the defaults); the legging timeout and the acknowledgement bound are short,
    so faults resolve in seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_")}
    env.update(
        {
            "TRADING_REDIS__DATA_DIR": str(workdir / "redis"),
            "TRADING_HTTP__PORT": str(http_port),
            "TRADING_HTTP__TOKEN": "faults-token",
            "TRADING_SIM__SEED": "3",
            "TRADING_SIM__SPEED": str(SPEED),
            "TRADING_SIM__ADMIN_PORT": str(admin_port),
            "TRADING_SIM__PREMIUM_BP": "2",
            "TRADING_STRATEGY__PRESET": "replica",
            "TRADING_STRATEGY__Z_WINDOW": str(Z_WINDOW),
            "TRADING_STRATEGY__ENTRY_Z": "6",
            "TRADING_STRATEGY__COINTEGRATION_PVALUE": "0.99",
            "TRADING_STRATEGY__EXIT_Z": "0.5",
            "TRADING_STRATEGY__TIME_STOP_HALF_LIVES": "40",
            "TRADING_STRATEGY__STOP_Z": "50",
            "TRADING_STRATEGY__MIN_SPREAD_BP": "25",
            "TRADING_STRATEGY__ORDER_PRICE_OFFSET_BP": "100",
            "TRADING_RISK__PRICE_BAND_BP": "200",
            "TRADING_RISK__STALE_AFTER_S": "30",
            "TRADING_RISK__LEGGING_TIMEOUT_S": "5",
            "TRADING_RISK__ACK_TIMEOUT_S": "2",
            "TRADING_INGESTION__BACKFILL_DURATION": "1 D",
            "TRADING_INGESTION__SILENCE_S": "3",
            "TRADING_METRICS__PORT": "0",
            "TRADING_HEARTBEAT_INTERVAL_S": "0.5",
        }
    )
    return env


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.1):
    """Poll until `condition()` is truthy (returned); TimeoutError naming `what` if not."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = condition()
        except (OSError, redis.RedisError, ValueError):
            value = None  # a server restarting answers nothing for a moment
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout_s:.0f} s: {what}")
        time.sleep(every_s)


@dataclass
class Stack:
    """One whole stack under `workdir` (logs in workdir/logs); `start()`, then `stop()`."""

    workdir: Path
    runner: Runner | None = None
    admin_port: int = 0
    http_port: int = 0
    url: str = ""
    last_shock: float = -1e9
    _redis: redis.Redis | None = None

    def start(self, service_env: dict[str, dict[str, str]] | None = None) -> Stack:
        self.http_port, self.admin_port = free_port(), free_port()
        env = stack_env(self.workdir, self.http_port, self.admin_port)
        settings = load_settings(
            redis={"data_dir": str(self.workdir / "redis")},
            sim={
                "seed": 3,
                "speed": SPEED,
                "admin_port": self.admin_port,
                "premium_bp": 2.0,
                **NO_DEMO,
            },
        )
        self.runner = Runner(settings, json_logs=True, env=env, log_dir=self.workdir / "logs")
        self.runner.service_env = dict(service_env or {})
        self.runner.start()
        self.url = self.runner.env["TRADING_REDIS__URL"]
        self._redis = redis.Redis.from_url(self.url, socket_timeout=2)
        wait_for(
            lambda: self.redis.xlen(b.Streams.SPREAD) > Z_WINDOW + 30,
            120,
            "a z window of live bars",
        )
        return self

    def stop(self) -> None:
        if self._redis is not None:
            self._redis.close()
        if self.runner is not None:
            self.runner.stop()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def redis(self) -> redis.Redis:
        assert self._redis is not None, "the stack is not started"
        return self._redis

    # the broker ---------------------------------------------------------------------------

    def _admin(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body or {}).encode() if method == "POST" else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.admin_port}{path}", data=data, method=method
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def fault(self, name: str, **arguments: Any) -> None:
        self._admin("POST", f"/faults/{name}", arguments)

    def truth(self) -> dict:
        """The broker's orders, executions, positions and lost orders (ibsim's own records)."""
        return self._admin("GET", "/broker")

    def market_time(self) -> float:
        from datetime import datetime

        return datetime.fromisoformat(self._admin("GET", "/truth")["time"]).timestamp()

    def shock(self, bp: float) -> float:
        """TLTW's premium to `bp`; returns the market time of the shock. A shock waits until
        the last one has left the z window: a window that still holds a jump of 250 bp has a
        standard deviation that makes the next jump a z of 2 or 3, not an entry."""
        time.sleep(max(0.0, self.last_shock + Z_WINDOW_WALL_S - time.monotonic()))
        ts = self.market_time()
        self.fault("shock_premium", bp=bp)
        self.last_shock = time.monotonic()
        return ts

    # processes ----------------------------------------------------------------------------

    def kill(self, service: str) -> None:
        assert self.runner is not None
        self.runner.kill(service)

    def restart(self, service: str, env: dict[str, str] | None = None) -> None:
        assert self.runner is not None
        self.runner.restart(service, env)

    def running(self, service: str) -> bool:
        assert self.runner is not None
        return self.runner.child(service).proc.poll() is None

    def kill_redis(self) -> None:
        assert self.runner is not None and self.runner.redis is not None
        self.runner.redis.kill()

    def start_redis(self) -> None:
        assert self.runner is not None and self.runner.redis is not None
        self.runner.redis.start()

    # what the system believes (Redis) -----------------------------------------------------

    def stream(self, name: str, kind: type[b.M]) -> list[b.M]:
        return [b.decode(raw[b"m"], kind) for _, raw in self.redis.xrange(name)]

    def intents(self) -> list[b.OrderIntent]:
        return self.stream(b.Streams.INTENTS, b.OrderIntent)

    def decisions(self) -> list[b.RiskDecision]:
        return self.stream(b.Streams.DECISIONS, b.RiskDecision)

    def alerts(self) -> list[b.Alert]:
        return self.stream(b.Streams.ALERTS, b.Alert)

    def records(self) -> dict[str, dict]:
        """risk's record of every intent it decided (status, decision, legs)."""
        return {
            k.decode(): json.loads(v) for k, v in self.redis.hgetall(b.Keys.INTENT_STATUS).items()
        }

    def positions(self) -> dict[int, float]:
        """The book's non-zero positions as risk last published them."""
        raw = self.redis.hgetall(b.Keys.POSITIONS)
        out = {}
        for value in raw.values():
            position = b.decode(value, b.Position)
            if abs(position.quantity) > 1e-9:
                out[position.con_id] = position.quantity
        return out

    def heartbeats(self) -> dict[str, b.Heartbeat | None]:
        out = {}
        for service in HEARTBEAT_SERVICES:
            raw = self.redis.get(b.Keys.heartbeat(service))
            out[service] = None if raw is None else b.decode(raw, b.Heartbeat)
        return out

    def health_history(self) -> list[tuple[float, b.DataHealth]]:
        """Every data-health change, with the Redis time (s, to the ms) it became visible."""
        return [
            (int(entry_id.split(b"-")[0]) / 1000.0, b.decode(raw[b"m"], b.DataHealth))
            for entry_id, raw in self.redis.xrange(b.Streams.HEALTH_HISTORY)
        ]


def ib_positions(truth: dict) -> dict[int, float]:
    return {p["con_id"]: p["quantity"] for p in truth["positions"] if abs(p["quantity"]) > 1e-9}


def working_at_ib(truth: dict) -> list[dict]:
    return [o for o in truth["orders"] if o["status"] in ("PreSubmitted", "Submitted")]
