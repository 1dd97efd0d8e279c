"""The catalogue of answers: one status per code, and each answer written the same way wherever it goes."""

from __future__ import annotations

import json

import pytest

from portkey_user_proxy import errors
from portkey_user_proxy.errors import CATALOGUE, Answer


def test_a_code_means_one_status_and_one_retry_after_wherever_it_is_answered() -> None:
    by_code: dict[str, set[tuple[int, int | None, bool]]] = {}
    for answer in CATALOGUE:
        by_code.setdefault(answer.code, set()).add((answer.status, answer.retry_after, answer.by_server))

    assert {code: len(kinds) for code, kinds in by_code.items()} == dict.fromkeys(by_code, 1)


def test_every_server_refusal_closes_its_connection() -> None:
    # The server writes it instead of reading the rest of the request: nothing after it can be read.
    assert all(answer.closes for answer in CATALOGUE if answer.by_server)


def test_an_answer_carries_its_message_and_headers() -> None:
    error = errors.PROXY_BUSY.error(limit=8)

    assert (error.status, error.code) == (503, "proxy_busy")
    assert error.message.startswith("the proxy is already sending 8 requests upstream")
    assert error.headers == ((b"retry-after", b"1"),)
    assert errors.INVALID_API_KEY.error(problem="no API key was sent").headers == (
        (b"www-authenticate", b'Bearer realm="portkey-user-proxy"'),
        (b"connection", b"close"),
    )


@pytest.mark.parametrize("answer", [row for row in CATALOGUE if row.by_server], ids=lambda row: row.code)
def test_a_server_refusal_is_a_whole_http_response(answer: Answer) -> None:
    values = {"limit": 1024, "seconds": 2.5}
    raw = answer.raw_response(**values)

    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    assert status_line.startswith(f"HTTP/1.1 {answer.status} ")
    assert int(headers["content-length"]) == len(body)
    assert headers["connection"] == "close"
    assert headers.get("retry-after") == (str(answer.retry_after) if answer.retry_after else None)
    assert json.loads(body)["error"] == {
        "message": answer.message.format(**values),
        "type": "portkey_user_proxy_error",
        "code": answer.code,
    }
