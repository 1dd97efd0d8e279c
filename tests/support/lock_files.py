"""Reader for the lock files (pip's requirements format with hashes, as `./scripts/lock` writes them)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support.deploy_files import ROOT

LOCK = ROOT / "requirements.txt"
BUILD_LOCK = ROOT / "requirements-build.txt"
PYTHONS = ("3.11", "3.12", "3.13")
ARCHITECTURES = ("x86_64", "aarch64")


@dataclass(frozen=True, slots=True)
class Pin:
    name: str  # canonical: lower case, dashes
    version: Version
    marker: Marker | None
    hashes: tuple[str, ...]

    def applies_to(self, environment: dict[str, str]) -> bool:
        return self.marker is None or self.marker.evaluate(environment)


def pins(path: Path) -> list[Pin]:
    """Every requirement line of a lock file; each must be an exact `==` pin."""
    found = []
    for line in path.read_text().replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        hashes = tuple(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
        requirement = Requirement(re.sub(r"\s--hash=\S+", "", line).strip())
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{path.name}: {requirement} is not an exact pin"
        found.append(Pin(canonicalize_name(requirement.name), Version(specifier.version), requirement.marker, hashes))
    return found


def linux_targets() -> dict[str, dict[str, str]]:
    """The marker environments of the image's platforms: linux/amd64 and linux/arm64, CPython 3.11 to 3.13."""
    return {
        f"linux/{machine} CPython {python}": {
            "python_version": python,
            "python_full_version": f"{python}.0",
            "platform_machine": machine,
            "sys_platform": "linux",
            "platform_system": "Linux",
            "os_name": "posix",
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_version": "",
            "implementation_version": f"{python}.0",
        }
        for python in PYTHONS
        for machine in ARCHITECTURES
    }
