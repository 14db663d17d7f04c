"""The local runner behind `make run`: the whole system in one terminal.

Starts an embedded Redis (append-only, under var/redis) unless TRADING_REDIS__URL is set, the
simulated gateway unless TRADING_SIM__ENABLED=false (then the services connect to the IB Gateway
or TWS at TRADING_IB__HOST:TRADING_IB__PORT), and the five services as child processes: the
dashboard first (it needs only Redis, and shows the Gateway's state while the others wait for
it), then data-ingestion, risk-management and monitoring, and the strategy once data-ingestion
has backfilled the history. While it waits, the runner says in plain words where the Gateway
connection stands; once everything runs, what the system trades (trading.narrator: intents,
fills, the round trip's realized P&L). Log lines are prefixed with the service name (plain
text; `--json` keeps the ECS JSON lines). Ctrl-C (or SIGTERM) stops the services, then the
gateway, then Redis, leaving nothing running, from any wait. `--containers` runs each of them
in its container instead (ContainerRunner, `make up`).
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from trading import containers
from trading.bus import PUBSUB_BUFFER_LIMIT, Heartbeat, Keys, MessageError, decode
from trading.narrator import Narrator
from trading.redis_server import EmbeddedRedis, die_with_parent, free_port
from trading.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent

SERVICES = (
    ("data-ingestion", "data-ingestion/data_ingestion.py"),
    ("strategy", "strategy/strategy.py"),
    ("risk-management", "risk-management/risk_management.py"),
    ("visualization", "visualization/visualization.py"),
    ("monitoring", "monitoring/monitoring_dashboard.py"),
)

FIRST = "visualization"
"""Started first: the operator's window on everything else."""
AFTER_BACKFILL = frozenset({"strategy"})
"""Started once data-ingestion has backfilled the history (it warms up on it at once)."""

SIM_DEMO_DEFAULTS = {
    "TRADING_STRATEGY__Z_WINDOW": "390",
    "TRADING_STRATEGY__EDGE_GATE": "false",
    "TRADING_STRATEGY__STOP_Z": "6",
}
"""With the simulated gateway, a z window the backfill fills (one session of one-minute bars), so
the demo shows a spread and trades within a minute; the live default (about 40 days of bars)
would show nothing until weeks of history had built up. The edge gate measures and reports
(the heartbeat's edge status) but refuses nothing: a one-session window is ten of its samples,
too few to show an edge, and the demo is there to show the system trading. The stop band is
wider than the default 4: the simulator's planted excursion (TRADING_SIM__EXCURSION_BP) moves
the premium in two minutes, so the entry comes at a z of 3 to 4 on the first bars of it, and a
stop band at 4 was crossed by the next bar's quote noise (seen: entered at z 3.81, stopped out
at 4.06, one bar later), which shows a stop, not the cycle."""

COLOURS = ("36", "33", "35", "32", "34", "31", "37")


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    colour: str
    buffer: bytes = b""
    cmd: tuple[str, ...] = ()


def _reachable(host: str) -> str:
    """The address to reach a server bound to `host` (all interfaces: the loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


class Stopped(Exception):
    """The runner was asked to stop (Ctrl-C, SIGTERM) while it was starting."""


def describe_gateway(detail: dict) -> str:
    """A heartbeat's gateway detail (trading.broker.connection.GatewayState) in plain words."""
    where = f"{detail.get('host')}:{detail.get('port')}"
    status = detail.get("status")
    next_try = detail.get("next_try_at")
    wait = f"; next try in {max(0.0, next_try - time.time()):.0f} s" if next_try else ""
    if status == "connected":
        return f"IB Gateway connected at {where}"
    if status == "unreachable":
        return (
            f"IB Gateway unreachable at {where} (attempt {detail.get('attempt')}: "
            f"{detail.get('error')}{wait})"
        )
    if status == "disconnected":
        return f"IB Gateway connection at {where} lost ({detail.get('error')}{wait})"
    return f"IB Gateway {status} at {where}"


