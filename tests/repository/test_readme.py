"""The README fits on a screen or two: its two commands exist, and it sends the reader to every page of the site."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_the_readme_opens_with_the_serve_and_test_commands() -> None:
    first_block = README.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert commands == ["./scripts/serve", "./scripts/test"]
    for command in commands:
        assert (ROOT / command).stat().st_mode & 0o111


def test_ci_runs_the_readmes_test_command() -> None:
    assert "./scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_the_readme_fits_on_a_screen_or_two() -> None:
    assert len(README.splitlines()) <= 300


def test_the_readme_links_the_site_and_each_of_its_pages_near_its_top() -> None:
    top = "\n".join(README.splitlines()[:45])
    assert "https://portkey-user-proxy.github.io/portkey-user-proxy/" in top
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"](docs/{page.name})" in top, f"the README's top does not link {page.name}"


def test_every_file_the_readme_links_exists() -> None:
    links = re.findall(r"\]\(((?!https?:|#)[^)#]+)", README)
    assert links
    for link in links:
        assert (ROOT / link).exists(), link
