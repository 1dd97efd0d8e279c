"""The documentation site builds with no broken link or anchor, and its reference pages are the code's."""

from __future__ import annotations

import argparse
import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from portkey_user_proxy.budgets.metrics import AlertMetrics, BudgetMetrics
from portkey_user_proxy.errors import CATALOGUE
from portkey_user_proxy.observability.metrics import Metrics
from portkey_user_proxy.operations.cli import _parser
from portkey_user_proxy.settings import Settings
from tests.support.deploy_files import ENV_EXAMPLE, PROXY_SERVICE, compose

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = tmp_path_factory.mktemp("site")
    # The notices some plugins print about MkDocs' future are not the build's warnings.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(built)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return built


def page_text(site: Path, page: str) -> str:
    """A built page's text, tags dropped and entities read, as a reader sees it."""
    source = (site / page / "index.html").read_text()
    return html.unescape(re.sub(r"<[^>]+>", "", source))


def test_every_page_in_docs_is_in_the_navigation() -> None:
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)

    def pages(entries: object) -> list[str]:
        if isinstance(entries, str):
            return [entries]
        if isinstance(entries, list):
            return [page for entry in entries for page in pages(entry)]
        assert isinstance(entries, dict)
        return [page for value in entries.values() for page in pages(value)]

    assert sorted(pages(config["nav"])) == sorted(path.name for path in DOCS.glob("*.md"))


def test_every_setting_of_env_example_is_on_the_configuration_page_with_its_default(site: Path) -> None:
    text = page_text(site, "configuration")
    listed = re.findall(r"^# ([A-Z][A-Z0-9_]+)=(.*)$", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)
    assert listed
    for name, default in listed:
        assert name in text, f"{name} is not in the built configuration page"
        if default:
            assert re.search(rf"{name}\s+{re.escape(default)}\s", text), f"{name}'s default {default} is not shown"


def test_every_setting_says_what_it_does() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description and len(field.description) > 20, f"{name.upper()} has no description"


def test_every_error_code_is_on_the_error_codes_page(site: Path) -> None:
    text = page_text(site, "errors")
    for answer in CATALOGUE:
        assert re.search(rf"{answer.code}\s+{answer.status}\b", text), answer.code


def test_every_metric_the_proxy_serves_is_on_the_metrics_page(site: Path) -> None:
    registry = Metrics().registry
    BudgetMetrics(registry)
    AlertMetrics(registry)
    # As a scrape names them: counters with their `_total`.
    served = {family.name + ("_total" if family.type == "counter" else "") for family in registry.collect()}
    documented = set(re.findall(r"\b(portkey_user_proxy_\w+)", page_text(site, "metrics")))
    assert served <= documented
    assert documented <= served, "the page names a metric the proxy does not serve"


def test_every_command_and_option_is_on_the_command_line_page(site: Path) -> None:
    text = page_text(site, "cli")
    parser = _parser()
    options = {option for action in parser._actions for option in action.option_strings}
    subparsers = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    for subparser in subparsers:
        for name, command in subparser.choices.items():
            assert f"portkey-user-proxy {name}" in text
            options |= {option for action in command._actions for option in action.option_strings}
    for option in options:
        assert option in text


def test_the_request_path_is_drawn(site: Path) -> None:
    source = (site / "request" / "index.html").read_text()
    assert '<pre class="mermaid">' in source


def headings(page: Path) -> list[tuple[int, str]]:
    """(level, title) of every heading of a page outside code blocks, in order."""
    found: list[tuple[int, str]] = []
    fenced = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"^(#{1,6}) (.+)$", line)):
            found.append((len(match.group(1)), match.group(2)))
    return found


def test_the_deploy_steps_read_top_down() -> None:
    titles = [title for level, title in headings(DOCS / "deploy-compose.md") if level <= 2]
    order = ["Deploy with LibreChat", "2. LibreChat configuration", "4. Start", "5. Verify", "6. Done"]
    assert [title for title in titles if title in order] == order


def test_troubleshooting_is_one_page() -> None:
    found = [
        (page.name, title)
        for page in DOCS.glob("*.md")
        for _, title in headings(page)
        if "Troubleshooting" in title or "Debugging" in title
    ]
    assert found == [("troubleshooting.md", "Troubleshooting")]


def test_the_pages_other_files_send_the_reader_to_exist() -> None:
    files = [ROOT / "docker-compose.override.yml", ROOT / "librechat.example.yaml", *(ROOT / "deploy").rglob("*.yml")]
    files += (ROOT / "deploy").rglob("*.yaml")
    named = [
        (path.name, page, title)
        for path in files
        for page, title in re.findall(r"docs/([\w-]+\.md),? \"([^\"]+)\"", path.read_text())
    ]
    assert len(named) >= 5
    assert not [path.name for path in files if "README" in path.read_text()], "the README no longer holds sections"
    for name, page, title in named:
        assert title in {title for _, title in headings(DOCS / page)}, f"{name} sends the reader to {page} {title!r}"


def shell_blocks(page: Path) -> list[str]:
    return re.findall(r"^ *```sh\n(.*?)^ *```", page.read_text(), flags=re.MULTILINE | re.DOTALL)


def test_every_variable_a_command_block_reads_is_set_in_it() -> None:
    # A shell has none of .env's variables: a block that reads one sets it first (an empty
    # x-portkey-api-key would reach Portkey as it is).
    for page in sorted(DOCS.glob("*.md")):
        for block in shell_blocks(page):
            for name in re.findall(r"\$\{?([A-Z][A-Z0-9_]+)", block):
                assert re.search(rf"^\s*(export )?{name}=", block, flags=re.MULTILINE), f"{page.name}: ${name} unset"


def test_troubleshooting_quotes_the_container_name_compose_prints() -> None:
    assert "container_name" not in compose()["services"][PROXY_SERVICE], "compose then names it project-service-N"
    quoted = [title for _, title in headings(DOCS / "troubleshooting.md") if "unhealthy" in title]
    assert quoted
    for title in quoted:
        assert re.search(rf"container [a-z0-9_.-]+-{PROXY_SERVICE}-1 is unhealthy", title), title
