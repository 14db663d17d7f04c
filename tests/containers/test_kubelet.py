"""The pod-spec translation of tests/containers/kubelet.py, on known answers (no Docker)."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest

from tests.containers.kubelet import (
    Cluster,
    PodSpecError,
    expand,
    plan_container,
    quantity,
    service_hosts,
)
from tests.deploy.manifests import IBSIM_MANIFEST, MAIN_MANIFEST, find, load_documents

MAIN = load_documents(MAIN_MANIFEST)
SECRETS = {
    "trading-redis": {"password": "pw", "url": "redis://:pw@redis:6379/0"},
    "trading-dashboard": {"token": "t"},
}


def cluster(secrets=SECRETS, docs=MAIN) -> Cluster:
    images = {"redis:7.4.2-alpine": "trading/redis:dev"}
    images |= {
        f"ghcr.io/trading-example/trading-{n}:0.1.0": f"trading/{n}:dev"
        for n in ("data-ingestion", "strategy", "risk-management", "visualization", "monitoring")
    }
    return Cluster.from_documents(docs, secrets, images, "trading")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("1536Mi", Decimal(1536 * 2**20)),
        ("2Gi", Decimal(2 * 2**30)),
        ("64Mi", Decimal(64 * 2**20)),
        ("500m", Decimal("0.5")),
        ("1", Decimal(1)),
        ("100m", Decimal("0.1")),
        ("1e3", Decimal(1000)),
        ("10G", Decimal(10**10)),
    ],
)
def test_quantities_read_as_kubernetes_reads_them(text, expected):
    assert quantity(text) == expected


def test_a_malformed_quantity_is_refused_naming_it():
    with pytest.raises(PodSpecError, match="'1 GB'"):
        quantity("1 GB")


def test_expansion_replaces_defined_variables_and_keeps_the_rest():
    env = {"A": "x", "B": "y"}
    assert expand("$(A)-$(B)-$(C)-$$(A)-$$$(A)", env) == "x-y-$(C)-$(A)-$x"
    assert expand("$(A", env) == "$(A"


def test_redis_statefulset_plan_follows_its_spec():
    redis = find(MAIN, "StatefulSet", "redis")
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    plan = plan_container(cluster(), redis, container, "infra", "run1")
    argv = plan.argv
    assert argv[argv.index("--user") + 1] == "10999:10999"
    assert argv[argv.index("--group-add") + 1] == "10999"  # fsGroup
    assert "--read-only" in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert argv[argv.index("--security-opt") + 1] == "no-new-privileges"
    assert argv[argv.index("--memory") + 1] == str(2 * 2**30)
    assert argv[argv.index("--memory-reservation") + 1] == str(512 * 2**20)
    assert argv[argv.index("--cpus") + 1] == "1"
    assert argv[argv.index("--cpu-shares") + 1] == "102"  # 100m * 1024 / 1000
    assert argv[argv.index("--network") + 1] == "container:infra"
    tmpfs = [argv[i + 1] for i, a in enumerate(argv) if a == "--tmpfs"]
    assert tmpfs == [
        f"/data:rw,nosuid,nodev,size={10 * 2**30},mode=2775,gid=10999",  # the claim
        f"/tmp:rw,nosuid,nodev,size={64 * 2**20},mode=2777,gid=10999",  # the emptyDir
    ]
    # command -> entrypoint; args after the image with $(REDIS_PASSWORD) from the Secret
    image_at = argv.index("trading/redis:dev")
    assert argv[image_at - 2 : image_at] == ["--entrypoint", "redis-server"]
    args = argv[image_at + 1 :]
    assert args[args.index("--requirepass") + 1] == "pw"
    assert args[args.index("--save") + 1] == ""
    # secrets by name on the command line, values only in the environment
    assert plan.env["REDIS_PASSWORD"] == "pw" and plan.env["REDISCLI_AUTH"] == "pw"
    assert "-e" in argv and "REDIS_PASSWORD=pw" not in argv


def test_service_plan_takes_the_configmap_then_its_own_env():
    workload = find(MAIN, "Deployment", "visualization")
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    plan = plan_container(cluster(), workload, container, "infra", "run1")
    configmap = find(MAIN, "ConfigMap", "trading-settings")["data"]
    assert {k: plan.env[k] for k in configmap} == configmap
    assert plan.env["TRADING_METRICS__PORT"] == "9104"
    assert plan.env["TRADING_REDIS__URL"] == "redis://:pw@redis:6379/0"
    assert plan.env["TRADING_HTTP__TOKEN"] == "t"
    assert plan.argv[-1] == "trading/visualization:dev"  # no command or args: the image's CMD


def test_a_missing_secret_key_is_refused_as_the_kubelet_would():
    workload = find(MAIN, "Deployment", "visualization")
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    secrets = {**SECRETS, "trading-dashboard": {}}
    with pytest.raises(PodSpecError, match="Secret 'trading-dashboard' key 'token' not found"):
        plan_container(cluster(secrets), workload, container, "infra", "run1")


def test_run_as_non_root_without_a_uid_on_a_root_image_is_refused():
    workload = copy.deepcopy(find(MAIN, "Deployment", "strategy"))
    pod = workload["spec"]["template"]["spec"]
    del pod["securityContext"]["runAsUser"]
    (container,) = pod["containers"]
    with pytest.raises(PodSpecError, match="runAsNonRoot"):
        plan_container(cluster(), workload, container, "infra", "run1", image_user="root")
    plan = plan_container(cluster(), workload, container, "infra", "run1", image_user="10001:10001")
    assert plan.user == (10001, 10001)


def test_the_real_gateway_service_needs_kube_proxy_and_ibsim_does_not():
    workloads = [d for d in MAIN if d["kind"] in ("Deployment", "StatefulSet")]
    with pytest.raises(PodSpecError, match="ib-gateway maps 4002 to \\{4004\\}"):
        service_hosts(cluster(), workloads)
    ibsim = find(load_documents(IBSIM_MANIFEST), "Deployment", "ib-gateway")
    swapped = [ibsim if w["metadata"]["name"] == "ib-gateway" else w for w in workloads]
    hosts = service_hosts(cluster(), swapped)
    assert {"redis", "ib-gateway", "ib-gateway.trading.svc.cluster.local"} <= set(hosts)


def test_ibsim_lists_the_pair_the_configmap_says_the_services_trade():
    workload = find(load_documents(IBSIM_MANIFEST), "Deployment", "ib-gateway")
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    images = {"ghcr.io/trading-example/trading-ibsim:0.1.0": "trading/ibsim:dev"}
    plan = plan_container(
        Cluster.from_documents(MAIN, SECRETS, images, "trading"), workload, container, "i", "r"
    )
    configmap = find(MAIN, "ConfigMap", "trading-settings")["data"]
    entry = plan.argv.index("--entrypoint")
    assert plan.argv[entry : entry + 3] == ["--entrypoint", "python", "trading/ibsim:dev"]
    assert plan.argv[entry + 3 :] == [
        "-m", "trading.ibsim", "--host=0.0.0.0", "--port=4002",
        f"--underlying={configmap['TRADING_PAIR__UNDERLYING']}",
        f"--etf={configmap['TRADING_PAIR__ETF']}",
        f"--underlying-con-id={configmap['TRADING_PAIR__UNDERLYING_CON_ID']}",
        f"--etf-con-id={configmap['TRADING_PAIR__ETF_CON_ID']}",
    ]  # fmt: skip
