"""Read the deployment files the way Kubernetes, Docker and the settings model see them."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr

from trading.runner import SERVICES
from trading.settings import Settings, env_name

ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".venv-tools" / "bin"
MAIN_MANIFEST = ROOT / "k8s-deployment.yaml"
MONITORING_MANIFEST = ROOT / "k8s" / "monitoring-stack.yaml"
IBSIM_MANIFEST = ROOT / "k8s" / "ibsim.yaml"
MANIFESTS = (MAIN_MANIFEST, MONITORING_MANIFEST, IBSIM_MANIFEST)
WORKFLOW = ROOT / ".github" / "workflows" / "ci-cd.yml"
DEPLOY_DOC = ROOT / "README.md"
NAMESPACE = "trading"

SERVICE_NAMES = tuple(name for name, _ in SERVICES)
SERVICE_SCRIPTS = dict(SERVICES)
IBSIM_DOCKERFILE = ROOT / "docker" / "ibsim.Dockerfile"
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet"})


BASE_DOCKERFILE = ROOT / "docker" / "base.Dockerfile"
REDIS_DOCKERFILE = ROOT / "docker" / "redis.Dockerfile"


def dockerfiles() -> dict[str, Path]:
    """Image name -> Dockerfile: one per service folder, and ibsim (the six images CI pushes)."""
    files = {name: ROOT / name / "Dockerfile" for name in SERVICE_NAMES}
    files["ibsim"] = IBSIM_DOCKERFILE
    return files


def all_dockerfiles() -> dict[str, Path]:
    """Every Dockerfile `make images` builds: the six, their shared base and the local Redis."""
    return {**dockerfiles(), "base": BASE_DOCKERFILE, "redis": REDIS_DOCKERFILE}


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} named {name!r}")


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] in WORKLOAD_KINDS]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return pod_spec(workload)["containers"]


def container_ports(container: dict[str, Any]) -> dict[str, int]:
    """Port name (or the number as text, for unnamed ports) -> container port number."""
    out = {}
    for port in container.get("ports", []):
        out[port.get("name", str(port["containerPort"]))] = port["containerPort"]
    return out


def resolve_port(container: dict[str, Any], port: int | str) -> int | None:
    """A probe's or Service's port (number or name) as the container's port number, or None."""
    ports = container_ports(container)
    if isinstance(port, int):
        return port if port in ports.values() else None
    return ports.get(port)


# Settings ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SettingField:
    env: str
    default: Any
    secret: bool


def setting_fields(settings: Settings | None = None) -> list[SettingField]:
    """Every leaf of the Settings model as its environment variable, value and secrecy; the
    value is the default unless `settings` (a loaded instance) is given."""
    out: list[SettingField] = []

    def walk(model: BaseModel, path: tuple[str, ...]) -> None:
        for name, info in type(model).model_fields.items():
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                walk(value, (*path, name))
            else:
                secret = "SecretStr" in str(info.annotation) or isinstance(value, SecretStr)
                out.append(SettingField(env_name(*path, name), value, secret))

    walk(Settings.model_construct() if settings is None else settings, ())
    return out


def env_text(value: Any) -> str:
    """A default as the text an environment variable would carry."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list | dict):
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    return str(getattr(value, "value", value))


SECRET_PLACEHOLDERS = {
    ("trading-redis", "url"): "redis://:placeholder@redis:6379/0",
    ("trading-dashboard", "token"): "placeholder-token",
}


def container_environment(
    docs: list[dict[str, Any]], container: dict[str, Any]
) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """The container's environment (ConfigMaps expanded; secrets as placeholders) and, for
    each variable that comes from a Secret, the (secret name, key) it comes from."""
    env: dict[str, str] = {}
    from_secrets: dict[str, tuple[str, str]] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(find(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            raise AssertionError(f"unexpected envFrom {source}")
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["secretKeyRef"]
            from_secrets[var["name"]] = (ref["name"], ref["key"])
            env[var["name"]] = SECRET_PLACEHOLDERS.get((ref["name"], ref["key"]), "placeholder")
        else:
            raise AssertionError(f"unexpected env source {var}")
    return env, from_secrets


# Dockerfiles ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    arguments: str


def dockerfile_instructions(path: Path) -> list[Instruction]:
    """The instructions of a Dockerfile, continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, arguments = full.partition(" ")
        out.append(Instruction(keyword.upper(), arguments.strip()))
    return out


def exec_form(arguments: str) -> list[str]:
    """A JSON exec-form argument list (CMD ["python", ...]); shell form is split like sh."""
    arguments = arguments.strip()
    if arguments.startswith("["):
        return json.loads(arguments)
    return shlex.split(arguments)


def healthcheck_command(path: Path) -> list[str]:
    for ins in dockerfile_instructions(path):
        if ins.keyword == "HEALTHCHECK":
            _, _, command = ins.arguments.partition("CMD ")
            return exec_form(command)
    raise AssertionError(f"{path} has no HEALTHCHECK")


def cmd(path: Path) -> list[str]:
    commands = [ins for ins in dockerfile_instructions(path) if ins.keyword == "CMD"]
    assert len(commands) == 1, f"{path}: expected one CMD"
    return exec_form(commands[0].arguments)


def exposed_ports(path: Path) -> set[int]:
    ports: set[int] = set()
    for ins in dockerfile_instructions(path):
        if ins.keyword == "EXPOSE":
            ports |= {int(re.sub(r"/.*", "", p)) for p in ins.arguments.split()}
    return ports
