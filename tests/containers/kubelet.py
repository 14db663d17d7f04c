"""A pod spec run on Docker as the kubelet would run it: the closest to a cluster this world has.

No Kubernetes API server can run here and no image can be pulled, so this module does the
kubelet's part for one namespace of pods on one Docker daemon:

- every pod shares one network namespace, made by an infra ("pause") container on `--network
  none`: only loopback, nothing reachable from or to the host; each Service name resolves to
  127.0.0.1 inside it (a Service whose port differs from its target port would need kube-proxy,
  which is not emulated: it is refused). The pods' container ports must therefore not clash;
- a container gets its image (through an explicit map from the manifest's image to a local one),
  `command` as entrypoint and `args` as arguments with `$(VAR)` expanded from its environment,
  the environment from `envFrom` ConfigMaps then `env` (values, ConfigMap and Secret keys, a few
  field refs), the pod's and the container's securityContext (uid and gid, supplemental and fs
  groups, read-only root, no-new-privileges, capabilities, seccomp), emptyDir volumes and
  volume claims as tmpfs mounts (emptyDir mode 0777, a claim 0755; group fsGroup with the
  setgid bit when the pod sets fsGroup), `resources` as --memory, --memory-reservation, --cpus
  and --cpu-shares, and terminationGracePeriodSeconds as the stop timeout;
- startup, liveness and readiness probes (exec through `docker exec`, httpGet and tcpSocket
  from a prober container inside the pod network) run on the kubelet's schedule: each probe on
  its own period after its initialDelaySeconds, liveness and readiness only once the startup
  probe has passed, successThreshold and failureThreshold counted in a row, timeoutSeconds
  enforced. A pod is Ready when every container's readiness has passed successThreshold times.
  The kubelet connects to the pod IP, so a port bound to loopback alone fails an httpGet or
  tcpSocket probe here too (the prober reads the namespace's listening sockets).

A startup or liveness probe reaching its failureThreshold, or a container that exits, restarts
the container as restartPolicy Always does (without the kubelet's growing back-off); a second
restart is CrashLoopBackOff and fails. A missing ConfigMap, Secret or key, or a pod that would
run as root with runAsNonRoot, is refused before anything starts (CreateContainerConfigError).
Not emulated: scheduling, the restart back-off, Services' load balancing and kube-proxy,
NetworkPolicies, DNS search domains, projected/configMap/secret volumes, imagePullPolicy (images
are local).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

DEFAULT_PERIOD_S = 10
DEFAULT_TIMEOUT_S = 1
DEFAULT_FAILURE_THRESHOLD = 3
DEFAULT_SUCCESS_THRESHOLD = 1
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class PodSpecError(ValueError):
    """What the kubelet would refuse to run (CreateContainerConfigError and the like)."""


# Quantities and expansion ----------------------------------------------------------------------

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1)}
_DECIMAL |= {"k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12)}
_DECIMAL |= {"P": Decimal(10**15), "E": Decimal(10**18)}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)$")


def quantity(text: str | int | float) -> Decimal:
    """A Kubernetes resource quantity as a number: "1536Mi" -> 1610612736, "500m" -> 0.5."""
    match = _QUANTITY.match(str(text).strip())
    if not match:
        raise PodSpecError(f"quantity={text!r} is not a Kubernetes quantity")
    number, suffix = Decimal(match[1]), match[2]
    return number * (_BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix])


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: $(NAME) becomes NAME's value when NAME is defined and stays
    as written when not; $$ is a literal $."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("$(", i) and (end := text.find(")", i + 2)) != -1:
            name = text[i + 2 : end]
            out.append(env[name] if name in env else text[i : end + 1])
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


# One container's docker run ----------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    """What the API server would hold: ConfigMaps and Services from the manifests, the test's
    Secrets, and the local image standing in for each manifest image."""

    namespace: str
    config_maps: dict[str, dict[str, str]]
    secrets: dict[str, dict[str, str]]
    services: list[dict[str, Any]]
    images: dict[str, str]

    @classmethod
    def from_documents(
        cls,
        docs: Iterable[dict[str, Any]],
        secrets: dict[str, dict[str, str]],
        images: dict[str, str],
        namespace: str,
    ) -> Cluster:
        docs = list(docs)
        config_maps = {
            d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"
        }
        services = [d for d in docs if d["kind"] == "Service"]
        return cls(namespace, config_maps, secrets, services, images)


@dataclass(frozen=True)
class ContainerPlan:
    """A container as the kubelet would start it: the `docker create` argv (secrets passed by
    name only) and the environment those names take their values from."""

    pod: str
    name: str
    docker_name: str
    argv: list[str]
    env: dict[str, str]
    spec: dict[str, Any]
    user: tuple[int, int]
    read_only: bool
    memory_limit: int | None
    cpu_limit: Decimal | None


def _resolve_env(cluster: Cluster, pod_name: str, container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref, store, kind = source["configMapRef"], cluster.config_maps, "ConfigMap"
        elif "secretRef" in source:
            ref, store, kind = source["secretRef"], cluster.secrets, "Secret"
        else:
            raise PodSpecError(f"{pod_name}: envFrom {source} is not emulated")
        if ref["name"] not in store:
            if ref.get("optional"):
                continue
            raise PodSpecError(f"{pod_name}: {kind} {ref['name']!r} not found")
        for key, value in store[ref["name"]].items():
            if ENV_NAME.match(prefix + key):  # the kubelet skips invalid names (an event)
                env[prefix + key] = str(value)
    for var in container.get("env", []):
        name = var["name"]
        if "value" in var:
            env[name] = expand(str(var["value"]), env)
            continue
        source = var.get("valueFrom", {})
        if "secretKeyRef" in source or "configMapKeyRef" in source:
            secret = "secretKeyRef" in source
            ref = source["secretKeyRef" if secret else "configMapKeyRef"]
            store = cluster.secrets if secret else cluster.config_maps
            kind = "Secret" if secret else "ConfigMap"
            data = store.get(ref["name"])
            if data is None or ref["key"] not in data:
                if ref.get("optional"):
                    continue
                missing = f"{kind} {ref['name']!r}" + (
                    "" if data is None else f" key {ref['key']!r}"
                )
                raise PodSpecError(f"{pod_name}: env {name}: {missing} not found")
            env[name] = str(data[ref["key"]])
        elif "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            fields = {"metadata.name": pod_name, "metadata.namespace": cluster.namespace}
            fields |= {"status.podIP": "127.0.0.1", "spec.nodeName": "docker"}
            if path not in fields:
                raise PodSpecError(f"{pod_name}: env {name}: fieldRef {path} is not emulated")
            env[name] = fields[path]
        else:
            raise PodSpecError(f"{pod_name}: env {name}: {source} is not emulated")
    return env


def _security(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """The container's effective securityContext: its own fields over the pod's."""
    pod_context = pod.get("securityContext", {})
    shared = ("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile")
    merged = {k: pod_context[k] for k in shared if k in pod_context}
    return merged | container.get("securityContext", {})


def _mounts(workload: dict[str, Any], pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    claims = {c["metadata"]["name"]: c for c in workload["spec"].get("volumeClaimTemplates", [])}
    fs_group = pod.get("securityContext", {}).get("fsGroup")
    out = []
    for mount in container.get("volumeMounts", []):
        if "subPath" in mount or "subPathExpr" in mount:
            raise PodSpecError(f"volumeMount {mount} with a subPath is not emulated")
        options = ["rw" if not mount.get("readOnly") else "ro", "nosuid", "nodev"]
        if mount["name"] in volumes:
            volume = volumes[mount["name"]]
            if "emptyDir" not in volume:
                raise PodSpecError(f"volume {volume} is not emulated (emptyDir only)")
            limit = (volume["emptyDir"] or {}).get("sizeLimit")
            if limit:
                options.append(f"size={int(quantity(limit))}")
            mode = "2777" if fs_group is not None else "0777"
        elif mount["name"] in claims:
            size = claims[mount["name"]]["spec"]["resources"]["requests"]["storage"]
            options.append(f"size={int(quantity(size))}")
            mode = "2775" if fs_group is not None else "0755"
        else:
            raise PodSpecError(f"volumeMount {mount['name']!r} names no volume or claim")
        options.append(f"mode={mode}")
        if fs_group is not None:
            options.append(f"gid={fs_group}")
        out += ["--tmpfs", f"{mount['mountPath']}:{','.join(options)}"]
    return out


def plan_container(
    cluster: Cluster,
    workload: dict[str, Any],
    container: dict[str, Any],
    infra: str,
    run_id: str,
    image_user: str | None = None,
) -> ContainerPlan:
    """The `docker create` of one container of the workload's pod template. `image_user` is the
    image's USER, used as the kubelet does when the pod sets no runAsUser."""
    pod_name = workload["metadata"]["name"]
    pod = workload["spec"]["template"]["spec"]
    if container["image"] not in cluster.images:
        raise PodSpecError(f"{pod_name}: no local image stands in for {container['image']!r}")
    image = cluster.images[container["image"]]
    env = _resolve_env(cluster, pod_name, container)
    security = _security(pod, container)

    uid_text, _, gid_text = (image_user or "0").partition(":")
    uid = security.get("runAsUser", int(uid_text) if uid_text.isdigit() else None)
    gid = security.get("runAsGroup", int(gid_text) if gid_text.isdigit() else uid)
    if security.get("runAsNonRoot") and (uid is None or uid == 0):
        raise PodSpecError(
            f"{pod_name}/{container['name']}: runAsNonRoot and the image runs as "
            f"{image_user or 'root'!r}: the kubelet refuses to start it"
        )
    if security.get("privileged"):
        raise PodSpecError(f"{pod_name}: privileged containers are not emulated")

    docker_name = f"k8s-{run_id}-{pod_name}-{container['name']}"
    argv = ["docker", "create", "--name", docker_name, "--label", f"trading.run={run_id}"]
    argv += ["--network", f"container:{infra}", "--restart", "no"]
    argv += ["--user", f"{uid}:{gid if gid is not None else uid}"]
    groups = pod.get("securityContext", {}).get("supplementalGroups", [])
    fs_group = pod.get("securityContext", {}).get("fsGroup")
    for group in [*groups, *([fs_group] if fs_group is not None else [])]:
        argv += ["--group-add", str(group)]
    read_only = bool(security.get("readOnlyRootFilesystem"))
    if read_only:
        argv.append("--read-only")
    if security.get("allowPrivilegeEscalation") is False:
        argv += ["--security-opt", "no-new-privileges"]
    capabilities = security.get("capabilities", {})
    for cap in capabilities.get("drop", []):
        argv += ["--cap-drop", cap]
    for cap in capabilities.get("add", []):
        argv += ["--cap-add", cap]
    seccomp = security.get("seccompProfile", {}).get("type", "RuntimeDefault")
    if seccomp == "Unconfined":
        argv += ["--security-opt", "seccomp=unconfined"]
    elif seccomp != "RuntimeDefault":
        raise PodSpecError(f"{pod_name}: seccompProfile {seccomp} is not emulated")
    argv += _mounts(workload, pod, container)

    resources = container.get("resources", {})
    limits, requests = resources.get("limits", {}), resources.get("requests", {})
    memory_limit = int(quantity(limits["memory"])) if "memory" in limits else None
    cpu_limit = quantity(limits["cpu"]) if "cpu" in limits else None
    if memory_limit is not None:
        argv += ["--memory", str(memory_limit)]
    if "memory" in requests:
        argv += ["--memory-reservation", str(int(quantity(requests["memory"])))]
    if cpu_limit is not None:
        argv += ["--cpus", str(cpu_limit)]
    if "cpu" in requests:  # the kubelet's cpu.shares: millicores * 1024 / 1000, at least 2
        argv += ["--cpu-shares", str(max(2, int(quantity(requests["cpu"]) * 1024)))]
    grace = pod.get("terminationGracePeriodSeconds", 30)
    argv += ["--stop-timeout", str(grace)]
    if "workingDir" in container:
        argv += ["--workdir", container["workingDir"]]
    for name in env:
        argv += ["-e", name]

    command = [expand(c, env) for c in container.get("command", [])]
    args = [expand(a, env) for a in container.get("args", [])]
    if command:
        argv += ["--entrypoint", command[0], image, *command[1:], *args]
    else:
        argv += [image, *args]
    return ContainerPlan(
        pod_name, container["name"], docker_name, argv, env, container, (uid, gid or uid),
        read_only, memory_limit, cpu_limit,
    )  # fmt: skip


