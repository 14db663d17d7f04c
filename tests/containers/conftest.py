"""The containers tests need a reachable Docker daemon and current images (`make images`).

With CI=true they must run: a missing daemon or missing or stale images fail them. Elsewhere
they skip, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from trading import containers


def unavailable() -> str | None:
    """Why the containers tests cannot run here, or None."""
    if shutil.which("docker") is None:
        return "no docker client on PATH (.ci/run installs docker.io)"
    try:
        info = containers.docker("info", "--format", "{{.ServerVersion}}", timeout_s=30)
    except subprocess.TimeoutExpired:
        return "the Docker daemon did not answer `docker info` within 30 s"
    if info.returncode != 0:
        return f"no Docker daemon reachable: {info.stderr.strip()[:300]}"
    problems = containers.stale_images()
    if problems:
        return "; ".join(problems) + ": run `make images` (see README, Deployment)"
    return None


@pytest.fixture(scope="session")
def docker_images() -> None:
    reason = unavailable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the containers tests cannot run: {reason}")
    pytest.skip(reason)
