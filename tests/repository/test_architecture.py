"""docs/architecture.md draws the package as it is: every package and module of src/, each in its place."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "portkey_user_proxy"
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()
_ENTRY = re.compile(r"^(?P<indent> *)(?P<name>[\w.]+(?:\.py|/))\s")


def drawn_modules() -> list[str]:
    """The tree under "The packages", as paths below the package: `inbound/` and `inbound/server.py`."""
    tree = ARCHITECTURE.split("## The packages", 1)[1].split("```", 2)[1]
    drawn: list[str] = []
    folder = ""
    for line in tree.splitlines()[2:]:  # past the opening fence's line and the package's own
        match = _ENTRY.match(line)
        assert match is not None, f"not an entry of the tree: {line!r}"
        name, depth = match["name"], len(match["indent"]) // 2
        if depth == 1:
            folder = name if name.endswith("/") else ""
            drawn.append(name)
        else:
            assert depth == 2 and folder, f"drawn outside a package: {line!r}"
            drawn.append(folder + name)
    return drawn


def modules() -> set[str]:
    found = {str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")}
    packages = {name.removesuffix("__init__.py") for name in found if name.endswith("/__init__.py")}
    return (found - {package + "__init__.py" for package in packages}) | packages


def test_the_architecture_names_every_package_and_module_once() -> None:
    drawn = drawn_modules()

    assert len(drawn) == len(set(drawn)), "drawn twice"
    assert set(drawn) == modules()