def resolve_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return declared["containerPort"]
    raise PodSpecError(f"{container['name']}: no port named {port!r}")


def service_hosts(cluster: Cluster, workloads: list[dict[str, Any]]) -> list[str]:
    """The Service names the pods may resolve (short, namespaced and cluster-local), each to
    127.0.0.1; refuses a Service that would need kube-proxy to translate its port."""
    names = []
    for service in cluster.services:
        selector = service["spec"].get("selector", {})
        pods = [
            w for w in workloads
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]  # fmt: skip
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for workload in pods:
                for container in workload["spec"]["template"]["spec"]["containers"]:
                    for declared in container.get("ports", []):
                        if target in (declared.get("name"), declared["containerPort"]) and (
                            declared["containerPort"] != port["port"]
                        ):
                            raise PodSpecError(
                                f"Service {service['metadata']['name']} maps {port['port']} to "
                                f"{{{declared['containerPort']}}}: port translation (kube-proxy) "
                                "is not emulated"
                            )
        name = service["metadata"]["name"]
        names += [name, f"{name}.{cluster.namespace}", f"{name}.{cluster.namespace}.svc"]
        names.append(f"{name}.{cluster.namespace}.svc.cluster.local")
    return names


# Running them ------------------------------------------------------------------------------------


def docker(*args: str, timeout_s: float = 60.0, env: dict[str, str] | None = None):
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout_s, env=env, check=False
    )


