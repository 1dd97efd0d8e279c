"""The README's commands work as written right after the quick start, with the settings `serve` reads."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WRAPPER = ROOT / "scripts" / "portkey-user-proxy"


def test_the_wrapper_runs_the_installed_command_from_any_folder(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(WRAPPER), "--version"], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"portkey-user-proxy {importlib.metadata.version('portkey-user-proxy')}"


def test_serve_and_the_debugging_commands_share_one_wrapper() -> None:
    assert os.access(WRAPPER, os.X_OK)
    assert 'exec "$(dirname "$0")/portkey-user-proxy" serve' in (ROOT / "scripts" / "serve").read_text()
    readme = (ROOT / "README.md").read_text()
    for command in ("check-user", "doctor"):
        assert f"./scripts/portkey-user-proxy {command}" in readme
