"""A real Prometheus process for the tests, and Redis state that gives every panel data."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import yaml

from trading.bus import (
    Alert,
    Bus,
    DataStatus,
    EtfNav,
    Groups,
    Keys,
    LegKind,
    OptionQuote,
    Severity,
    Streams,
)
from trading.redis_server import free_port

from .promql import PROMETHEUS_DIR
from .samples import (
    decision,
    health,
    heartbeat,
    intent,
    order_event,
    pnl,
    position,
    quote,
    risk_status,
    spread_point,
)


class Prometheus:
    """`prometheus` on a free port scraping `targets` ({job: "host:port"}) every second, with the
    repository's alert rules whose `for:` durations are shortened to `rule_for`."""

    def __init__(self, binary: str, targets: dict[str, str], rule_for: str = "1s"):
        self.binary = binary
        self.targets = targets
        self.rule_for = rule_for
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._tmp = tempfile.TemporaryDirectory(prefix="prometheus-test-")
        self._proc: subprocess.Popen | None = None

    def start(self) -> Prometheus:
        folder = Path(self._tmp.name)
        rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
        for group in rules["groups"]:
            group["interval"] = "1s"
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = self.rule_for
        (folder / "alerts.yml").write_text(yaml.safe_dump(rules))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(folder / "alerts.yml")],
            "scrape_configs": [
                {
                    "job_name": job,
                    "static_configs": [{"targets": [target], "labels": {"system": "trading"}}],
                }
                for job, target in self.targets.items()
            ],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self._log = open(folder / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._log.close()
        self._tmp.cleanup()

    def log_tail(self) -> str:
        path = Path(self._tmp.name) / "prometheus.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def get(self, path: str, **params: str) -> dict:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=5)
        response.raise_for_status()
        return response.json()["data"]

    def query(self, expr: str) -> list[dict]:
        return self.get("/api/v1/query", query=expr)["result"]

    def targets_up(self) -> bool:
        try:
            active = self.get("/api/v1/targets")["activeTargets"]
        except httpx.HTTPError:
            return False
        return len(active) == len(self.targets) and all(t["health"] == "up" for t in active)

    def alert_states(self) -> dict[str, str]:
        return {a["labels"]["alertname"]: a["state"] for a in self.get("/api/v1/alerts")["alerts"]}


@contextlib.contextmanager
def running_prometheus(
    binary: str, targets: dict[str, str], rule_for: str = "1s"
) -> Iterator[Prometheus]:
    server = Prometheus(binary, targets, rule_for).start()
    try:
        yield server
    finally:
        server.stop()


async def seed_state(bus: Bus, now: float) -> None:
    """One of everything the monitor exports, fresh at `now`."""
    for symbol in ("TLT", "TLTW"):
        await bus.set_latest(Keys.quote(symbol), quote(symbol, now, bid=24.99, ask=25.01))
        await bus.hset_latest(Keys.HEALTH, symbol, health(symbol, DataStatus.OK, ts=now))
    await bus.set_latest(Keys.nav("TLTW"), EtfNav("TLTW", 24.98, now, now))
    option = OptionQuote(
        "TLT", 7001, "TLT  270115C00097000", "20270115", 97.0, "C", 1.9, 2.1, 10.0, 10.0,
        0.15, 0.52, 0.08, 0.19, -0.02, 97.2, 2.0, now, now,
    )  # fmt: skip
    await bus.hset_latest(Keys.OPTION_INDEX, "7001", option)
    await bus.set_latest(Keys.SPREAD_LATEST, spread_point(z=1.2, ts=now, state="LONG_SPREAD"))
    await bus.set_latest(Keys.RISK_STATUS, risk_status("ACTIVE", {"gross_notional": 0.3}, ts=now))
    await bus.set_latest(Keys.PNL, pnl(120.0, ts=now))
    await bus.hset_latest(Keys.POSITIONS, "561000001", position("TLTW", 400.0, 25.0))
    await bus.hset_latest(
        Keys.OPEN_ORDERS, "o1", order_event("o1", LegKind.STOCK, now, "Submitted", 400)
    )
    await bus.ensure_group(Streams.INTENTS, Groups.RISK)
    await bus.append(Streams.INTENTS, intent("pending-1", now))
    await bus.read_group(Streams.INTENTS, Groups.RISK, "risk-1")  # left unacknowledged


async def beat_and_trade(bus: Bus, services: tuple[str, ...], step: int) -> None:
    """Heartbeats, a fresh tick, and one intent -> decision -> order with its latencies."""
    now = time.time()
    for service in services:
        await bus.beat(heartbeat(service, now), ttl_s=5.0)
    tick = quote("TLTW", now, bid=24.99, ask=25.01)
    await bus.set_latest(Keys.quote("TLTW"), tick)
    await bus.set_latest(Keys.quote("TLT"), quote("TLT", now))
    await bus.append(Streams.history("TLTW"), tick)
    intent_id = f"flow-{step}"
    await bus.append(Streams.INTENTS, intent(intent_id, now + 0.002, why={"tick_ts_recv": now}))
    await bus.append(Streams.DECISIONS, decision(intent_id, now + 0.003))
    for leg in (LegKind.BUY_WRITE, LegKind.STOCK):
        event = order_event(intent_id, leg, now + 0.004, "Submitted", 2)
        await bus.append(Streams.ORDER_EVENTS, event)
    await bus.append(
        Streams.ALERTS, Alert(now, Severity.INFO, "risk-management", "order_rejected", "test")
    )