PROBER = r"""
import json, socket, sys, urllib.request

def listeners(port):
    addresses = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                addresses.add(address)
    return addresses

LOOPBACK = {"0100007F", "00000000000000000000000001000000"}

for line in sys.stdin:
    request = json.loads(line)
    port, timeout = request["port"], request["timeout"]
    bound = listeners(port)
    if not bound:
        reply = {"ok": False, "detail": f"nothing listens on port {port}"}
    elif bound <= LOOPBACK:
        reply = {"ok": False, "detail": f"port {port} listens on loopback only: the kubelet "
                 "connects to the pod IP"}
    elif request["kind"] == "tcpSocket":
        try:
            socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
            reply = {"ok": True, "detail": "connected"}
        except OSError as exc:
            reply = {"ok": False, "detail": f"connect: {exc}"}
    else:
        url = f"http://127.0.0.1:{port}{request['path']}"
        req = urllib.request.Request(url, headers=request["headers"])
        req.add_header("User-Agent", "kube-probe/1.31")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except Exception as exc:
            status = None
            reply = {"ok": False, "detail": f"GET {url}: {type(exc).__name__}: {exc}"}
        if status is not None:
            reply = {"ok": 200 <= status < 400, "detail": f"GET {url}: {status}"}
    print(json.dumps(reply), flush=True)
"""


