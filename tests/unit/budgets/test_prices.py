from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from portkey_user_proxy.budgets import Price, PriceList, dollars_text
from portkey_user_proxy.budgets.money import nanos
from portkey_user_proxy.dialects import dialect_for
from portkey_user_proxy.dialects.usage import Usage, UsageScanner
from tests.support.fixtures import load_fixture

PRICES = PriceList(
    [
        Price("gpt-4o-mini*", Decimal("0.15"), Decimal("0.60"), Decimal("0.075")),
        Price("gpt-4o*", Decimal("2.50"), Decimal("10")),
        Price("claude-*", Decimal("3"), Decimal("15"), Decimal("0.30")),
    ]
)
WITH_CATCH_ALL = PriceList([*PRICES.prices, Price("*", Decimal("5"), Decimal("15"))])


def usd(text: str) -> int:
    return nanos(Decimal(text))


def usage_of(path: str, *chunks: bytes) -> Usage:
    """What the forwarder reads from a response of `path`: the usage objects in the bytes, as the dialect reads them."""
    scanner = UsageScanner()
    for chunk in chunks:
        scanner.feed(chunk)
    usage = dialect_for(path).usage(scanner.reported)
    assert usage is not None
    return usage


def sse(*events: dict[str, Any]) -> list[bytes]:
    return [f"data: {json.dumps(event)}\n\n".encode() for event in events]


def test_a_chat_completion_stream_is_priced_with_its_cached_prompt_tokens() -> None:
    chunks = sse(
        {"choices": [{"delta": {"content": "Hi"}}], "usage": None},
        {
            "choices": [],
            "usage": {
                "prompt_tokens": 2000,
                "completion_tokens": 100,
                "total_tokens": 2100,
                "prompt_tokens_details": {"cached_tokens": 1024},
            },
        },
    )
    usage = usage_of("/v1/chat/completions", *chunks)

    # 976 input at $0.15/M + 1024 cached at $0.075/M + 100 output at $0.60/M
    assert PRICES.cost("gpt-4o-mini-2024-07-18", usage).nanos == usd("0.0001464") + usd("0.0000768") + usd("0.00006")


def test_a_json_chat_completion_without_a_cached_price_pays_input_for_cached_tokens() -> None:
    body = {"usage": {"prompt_tokens": 1000, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 500}}}
    usage = usage_of("/v1/chat/completions", json.dumps(body).encode())

    assert PRICES.cost("gpt-4o", usage).nanos == usd("0.0025") + usd("0.0001")


def test_a_responses_stream_is_priced_from_response_completed() -> None:
    fixture = load_fixture("openai_responses_request.json")
    created = b'event: response.created\ndata: {"usage":null}\n\n'
    usage = usage_of("/v1/responses", created, fixture["stream_tail"].encode())

    # gpt-5 has no price of its own: 812 input at the catch-all's $5/M + 164 output at $15/M
    assert WITH_CATCH_ALL.cost(fixture["body"]["model"], usage).nanos == usd("0.00406") + usd("0.00246")


def test_a_responses_answer_with_cached_input_tokens() -> None:
    body = {"usage": {"input_tokens": 3000, "output_tokens": 200, "input_tokens_details": {"cached_tokens": 2000}}}
    usage = usage_of("/v1/responses", json.dumps(body).encode())

    # 1000 input at $0.15/M + 2000 cached at $0.075/M + 200 output at $0.60/M
    assert PRICES.cost("gpt-4o-mini", usage).nanos == usd("0.00015") + usd("0.00015") + usd("0.00012")


def test_an_anthropic_stream_is_priced_from_message_start_and_the_last_message_delta() -> None:
    fixture = load_fixture("anthropic_messages_request.json")
    usage = usage_of("/v1/messages", *(event.encode() for event in fixture["stream_events"]))

    # 25 input at $3/M + 15 output at $15/M
    assert PRICES.cost(fixture["body"]["model"], usage).nanos == usd("0.000075") + usd("0.000225")


def test_anthropic_cache_reads_cost_cached_input_and_cache_writes_cost_input() -> None:
    body = {
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 1000,
            "cache_read_input_tokens": 20000,
            "output_tokens": 300,
        }
    }
    usage = usage_of("/v1/messages", json.dumps(body).encode())

    # 1010 input at $3/M + 20000 cache reads at $0.30/M + 300 output at $15/M
    assert PRICES.cost("claude-sonnet-4-5", usage).nanos == usd("0.00303") + usd("0.006") + usd("0.0045")


def test_embeddings_that_report_only_prompt_and_total_tokens_are_priced_as_input() -> None:
    usage = usage_of("/v1/embeddings", b'{"usage": {"prompt_tokens": 8000, "total_tokens": 8000}}')

    assert WITH_CATCH_ALL.cost("text-embedding-3-small", usage).nanos == usd("0.04")


def test_usage_with_only_a_total_is_priced_as_input() -> None:
    assert WITH_CATCH_ALL.cost("anything", Usage(total=1000)).nanos == usd("0.005")


def test_the_first_matching_price_wins_whatever_the_case() -> None:
    assert PRICES.price_of("GPT-4o-Mini") == PRICES.prices[0]
    assert PRICES.price_of("gpt-4o-2024-11-20") == PRICES.prices[1]
    assert WITH_CATCH_ALL.price_of("mistral-large") == WITH_CATCH_ALL.prices[-1]
    assert WITH_CATCH_ALL.price_of(None) == WITH_CATCH_ALL.prices[-1]


@pytest.mark.parametrize("model", ["mistral-large", None, "x" * 100_000])
def test_a_model_without_price_or_catch_all_is_unpriced_never_free(model: str | None) -> None:
    cost = PRICES.cost(model, Usage(prompt=100, completion=20, total=120))

    assert cost.nanos == 0
    assert cost.unpriced_tokens == 120


def test_costs_are_exact_sums_in_nanodollars() -> None:
    cheap = PriceList([Price("*", Decimal("0.0375"), Decimal("0.15"))])

    # $0.0375/M is 37.5 nanodollars a token: rounded to nanodollars once per answer, not per token.
    assert cheap.cost("m", Usage(prompt=1, completion=0)).nanos == 38
    assert cheap.cost("m", Usage(prompt=3, completion=0)).nanos == 113
    assert sum(cheap.cost("m", Usage(prompt=1_000_000, completion=0)).nanos for _ in range(3)) == usd("0.1125")


@pytest.mark.parametrize(
    ("amount", "text"),
    [("500", "$500"), ("2000", "$2,000"), ("12.5", "$12.50"), ("0.125", "$0.13"), ("0.004", "$0.004"), ("0", "$0")],
)
def test_amounts_read_as_a_person_writes_them(amount: str, text: str) -> None:
    assert dollars_text(usd(amount)) == text