class Runner:
    def __init__(
        self,
        settings: Settings,
        json_logs: bool = False,
        services: tuple = SERVICES,
        env: dict[str, str] | None = None,
        output: TextIO | None = None,
        log_dir: Path | None = None,
    ):
        self.settings = settings
        self.json_logs = json_logs
        self.services = services
        self.output = output or sys.stdout
        self.log_dir = log_dir
        """When set, each child writes its log to <log_dir>/<name>.log instead of the terminal."""
        self.children: list[Child] = []
        self.redis: EmbeddedRedis | None = None
        self.env = dict(os.environ if env is None else env)
        self.ib_port: int | None = None
        self.stopping = False
        self.service_env: dict[str, dict[str, str]] = {}
        """Extra environment of one service at its start (the fault suite arms crash seams)."""

    # -- start ----------------------------------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        self.env["TRADING_LOG__JSON_FORMAT"] = "true" if self.json_logs else "false"
        self.env["PYTHONUNBUFFERED"] = "1"
        if s.redis.url is None:
            self._start_redis()
        if s.sim.enabled:
            for name, value in SIM_DEMO_DEFAULTS.items():
                if name not in self.env:
                    self.env[name] = value
                    self._say(f"simulated demo: {name}={value} (set it to override)")
            port = free_port()
            self.env["TRADING_IB__HOST"] = "127.0.0.1"
            self.env["TRADING_IB__PORT"] = str(port)
            self.ib_port = port
            cmd = [
                sys.executable, "-m", "trading.ibsim", "--host", "127.0.0.1",
                "--port", str(port), "--seed", str(s.sim.seed), "--speed", str(s.sim.speed),
                "--premium-bp", str(s.sim.premium_bp),
                "--premium-half-life-days", str(s.sim.premium_half_life_days),
                "--premium-drift-bp-year", str(s.sim.premium_drift_bp_year),
                "--tick-interval", str(s.sim.effective_tick_interval_s),
                "--excursion-bp", str(s.sim.excursion_bp),
                "--excursion-first-minutes", str(s.sim.excursion_first_minutes),
                "--excursion-every-minutes", str(s.sim.excursion_every_minutes),
                "--excursion-hold-minutes", str(s.sim.excursion_hold_minutes),
            ]  # fmt: skip
            cmd += ["--underlying", s.pair.underlying, "--etf", s.pair.etf]  # the same pair
            for flag, con_id in (
                ("--underlying-con-id", s.pair.underlying_con_id),
                ("--etf-con-id", s.pair.etf_con_id),
            ):
                if con_id is not None:
                    cmd += [flag, str(con_id)]
            if s.sim.start is not None:
                cmd += ["--start", f"{s.sim.start:%Y-%m-%dT%H:%M}"]
            if s.sim.admin_port:
                cmd += ["--admin-port", str(s.sim.admin_port)]
            self._spawn("ibsim", cmd)
            self._wait_port(port, "ibsim", timeout_s=20.0)
            self._say(
                f"simulated IB gateway on 127.0.0.1:{port} (seed {s.sim.seed}, {s.sim.speed}x)"
            )
        else:
            self._say(f"IB Gateway/TWS at {s.ib.host}:{s.ib.port} (TRADING_SIM__ENABLED=false)")
        paths = dict(self.services)
        first = sorted(paths, key=lambda name: name != FIRST)
        for name in first:
            if name not in AFTER_BACKFILL:
                self._start_service(name, paths[name])
        if FIRST in paths:
            host, port = self.dashboard_address
            self._wait_port(port, FIRST, host=host)
            self._say(f"dashboard: http://{host}:{port}/   (Ctrl-C stops everything)")
        later = [name for name in first if name in AFTER_BACKFILL]
        if later:
            if "data-ingestion" in paths:
                self._wait_backfill()
            for name in later:
                self._start_service(name, paths[name])
            self._say(f"started {', '.join(later)}")

    def _start_service(self, name: str, path: str) -> Child:
        return self._spawn(name, [sys.executable, str(ROOT / path)], self.service_env.get(name))

    @property
    def dashboard_address(self) -> tuple[str, int]:
        """Where the children's dashboard listens (their environment wins over the settings)."""
        host = self.env.get("TRADING_HTTP__HOST", self.settings.http.host)
        return _reachable(host), int(self.env.get("TRADING_HTTP__PORT", self.settings.http.port))

    def _start_redis(self) -> None:
        s = self.settings
        data_dir = ROOT / s.redis.data_dir
        if s.sim.enabled:
            # The simulated market restarts at its start time on every run: state kept from
            # an earlier simulated run (bars, positions, intents) would be from its future.
            data_dir = data_dir / "sim"
            shutil.rmtree(data_dir, ignore_errors=True)
        self.redis = EmbeddedRedis(persist_dir=data_dir).start()
        self.env["TRADING_REDIS__URL"] = self.redis.url
        self._say(f"embedded Redis on {self.redis.url} (append-only file in {data_dir})")

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Child:
        env = self.env if env is None else {**self.env, **env}
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with open(self.log_dir / f"{name}.log", "ab") as sink:
                proc = subprocess.Popen(
                    cmd, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
                    start_new_session=True, preexec_fn=die_with_parent,
                )  # fmt: skip
            child = Child(name, proc, "", cmd=tuple(cmd))
        else:
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the runner only; it stops them in order
                preexec_fn=die_with_parent,
            )
            colour = COLOURS[len(self.children) % len(COLOURS)]
            child = Child(name, proc, colour, cmd=tuple(cmd))
        self.children.append(child)
        return child

    def child(self, name: str) -> Child:
        return next(c for c in reversed(self.children) if c.name == name)

    def kill(self, name: str) -> None:
        """SIGKILL one child (as a crash would): no shutdown code of its own runs."""
        child = self.child(name)
        if child.proc.poll() is None:
            os.killpg(child.proc.pid, signal.SIGKILL)
            child.proc.wait(5)

    def restart(self, name: str, env: dict[str, str] | None = None) -> None:
        """Kill one child if it still runs and start it again (with `env` added)."""
        old = self.child(name)
        self.kill(name)
        self.children.remove(old)
        if old.proc.stdout:
            old.proc.stdout.close()
        self._spawn(name, list(old.cmd), env)

    def _waiting(self) -> None:
        """One beat of a wait: relay output; raise Stopped on Ctrl-C, RuntimeError when a
        child died."""
        self._pump(0.1)
        if self.stopping:
            raise Stopped
        for child in self.children:
            if child.proc.poll() is not None:
                raise RuntimeError(f"{child.name} exited with code {child.proc.returncode}")

    def _wait_port(
        self, port: int, name: str, timeout_s: float = 30.0, host: str = "127.0.0.1"
    ) -> None:
        import socket

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._waiting()
            try:
                with socket.create_connection((host, port), timeout=0.2):
                    return
            except OSError:
                continue
        raise RuntimeError(f"{name} did not listen on port {port} within {timeout_s}s")

    def _wait_backfill(self, timeout_s: float = 60.0) -> None:
        """Wait until data-ingestion's first backfill is in the history streams (its heartbeat
        reports nothing pending), saying where the Gateway connection stands as it changes."""
        import redis

        client = redis.Redis.from_url(self.env["TRADING_REDIS__URL"], socket_timeout=1)
        deadline = time.monotonic() + timeout_s
        said = ""
        try:
            while time.monotonic() < deadline:
                self._waiting()
                try:
                    raw = client.get(Keys.heartbeat("data-ingestion"))
                    beat = None if raw is None else decode(raw, Heartbeat)
                except (redis.RedisError, MessageError):
                    continue
                if beat is None:
                    continue
                gateway = beat.detail.get("gateway")
                if isinstance(gateway, dict):
                    news = f"{gateway.get('status')} {gateway.get('attempt')}"
                    if news != said:
                        said = news
                        self._say(describe_gateway(gateway))
                if beat.detail.get("connected") and beat.detail.get("backfill_pending") == 0:
                    self._say("data-ingestion backfilled the history")
                    return
            self._say(f"no backfill within {timeout_s:.0f}s; starting the strategy anyway")
        finally:
            client.close()

    # -- run ------------------------------------------------------------------------------------

    def run_forever(self) -> int:
        """Relay child output until a signal or until a child dies (then stop all, exit 1),
        saying in plain words what the system trades (trading.narrator) as it happens."""
        narrator = self._narrator()
        try:
            while not self.stopping:
                self._pump(0.2)
                if narrator is not None:
                    narrator.poll()
                for child in self.children:
                    code = child.proc.poll()
                    if code is not None and not self.stopping:
                        self._pump(0.1)
                        self._say(f"{child.name} exited with code {code}; stopping everything")
                        return 1
            return 0
        finally:
            if narrator is not None:
                narrator.redis.close()

    def _narrator(self) -> Narrator | None:
        url = self.env.get("TRADING_REDIS__URL")
        if not url:
            return None
        import redis

        client = redis.Redis.from_url(url, socket_timeout=1)
        return Narrator(client, lambda text: self._say(text, "trades"))

    def _pump(self, timeout_s: float) -> None:
        sel = selectors.DefaultSelector()
        for child in self.children:
            if child.proc.stdout and not child.proc.stdout.closed:
                sel.register(child.proc.stdout, selectors.EVENT_READ, child)
        if not sel.get_map():
            time.sleep(timeout_s)
            return
        for key, _ in sel.select(timeout_s):
            child = key.data
            chunk = os.read(key.fd, 65536)
            if not chunk:
                continue
            child.buffer += chunk
            *lines, child.buffer = child.buffer.split(b"\n")
            for line in lines:
                self._emit(child, line.decode(errors="replace"))
        sel.close()

    def _emit(self, child: Child, line: str) -> None:
        tag = f"{child.name:>15} |"
        if self.output.isatty():
            tag = f"\033[{child.colour}m{tag}\033[0m"
        print(f"{tag} {line}", file=self.output, flush=True)

    def _say(self, text: str, tag: str = "run") -> None:
        print(f"{tag:>15} | {text}", file=self.output, flush=True)

    # -- stop -----------------------------------------------------------------------------------

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the services first (they flush and close), then the gateway, then Redis."""
        self.stopping = True
        last = ("ibsim", "redis")
        self._stop_children([c for c in self.children if c.name not in last], timeout_s)
        for name in last:
            self._stop_children([c for c in self.children if c.name == name], timeout_s)
        for child in self.children:
            if child.proc.stdout:
                child.proc.stdout.close()
        self._release()
        self._say("stopped; nothing left running")

    def _stop_children(self, children: list[Child], timeout_s: float) -> None:
        for child in children:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in children:
            while child.proc.poll() is None and time.monotonic() < deadline:
                self._pump(0.05)
            if child.proc.poll() is None:
                self._say(f"{child.name} did not stop in {timeout_s}s; killing it")
                os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait(5)
        self._pump(0.05)

    def _release(self) -> None:
        if self.redis is not None:
            self.redis.stop()


class ContainerRunner(Runner):
    """`python -m trading run --containers` (`make up`): Redis, ibsim and the five services each
    in its container from the images of `make images` (trading/containers.py), with the same
    settings as `make run`. Stopping removes every container of the run."""

    def __init__(self, settings: Settings, **kwargs) -> None:
        super().__init__(settings, **kwargs)
        self.run_id = containers.new_run_id()

    def start(self) -> None:
        try:
            problems = containers.stale_images()
        except (OSError, subprocess.SubprocessError) as exc:
            raise RuntimeError(f"docker is not usable here: {exc}") from exc
        if problems:
            raise RuntimeError("; ".join(problems) + ": run `make images` first")
        self._say(f"containers trading-{self.run_id}-<name>, label trading.run={self.run_id}")
        super().start()

    def _start_redis(self) -> None:
        s = self.settings
        port = free_port()
        if s.sim.enabled:
            # As `make run`: a simulated run starts from an empty Redis (append-only in memory).
            data, where = "type=tmpfs,destination=/data,tmpfs-mode=01777", "a tmpfs"
        else:
            # Kept across runs in a named volume, made the service user's by a one-off container
            # (what a cluster's fsGroup does for the claim).
            volume = containers.REDIS_VOLUME
            data, where = f"type=volume,source={volume},destination=/data", f"volume {volume}"
            containers.prepare_volume(volume, containers.image_ref("redis"))
        command = [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", "/data",
            "--protected-mode", "yes", "--client-output-buffer-limit", *PUBSUB_BUFFER_LIMIT.split(),
            "--loglevel", "warning", "--appendonly", "yes", "--appendfsync", "everysec",
            "--save", "",
        ]  # fmt: skip
        self._run_container("redis", command, mounts=[data])
        self._wait_port(port, "redis")
        self.env["TRADING_REDIS__URL"] = f"redis://127.0.0.1:{port}/0"
        self._say(f"Redis container on port {port} (append-only file in {where})")

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Child:
        if env:
            raise ValueError(f"{name}: a service's own environment is not passed to containers")
        if name == "ibsim":
            # The same arguments, run by the image's Python instead of this one.
            return self._run_container(name, ["python", *cmd[1:]])
        return self._run_container(name, None)  # the image's own command: what the cluster runs

    def _run_container(
        self, name: str, command: list[str] | None, mounts: list[str] | None = None
    ) -> Child:
        env_names = [] if name == "redis" else containers.passed_env(self.env)
        argv = containers.run_argv(
            f"trading-{self.run_id}-{name}",
            containers.image_ref(name),
            command,
            env_names=env_names,
            run_id=self.run_id,
            mounts=mounts,
        )
        return super()._spawn(name, argv)

    def _release(self) -> None:
        removed = containers.remove_run(self.run_id)
        if removed:
            self._say(f"removed {len(removed)} container(s) that had not stopped by themselves")


def main(argv: list[str]) -> int:
    json_logs = "--json" in argv
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"run: {exc}", file=sys.stderr)
        return 2
    runner_type = ContainerRunner if "--containers" in argv else Runner
    runner = runner_type(settings, json_logs=json_logs)

    def on_signal(_sig: int, _frame: object) -> None:
        runner.stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        runner.start()
        code = runner.run_forever()
    except Stopped:
        code = 0
    except Exception as exc:
        print(f"run: {exc}", file=sys.stderr)
        code = 1
    finally:
        runner.stop()
    return code
