"""The ecosystems' own validators pass on every manifest, Dockerfile and workflow.

The tools live in .venv-tools (checkov pins libraries of its own), which `make test` creates from
requirements-deploy-lint.txt; without it these tests skip and say so.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.deploy.manifests import (
    MAIN_MANIFEST,
    MANIFESTS,
    ROOT,
    TOOLS_BIN,
    WORKFLOW,
    all_dockerfiles,
)


def tool(name: str) -> str:
    path = TOOLS_BIN / name
    if not path.exists():
        pytest.skip(f"{path} is missing: `make tools` (part of `make test`) creates .venv-tools")
    return str(path)


def run(*argv: str, input_text: str | None = None, timeout_s: float = 180) -> str:
    # checkov phones home for policy metadata unless told not to; CI machines may be offline.
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    result = subprocess.run(
        argv,
        cwd=ROOT,
        env=env,
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert result.returncode == 0, f"{argv[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_manifest_passes_kubernetes_validate_strict(manifest):
    out = run(tool("kubernetes-validate"), "--strict", str(manifest))
    assert "passed" in out


def test_rendered_manifest_passes_kubernetes_validate_strict(tmp_path):
    # What CI applies: the manifest after set_images.py.
    rendered = run(
        "python3",
        "k8s/set_images.py",
        "--registry",
        "ghcr.io/acme",
        "--tag",
        "0123456789abcdef0123456789abcdef01234567",
        input_text=MAIN_MANIFEST.read_text(),
    )
    path = tmp_path / "rendered.yaml"
    path.write_text(rendered)
    run(tool("kubernetes-validate"), "--strict", str(path))


@pytest.mark.parametrize("image", sorted(all_dockerfiles()))
def test_dockerfile_passes_hadolint(image):
    run(tool("hadolint"), str(all_dockerfiles()[image].relative_to(ROOT)))


def test_checkov_passes_on_manifests_dockerfiles_and_workflow():
    files = [*MANIFESTS, *all_dockerfiles().values(), WORKFLOW]
    argv = [tool("checkov"), "--skip-download", "-o", "json"]
    argv += ["--framework", "kubernetes", "dockerfile", "github_actions"]
    for path in files:
        argv += ["-f", str(path.relative_to(ROOT))]
    reports = json.loads(run(*argv, timeout_s=300))
    reports = reports if isinstance(reports, list) else [reports]
    by_type = {r["check_type"]: r for r in reports if "check_type" in r}
    # A framework that parsed nothing reports nothing (checkov silently skips a workflow it
    # cannot parse), so each must have run checks, and none may have failed.
    assert set(by_type) == {"kubernetes", "dockerfile", "github_actions"}, by_type.keys()
    for check_type, report in by_type.items():
        summary = report["summary"]
        failed = [
            f"{c['check_id']} {c['resource']} ({c['file_path']})"
            for c in report["results"]["failed_checks"]
        ]
        assert not failed, f"checkov {check_type}: {failed}"
        assert summary["passed"] > 0, f"checkov {check_type} ran no check"
        assert summary["parsing_errors"] == 0
    scanned = {c["file_path"].lstrip("/") for r in reports for c in r["results"]["passed_checks"]}
    for path in files:
        assert str(path.relative_to(ROOT)) in scanned, f"checkov did not scan {path}"


def test_workflow_passes_actionlint():
    run(tool("actionlint"), str(WORKFLOW.relative_to(ROOT)))


def test_workflow_passes_the_github_workflow_schema():
    run(
        tool("check-jsonschema"),
        "--builtin-schema",
        "vendor.github-workflows",
        str(WORKFLOW.relative_to(ROOT)),
    )


def test_shell_scripts_parse():
    for script in ("k8s/monitoring-config.sh", "docker/base-image.sh", ".ci/run"):
        run("bash", "-n", script)
