"""Warnings before the wall: a chat webhook hears once of each threshold crossed, and no request waits on it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from portkey_user_proxy import Settings
from portkey_user_proxy.budgets import BudgetConfig, Budgets, Demand, Mode, Price
from portkey_user_proxy.dialects.usage import Usage
from tests.servers.test_budgets import EMAIL, PricedUpstream, chat
from tests.support.budget_replicas import CACHE_SECONDS, Replica, replica
from tests.support.chat_webhook import ChatWebhook
from tests.support.mongomock_server import WritableMongo
from tests.support.proxy import RunningProxy, start_proxy
from tests.support.servers import ServerThread

# At the test prices ($1 per 1M input tokens, $2 per 1M output tokens).
HUNDRED_DOLLARS = Usage(prompt=60_000_000, completion=20_000_000, total=80_000_000)
TEN_DOLLARS = Usage(prompt=6_000_000, completion=2_000_000, total=8_000_000)
SENT = "portkey_user_proxy_budget_webhook_sent_total"
FAILED = "portkey_user_proxy_budget_webhook_failed_total"
DROPPED = "portkey_user_proxy_budget_webhook_dropped_total"


def thresholds(webhook: ChatWebhook) -> list[tuple[str, float]]:
    """(name, threshold) of each warning the webhook accepted, in order."""
    return [(body["name"], body["threshold"]) for body in webhook.accepted()]


def claims(mongo: WritableMongo) -> list[tuple[str, str, str, float]]:
    with mongo.client() as client:
        found = client[mongo.database]["alerts"].find(
            {}, {"_id": 0, "period": 1, "scope": 1, "name": 1, "threshold": 1}
        )
        return sorted((d["period"], d["scope"], d["name"], d["threshold"]) for d in found)


async def spend(budgets: Budgets, user: str, team: str | None, model: str, usage: Usage) -> None:
    """An answer of `usage`, admitted and settled as the forwarder does."""
    budgets.settle(await budgets.admit(user, team, Demand(model, 0, None)), model, usage)


async def started(one: Replica) -> Replica:
    assert one.budgets.alerts is not None
    await one.budgets.start()
    await one.budgets.alerts.start()
    return one


async def settled(one: Replica) -> None:
    """Every warning it queued is sent, claimed elsewhere or dropped, and its spend written."""
    assert one.budgets.alerts is not None
    await one.budgets.alerts.settled()
    await one.budgets.flush()


async def stopped(one: Replica) -> None:
    assert one.budgets.alerts is not None
    await one.budgets.alerts.aclose()
    await one.budgets.aclose()


async def read_again(one: Replica) -> None:
    """What a replica does once its cache window is over: read the store's spend again."""
    one.ticks.seconds += CACHE_SECONDS
    await one.budgets.refresh()


@pytest.mark.real_mongo
def test_each_threshold_is_announced_once_across_replicas_and_a_restart(
    writable_mongo: WritableMongo, chat_webhook: ChatWebhook, caplog: pytest.LogCaptureFixture
) -> None:
    url = chat_webhook.url
    # Warn mode: every answer is admitted, however far over the budget the test takes the team.
    caplog.set_level(logging.DEBUG, logger="portkey_user_proxy")

    async def scenario() -> None:
        async with replica(writable_mongo, webhook_url=url, mode=Mode.WARN) as one:
            await started(one)
            async with replica(writable_mongo, webhook_url=url, mode=Mode.WARN) as two:
                await started(two)
                for _ in range(4):  # $400 of Finance's $500: 80%
                    await spend(one.budgets, "bob@example.com", "Finance", "gpt-4o", HUNDRED_DOLLARS)
                await settled(one)
                assert thresholds(chat_webhook) == [("Finance", 0.8)]

                # The other replica learns of the $400, adds $10 and sees 80% crossed too: claimed already.
                await read_again(two)
                await spend(two.budgets, "bob@example.com", "Finance", "gpt-4o", TEN_DOLLARS)
                await settled(two)
                assert len(chat_webhook.bodies) == 1
                await stopped(two)

            # A restart: a replica that remembers nothing finds 80% claimed, and announces 100% alone.
            async with replica(writable_mongo, webhook_url=url, mode=Mode.WARN) as three:
                await started(three)
                await spend(three.budgets, "bob@example.com", "Finance", "gpt-4o", TEN_DOLLARS)  # $420
                await settled(three)
                assert len(chat_webhook.bodies) == 1
                await spend(three.budgets, "bob@example.com", "Finance", "gpt-4o", HUNDRED_DOLLARS)  # $520
                await settled(three)
                assert thresholds(chat_webhook) == [("Finance", 0.8), ("Finance", 1.0)]
                assert three.metric(SENT) == 1
                await stopped(three)

            # The first replica crosses 100% in its turn: claimed already.
            await read_again(one)
            await spend(one.budgets, "bob@example.com", "Finance", "gpt-4o", TEN_DOLLARS)
            await settled(one)
            assert one.metric(SENT) == 1
            assert one.metric(DROPPED) == 0
            await stopped(one)

    asyncio.run(scenario())

    assert len(chat_webhook.bodies) == 2
    assert chat_webhook.paths == ["/services/T0001/B0002/webhook-secret-path"] * 2
    warning = chat_webhook.accepted()[0]
    assert warning == {
        "text": "The Finance team has used 80% of its budget of $500 for December ($400 spent); "
        "it resets on 1 January 00:00 UTC.",
        "scope": "team",
        "name": "Finance",
        "period": "month:2026-12-01",
        "threshold": 0.8,
        "spent_usd": "400",
        "limit_usd": "500",
        "resets_at": "2027-01-01T00:00:00+00:00",
    }
    assert claims(writable_mongo) == [
        ("month:2026-12-01", "team", "Finance", 0.8),
        ("month:2026-12-01", "team", "Finance", 1.0),
    ]
    # The operator's record: each warning sent, where to (its secret path hidden), and each one left to another.
    where = url.split("/services/")[0] + "/(hidden)"
    assert [(record.levelname, record.getMessage()) for record in caplog.records if "budget warning" in record.msg] == [
        ("INFO", f"budget warning sent to {where}: team 'Finance' at 80% of its budget (month:2026-12-01)"),
        ("DEBUG", "budget warning for team 'Finance' at 80% already claimed by another replica or run"),
        ("DEBUG", "budget warning for team 'Finance' at 80% already claimed by another replica or run"),
        ("INFO", f"budget warning sent to {where}: team 'Finance' at 100% of its budget (month:2026-12-01)"),
        ("DEBUG", "budget warning for team 'Finance' at 100% already claimed by another replica or run"),
    ]


