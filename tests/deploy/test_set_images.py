"""k8s/set_images.py: CI's rewrite of our images to the registry and commit tag it pushed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import yaml

from tests.deploy.manifests import IBSIM_MANIFEST, MAIN_MANIFEST, ROOT, SERVICE_NAMES

SCRIPT = ROOT / "k8s" / "set_images.py"
_spec = importlib.util.spec_from_file_location("set_images", SCRIPT)
set_images_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(set_images_module)
set_images = set_images_module.set_images

SHA = "3f2c1e0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e"


def images(text: str) -> list[str]:
    out = []
    for doc in yaml.safe_load_all(text):
        if doc and doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet"}:
            out += [c["image"] for c in doc["spec"]["template"]["spec"]["containers"]]
    return out


def test_rewrites_exactly_the_five_service_images():
    original = MAIN_MANIFEST.read_text()
    rendered, names = set_images(original, "ghcr.io/acme", SHA)
    assert names == list(SERVICE_NAMES)
    before, after = images(original), images(rendered)
    changed = {b: a for b, a in zip(before, after, strict=True) if a != b}
    assert sorted(changed.values()) == sorted(f"ghcr.io/acme/trading-{n}:{SHA}" for n in names)
    untouched = [a for a in after if a not in changed.values()]
    assert untouched == ["redis:7.4.2-alpine", "ghcr.io/gnzsnz/ib-gateway:10.37.1n"]
    # Nothing but image lines moved.
    assert len(rendered.splitlines()) == len(original.splitlines())


def test_rewrites_the_ibsim_image():
    rendered, names = set_images(IBSIM_MANIFEST.read_text(), "registry.local:5000/team", "v1.2")
    assert names == ["ibsim"]
    assert images(rendered) == ["registry.local:5000/team/trading-ibsim:v1.2"]


def test_is_idempotent_and_reversible():
    original = MAIN_MANIFEST.read_text()
    once, _ = set_images(original, "ghcr.io/acme", SHA)
    twice, _ = set_images(once, "ghcr.io/acme", SHA)
    assert once == twice
    back, _ = set_images(once, "ghcr.io/trading-example", "0.1.0")
    assert back == original


@pytest.mark.parametrize(
    "registry,tag",
    [
        ("ghcr.io/Acme", SHA),  # uppercase is not a valid repository path
        ("ghcr.io/acme", "bad tag"),
        ("ghcr.io/acme", "-leading-dash"),
        ("ghcr.io/acme/", SHA),
        ("ghcr.io/acme", "a" * 129),
    ],
)
def test_refuses_invalid_registry_or_tag(registry, tag):
    with pytest.raises(ValueError, match="registry=|tag="):
        set_images(MAIN_MANIFEST.read_text(), registry, tag)


def test_command_line_renders_and_fails_on_input_without_our_images():
    run = [sys.executable, str(SCRIPT), "--registry", "ghcr.io/acme", "--tag", SHA]
    ok = subprocess.run(
        run, input=MAIN_MANIFEST.read_text(), capture_output=True, text=True, timeout=30
    )
    assert ok.returncode == 0, ok.stderr
    assert f"ghcr.io/acme/trading-strategy:{SHA}" in ok.stdout
    empty = subprocess.run(
        run, input="kind: ConfigMap\n", capture_output=True, text=True, timeout=30
    )
    assert empty.returncode == 2
    assert "no trading-<name> image" in empty.stderr
