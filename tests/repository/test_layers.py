"""The package's layers, as pyproject.toml writes them down, hold; and an upward import breaks them.

import-linter reads the contract from pyproject.toml: operations, the composition root, settings,
the forwarder and the answers it maps failures to, budgets, then the inbound side, attribution and
the upstream side (independent of each other), MongoDB, observability, dialects, and the shared
vocabulary at the bottom.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "portkey_user_proxy"


def _lint_imports(source: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = (
        "import sys\n"
        "from importlinter.cli import lint_imports\n"
        f"sys.exit(lint_imports(config_filename={str(ROOT / 'pyproject.toml')!r}, no_cache=True, no_logo=True))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={"PYTHONPATH": str(source), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_package_keeps_its_layers(tmp_path: Path) -> None:
    result = _lint_imports(PACKAGE.parent, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "upward_import"),
    [
        ("inbound/body.py", "from ..forwarder import CLIENT_CLOSED"),  # a side reaching up to the request path
        ("attribution/identity.py", "from ..settings import Settings"),  # domain code reading the settings
        ("upstream/traces.py", "from ..attribution.identity import identify"),  # one side into another
        ("mongodb/failures.py", "from ..attribution.directory import User"),  # shared MongoDB vocabulary reaching up
        ("budgets/ledger.py", "from ..answers import answer_for"),  # domain code choosing the client's answer
    ],
)
def test_an_upward_import_breaks_the_layers(tmp_path: Path, module: str, upward_import: str) -> None:
    copy = tmp_path / "src" / "portkey_user_proxy"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text() + f"\n{upward_import}  # noqa\n")
    result = _lint_imports(copy.parent, tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
