"""The forwarder without sockets: a fake upstream client and a fake ASGI channel, as uvicorn tests its protocols.

What each way an answer can end costs the budgets it was admitted against: the usage reported, an
estimate, or nothing (its hold released).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import pytest

from portkey_user_proxy.asgi import Message
from portkey_user_proxy.attribution.decision import Attributor, UnresolvedUserPolicy
from portkey_user_proxy.attribution.directory import Lookup, LookupOutcome, User, UserDirectory
from portkey_user_proxy.budgets import BudgetExceeded, Budgets, Demand, Hold, Scope
from portkey_user_proxy.dialects.usage import Usage
from portkey_user_proxy.forwarder import Forwarder, ForwardingPolicy
from portkey_user_proxy.observability.metrics import Metrics
from portkey_user_proxy.upstream.client import UpstreamClient, UpstreamPolicy, UpstreamRequest
from portkey_user_proxy.upstream.request import UpstreamRequestBuilder
from portkey_user_proxy.upstream.transport import UpstreamResponse

USER_ID = "6651f0c2a1b2c3d4e5f60718"
EMAIL = "timmanik@email.com"
BODY = json.dumps({"model": "gpt-4o-mini", "messages": [], "user": USER_ID, "stream": True}).encode()


class Directory:
    location = "test"

    async def find(self, object_id: str) -> Lookup:
        return Lookup(User(USER_ID, EMAIL, {"ID": USER_ID, "EMAIL": EMAIL}), LookupOutcome.FOUND)


@dataclass
class Ledger:
    """Budgets as the forwarder sees them, recording what it was told."""

    refuse: bool = False
    admitted: list[Demand] = field(default_factory=list)
    settled: list[tuple[str | None, Usage, str | None]] = field(default_factory=list)
    released: int = 0
    held_charged: list[str] = field(default_factory=list)  # reasons the held estimate was charged
    has_team_budgets: bool = False

    async def admit(self, user: str | None, team: str | None, demand: Demand, groups: Sequence[str] = ()) -> Hold:
        if self.refuse:
            raise BudgetExceeded("you have used your budget of $1 for December 2026", Scope.USER)
        self.admitted.append(demand)
        return cast(Hold, object())

    def settle(
        self, hold: Hold, model: str | None, usage: Usage, *, estimated: str | None = None, requested: str | None = None
    ) -> None:
        self.settled.append((model, usage, estimated))

    def settle_held(self, hold: Hold, *, estimated: str) -> None:
        self.held_charged.append(estimated)

    def release(self, hold: Hold) -> None:
        self.released += 1

    def refuse_unknown(self) -> None:
        return None


class Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes], fail_after: int | None = None) -> None:
        self._chunks = chunks
        self._fail_after = fail_after

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for index, chunk in enumerate(self._chunks):
            if index == self._fail_after:
                raise httpx.ReadError("the upstream hung up")
            yield chunk


@dataclass
class Portkey:
    """The upstream client: answers each request with the response the test gives it, or fails."""

    status: int = 200
    chunks: list[bytes] = field(default_factory=list)
    content_type: str = "text/event-stream"
    failure: Exception | None = None
    fail_after: int | None = None
    sent: list[UpstreamRequest] = field(default_factory=list)

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        self.sent.append(request)
        if self.failure is not None:
            raise self.failure
        stream = Chunks(self.chunks, self.fail_after)
        response = httpx.Response(self.status, headers={"content-type": self.content_type}, stream=stream)
        return UpstreamResponse.of_httpx(response)

    async def aclose(self) -> None:
        pass


@dataclass
class Client:
    """The ASGI channel: the request's body, then a disconnect once the client has read `leave_after` chunks."""

    body: bytes = BODY
    leave_after: int | None = None
    sent: list[Message] = field(default_factory=list)
    _left: asyncio.Event = field(default_factory=asyncio.Event)
    _body_sent: bool = False

    async def receive(self) -> Message:
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self._left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        chunks = sum(1 for m in self.sent if m["type"] == "http.response.body")
        if self.leave_after is not None and chunks >= self.leave_after:
            self._left.set()
            await asyncio.sleep(0)  # the watcher sees the disconnect while this send is under way

    @property
    def status(self) -> int:
        return int(next(m["status"] for m in self.sent if m["type"] == "http.response.start"))


