"""The manifests, Dockerfiles and workflow agree with the code: settings, modules, ports, flows."""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import re
import subprocess
import sys
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import (
    BASE_DOCKERFILE,
    DEPLOY_DOC,
    IBSIM_MANIFEST,
    MAIN_MANIFEST,
    MANIFESTS,
    MONITORING_MANIFEST,
    NAMESPACE,
    ROOT,
    SERVICE_NAMES,
    SERVICE_SCRIPTS,
    WORKFLOW,
    all_dockerfiles,
    cmd,
    container_environment,
    container_ports,
    containers,
    dockerfile_instructions,
    dockerfiles,
    env_text,
    exposed_ports,
    find,
    healthcheck_command,
    load_documents,
    pod_labels,
    pod_spec,
    resolve_port,
    setting_fields,
    workloads,
)
from trading.bus import PUBSUB_BUFFER_LIMIT
from trading.settings import Settings

MAIN = load_documents(MAIN_MANIFEST)
IBSIM = load_documents(IBSIM_MANIFEST)
MONITORING = load_documents(MONITORING_MANIFEST)

CLUSTER_OVERRIDES = {
    "TRADING_IB__HOST": "ib-gateway",  # the Gateway's Service
    "TRADING_HTTP__HOST": "0.0.0.0",  # the dashboard listens on its pod's interfaces
    "TRADING_SIM__ENABLED": "false",  # a real (paper) Gateway, or k8s/ibsim.yaml
}
"""ConfigMap values that differ from the Settings defaults on purpose."""

IB_CLIENTS = ("data-ingestion", "risk-management")


def service_container(name: str) -> dict[str, Any]:
    (container,) = containers(find(MAIN, "Deployment", name))
    return container


