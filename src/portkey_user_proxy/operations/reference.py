"""The documentation's reference tables, written from the code they describe, never typed twice.

docs/reference.py (run by mkdocs-gen-files at build time) puts each in place of its marker
(`<!-- reference:settings -->`) on the page that shows it: the settings from `Settings` (each field's
docstring), the metrics from their definitions (each metric's help), the error codes from the
catalogue, the command line from its parser.
"""

from __future__ import annotations

import argparse
import enum
import os
import re
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from ..budgets.metrics import AlertMetrics, BudgetMetrics
from ..errors import CATALOGUE
from ..observability.metrics import Metrics
from ..settings import Settings
from .cli import _parser
from .exit_codes import COMMAND_CODES, describe

# argparse wraps help to the terminal's width: the page's is fixed, so a build gives the same text anywhere.
_HELP_COLUMNS = "100"


def settings_table() -> str:
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        description = " ".join((field.description or "").split())
        rows.append(f"| `{name.upper()}` | {_default(field.default)} | {_cell(description)} |")
    return "\n".join(rows)


def _default(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def metrics_table() -> str:
    rows = ["| Metric | Type | Labels | What it counts |", "|---|---|---|---|"]
    for metric in _metrics():
        # As a scrape names them: counters with their `_total`.
        name = metric._name + ("_total" if metric._type == "counter" else "")
        labels = ", ".join(f"`{label}`" for label in metric._labelnames)
        rows.append(f"| `{name}` | {metric._type} | {labels} | {_cell(metric._documentation)} |")
    return "\n".join(rows)


def _metrics() -> Iterator[MetricWrapperBase]:
    registry = CollectorRegistry()
    owners = (Metrics(), BudgetMetrics(registry), AlertMetrics(registry))
    for owner in owners:
        yield from (value for value in vars(owner).values() if isinstance(value, MetricWrapperBase))


def error_codes_table() -> str:
    rows = ["| Code | Status | Retry-After | Closes the connection | Message |", "|---|---|---|---|---|"]
    for answer in CATALOGUE:
        retry_after = "" if answer.retry_after is None else str(answer.retry_after)
        closes = "yes" if answer.closes else ""
        message = re.sub(r"\{(\w+)[^}]*\}", r"*\1*", answer.message)  # the template's blanks, as words
        rows.append(f"| `{answer.code}` | {answer.status} | {retry_after} | {closes} | {_cell(message)} |")
    return "\n".join(rows)


def command_line() -> str:
    """Each command's `--help`, as the terminal shows it, under a heading of its own."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = _HELP_COLUMNS
    try:
        parser = _parser()
        sections = [_help_block("portkey-user-proxy", parser)]
        sections += [_help_block(f"portkey-user-proxy {name}", sub) for name, sub in _commands(parser)]
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return "\n\n".join(sections)


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + name, sub
                yield from _commands(sub, prefix + name + " ")


def _help_block(title: str, parser: argparse.ArgumentParser) -> str:
    return f"### `{title}`\n\n```text\n{parser.format_help().rstrip()}\n```"


def exit_codes_table() -> str:
    rows = ["| Command | Exit codes |", "|---|---|"]
    for command in COMMAND_CODES:
        codes = "<br>".join(_cell(line.strip()) for line in describe(command).splitlines())
        rows.append(f"| `{command}` | {codes} |")
    return "\n".join(rows)


def _cell(text: str) -> str:
    """Text that stays inside one cell of a Markdown table."""
    return text.replace("|", "\\|").replace("\n", " ")


# The markers the pages hold, and what replaces each.
TABLES: dict[str, Callable[[], str]] = {
    "settings": settings_table,
    "metrics": metrics_table,
    "error-codes": error_codes_table,
    "command-line": command_line,
    "exit-codes": exit_codes_table,
}


def fill(page: str) -> str:
    """`page` with each `<!-- reference:NAME -->` marker replaced by its table."""
    for name, table in TABLES.items():
        marker = f"<!-- reference:{name} -->"
        if marker in page:
            page = page.replace(marker, table())
    return page
