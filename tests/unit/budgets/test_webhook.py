"""What the webhook's answers mean, and the URL as logs and `doctor` may show it."""

from __future__ import annotations

import pytest

from portkey_user_proxy.budgets.webhook import Answer, where


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0001/B0002/XXXX", "https://hooks.slack.com/(hidden)"),
        ("https://chat.example.com/hooks/abc123", "https://chat.example.com/(hidden)"),
        (
            "https://prod-01.westeurope.logic.azure.com:443/workflows/1/triggers/manual/paths/invoke?sig=s3cret",
            "https://prod-01.westeurope.logic.azure.com:443/(hidden)",
        ),
        ("http://alerts.internal:8080/", "http://alerts.internal:8080"),
        ("http://user:password@alerts.internal", "http://alerts.internal/(hidden)"),
        ("http://[::1]:9000/hook", "http://[::1]:9000/(hidden)"),
    ],
)
def test_only_the_scheme_host_and_port_of_the_url_are_shown(url: str, shown: str) -> None:
    assert where(url) == shown


@pytest.mark.parametrize(
    ("answer", "delivered", "worth_retrying"),
    [
        (Answer(200), True, False),
        (Answer(204), True, False),
        (Answer(None, "timed out"), False, True),
        (Answer(429), False, True),
        (Answer(500), False, True),
        (Answer(503), False, True),
        (Answer(400), False, False),  # a body the endpoint will never take
        (Answer(404), False, False),  # a webhook deleted in the chat app
        (Answer(302), False, False),  # redirects are not followed
    ],
)
def test_only_no_answer_429_and_5xx_are_tried_again(answer: Answer, delivered: bool, worth_retrying: bool) -> None:
    assert (answer.delivered, answer.worth_retrying) == (delivered, worth_retrying)


def test_an_answer_is_described_in_a_few_words() -> None:
    assert Answer(404, body="no_service").describe() == "HTTP 404 (no_service)"
    assert Answer(500).describe() == "HTTP 500"
    assert Answer(None, "ConnectError: [Errno 111] Connection refused").describe() == (
        "no answer (ConnectError: [Errno 111] Connection refused)"
    )
