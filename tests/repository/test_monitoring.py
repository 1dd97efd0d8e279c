"""The Grafana dashboard and the Prometheus alerts query only what the proxy serves, and work.

What is served comes from a live scrape of a running proxy that has met every kind of event (a
resolved chat with usage, a request naming nobody, a proxy-made error), so the files cannot drift
from the metrics. promtool checks and unit-tests the rules, and parses every dashboard expression;
those tests are skipped, saying why, where promtool is absent (Debian's `prometheus` package has it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.deploy_files import ROOT as REPOSITORY
from tests.support.deploy_files import pyproject
from tests.support.monitoring_files import (
    ALERT_TESTS,
    ALERTS,
    DASHBOARD,
    PREFIX,
    TARGET_LABELS,
    alert_queries,
    alert_rules,
    dashboard,
    dashboard_queries,
    grouping_labels_in,
    label_values_call,
    matchers_in,
    metrics_in,
    panels,
    plain_promql,
    proxy_error_statuses,
    relative,
    served_labels,
    string_literals_in_source,
)
from tests.support.proxy import MakeProxy
from tests.support.servers import Upstream

USER_ID = "6651f0c2a1b2c3d4e5f60718"
ALL_QUERIES = {**{f"dashboard: {k}": v for k, v in dashboard_queries().items()}, **alert_queries()}


@pytest.fixture
def served(make_proxy: MakeProxy, upstream: Upstream, tmp_path: Path) -> dict[str, dict[str, set[str]]]:
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text('prices: [{model: "*", input: 1, output: 2}]\nteams: {Finance: 500}\nusers: {default: 50}\n')
    proxy = make_proxy(
        metrics_per_user_tokens=True, max_request_body_bytes=1024, budgets_file=str(budgets), team_metadata_key="team"
    )
    chat = proxy.url + "/v1/chat/completions"
    assert httpx.post(chat, json={"user": USER_ID, "messages": []}).status_code == 200  # resolved, with usage
    assert httpx.post(chat, json={"messages": []}).status_code == 200  # names nobody
    assert httpx.post(chat, json={"user": USER_ID, "pad": "x" * 2048}).status_code == 413  # a proxy-made error
    return served_labels(httpx.get(proxy.url + "/metrics").text)


def test_every_metric_and_label_queried_is_one_the_proxy_serves(served: dict[str, dict[str, set[str]]]):
    assert len(ALL_QUERIES) > 10
    for where, expr in ALL_QUERIES.items():
        if call := label_values_call(expr):
            metric, label = call
            assert metric in served, f"{where}: {metric} is not served"
            assert label in set(served[metric]) | TARGET_LABELS, f"{where}: {metric} has no label {label}"
            continue
        metrics = metrics_in(expr)
        assert metrics, f"{where} queries none of the proxy's metrics"
        for metric in metrics:
            assert metric in served, f"{where}: {metric} is not served (served: {sorted(served)})"
        for matcher in matchers_in(expr):
            known = set(served[matcher.metric]) | TARGET_LABELS
            assert matcher.label in known, f"{where}: {matcher.metric} has no label {matcher.label}"
        labels = set().union(*(set(served[m]) for m in metrics)) | TARGET_LABELS
        assert grouping_labels_in(expr) <= labels, f"{where} groups by labels no metric of it has"


def test_every_label_value_queried_is_one_the_proxy_produces(served: dict[str, dict[str, set[str]]]):
    # Values are either seen in the scrape or string constants of the package (reasons, outcomes,
    # codes that the scrape did not meet); a misspelt one would silently match nothing.
    literals = string_literals_in_source()
    for where, expr in ALL_QUERIES.items():
        for matcher in matchers_in(expr):
            if matcher.label in TARGET_LABELS or matcher.value.startswith("$"):
                continue
            if matcher.label == "status":
                assert any(re.fullmatch(matcher.value, str(status)) for status in range(100, 600)), where
                continue
            seen = served[matcher.metric].get(matcher.label, set())
            for value in matcher.value.split("|"):
                assert value in seen | literals, f'{where}: {matcher.label}="{value}" is no value the proxy produces'


def test_the_server_error_alert_counts_exactly_the_proxys_5xx_codes():
    (rule,) = [rule for rule in alert_rules() if rule["alert"] == "PortkeyUserProxyServerErrors"]
    (codes,) = [m.value for m in matchers_in(rule["expr"]) if m.label == "code"]
    statuses = proxy_error_statuses()
    assert {"upstream_unreachable", "request_too_large"} <= set(statuses), "the error codes were not found"
    server_errors = {code for code, status in statuses.items() if status >= 500}
    assert set(codes.split("|")) == server_errors, (
        "errors_total has no status label: list the codes of every 5xx the proxy makes in the alert"
    )


def test_alerts_cover_attribution_mongodb_server_errors_and_the_upstream():
    queries = alert_queries()
    assert any("attributions_total" in q and "fallback" in q for q in queries.values())
    # A failed lookup is any but the answers, so failure outcomes added later count without an edit.
    failing = {m.value for q in queries.values() for m in matchers_in(q) if m.label == "outcome" and m.operator == "!~"}
    assert failing == {"cache_hit|miss|not_found"}
    assert any("mongodb_up" in q for q in queries.values())
    assert any('code="upstream_unreachable"' in q for q in queries.values())
    for rule in alert_rules():
        assert rule["alert"].startswith("PortkeyUserProxy")
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert {"summary", "description"} <= set(rule["annotations"])
        assert "for" in rule, f"{rule['alert']} would page on a single scrape"


def test_dashboard_is_importable_and_asks_for_its_prometheus_data_source():
    document = dashboard()
    # A data source variable, not an import-time input: the file works imported by hand and provisioned.
    variables = {variable["name"]: variable for variable in document["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    expected = {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels(document):
        assert panel["datasource"] == expected, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(target["datasource"] == expected for target in panel["targets"]), panel["title"]
    for variable in variables.values():
        assert variable["type"] == "datasource" or variable["datasource"] == expected
    assert document["uid"] and document["title"]
    assert "id" not in document, "an id would make Grafana overwrite whatever dashboard has it"
    ids = [panel["id"] for panel in document["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_panels_do_not_overlap():
    taken: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_dashboard_shows_traffic_latency_streams_attribution_mongodb_and_tokens():
    queried = set().union(*(metrics_in(expr) for expr in dashboard_queries().values()))
    wanted = {
        "requests_total",
        "errors_total",
        "overhead_seconds_bucket",
        "upstream_first_byte_seconds_bucket",
        "open_streams",
        "attributions_total",
        "user_lookups_total",
        "mongodb_up",
        "user_tokens_total",
    }
    assert {PREFIX + name for name in wanted} <= queried


def test_the_metrics_page_links_the_dashboard_and_the_alerts():
    text = (REPOSITORY / "docs" / "metrics.md").read_text()
    source = pyproject()["project"]["urls"]["Source"]
    for path in (DASHBOARD, ALERTS):
        assert f"]({source}/blob/main/{relative(path)})" in text, f"the metrics page does not link {relative(path)}"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return found


def run_promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd)


def test_promtool_checks_the_alert_rules():
    checked = run_promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promtool_unit_tests_show_each_alert_firing_and_holding_back():
    tested = {
        t["alertname"] for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"] for t in case["alert_rule_test"]
    }
    assert tested == set(alert_queries())
    result = run_promtool("test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_expression_is_valid_promql(tmp_path: Path):
    queries = {where: plain_promql(expr) for where, expr in dashboard_queries().items() if not label_values_call(expr)}
    rules = [{"record": f"dashboard:query_{n}", "expr": expr} for n, expr in enumerate(queries.values())]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = run_promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
