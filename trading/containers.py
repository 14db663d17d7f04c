"""`python -m trading run --containers` (`make up`): the runner's processes, each in a container.

Redis, ibsim and the five services run from the images `make images` builds
(`trading/<name>:dev`), with the settings `make run` uses, on the host's network (the daemon
here runs without a bridge; the ports are the ones `make run` prints), each with a read-only
root filesystem, a tmpfs /tmp, uid 10001, no capabilities and no privilege escalation. Every
container is named `trading-<run id>-<name>` and labelled `trading.run=<run id>`; stopping (Ctrl-C)
stops the services, then ibsim, then Redis, and removes every container of the run.

Also the images' source digest (`python -m trading.containers source-digest`): a hash of every
file the images are built from, stored as the label `trading.source-digest`, so a run or a test
can tell an image built from other sources. Standard library only: `make images` calls it with
the host's Python before any venv exists.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE_TAG = "dev"
SERVICE_IMAGES = ("data-ingestion", "strategy", "risk-management", "visualization", "monitoring")
IMAGES = (*SERVICE_IMAGES, "ibsim")
"""The six images of the system; `make images` also builds trading/base and trading/redis."""
SOURCE_LABEL = "trading.source-digest"
RUN_LABEL = "trading.run"
UID_GID = "10001:10001"
SOURCES = (
    "requirements.txt",
    "pyproject.toml",
    "trading",
    "docker",
    *SERVICE_IMAGES,
)
"""What the images are built from (README.md too, but only as the package's long description)."""


def image_ref(name: str, tag: str = IMAGE_TAG) -> str:
    return f"trading/{name}:{tag}"


def source_digest(root: Path = ROOT) -> str:
    """SHA-256 over the relative path and bytes of every file under SOURCES, in path order
    (compiled files and caches left out): equal digests, equal image inputs."""
    digest = hashlib.sha256()
    files: list[Path] = []
    for name in SOURCES:
        path = root / name
        files += [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for path in sorted(files):
        relative = path.relative_to(root).as_posix()
        if "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        digest.update(relative.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def docker(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )


def image_labels(image: str) -> dict[str, str] | None:
    """The image's labels, or None when the daemon has no such image."""
    result = docker("image", "inspect", "--format", "{{json .Config.Labels}}", image)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout) or {}


def stale_images(names: tuple[str, ...] = (*IMAGES, "redis")) -> list[str]:
    """Why the images cannot be used as they are: missing ones, and ones built from sources
    other than the working tree's (empty when all are current)."""
    digest = source_digest()
    problems = []
    for name in names:
        labels = image_labels(image_ref(name))
        if labels is None:
            problems.append(f"{image_ref(name)} does not exist")
        elif labels.get(SOURCE_LABEL) != digest:
            problems.append(f"{image_ref(name)} was built from other sources")
    return problems


def run_argv(
    container: str,
    image: str,
    command: list[str] | None = None,
    env_names: list[str] | None = None,
    run_id: str = "",
    mounts: list[str] | None = None,
) -> list[str]:
    """`docker run` in the foreground (its output is the process's, signals go through to it)
    for one process of the system, hardened as the cluster runs it. Environment variables are
    passed by name only (`-e NAME`): their values, secrets included, stay off the command line."""
    argv = [
        "docker", "run", "--rm", "--name", container, "--label", f"{RUN_LABEL}={run_id}",
        "--network", "host", "--user", UID_GID, "--read-only",
        "--tmpfs", "/tmp:rw,nosuid,nodev,size=128m",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
    ]  # fmt: skip
    for mount in mounts or []:
        argv += ["--mount", mount]
    for name in env_names or []:
        argv += ["-e", name]
    return [*argv, image, *(command or [])]


def remove_run(run_id: str) -> list[str]:
    """Remove every container labelled with this run (running or not); their names."""
    listed = docker("ps", "-aq", "--filter", f"label={RUN_LABEL}={run_id}")
    ids = listed.stdout.split()
    if ids:
        docker("rm", "-f", *ids, timeout_s=120)
    return ids


REDIS_VOLUME = "trading-redis"
"""The named volume of `make up`'s Redis when it talks to a real gateway (kept across runs)."""


def prepare_volume(volume: str, image: str) -> None:
    """Create the named volume if needed and give its root to the service user."""
    result = docker(
        "run", "--rm", "--network", "none", "--user", "0:0", "--cap-drop", "ALL",
        "--cap-add", "CHOWN", "--mount", f"type=volume,source={volume},destination=/data",
        "--entrypoint", "chown", image, UID_GID, "/data",
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"cannot prepare volume {volume}: {result.stderr.strip()}")


def new_run_id() -> str:
    return secrets.token_hex(4)


def passed_env(env: dict[str, str]) -> list[str]:
    """The variables a container gets from the runner: the settings and Python's unbuffering."""
    return sorted(n for n in env if n.startswith("TRADING_") or n == "PYTHONUNBUFFERED")


def main(argv: list[str]) -> int:
    if argv == ["source-digest"]:
        print(source_digest())
        return 0
    if argv == ["check"]:
        problems = stale_images()
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    print("usage: python -m trading.containers source-digest|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