def settings_of(name: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings the service's container would load, from its manifest environment only."""
    env, _ = container_environment(MAIN, service_container(name))
    for key in [k for k in os.environ if k.startswith("TRADING_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


# Settings ------------------------------------------------------------------------------------


def test_every_setting_is_in_the_configmap_or_a_secret():
    data = find(MAIN, "ConfigMap", "trading-settings")["data"]
    missing = [
        f'  {f.env}: "{env_text(f.default)}"'
        for f in setting_fields()
        if not f.secret and f.default is not None and f.env not in data
    ]
    where = "add to the trading-settings ConfigMap in k8s-deployment.yaml (defaults shown):"
    assert not missing, "\n".join([where, *missing])
    secrets_in_configmap = [f.env for f in setting_fields() if f.secret and f.env in data]
    assert not secrets_in_configmap, f"secrets belong in Secrets: {secrets_in_configmap}"


def test_every_trading_variable_in_the_manifests_is_a_setting():
    known = {f.env for f in setting_fields()}
    named = set(find(MAIN, "ConfigMap", "trading-settings")["data"])
    for docs in (MAIN, IBSIM):
        for workload in workloads(docs):
            if workload["metadata"]["name"] == "ib-gateway" and docs is MAIN:
                continue  # the Gateway image's own variables (TRADING_MODE) are not ours
            for container in containers(workload):
                named |= {v["name"] for v in container.get("env", [])}
    unknown = sorted(n for n in named if n.startswith("TRADING_") and n not in known)
    assert not unknown, f"not a field of trading.settings.Settings: {unknown}"


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_service_gets_its_secrets_from_secrets(service):
    _, from_secrets = container_environment(MAIN, service_container(service))
    assert from_secrets["TRADING_REDIS__URL"] == ("trading-redis", "url")
    if service == "visualization":
        assert from_secrets["TRADING_HTTP__TOKEN"] == ("trading-dashboard", "token")
    secret_fields = {f.env for f in setting_fields() if f.secret}
    env = {v["name"] for v in service_container(service).get("env", []) if "value" in v}
    assert not env & secret_fields, "a secret setting given as a literal value"


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_service_environment_loads_valid_settings_pointing_at_the_cluster(service, monkeypatch):
    settings = settings_of(service, monkeypatch)
    gateway_service = find(MAIN, "Service", settings.ib.host)
    assert settings.ib.port in {p["port"] for p in gateway_service["spec"]["ports"]}
    assert not settings.ib.allow_live
    assert settings.redis.url is not None
    assert settings.http.host == "0.0.0.0"
    assert settings.log.json_format, "Filebeat expects JSON lines"


def test_configmap_matches_the_settings_defaults_except_cluster_overrides(monkeypatch):
    data = find(MAIN, "ConfigMap", "trading-settings")["data"]
    for key in [k for k in os.environ if k.startswith("TRADING_")]:
        monkeypatch.delenv(key)
    defaults = {f.env: f.default for f in setting_fields()}
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    loaded = {f.env: f.default for f in setting_fields(Settings())}
    drifted = {
        key: (data[key], defaults[key])
        for key in data
        if key not in CLUSTER_OVERRIDES and loaded[key] != defaults[key]
    }
    assert not drifted, f"ConfigMap value vs Settings default: {drifted}"
    for key, value in CLUSTER_OVERRIDES.items():
        assert data[key] == value


# Images and commands -------------------------------------------------------------------------


def _assert_python_command_exists(argv: list[str], where: str) -> None:
    assert argv[0] == "python", f"{where}: {argv}"
    if argv[1] == "-m":
        module = argv[2]
        spec = importlib.util.find_spec(module)
        assert spec is not None, f"{where}: no module {module}"
        if spec.submodule_search_locations is not None:  # a package runs its __main__
            assert importlib.util.find_spec(f"{module}.__main__"), f"{where}: {module}.__main__"
    else:
        assert (ROOT / argv[1]).is_file(), f"{where}: {argv[1]} does not exist"


@pytest.mark.parametrize("image", [*SERVICE_NAMES, "ibsim"])
def test_image_command_and_healthcheck_start_modules_that_exist(image):
    path = dockerfiles()[image]
    argv = cmd(path)
    _assert_python_command_exists(argv, f"{path} CMD")
    _assert_python_command_exists(healthcheck_command(path), f"{path} HEALTHCHECK")
    if image in SERVICE_SCRIPTS:
        assert argv == ["python", SERVICE_SCRIPTS[image]], "the image runs what `make run` runs"
        assert healthcheck_command(path)[-1] == image, "the health check names its own service"


@pytest.mark.parametrize("image", sorted(all_dockerfiles()))
def test_image_copies_only_paths_that_exist(image):
    makefile = (ROOT / "Makefile").read_text()
    for ins in dockerfile_instructions(all_dockerfiles()[image]):
        if ins.keyword == "COPY" and "--from" not in ins.arguments:
            *sources, _destination = ins.arguments.split()
            for source in sources:
                if source == "wheelhouse":  # made by `make wheelhouse`, which `images` needs
                    assert re.search(r"^images: \$\(WHEELHOUSE\)/\.complete", makefile, re.M)
                    continue
                assert (ROOT / source).exists(), f"{image}: COPY {source}: no such path"


def test_ibsim_image_flags_are_accepted_by_its_cli():
    argv = cmd(dockerfiles()["ibsim"])
    result = subprocess.run(
        [sys.executable, "-m", "trading.ibsim", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    for flag in (a for a in argv if a.startswith("--")):
        assert flag in result.stdout, f"`python -m trading.ibsim` has no {flag} option"


@pytest.mark.parametrize("docs_name", ["main", "ibsim", "monitoring"])
def test_exec_probes_run_modules_that_exist_for_their_own_service(docs_name):
    docs = {"main": MAIN, "ibsim": IBSIM, "monitoring": MONITORING}[docs_name]
    for workload in workloads(docs):
        name = workload["metadata"]["name"]
        for container in containers(workload):
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                command = container.get(probe, {}).get("exec", {}).get("command")
                if not command or command[0] != "python":
                    continue
                _assert_python_command_exists(command, f"{name} {probe}")
                if name in SERVICE_NAMES:
                    assert command == ["python", "-m", "trading.healthcheck", name]


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_service_liveness_is_its_heartbeat_not_just_a_port(service):
    container = service_container(service)
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"][-2:] == ["trading.healthcheck", service]
    settings_interval_s = Settings.model_construct().heartbeat_interval_s
    liveness = container["livenessProbe"]
    # A probe slower than the heartbeat's TTL could only ever see a stale key.
    assert liveness["timeoutSeconds"] >= 3
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > 3 * settings_interval_s


def _make(*args: str) -> str:
    result = subprocess.run(
        ["make", "-s", "--no-print-directory", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_manifest_images_are_the_ones_ci_builds():
    built = _make("image-names").split()
    assert sorted(built) == sorted(dockerfiles())
    steps = _workflow()["jobs"]["images"]["steps"]
    runs = [step.get("run", "") for step in steps]
    assert "make images" in runs, "CI builds with the target .ci/run and the README use"
    assert any("$(make -s image-names)" in r and "docker push" in r for r in runs)
    used = set()
    for docs in (MAIN, IBSIM):
        for workload in workloads(docs):
            for container in containers(workload):
                match = re.search(r"/trading-([a-z0-9-]+):", container["image"])
                if match:
                    used.add(match[1])
    assert used == set(built)


# Ports ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("docs_name", ["main", "ibsim", "monitoring"])
def test_every_probe_port_is_a_port_the_container_declares(docs_name):
    docs = {"main": MAIN, "ibsim": IBSIM, "monitoring": MONITORING}[docs_name]
    for workload in workloads(docs):
        for container in containers(workload):
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                spec = container.get(probe, {})
                for kind in ("httpGet", "tcpSocket"):
                    if kind in spec:
                        port = spec[kind]["port"]
                        assert resolve_port(container, port), (
                            f"{workload['metadata']['name']} {probe} port {port} not declared"
                        )


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_service_ports_are_the_ones_the_service_listens_on(service, monkeypatch):
    settings = settings_of(service, monkeypatch)
    workload = find(MAIN, "Deployment", service)
    container = service_container(service)
    ports = container_ports(container)
    # start_http_server(settings.metrics_port(service)) in trading.services.shell
    assert ports["metrics"] == settings.metrics_port(service)
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == settings.metrics_port(service)
    expected = {settings.metrics_port(service)}
    if service == "visualization":
        # uvicorn on settings.http.host:settings.http.port (trading/services/visualization.py)
        assert ports["http"] == settings.http.port
        expected.add(settings.http.port)
    assert set(ports.values()) == expected
    assert exposed_ports(dockerfiles()[service]) == expected
    readiness = container["readinessProbe"]["httpGet"]
    assert resolve_port(container, readiness["port"]) in expected


def test_ibsim_listens_where_the_gateway_service_points():
    ibsim_cmd = cmd(dockerfiles()["ibsim"])
    listen_port = int(ibsim_cmd[ibsim_cmd.index("--port") + 1])
    assert exposed_ports(dockerfiles()["ibsim"]) == {listen_port}
    (container,) = containers(find(IBSIM, "Deployment", "ib-gateway"))
    gateway = find(MAIN, "Service", "ib-gateway")
    (service_port,) = gateway["spec"]["ports"]
    assert resolve_port(container, service_port["targetPort"]) == listen_port
    assert healthcheck_command(dockerfiles()["ibsim"])[-1] == str(listen_port)


def test_every_service_port_targets_a_port_its_pods_declare():
    for docs in (MAIN, IBSIM, MONITORING):
        pods = [(pod_labels(w), containers(w)) for w in workloads(docs)]
        for service in (d for d in docs if d["kind"] == "Service"):
            selector = service["spec"]["selector"]
            selected = [cs for labels, cs in pods if selector.items() <= labels.items()]
            assert selected, f"Service {service['metadata']['name']} selects no pod"
            for port in service["spec"]["ports"]:
                for pod_containers in selected:
                    assert any(resolve_port(c, port["targetPort"]) for c in pod_containers), (
                        f"Service {service['metadata']['name']} port {port}"
                    )


def test_gateway_publishes_the_paper_port_of_the_socat_relay():
    (container,) = containers(find(MAIN, "Deployment", "ib-gateway"))
    env = {v["name"]: v.get("value") for v in container["env"]}
    assert env["TRADING_MODE"] == "paper"
    # gnzsnz/ib-gateway: socat relays 4004 to the Gateway's paper API port 4002.
    assert container_ports(container) == {"api": 4004}
    (port,) = find(MAIN, "Service", "ib-gateway")["spec"]["ports"]
    assert port["port"] == 4002


def test_redis_is_persistent_and_password_protected():
    redis = find(MAIN, "StatefulSet", "redis")
    (container,) = containers(redis)
    option: dict[str, list[str]] = {}  # redis-server's --name value... as it parses them
    for arg in container["args"]:
        if arg.startswith("--"):
            name = arg
            option[name] = []
        else:
            option[name].append(arg)
    assert option["--appendonly"] == ["yes"]
    assert option["--requirepass"] == ["$(REDIS_PASSWORD)"]
    assert option["--maxmemory-policy"] == ["noeviction"]
    assert option["--client-output-buffer-limit"] == PUBSUB_BUFFER_LIMIT.split()
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    claims = {c["metadata"]["name"] for c in redis["spec"]["volumeClaimTemplates"]}
    assert mounts[option["--dir"][0]] in claims


# Replicas and hardening ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,name",
    [("Deployment", n) for n in (*SERVICE_NAMES, "ib-gateway")] + [("StatefulSet", "redis")],
)
def test_single_writers_run_one_replica_and_never_two_at_once(kind, name):
    workload = find(MAIN, kind, name)
    assert workload["spec"]["replicas"] == 1
    if kind == "Deployment" and name != "visualization":
        assert workload["spec"]["strategy"]["type"] == "Recreate"


@pytest.mark.parametrize("name", [*SERVICE_NAMES, "redis"])
def test_services_run_read_only_as_non_root_without_capabilities(name):
    workload = find(MAIN, "StatefulSet" if name == "redis" else "Deployment", name)
    pod = pod_spec(workload)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] >= 10000
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert set(container["resources"]) == {"requests", "limits"}
    skipped = {
        v.split("=")[0]
        for k, v in workload["metadata"].get("annotations", {}).items()
        if k.startswith("checkov.io/skip")
    }
    assert skipped <= {"CKV_K8S_43", "CKV_K8S_35"}, f"{name} skips {skipped}"


def test_every_checkov_skip_carries_a_reason():
    for path in MANIFESTS:
        for doc in load_documents(path):
            for key, value in doc["metadata"].get("annotations", {}).items():
                if key.startswith("checkov.io/skip"):
                    check, _, reason = value.partition("=")
                    assert re.fullmatch(r"CKV2?_K8S_\d+", check), value
                    assert len(reason.split()) >= 4, f"{path.name}: {value}: give a reason"
    for path in all_dockerfiles().values():
        for line in path.read_text().splitlines():
            if "checkov:skip=" in line:
                assert re.search(r"checkov:skip=CKV2?_DOCKER_\d+:\s*\S+(\s+\S+){3}", line), line


@pytest.mark.parametrize("image", [*SERVICE_NAMES, "ibsim"])
def test_service_image_is_the_shared_base_plus_its_folder_user_healthcheck_and_command(image):
    instructions = dockerfile_instructions(dockerfiles()[image])
    keywords = [i.keyword for i in instructions]
    assert keywords[:2] == ["ARG", "FROM"], "FROM ${TRADING_BASE}, the one shared base"
    assert instructions[0].arguments == "TRADING_BASE=trading/base:dev"
    assert instructions[1].arguments == "${TRADING_BASE}"
    assert "RUN" not in keywords, "a service image installs nothing of its own"
    copies = [i.arguments.split() for i in instructions if i.keyword == "COPY"]
    assert copies == ([[image, f"./{image}"]] if image in SERVICE_NAMES else [])
    user = next(i for i in instructions if i.keyword == "USER").arguments
    assert user == "10001:10001"
    assert keywords.index("USER") < keywords.index("CMD")
    assert "HEALTHCHECK" in keywords


def test_base_image_installs_from_the_wheelhouse_only_and_the_code_after_the_dependencies():
    instructions = dockerfile_instructions(BASE_DOCKERFILE)
    (base_arg,) = [i.arguments for i in instructions if i.keyword == "ARG"]
    assert re.fullmatch(r"BASE_IMAGE=python:3\.11\.\d+-slim-bookworm", base_arg), base_arg
    froms = [i.arguments for i in instructions if i.keyword == "FROM"]
    assert froms == ["${BASE_IMAGE} AS dependencies", "dependencies AS package", "${BASE_IMAGE}"]
    text = [f"{i.keyword} {i.arguments}" for i in instructions]
    assert any("PIP_NO_INDEX=1" in t and "PIP_FIND_LINKS=/wheelhouse" in t for t in text)
    requirements = next(n for n, t in enumerate(text) if t.startswith("COPY requirements.txt"))
    install = next(n for n, t in enumerate(text) if "install -r /tmp/requirements.txt" in t)
    package = next(n for n, t in enumerate(text) if t.startswith("COPY trading"))
    assert requirements < install < package, "the dependency layer before the code"
    final = text[max(n for n, t in enumerate(text) if t.startswith("FROM")) :]
    assert not any(t.startswith("RUN") and "pip" in t for t in final), "no pip in the runtime"
    assert any(t.startswith("USER 10001:10001") for t in final)


def test_every_image_uses_the_same_base():
    bases = {
        next(i.arguments for i in dockerfile_instructions(p) if i.keyword == "ARG")
        for p in dockerfiles().values()
    }
    assert bases == {"TRADING_BASE=trading/base:dev"}, bases


# Secrets -------------------------------------------------------------------------------------


def _secret_references() -> set[tuple[str, str]]:
    refs: set[tuple[str, str]] = set()
    for path in MANIFESTS:
        for doc in load_documents(path):
            if doc["kind"] not in {"Deployment", "StatefulSet", "DaemonSet"}:
                continue
            pod = pod_spec(doc)
            for container in pod["containers"]:
                for var in container.get("env", []):
                    ref = var.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        refs.add((ref["name"], ref["key"]))
            for volume in pod.get("volumes", []):
                if "secret" in volume:
                    for item in volume["secret"]["items"]:
                        refs.add((volume["secret"]["secretName"], item["key"]))
    return refs


def test_secrets_are_referenced_by_name_and_the_deploy_guide_creates_each():
    for path in MANIFESTS:
        assert not [d for d in load_documents(path) if d["kind"] == "Secret"], path
    guide = DEPLOY_DOC.read_text()
    for name, key in sorted(_secret_references()):
        # The command with its continuation lines.
        pattern = rf"create secret generic {name}\b(?P<args>(?:[^\n]*\\\n)*[^\n]*)"
        command = re.search(pattern, guide)
        assert command, f"the README does not create Secret {name}"
        assert re.search(rf"--from-(literal|file)={re.escape(key)}=", command["args"]), (
            f"README: Secret {name} lacks key {key}"
        )


# Network policies ----------------------------------------------------------------------------


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        present = expr["key"] in labels
        value = labels.get(expr["key"])
        ok = {
            "In": present and value in expr.get("values", []),
            "NotIn": not present or value not in expr.get("values", []),
            "Exists": present,
            "DoesNotExist": not present,
        }[expr["operator"]]
        if not ok:
            return False
    return True


def _peer_matches(peer: dict[str, Any], labels: dict[str, str]) -> bool:
    """Does a policy peer select a pod with `labels` in this namespace? (ipBlocks: no; the
    `except` of every ipBlock here excludes the private ranges pods live in.)"""
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer and not _matches(
        peer["namespaceSelector"], {"kubernetes.io/metadata.name": NAMESPACE}
    ):
        return False
    return _matches(peer.get("podSelector", {}), labels)


def _port_matches(rule: dict[str, Any], port: int, destination: list[dict[str, Any]]) -> bool:
    if "ports" not in rule:
        return True
    for entry in rule["ports"]:
        wanted = entry["port"]
        if isinstance(wanted, int) and wanted == port:
            return True
        if isinstance(wanted, str) and any(resolve_port(c, wanted) == port for c in destination):
            return True
    return False


def _allowed(docs, source_labels, destination_labels, destination_containers, port) -> bool:
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]

    def direction(labels, kind, peer_labels, key) -> bool:
        selecting = [
            p
            for p in policies
            if kind in p["spec"]["policyTypes"] and _matches(p["spec"]["podSelector"], labels)
        ]
        if not selecting:
            return True
        return any(
            any(_peer_matches(peer, peer_labels) for peer in rule.get(key, []))
            and _port_matches(rule, port, destination_containers)
            for p in selecting
            for rule in p["spec"].get(kind.lower(), [])
        )

    return direction(destination_labels, "Ingress", source_labels, "from") and direction(
        source_labels, "Egress", destination_labels, "to"
    )


def _who_reaches(docs, destination: str, port_name: str) -> set[str]:
    pods = {w["metadata"]["name"]: (pod_labels(w), containers(w)) for w in workloads(docs)}
    labels, destination_containers = pods[destination]
    port = next(resolve_port(c, port_name) for c in destination_containers)
    return {
        name
        for name, (source_labels, _) in pods.items()
        if name != destination
        and _allowed(docs, source_labels, labels, destination_containers, port)
    }


def test_only_data_ingestion_and_risk_management_reach_the_gateway():
    assert _who_reaches(MAIN, "ib-gateway", "api") == set(IB_CLIENTS)


def test_only_data_ingestion_and_risk_management_reach_the_simulated_gateway():
    real_gateway = find(MAIN, "Deployment", "ib-gateway")
    docs = [d for d in MAIN if d is not real_gateway] + IBSIM
    assert _who_reaches(docs, "ib-gateway", "api") == set(IB_CLIENTS)


def test_only_the_services_reach_redis():
    assert _who_reaches(MAIN, "redis", "redis") == set(SERVICE_NAMES)


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_nothing_in_the_namespace_reaches_a_service_metrics_port(service):
    # Prometheus, from the monitoring namespace, is the only scraper.
    assert _who_reaches(MAIN, service, "metrics") == set()


def test_network_policy_evaluator_denies_without_an_allowing_rule():
    # Known answer for the evaluator itself: with only the default deny, nothing flows.
    only_deny = [d for d in MAIN if d["kind"] != "NetworkPolicy"] + [
        find(MAIN, "NetworkPolicy", "default-deny")
    ]
    assert _who_reaches(only_deny, "redis", "redis") == set()
    no_policies = [d for d in MAIN if d["kind"] != "NetworkPolicy"]
    assert _who_reaches(no_policies, "redis", "redis") == {
        w["metadata"]["name"] for w in workloads(MAIN)
    } - {"redis"}


# Monitoring stack ----------------------------------------------------------------------------


def _monitoring_config_files() -> dict[str, str]:
    """The repository files k8s/monitoring-config.sh loads, by shell variable."""
    script = (ROOT / "k8s" / "monitoring-config.sh").read_text()
    return dict(re.findall(r'^([A-Z_]+)="(monitoring/[^"]+)"$', script, flags=re.MULTILINE))


def test_monitoring_config_script_loads_files_that_exist():
    files = _monitoring_config_files()
    assert set(files) >= {
        "PROMETHEUS_CONFIG",
        "PROMETHEUS_RULES",
        "GRAFANA_DATASOURCES",
        "GRAFANA_PROVIDERS",
        "GRAFANA_DASHBOARDS",
    }
    for variable, path in files.items():
        assert (ROOT / path).exists(), f"{variable}={path} does not exist"
    assert list((ROOT / files["GRAFANA_DASHBOARDS"]).glob("*.json"))


def test_prometheus_loads_the_rules_and_scrapes_the_trading_pods():
    files = _monitoring_config_files()
    config = yaml.safe_load((ROOT / files["PROMETHEUS_CONFIG"]).read_text())
    (container,) = containers(find(MONITORING, "Deployment", "prometheus"))
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    config_file = next(a for a in container["args"] if a.startswith("--config.file="))
    assert config_file.split("=", 1)[1] == mounts["config"]["mountPath"]
    # monitoring-config.sh stores alerts.yml in prometheus-rules, mounted at the rules folder.
    rules_path = f"{mounts['rules']['mountPath']}/alerts.yml"
    assert any(fnmatch.fnmatch(rules_path, glob) for glob in config["rule_files"])
    (job,) = [j for j in config["scrape_configs"] if "kubernetes_sd_configs" in j]
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == [NAMESPACE]
    role = find(MONITORING, "Role", "prometheus-discovery")
    assert role["metadata"]["namespace"] == NAMESPACE


def test_grafana_mounts_dashboards_where_its_provisioning_looks():
    files = _monitoring_config_files()
    providers = yaml.safe_load((ROOT / files["GRAFANA_PROVIDERS"]).read_text())
    (container,) = containers(find(MONITORING, "Deployment", "grafana"))
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert providers["providers"][0]["options"]["path"] == mounts["dashboards"]
    datasources = (ROOT / files["GRAFANA_DATASOURCES"]).read_text()
    env = {v["name"]: v.get("value") for v in container["env"]}
    for variable in re.findall(r"\$\{(\w+)\}", datasources):
        assert variable in env, f"Grafana's datasource file needs {variable}"
    prometheus = find(MONITORING, "Service", "prometheus")
    assert env["PROMETHEUS_URL"] == f"http://prometheus:{prometheus['spec']['ports'][0]['port']}"


# Workflow ------------------------------------------------------------------------------------


def _workflow() -> dict[str, Any]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads `on` as true
    return workflow


def test_workflow_pins_actions_to_commits_and_keeps_expressions_out_of_run_lines():
    for job_name, job in _workflow()["jobs"].items():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
            if "run" in step:
                # Event data or secrets inside `${{ }}` in a script are a shell injection.
                assert "${{" not in step["run"], f"{job_name}: {step['run']}"


def test_workflow_grants_least_privilege_and_deploys_from_a_protected_environment():
    workflow = _workflow()
    assert workflow["permissions"] == {}
    jobs = workflow["jobs"]
    for name, job in jobs.items():
        granted = job.get("permissions", {})
        assert granted.get("contents") == "read", name
        writes = {scope for scope, level in granted.items() if level == "write"}
        assert writes == ({"packages"} if name == "images" else set()), name
    assert jobs["deploy"]["environment"] == "production"
    assert jobs["deploy"]["needs"] == ["images"]
    assert set(jobs["images"]["needs"]) == {"lint", "test"}
    for name in ("images", "deploy"):
        assert "refs/heads/main" in jobs[name]["if"] and "push" in jobs[name]["if"]
    assert workflow["on"]["pull_request"]["branches"] == ["main"]


def test_workflow_tests_with_the_readme_command():
    steps = _workflow()["jobs"]["test"]["steps"]
    assert any(step.get("run", "").endswith("bash .ci/run") for step in steps)
    ci_script = (ROOT / ".ci" / "run").read_text()
    images = re.search(r'^make images BASE_IMAGE="\$base"$', ci_script, flags=re.MULTILINE)
    test = re.search(r"^make test$", ci_script, flags=re.MULTILINE)
    assert images and test and images.start() < test.start(), "images built before the tests"
    lint = _workflow()["jobs"]["lint"]["steps"]
    assert any(step.get("run") == "make lint" for step in lint)


def test_dockerignore_keeps_what_the_images_copy():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ".venv" in patterns and ".git" in patterns
    for image, path in all_dockerfiles().items():
        for ins in dockerfile_instructions(path):
            if ins.keyword != "COPY" or "--from" in ins.arguments:
                continue
            for source in ins.arguments.split()[:-1]:
                ignored = [p for p in patterns if fnmatch.fnmatch(source, p.removeprefix("**/"))]
                assert not ignored, f"{image}: COPY {source} is excluded by .dockerignore {ignored}"