def test_a_new_period_warns_again(writable_mongo: WritableMongo, chat_webhook: ChatWebhook) -> None:
    async def scenario() -> None:
        async with replica(writable_mongo, webhook_url=chat_webhook.url) as one:
            await started(one)
            for _ in range(4):
                await spend(one.budgets, "bob@example.com", "Finance", "gpt-4o", HUNDRED_DOLLARS)
            await settled(one)
            one.clock.instant = datetime(2027, 1, 2, 9, 0, tzinfo=UTC)  # January: nothing spent yet
            for _ in range(3):
                await spend(one.budgets, "bob@example.com", "Finance", "gpt-4o", HUNDRED_DOLLARS)
            await settled(one)
            assert len(chat_webhook.bodies) == 1
            await spend(one.budgets, "bob@example.com", "Finance", "gpt-4o", HUNDRED_DOLLARS)
            await settled(one)
            await stopped(one)

    asyncio.run(scenario())

    assert [(body["period"], body["threshold"]) for body in chat_webhook.accepted()] == [
        ("month:2026-12-01", 0.8),
        ("month:2027-01-01", 0.8),
    ]
    assert chat_webhook.accepted()[1]["resets_at"] == "2027-02-01T00:00:00+00:00"


def test_a_webhook_that_fails_then_answers_gets_the_warning_once(
    writable_mongo: WritableMongo, chat_webhook: ChatWebhook
) -> None:
    chat_webhook.statuses = [500, 429]

    async def scenario() -> None:
        async with replica(writable_mongo, webhook_url=chat_webhook.url) as one:
            await started(one)
            for _ in range(4):
                await spend(one.budgets, "bob@example.com", "Finance", "gpt-4o", HUNDRED_DOLLARS)
            await settled(one)
            assert (one.metric(SENT), one.metric(FAILED), one.metric(DROPPED)) == (1, 2, 0)
            await stopped(one)

    asyncio.run(scenario())

    assert thresholds(chat_webhook) == [("Finance", 0.8)]
    assert len(chat_webhook.bodies) == 3
    assert chat_webhook.bodies[0] == chat_webhook.bodies[1] == chat_webhook.bodies[2]  # the same warning, tried again


def test_a_webhook_that_refuses_a_warning_is_not_asked_again_and_the_drop_is_logged(
    writable_mongo: WritableMongo, chat_webhook: ChatWebhook, caplog: pytest.LogCaptureFixture
) -> None:
    chat_webhook.statuses = [404]
    chat_webhook.answer_body = b"no_service"

    async def scenario() -> None:
        async with replica(writable_mongo, webhook_url=chat_webhook.url) as one:
            await started(one)
            for _ in range(4):
                await spend(one.budgets, "bob@example.com", "Finance", "gpt-4o", HUNDRED_DOLLARS)
            await settled(one)
            assert (one.metric(SENT), one.metric(FAILED), one.metric(DROPPED)) == (0, 1, 1)
            await stopped(one)

    with caplog.at_level(logging.WARNING, logger="portkey_user_proxy"):
        asyncio.run(scenario())

    assert len(chat_webhook.bodies) == 1
    (line,) = [record.getMessage() for record in caplog.records if "budget warning" in record.getMessage()]
    assert line.startswith("budget warning for team 'Finance' at 80% dropped: the webhook http://127.0.0.1:")
    assert "/(hidden) answered HTTP 404 (no_service), and would again: check BUDGET_WEBHOOK_URL" in line
    assert "webhook-secret-path" not in caplog.text