def run(portkey: Portkey, ledger: Ledger, client: Client) -> None:
    async def exchange() -> None:
        directory = cast(UserDirectory, Directory())
        forwarder = Forwarder(
            ForwardingPolicy(b"x-user-id", 1 << 20, 30.0, httpx.URL("http://portkey.test/v1")),
            Attributor(directory, UnresolvedUserPolicy.FAIL_OPEN),
            UpstreamRequestBuilder(),
            cast(UpstreamClient, portkey),
            UpstreamPolicy("http://portkey.test/v1", connect_timeout=1, read_timeout=1, unreachable_hint="-"),
            Metrics(),
            cast(Budgets, ledger),
        )
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(client.body)).encode())]
        scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers}
        await forwarder(scope, client.receive, client.send)

    asyncio.run(exchange())


def event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


CHUNK = event({"model": "gpt-4o-2024-08-06", "choices": [{"delta": {"content": "hi"}}]})
USAGE = event({"choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 7}})


def test_a_whole_answer_is_charged_its_usage_priced_by_the_model_that_served_it() -> None:
    ledger = Ledger()
    run(Portkey(chunks=[CHUNK, CHUNK, USAGE]), ledger, Client())

    assert ledger.settled == [("gpt-4o-2024-08-06", Usage(20, 7, None, None), None)]
    assert ledger.admitted == [Demand("gpt-4o-mini", len(BODY) // 4, None)]


def test_a_client_that_leaves_mid_stream_is_charged_the_prompt_and_what_was_relayed() -> None:
    ledger = Ledger()
    run(Portkey(chunks=[CHUNK] * 10 + [USAGE]), ledger, Client(leave_after=3))

    ((model, usage, estimated),) = ledger.settled
    assert estimated == "client_left"
    assert model == "gpt-4o-2024-08-06"
    assert usage.prompt == len(BODY) // 4
    assert 3 <= (usage.completion or 0) <= 4  # the events relayed before the client was seen to leave


def test_an_upstream_that_fails_mid_answer_is_charged_an_estimate() -> None:
    ledger = Ledger()
    run(Portkey(chunks=[CHUNK, CHUNK, USAGE], fail_after=2), ledger, Client())

    assert [estimated for _, _, estimated in ledger.settled] == ["upstream_failed"]


def test_an_answer_without_usage_is_estimated_and_an_upstream_error_released() -> None:
    no_usage, refused = Ledger(), Ledger()
    run(Portkey(chunks=[CHUNK]), no_usage, Client())
    run(Portkey(status=500, content_type="application/json", chunks=[b'{"error": {}}']), refused, Client())

    assert [estimated for _, _, estimated in no_usage.settled] == ["no_usage"]
    assert refused.settled == [] and refused.released == 1


def test_a_request_that_never_reached_the_upstream_costs_nothing() -> None:
    ledger = Ledger()
    client = Client()
    run(Portkey(failure=httpx.ConnectError("refused")), ledger, client)

    assert client.status == 502
    assert ledger.settled == [] and ledger.released == 1


def test_a_request_sent_whose_answer_never_came_costs_what_admission_expected() -> None:
    ledger = Ledger()
    client = Client()
    run(Portkey(failure=httpx.ReadTimeout("no answer")), ledger, client)

    assert client.status == 504
    assert ledger.held_charged == ["no_answer"] and ledger.settled == []


def test_a_binary_answer_is_charged_the_prompt_as_unreadable() -> None:
    ledger = Ledger()
    run(Portkey(content_type="audio/mpeg", chunks=[b"\xff\xfb" * 100]), ledger, Client())

    assert ledger.settled == [("gpt-4o-mini", Usage(len(BODY) // 4, 0, len(BODY) // 4), "unreadable")]


def test_a_budget_refusal_is_412_and_nothing_goes_upstream() -> None:
    portkey, client = Portkey(), Client()
    run(portkey, Ledger(refuse=True), client)

    assert client.status == 412
    body = json.loads(client.sent[-1]["body"])
    assert body["error"]["code"] == "budget_exceeded"
    assert portkey.sent == []


@pytest.mark.parametrize("stream_options", [None, {"include_usage": False}])
def test_a_budgeted_stream_asks_for_its_usage(stream_options: dict[str, bool] | None) -> None:
    portkey = Portkey(chunks=[USAGE])
    fields: dict[str, Any] = {"model": "m", "messages": [], "user": USER_ID, "stream": True}
    if stream_options is not None:
        fields["stream_options"] = stream_options
    run(portkey, Ledger(), Client(body=json.dumps(fields).encode()))

    sent = portkey.sent[0].content
    assert isinstance(sent, bytes)
    assert json.loads(sent)["stream_options"] == {"include_usage": True}
