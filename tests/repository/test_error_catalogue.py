"""The answers the proxy makes are written in one place: the catalogue in errors.py.

Elsewhere in src/ an answer is named by its row (`errors.PROXY_BUSY.error(...)`), never spelled out:
no error code as a string, no `ProxyError(...)` built by hand, no status or Retry-After as a number
where an answer is made, no raw status line. The check reads the code, not the prose: docstrings and
comments may say "answers 503".
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from portkey_user_proxy.errors import CATALOGUE

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "portkey_user_proxy"
CATALOGUE_MODULE = PACKAGE / "errors.py"
CODES = frozenset(answer.code for answer in CATALOGUE)
STATUSES = frozenset(answer.status for answer in CATALOGUE)
_STATUS_LINE = re.compile(rb"(HTTP/1\.[01] )?[1-5]\d\d [A-Z]")


def written_answers(source: str) -> list[str]:
    """What `source` spells out of an answer: each as `line: what`."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        for what in _spelled_out(node):
            found.append(f"{getattr(node, 'lineno', '?')}: {what}")
    return found


def _spelled_out(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str) and node.value in CODES:
            return [f"the error code {node.value!r}"]
        if isinstance(node.value, bytes) and (_STATUS_LINE.match(node.value) or node.value.lower() == b"retry-after"):
            return [f"the raw header {node.value!r}"]
        return []
    if isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
        found = ["a ProxyError built by hand"] if name == "ProxyError" else []
        values = [*node.args, *(keyword.value for keyword in node.keywords)]
        return found + [f"the status {status} passed to {name}()" for status in _statuses(values)]
    if isinstance(node, ast.Compare):
        return [f"the status {status} compared" for status in _statuses([node.left, *node.comparators])]
    if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = [ast.unparse(target).lower() for target in targets]
        if any("status" in name or "retry" in name for name in names):
            return [f"the status {status} assigned" for status in _statuses([node.value])]
    return []


def _statuses(values: list[ast.expr]) -> list[int]:
    return [
        value.value
        for value in values
        if isinstance(value, ast.Constant) and type(value.value) is int and value.value in STATUSES
    ]


# Not errors of the proxy's: `/readyz` says "not ready" to probes with 503, as Kubernetes reads
# readiness; the budget webhook reads its receiver's 5xx as worth retrying.
_PROBE_ANSWERS = {
    "inbound/routes.py": "the status 503 passed to JSONResponse()",
    "budgets/webhook.py": "the status 500 compared",
}


def test_the_catalogue_is_the_only_place_answers_are_written() -> None:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = str(path.relative_to(PACKAGE))
        written = [
            each for each in written_answers(path.read_text()) if not each.endswith(_PROBE_ANSWERS.get(module, "-"))
        ]
        if path != CATALOGUE_MODULE and written:
            found[module] = written
    assert found == {}, "answers written outside errors.py: name the catalogue's row instead"


def test_an_answer_written_by_hand_is_found() -> None:
    source = """
from ..errors import ProxyError

def refuse(over: bool) -> ProxyError:
    if over:
        return ProxyError(412, "over budget", "budget_exceeded", headers=((b"retry-after", b"5"),))
    status = 503
    return answer(b"503 Service Unavailable", code="proxy_busy")
"""
    assert sorted(written_answers(source)) == [
        "6: a ProxyError built by hand",
        "6: the error code 'budget_exceeded'",
        "6: the raw header b'retry-after'",
        "6: the status 412 passed to ProxyError()",
        "7: the status 503 assigned",
        "8: the error code 'proxy_busy'",
        "8: the raw header b'503 Service Unavailable'",
    ]