class Prober:
    """httpGet and tcpSocket probes from inside the pods' network namespace: a long-lived
    container running PROBER, asked one probe at a time over its stdin."""

    def __init__(self, infra: str, image: str, run_id: str):
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            ["docker", "run", "--rm", "-i", "--name", f"k8s-{run_id}-prober",
             "--label", f"trading.run={run_id}", "--network", f"container:{infra}",
             "--read-only", "--cap-drop", "ALL", "--user", "65534:65534",
             "--entrypoint", "python", image, "-u", "-c", PROBER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    def probe(self, request: dict[str, Any]) -> tuple[bool, str]:
        with self.lock:
            assert self.proc.stdin and self.proc.stdout
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            reply = self.proc.stdout.readline()
        if not reply:
            return False, "the prober container exited"
        answer = json.loads(reply)
        return answer["ok"], answer["detail"]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@dataclass
class ProbeRecord:
    kind: str
    spec: dict[str, Any]
    successes: int = 0
    failures: int = 0
    passed_once: bool = False
    succeeded: bool = False
    """Startup: passed; readiness: at successThreshold; liveness: passed at least once."""
    history: list[str] = field(default_factory=list)


class PodRunner:
    """The containers of a set of workloads, started together, probed on the kubelet's
    schedule, and restarted as restartPolicy Always does: after a startup or liveness probe
    reaches its failureThreshold, or when the container exits. `restarts` records each restart
    and its reason; a container restarted more than `max_restarts` times is a failure (the
    kubelet's CrashLoopBackOff), as is a probe that has not passed by the caller's deadline."""

    def __init__(
        self, cluster: Cluster, plans: list[ContainerPlan], prober: Prober, max_restarts: int = 1
    ):
        self.cluster = cluster
        self.plans = plans
        self.prober = prober
        self.max_restarts = max_restarts
        self.started_at: dict[str, float] = {}
        self.generation: dict[str, int] = {}
        self.probes: dict[tuple[str, str], ProbeRecord] = {}
        self.restarts: dict[str, list[str]] = {p.docker_name: [] for p in plans}
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()

    def start(self) -> None:
        for plan in self.plans:
            env = {k: v for k, v in os.environ.items() if k.startswith(("PATH", "HOME", "DOCKER_"))}
            created = docker(*plan.argv[1:], env=env | plan.env)
            if created.returncode != 0:
                raise PodSpecError(f"{plan.pod}: docker create failed: {created.stderr.strip()}")
        for plan in self.plans:  # as the kubelet does on a node: every pod at once
            started = docker("start", plan.docker_name)
            if started.returncode != 0:
                raise PodSpecError(f"{plan.pod}: docker start failed: {started.stderr.strip()}")
            self.started_at[plan.docker_name] = time.monotonic()
            self.generation[plan.docker_name] = 0
        for plan in self.plans:
            for kind in PROBES:
                if kind in plan.spec:
                    record = ProbeRecord(kind, plan.spec[kind])
                    self.probes[(plan.docker_name, kind)] = record
                    thread = threading.Thread(
                        target=self._worker, args=(plan, record), daemon=True,
                        name=f"{plan.pod}-{kind}",
                    )  # fmt: skip
                    self.threads.append(thread)
                    thread.start()

    def restart(self, plan: ContainerPlan, reason: str) -> None:
        """Kill and start the container again (probes from the beginning; its tmpfs volumes
        start empty, a claim's too, unlike a cluster's volume), or record a failure once it
        has been restarted max_restarts times."""
        with self.lock:
            restarts = self.restarts[plan.docker_name]
            if len(restarts) > self.max_restarts:
                return  # already failed
            restarts.append(reason)
            if len(restarts) > self.max_restarts:
                self.failures.append(
                    f"{plan.pod}/{plan.name}: restarted {len(restarts) - 1} times and would be "
                    f"again (CrashLoopBackOff): {'; '.join(restarts)}"
                )
                return
            grace = str(self.cluster_grace(plan))
            docker("restart", "--time", grace, plan.docker_name, timeout_s=float(grace) + 60)
            self.started_at[plan.docker_name] = time.monotonic()
            self.generation[plan.docker_name] += 1
            for kind in PROBES:
                record = self.probes.get((plan.docker_name, kind))
                if record is not None:
                    record.successes = record.failures = 0
                    record.succeeded = False

    @staticmethod
    def cluster_grace(plan: ContainerPlan) -> int:
        return int(plan.argv[plan.argv.index("--stop-timeout") + 1])

    def check_exits(self) -> None:
        """Restart the containers that have exited (restartPolicy Always)."""
        for plan in self.plans:
            state = docker("inspect", "--format", "{{json .State}}", plan.docker_name)
            if state.returncode != 0:
                self.restart(plan, "the container is gone")
                continue
            parsed = json.loads(state.stdout)
            if not parsed["Running"]:
                oom = " (OOM killed)" if parsed.get("OOMKilled") else ""
                self.restart(plan, f"exited with code {parsed['ExitCode']}{oom}")

    def started(self, plan: ContainerPlan) -> bool:
        record = self.probes.get((plan.docker_name, "startupProbe"))
        return record is None or record.succeeded

    def _worker(self, plan: ContainerPlan, record: ProbeRecord) -> None:
        spec = record.spec
        period = spec.get("periodSeconds", DEFAULT_PERIOD_S)
        failure_threshold = spec.get("failureThreshold", DEFAULT_FAILURE_THRESHOLD)
        success_threshold = spec.get("successThreshold", DEFAULT_SUCCESS_THRESHOLD)
        delay = spec.get("initialDelaySeconds", 0)
        generation = -1
        while not self.stop.is_set():
            if generation != self.generation[plan.docker_name]:  # a (re)started container
                generation = self.generation[plan.docker_name]
                wait = self.started_at[plan.docker_name] + delay - time.monotonic()
                if self.stop.wait(max(0.0, wait)):
                    return
            done = record.kind == "startupProbe" and record.succeeded
            if not done and (record.kind == "startupProbe" or self.started(plan)):
                ok, detail = self.run_probe(plan, spec)
                if generation != self.generation[plan.docker_name]:
                    continue  # restarted while this probe ran: its answer is for the old one
                record.history.append(f"{'ok' if ok else 'FAIL'}: {detail}")
                if ok:
                    record.passed_once = True
                    record.failures = 0
                    record.successes += 1
                    if record.successes >= success_threshold:
                        record.succeeded = True
                else:
                    record.successes = 0
                    record.failures += 1
                    if record.kind == "readinessProbe":
                        record.succeeded = False
                    elif record.failures >= failure_threshold:
                        self.restart(
                            plan, f"{record.kind} failed {record.failures} times in a row: {detail}"
                        )
                        if generation != self.generation[plan.docker_name]:
                            continue
            if self.stop.wait(period):
                return

    def run_probe(self, plan: ContainerPlan, spec: dict[str, Any]) -> tuple[bool, str]:
        timeout = spec.get("timeoutSeconds", DEFAULT_TIMEOUT_S)
        if "exec" in spec:
            command = spec["exec"]["command"]
            try:
                result = docker("exec", plan.docker_name, *command, timeout_s=timeout)
            except subprocess.TimeoutExpired:
                return False, f"exec {command}: timed out after {timeout}s"
            detail = (result.stderr or result.stdout).strip()[-300:]
            return result.returncode == 0, f"exec {command}: exit {result.returncode} {detail}"
        if "httpGet" in spec:
            get = spec["httpGet"]
            if get.get("scheme", "HTTP") != "HTTP" or get.get("host"):
                return False, f"httpGet {get}: only HTTP to the pod IP is emulated"
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders", [])}
            request = {"kind": "httpGet", "port": resolve_port(plan.spec, get["port"])}
            request |= {"path": get.get("path", "/"), "headers": headers, "timeout": timeout}
            return self.prober.probe(request)
        if "tcpSocket" in spec:
            port = resolve_port(plan.spec, spec["tcpSocket"]["port"])
            return self.prober.probe({"kind": "tcpSocket", "port": port, "timeout": timeout})
        return False, f"probe {spec} is not emulated (exec, httpGet, tcpSocket)"

    def ready(self, plan: ContainerPlan) -> bool:
        record = self.probes.get((plan.docker_name, "readinessProbe"))
        return self.started(plan) and (record is None or record.succeeded)

    def all_probes_passed(self) -> bool:
        return all(r.passed_once for r in self.probes.values())

    def logs(self, plan: ContainerPlan, tail: int = 40) -> str:
        result = docker("logs", "--tail", str(tail), plan.docker_name)
        return result.stdout + result.stderr

    def shutdown(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)
