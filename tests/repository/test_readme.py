"""The README's promises hold: its two commands exist, and its settings table matches the code."""

from __future__ import annotations

import re
from pathlib import Path

from portkey_user_proxy.budgets.metrics import AlertMetrics, BudgetMetrics
from portkey_user_proxy.errors import CATALOGUE
from portkey_user_proxy.observability.metrics import Metrics
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


def metrics_table() -> set[str]:
    section = README.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(portkey_user_proxy_\w+)` \|", section, flags=re.MULTILINE))


def test_the_metrics_table_lists_every_metric_the_proxy_serves_and_no_other() -> None:
    registry = Metrics().registry
    BudgetMetrics(registry)
    AlertMetrics(registry)
    # As a scrape names them: counters with their `_total`.
    served = {family.name + ("_total" if family.type == "counter" else "") for family in registry.collect()}
    assert served == metrics_table()


def test_the_error_codes_table_is_the_catalogue() -> None:
    section = README.split("\n## Error codes\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|\s*(\d*)\s*\|", section, flags=re.MULTILINE)
    documented = [(code, int(status), int(retry_after) if retry_after else None) for code, status, retry_after in rows]
    catalogue = {(answer.code, answer.status, answer.retry_after) for answer in CATALOGUE}
    assert len(documented) == len(set(documented)), "a code is listed twice"
    assert set(documented) == catalogue


def headings() -> list[tuple[int, str]]:
    """(level, title) of every heading outside code blocks, in order."""
    found: list[tuple[int, str]] = []
    fenced = False
    for line in README.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"^(#{1,6}) (.+)$", line)):
            found.append((len(match.group(1)), match.group(2)))
    return found


def anchor(title: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def test_every_link_within_the_readme_finds_its_heading() -> None:
    anchors = {anchor(title) for _, title in headings()}
    links = set(re.findall(r"\]\(#([^)]+)\)", README))
    assert links
    assert not links - anchors, f"links to no heading: {sorted(links - anchors)}"


def test_an_admin_reaches_the_deploy_steps_from_the_top() -> None:
    top = README.split("\n## ", 1)[0]
    assert "](#deploy-with-librechat)" in top, "one click from the top to the deploy steps"
    contents = README.split("\n## Contents\n", 1)[1].split("\n## ", 1)[0]
    for level, title in headings():
        if level == 2 and title != "Contents":
            assert f"](#{anchor(title)})" in contents, f"the table of contents does not list {title!r}"


def test_the_deploy_steps_read_top_down_before_any_reference_material() -> None:
    titles = [title for level, title in headings() if level <= 3]
    order = [
        "Deploy with LibreChat",
        "2. LibreChat configuration",
        "4. Start",
        "5. Verify",
        "6. Done",
        "Deploy on Kubernetes",
        "Troubleshooting",
        "Reference",
        "Configuration",
        "What happens to a request",
        "Development",
    ]
    assert [title for title in titles if title in order] == order
    # Reference material sits below a line of its own.
    assert README.index("\n---\n") < README.index("\n## Reference\n")


def test_troubleshooting_is_one_section() -> None:
    assert [title for _, title in headings() if "Troubleshooting" in title or "Debugging" in title] == [
        "Troubleshooting"
    ]


def test_the_sections_other_files_send_the_reader_to_exist() -> None:
    titles = {title for _, title in headings()}
    files = [ROOT / "docker-compose.override.yml", ROOT / "librechat.example.yaml", *(ROOT / "deploy").rglob("*.yml")]
    files += (ROOT / "deploy").rglob("*.yaml")
    named = [
        (path.name, title) for path in files for title in re.findall(r"README(?:'s)?:? \"([^\"]+)\"", path.read_text())
    ]
    assert len(named) >= 5
    for name, title in named:
        assert title in titles, f"{name} sends the reader to the README's {title!r}, which it does not have"
