"""The commands the docs show work as written right after the quick start, with the settings `serve` reads."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
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
    page = (ROOT / "docs" / "cli.md").read_text()
    for command in ("check-user", "doctor"):
        assert f"./scripts/portkey-user-proxy {command}" in page


def _executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def test_a_venv_left_without_pip_is_built_again(tmp_path: Path) -> None:
    # On Debian and Ubuntu without python3-venv, the first run's `python3 -m venv` stops after
    # .venv/bin/python, before pip. Once the admin installs the package, the next run must work.
    project = tmp_path / "project"
    _executable(project / "scripts" / "portkey-user-proxy", WRAPPER.read_text())
    (project / "pyproject.toml").write_text("")
    _executable(project / ".venv" / "bin" / "python", "#!/bin/sh\necho 'No module named pip' >&2\nexit 1\n")
    # Stand-ins for python3 and the venv it makes, so the test runs no real install: the venv's pip
    # "installs" the project by putting its command in place.
    template = tmp_path / "venv"
    _executable(template / "bin" / "pip", "#!/bin/sh\n")
    _executable(
        template / "bin" / "python",
        '#!/bin/sh\n[ "$1 $2" = "-m pip" ] && cp .venv/command .venv/bin/portkey-user-proxy\n',
    )
    _executable(template / "command", '#!/bin/sh\necho "the proxy: $*"\n')
    _executable(
        tmp_path / "bin" / "python3",
        f'#!/bin/sh\n[ "$*" = "-m venv --clear .venv" ] && rm -rf .venv && cp -R {template} .venv\n',
    )
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}

    result = subprocess.run(
        [str(project / "scripts" / "portkey-user-proxy"), "--version"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "the proxy: --version\n"
