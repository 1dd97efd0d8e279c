"""The README's promises hold: its two commands exist, and its settings table matches the code."""

from __future__ import annotations

import re
from pathlib import Path

from portkey_user_proxy.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def settings_table() -> dict[str, str]:
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]*) \|", section, flags=re.MULTILINE)
    return {name: default.strip().strip("`") for name, default in rows}


def test_the_readme_opens_with_the_serve_and_test_commands() -> None:
    first_block = README.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert commands == ["./scripts/serve", "./scripts/test"]
    for command in commands:
        assert (ROOT / command).stat().st_mode & 0o111


def test_ci_runs_the_readmes_test_command() -> None:
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_every_setting_is_in_the_configuration_table_with_its_default() -> None:
    table = settings_table()
    for name, field in Settings.model_fields.items():
        assert name.upper() in table, f"{name.upper()} is missing from the README's table"
        default = field.default.value if hasattr(field.default, "value") else field.default
        documented = table[name.upper()]
        if isinstance(default, bool):
            assert documented == str(default).lower()
        elif isinstance(default, float):
            assert float(documented) == default
        elif default is not None:
            assert documented == str(default), name
    assert set(table) <= {name.upper() for name in Settings.model_fields}
