"""End to end: budgets refuse over-budget requests with 412, and count every answer, on a real server."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from portkey_user_proxy import Settings
from tests.support.mongomock_server import WritableMongo
from tests.support.proxy import RunningProxy, scrape, start_proxy
from tests.support.serve import ServeProcess
from tests.support.servers import ServerThread, Upstream, read_body

USER_ID = "6651f0c2a1b2c3d4e5f60718"  # the fixture user: timmanik@email.com, in Finance and Engineering
EMAIL = "timmanik@email.com"
# $1 per 1M input tokens, $2 per 1M output tokens: each answer below (5 in, 1 out) costs $0.000007.
BUDGETS = """\
period: month
prices:
  - {model: "*", input: 1, output: 2}
teams:
  Finance: 0.00001
users:
  default: 1
"""
ANSWER_NANOS = 7000


class PricedUpstream:
    """A Portkey answering chat completions with usage; a stream sends its usage, then waits for the proxy to leave."""

    def __init__(self) -> None:
        self.usage_sent = threading.Event()
        self.proxy_left = threading.Event()
        self.requests: list[str] = []
        self.accept_encodings: list[str | None] = []

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        self.requests.append(scope["path"])
        headers = dict(scope["headers"])
        encoding = headers.get(b"accept-encoding")
        self.accept_encodings.append(encoding.decode() if encoding is not None else None)
        if scope["path"].endswith("/models"):
            await self._json(send, {"object": "list", "data": []})
        elif json.loads(body or b"{}").get("stream"):
            await self._stream_until_the_proxy_leaves(receive, send)
        else:
            await self._json(send, {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1}})

    async def _json(self, send: Callable[..., Any], payload: object) -> None:
        data = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    async def _stream_until_the_proxy_leaves(self, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        usage = {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}
        event = b"data: " + json.dumps(usage).encode() + b"\n\n"
        await send({"type": "http.response.body", "body": event, "more_body": True})
        self.usage_sent.set()
        while (await receive())["type"] != "http.disconnect":
            await asyncio.sleep(0)
        self.proxy_left.set()


@pytest.fixture
def priced_upstream() -> Iterator[tuple[PricedUpstream, str]]:
    app = PricedUpstream()
    server = ServerThread(app).start()
    yield app, server.url
    server.stop()


@pytest.fixture
def librechat(writable_librechat: WritableMongo) -> WritableMongo:
    return writable_librechat


def budget_proxy(mongo: WritableMongo, upstream_url: str, tmp_path: Path, **overrides: Any) -> RunningProxy:
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(BUDGETS)
    values: dict[str, Any] = {
        "portkey_url": upstream_url,
        "mongo_uri": mongo.uri(mongo.librechat),
        "budgets_file": str(budgets),
        "budget_database": mongo.database,
        "team_metadata_key": "team",
        "team_groups": "Finance",
        **overrides,
    }
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    return start_proxy(settings)


def chat(proxy: RunningProxy, **body: Any) -> httpx.Response:
    payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "user": USER_ID, **body}
    return httpx.post(proxy.url + "/v1/chat/completions", json=payload, timeout=10)


def stored_spend(mongo: WritableMongo) -> dict[tuple[str, str], int]:
    with mongo.client() as client:
        return {(d["scope"], d["name"]): d["spend"] for d in client[mongo.database]["spend"].find()}


def metric(proxy: RunningProxy, name: str, **labels: str) -> float | None:
    return scrape(proxy).get((name, tuple(sorted(labels.items()))))


@pytest.mark.real_mongo
def test_a_team_over_its_budget_gets_412_and_its_answers_are_all_counted(
    librechat: WritableMongo, priced_upstream: tuple[PricedUpstream, str], tmp_path: Path
) -> None:
    upstream, url = priced_upstream
    proxy = budget_proxy(librechat, url, tmp_path)
    try:
        assert chat(proxy).status_code == 200  # $0.000007 of $0.00001
        assert chat(proxy).status_code == 200  # starts under budget; ends at $0.000014

        refused = chat(proxy)
        assert refused.status_code == 412
        assert refused.json()["error"]["code"] == "budget_exceeded"
        assert refused.json()["error"]["message"].startswith("the Finance team has used its budget of $0.00001 for ")
        assert "it resets on 1 " in refused.json()["error"]["message"]
        assert "retry-after" not in refused.headers  # 412: the SDKs do not retry it
        # Listing models is never refused.
        assert httpx.get(proxy.url + "/v1/models", timeout=10).status_code == 200
        assert upstream.requests == ["/v1/chat/completions", "/v1/chat/completions", "/v1/models"]
        # httpx asked for gzip; an answer whose cost is counted is asked for uncompressed, to be read.
        assert upstream.accept_encodings[:2] == ["identity", "identity"]
        assert upstream.accept_encodings[2] != "identity"  # /models: as the client asked
        assert metric(proxy, "portkey_user_proxy_budget_refusals_total", scope="team") == 1
        assert metric(proxy, "portkey_user_proxy_team_budget_limit_usd", team="Finance") == 0.00001
        assert metric(proxy, "portkey_user_proxy_team_budget_spend_usd", team="Finance") == 0.000014
        assert not any(name == "portkey_user_proxy_user_budget_spend_usd" for name, _ in scrape(proxy))  # per-user off
    finally:
        proxy.server.stop()  # the increments still waiting are written at shutdown

    assert stored_spend(librechat) == {("team", "Finance"): 2 * ANSWER_NANOS, ("user", EMAIL): 2 * ANSWER_NANOS}


def test_usage_that_arrived_is_counted_when_the_client_leaves_before_the_end(
    librechat: WritableMongo, priced_upstream: tuple[PricedUpstream, str], tmp_path: Path
) -> None:
    upstream, url = priced_upstream
    proxy = budget_proxy(librechat, url, tmp_path, metrics_per_user_tokens=True)
    try:
        payload = {"model": "gpt-4o-mini", "messages": [], "user": USER_ID, "stream": True}
        with httpx.stream("POST", proxy.url + "/v1/chat/completions", json=payload, timeout=10) as response:
            assert response.status_code == 200
            for chunk in response.iter_raw():
                if b'"usage"' in chunk:
                    break  # the client leaves with the usage read, before the stream ends
        assert upstream.proxy_left.wait(10)  # the proxy ended the upstream request: the answer is over

        assert metric(proxy, "portkey_user_proxy_team_budget_spend_usd", team="Finance") == 0.000007
        assert metric(proxy, "portkey_user_proxy_user_budget_spend_usd", user=EMAIL) == 0.000007
    finally:
        proxy.server.stop()

    assert stored_spend(librechat) == {("team", "Finance"): ANSWER_NANOS, ("user", EMAIL): ANSWER_NANOS}


def test_readyz_answers_503_until_the_periods_spend_is_read(
    librechat: WritableMongo, priced_upstream: tuple[PricedUpstream, str], tmp_path: Path
) -> None:
    stand_in = librechat.stand_in
    if stand_in is None:
        pytest.skip("refuses a database at will: stand-in only")
    _, url = priced_upstream
    ready = budget_proxy(librechat, url, tmp_path)
    try:
        answer = httpx.get(ready.url + "/readyz", timeout=10)
        assert answer.status_code == 200
        assert answer.json() == {"status": "ready", "mongodb": "reachable", "budgets": "spend read"}
    finally:
        ready.server.stop()

    stand_in.refused_databases.add(librechat.database)  # the spend cannot be read: a role without access
    unready = budget_proxy(librechat, url, tmp_path)
    try:
        answer = httpx.get(unready.url + "/readyz", timeout=10)
        assert answer.status_code == 503
        assert answer.json() == {"status": "not ready", "mongodb": "reachable", "budgets": "reading spend"}
    finally:
        unready.server.stop()


def test_without_a_budgets_file_nothing_is_checked_or_written(
    librechat: WritableMongo, priced_upstream: tuple[PricedUpstream, str]
) -> None:
    _, url = priced_upstream
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, portkey_url=url, mongo_uri=librechat.uri(librechat.librechat)
    )
    proxy = start_proxy(settings)
    try:
        for _ in range(3):
            assert chat(proxy).status_code == 200
        assert proxy.app.budgets is None
        assert not any(name.startswith("portkey_user_proxy_budget") for name, _ in scrape(proxy))
    finally:
        proxy.server.stop()

    with librechat.client() as client:
        assert "portkey_user_proxy" not in client.list_database_names()


def test_sighup_reads_the_budgets_file_again_and_keeps_it_when_the_new_one_is_invalid(
    librechat: WritableMongo, upstream: Upstream, tmp_path: Path
) -> None:
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text("users: {default: 50}\n")
    env = {
        "PORTKEY_URL": upstream.url,
        "MONGO_URI": librechat.uri(librechat.librechat),
        "BUDGETS_FILE": str(budgets),
        "BUDGET_DATABASE": librechat.database,
        "LOG_LEVEL": "INFO",
    }
    served = ServeProcess(env)
    try:
        served.wait_for_log("Application startup complete")
        body = {"model": "gpt-4o-mini", "messages": [], "user": USER_ID}
        assert httpx.post(served.url + "/v1/chat/completions", json=body, timeout=10).status_code == 200

        budgets.write_text("users: {default: 0}\n")
        served.process.send_signal(signal.SIGHUP)
        served.wait_for_log(f"read {budgets} again: 0 team and 0 user budgets")
        refused = httpx.post(served.url + "/v1/chat/completions", json=body, timeout=10)
        assert refused.status_code == 412
        assert refused.json()["error"]["message"].startswith("you have used your budget of $0 for ")

        budgets.write_text("users: {default: lots}\n")
        served.process.send_signal(signal.SIGHUP)
        served.wait_for_log("users.default: must be an amount of US dollars, 0 or more, e.g. 500; the budgets in force")
        assert httpx.post(served.url + "/v1/chat/completions", json=body, timeout=10).status_code == 412
        assert served.process.poll() is None
    finally:
        served.process.terminate()
        served.process.wait(timeout=30)
        served.close()