def test_a_webhook_that_keeps_failing_is_given_up_on_after_the_delivery_window(
    writable_mongo: WritableMongo, chat_webhook: ChatWebhook
) -> None:
    chat_webhook.statuses = [503] * 100

    async def scenario() -> None:
        async with replica(writable_mongo, webhook_url=chat_webhook.url, delivery_seconds=0.2) as one:
            await started(one)
            for _ in range(4):
                await spend(one.budgets, "bob@example.com", "Finance", "gpt-4o", HUNDRED_DOLLARS)
            await settled(one)
            assert one.metric(SENT) == 0
            assert one.metric(DROPPED) == 1
            failed = one.metric(FAILED)
            assert failed is not None and 2 <= failed == len(chat_webhook.bodies)
            await stopped(one)

    asyncio.run(scenario())

    # Claimed, and not delivered: at most once, never sent by another replica later.
    assert claims(writable_mongo) == [("month:2026-12-01", "team", "Finance", 0.8)]


def test_markup_in_names_reaches_the_channel_as_text(writable_mongo: WritableMongo, chat_webhook: ChatWebhook) -> None:
    team, user = "<!channel> & co", "<https://evil.example|click>@example.com"
    config = BudgetConfig(
        prices=(Price("*", Decimal("1"), Decimal("2")),), teams={team: Decimal("100")}, default_user=Decimal("100")
    )

    async def scenario() -> None:
        async with replica(writable_mongo, config, webhook_url=chat_webhook.url) as one:
            await started(one)
            await spend(one.budgets, user, team, "gpt-4o", HUNDRED_DOLLARS)  # 100% at once: one warning, not two
            await settled(one)
            await stopped(one)

    asyncio.run(scenario())

    team_warning, user_warning = chat_webhook.accepted()
    assert team_warning["name"] == team
    assert team_warning["text"] == (
        "The &lt;!channel&gt; &amp; co team has used 100% of its budget of $100 for December ($100 spent); "
        "it resets on 1 January 00:00 UTC."
    )
    assert user_warning["name"] == user
    assert user_warning["text"].startswith(
        "The user &lt;https://evil.example|click&gt;@example.com has used 100% of their budget of $100"
    )
    assert thresholds(chat_webhook) == [(team, 1.0), (user, 1.0)]
    for warning in (team_warning, user_warning):
        assert "<" not in warning["text"] and ">" not in warning["text"]


# End to end: the proxy under uvicorn, a webhook that never answers.

WARN_BUDGETS = """\
period: month
mode: warn
prices:
  - {model: "*", input: 1, output: 2}
teams:
  Finance: 0.00001
users:
  default: 0.00002
"""


@pytest.fixture
def priced_upstream() -> Iterator[str]:
    server = ServerThread(PricedUpstream()).start()
    yield server.url
    server.stop()


@pytest.fixture
def librechat(writable_librechat: WritableMongo) -> WritableMongo:
    return writable_librechat


def warning_proxy(mongo: WritableMongo, upstream_url: str, webhook_url: str, tmp_path: Path) -> RunningProxy:
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(WARN_BUDGETS)
    values: dict[str, Any] = {
        "portkey_url": upstream_url,
        "mongo_uri": mongo.uri(mongo.librechat),
        "budgets_file": str(budgets),
        "budget_database": mongo.database,
        "team_metadata_key": "team",
        "team_groups": "Finance",
        "budget_webhook_url": webhook_url,
    }
    return start_proxy(Settings(_env_file=None, **values))  # type: ignore[call-arg]


def test_a_webhook_that_never_answers_holds_no_request(
    librechat: WritableMongo, priced_upstream: str, chat_webhook: ChatWebhook, tmp_path: Path
) -> None:
    chat_webhook.hold = True
    proxy = warning_proxy(librechat, priced_upstream, chat_webhook.url, tmp_path)
    try:
        assert chat(proxy).status_code == 200  # Finance at 70% of its budget
        assert chat(proxy).status_code == 200  # 140%: a warning, which the webhook holds unanswered
        assert chat_webhook.held.wait(10)

        # mode: warn forwards it, and records it: the user crosses 100% of theirs, queued behind the held POST.
        answer = chat(proxy)
        assert answer.status_code == 200
        assert httpx.get(proxy.url + "/healthz", timeout=10).status_code == 200
        assert not chat_webhook.client_left.is_set()
        assert len(chat_webhook.bodies) == 1
        assert chat_webhook.bodies[0]["name"] == "Finance"
    finally:
        proxy.server.stop()

    # Stopping drops the held warning and the one behind it: counted, never sent twice.
    assert chat_webhook.client_left.wait(10)
    dropped = proxy.app.metrics.registry.get_sample_value(DROPPED)
    assert dropped == 2
    assert EMAIL not in [body["name"] for body in chat_webhook.bodies]
