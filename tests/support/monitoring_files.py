"""Readers for the Grafana dashboard and the Prometheus alert rules, and for the PromQL inside them.

The PromQL reading is deliberately small: the metric names of the proxy (they share a prefix), the
label matchers in their selectors, and the label lists of `by (...)`, `on (...)` and their kin.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from portkey_user_proxy.errors import CATALOGUE
from tests.support.deploy_files import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "portkey-user-proxy.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
SOURCE = ROOT / "src" / "portkey_user_proxy"
PREFIX = "portkey_user_proxy_"
# Labels Prometheus adds to every scraped series; the proxy never serves them itself.
TARGET_LABELS = frozenset({"job", "instance"})
# Grafana's variables, and a value each that makes the expression plain PromQL.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$job": ".*"}

_SELECTOR = re.compile(r"\b(" + PREFIX + r"[a-z0-9_]+)\b(?:\{([^}]*)\})?")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


@dataclass(frozen=True, slots=True)
class Matcher:
    metric: str
    label: str
    operator: str
    value: str


def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def panels(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included; rows themselves left out."""
    found = []
    for panel in document["panels"]:
        found.extend(panel.get("panels", []))
        if panel["type"] != "row":
            found.append(panel)
    return found


def dashboard_queries() -> dict[str, str]:
    """Each PromQL expression of the dashboard, by where it is: panel title and refId, or variable name."""
    queries = {}
    for panel in panels(dashboard()):
        for target in panel["targets"]:
            queries[f"{panel['title']} ({target['refId']})"] = target["expr"]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            queries[f"variable {variable['name']}"] = variable["definition"]
    return queries


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def alert_queries() -> dict[str, str]:
    return {rule["alert"]: rule["expr"] for rule in alert_rules()}


def plain_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced, as Prometheus would receive it."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def label_values_call(expr: str) -> tuple[str, str] | None:
    """(metric, label) of Grafana's `label_values(metric, label)`, which is no PromQL."""
    found = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", expr.strip())
    return (found.group(1), found.group(2)) if found else None


def metrics_in(expr: str) -> set[str]:
    return {match.group(1) for match in _SELECTOR.finditer(expr)}


def matchers_in(expr: str) -> list[Matcher]:
    found = []
    for selector in _SELECTOR.finditer(expr):
        for label, operator, value in _MATCHER.findall(selector.group(2) or ""):
            found.append(Matcher(selector.group(1), label, operator, value))
    return found


def grouping_labels_in(expr: str) -> set[str]:
    return {label.strip() for labels in _GROUPING.findall(expr) for label in labels.split(",") if label.strip()}


def string_literals_in_source() -> set[str]:
    """Every string constant of the package's code: where label values such as reasons and codes live."""
    literals = set()
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                literals.add(node.value)
    return literals


def proxy_error_statuses() -> dict[str, int]:
    """Each error code the request path answers with, and its status (the server's refusals are no requests)."""
    return {answer.code: answer.status for answer in CATALOGUE if not answer.by_server}


def _calls_named(tree: ast.AST, name: str) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and getattr(node.func, "id", None) == name]


def _proxy_error_subclass_inits(tree: ast.AST) -> list[ast.Call]:
    subclasses = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and any(getattr(base, "id", None) == "ProxyError" for base in node.bases)
    ]
    return [
        node
        for subclass in subclasses
        for node in ast.walk(subclass)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "__init__"
        and isinstance(node.func.value, ast.Call)
        and getattr(node.func.value.func, "id", None) == "super"
    ]


def served_labels(scrape: str) -> dict[str, dict[str, set[str]]]:
    """Each sample name of a /metrics scrape (`_total`, `_bucket`, ... included), its labels and their values."""
    served: dict[str, dict[str, set[str]]] = {}
    for family in text_string_to_metric_families(scrape):
        for sample in family.samples:
            labels = served.setdefault(sample.name, {})
            for label, value in sample.labels.items():
                labels.setdefault(label, set()).add(value)
    return served


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))
