from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from genai_prices import Usage as CatalogueUsage
from genai_prices import calc_price

from portkey_user_proxy.budgets import Price, PriceList, dollars_text, parse_budgets
from portkey_user_proxy.budgets.money import nanos
from portkey_user_proxy.dialects import dialect_for
from portkey_user_proxy.dialects.meter import AnswerMeter
from portkey_user_proxy.dialects.usage import Usage
from tests.support.fixtures import load_fixture


@pytest.fixture
def file_prices() -> PriceList:
    """A budgets file's prices, over the catalogue: the file's entries win."""
    return PriceList(
        [
            Price("gpt-4o-mini*", Decimal("0.15"), Decimal("0.60"), Decimal("0.075")),
            Price("gpt-4o*", Decimal("2.50"), Decimal("10")),
            Price("claude-*", Decimal("3"), Decimal("15"), Decimal("0.30")),
        ]
    )


@pytest.fixture
def catch_all() -> PriceList:
    return PriceList([Price("gpt-4o-mini*", Decimal("0.15"), Decimal("0.60")), Price("*", Decimal("5"), Decimal("15"))])


@pytest.fixture
def catalogue_only() -> PriceList:
    """What a budgets file without `prices` prices with."""
    return PriceList(parse_budgets("users: {default: 50}\n", "budgets.yaml").prices)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.instant = now

    def now(self) -> datetime:
        return self.instant


def usd(text: str) -> int:
    return nanos(Decimal(text))


def catalogue_nanos(model: str, *, at: datetime | None = None, provider: str | None = None, **tokens: int) -> int:
    """What genai-prices itself charges, in nanodollars: the expected value of every catalogue price."""
    price = calc_price(CatalogueUsage(**tokens), model, provider_id=provider, genai_request_timestamp=at)
    return nanos(price.total_price)


def usage_of(path: str, *chunks: bytes) -> Usage:
    """What the forwarder reads from a response of `path`: the usage objects in the bytes, as the dialect reads them."""
    meter = AnswerMeter(dialect_for(path), b"text/event-stream", None)
    for chunk in chunks:
        meter.feed(chunk)
    usage = meter.reading().usage
    assert usage is not None
    return usage


def sse(*events: dict[str, Any]) -> list[bytes]:
    return [f"data: {json.dumps(event)}\n\n".encode() for event in events]


# The file's prices


def test_a_chat_completion_stream_is_priced_with_its_cached_prompt_tokens(file_prices: PriceList) -> None:
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
    assert file_prices.cost("gpt-4o-mini-2024-07-18", usage).nanos == (
        usd("0.0001464") + usd("0.0000768") + usd("0.00006")
    )


def test_a_json_chat_completion_without_a_cached_price_pays_input_for_cached_tokens(file_prices: PriceList) -> None:
    body = {"usage": {"prompt_tokens": 1000, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 500}}}
    usage = usage_of("/v1/chat/completions", json.dumps(body).encode())

    assert file_prices.cost("gpt-4o", usage).nanos == usd("0.0025") + usd("0.0001")


def test_a_responses_stream_is_priced_from_response_completed(catch_all: PriceList) -> None:
    fixture = load_fixture("openai_responses_request.json")
    created = b'event: response.created\ndata: {"usage":null}\n\n'
    usage = usage_of("/v1/responses", created, fixture["stream_tail"].encode())

    # gpt-5 has no entry of its own: 812 input at the catch-all's $5/M + 164 output at $15/M
    assert catch_all.cost(fixture["body"]["model"], usage).nanos == usd("0.00406") + usd("0.00246")


def test_a_responses_answer_with_cached_input_tokens(file_prices: PriceList) -> None:
    body = {"usage": {"input_tokens": 3000, "output_tokens": 200, "input_tokens_details": {"cached_tokens": 2000}}}
    usage = usage_of("/v1/responses", json.dumps(body).encode())

    # 1000 input at $0.15/M + 2000 cached at $0.075/M + 200 output at $0.60/M
    assert file_prices.cost("gpt-4o-mini", usage).nanos == usd("0.00015") + usd("0.00015") + usd("0.00012")


def test_an_anthropic_stream_is_priced_from_message_start_and_the_last_message_delta(file_prices: PriceList) -> None:
    fixture = load_fixture("anthropic_messages_request.json")
    usage = usage_of("/v1/messages", *(event.encode() for event in fixture["stream_events"]))

    # 25 input at $3/M + 15 output at $15/M
    assert file_prices.cost(fixture["body"]["model"], usage).nanos == usd("0.000075") + usd("0.000225")


ANTHROPIC_CACHED = {
    "usage": {
        "input_tokens": 10,
        "cache_creation_input_tokens": 1000,
        "cache_read_input_tokens": 20000,
        "output_tokens": 300,
    }
}


def test_anthropic_cache_writes_cost_the_entrys_cache_write_price() -> None:
    usage = usage_of("/v1/messages", json.dumps(ANTHROPIC_CACHED).encode())
    prices = PriceList([Price("claude-*", Decimal("3"), Decimal("15"), Decimal("0.30"), Decimal("3.75"))])

    # 10 input at $3/M + 1000 cache writes at $3.75/M + 20000 cache reads at $0.30/M + 300 output at $15/M
    expected = usd("0.00003") + usd("0.00375") + usd("0.006") + usd("0.0045")
    assert prices.cost("claude-sonnet-4-5", usage).nanos == expected


def test_an_entry_without_a_cache_write_price_charges_cache_writes_as_input(file_prices: PriceList) -> None:
    usage = usage_of("/v1/messages", json.dumps(ANTHROPIC_CACHED).encode())

    # 1010 input at $3/M + 20000 cache reads at $0.30/M + 300 output at $15/M
    assert file_prices.cost("claude-sonnet-4-5", usage).nanos == usd("0.00303") + usd("0.006") + usd("0.0045")


def test_embeddings_that_report_only_prompt_and_total_tokens_are_priced_as_input(catch_all: PriceList) -> None:
    usage = usage_of("/v1/embeddings", b'{"usage": {"prompt_tokens": 8000, "total_tokens": 8000}}')

    assert catch_all.cost("text-embedding-3-small", usage).nanos == usd("0.04")


def test_usage_with_only_a_total_is_priced_as_input(catch_all: PriceList) -> None:
    assert catch_all.cost("anything", Usage(total=1000)).nanos == usd("0.005")


def test_usage_with_a_total_and_completion_but_no_prompt_prices_the_difference_as_input(catch_all: PriceList) -> None:
    # 1000 input (1100 - 100) at $5/M + 100 output at $15/M
    assert catch_all.cost("anything", Usage(completion=100, total=1100)).nanos == usd("0.005") + usd("0.0015")
    # A total below the completion is wrong; no input is made up from it: the output alone is charged.
    assert catch_all.cost("anything", Usage(completion=100, total=60)).nanos == usd("0.0015")


def test_an_answer_without_a_model_matches_only_an_entry_for_any_name() -> None:
    prices = PriceList([Price("?*", Decimal(1), Decimal(1)), Price("*", Decimal(2), Decimal(2))], catalogue=None)

    assert prices.price_of(None) == prices.prices[1]  # `?*` needs a name of one character or more
    assert prices.cost(None, Usage(prompt=1_000_000)).nanos == usd("2")


def test_the_first_matching_entry_wins_whatever_the_case(file_prices: PriceList, catch_all: PriceList) -> None:
    assert file_prices.price_of("GPT-4o-Mini") == file_prices.prices[0]
    assert file_prices.price_of("gpt-4o-2024-11-20") == file_prices.prices[1]
    assert catch_all.price_of("mistral-large") == catch_all.prices[-1]
    assert catch_all.price_of(None) == catch_all.prices[-1]


def test_an_entry_prices_a_model_however_portkey_and_providers_prefix_it(file_prices: PriceList) -> None:
    assert file_prices.price_of("@openai-prod/gpt-4o") == file_prices.prices[1]
    assert file_prices.price_of("openai/GPT-4o-mini") == file_prices.prices[0]
    integration = PriceList([Price("@azure-eu/*", Decimal(1), Decimal(1))], catalogue=None)
    assert integration.price_of("@azure-eu/gpt-4o") == integration.prices[0]
    assert integration.price_of("@openai-prod/gpt-4o") is None


def test_halves_round_up_in_budgets_and_in_prices() -> None:
    # A budget of $0.0000000025 is 2.5 nanodollars, a price of $0.0000025/M 2.5 picodollars a token: both 3.
    assert nanos(Decimal("0.0000000025")) == 3
    assert PriceList([Price("*", Decimal("0.0000025"), Decimal(0))]).cost("m", Usage(prompt=1000)).nanos == 3


def test_costs_are_exact_sums_in_nanodollars() -> None:
    cheap = PriceList([Price("*", Decimal("0.0375"), Decimal("0.15"))])

    # $0.0375/M is 37.5 nanodollars a token: rounded to nanodollars once per answer, not per token.
    assert cheap.cost("m", Usage(prompt=1, completion=0)).nanos == 38
    assert cheap.cost("m", Usage(prompt=3, completion=0)).nanos == 113
    assert sum(cheap.cost("m", Usage(prompt=1_000_000, completion=0)).nanos for _ in range(3)) == usd("0.1125")
    # Integers add up to the same total in any order, across replicas and in MongoDB; floats would not.
    assert type(cheap.cost("m", Usage(prompt=3, completion=7)).nanos) is int


# The catalogue's prices


@pytest.mark.parametrize("model", ["gpt-4o", "openai/gpt-4o", "@openai-prod/gpt-4o", "GPT-4o", " gpt-4o"])
def test_a_budgets_file_without_prices_charges_the_catalogues_price(catalogue_only: PriceList, model: str) -> None:
    usage = Usage(prompt=2000, completion=300, total=2300, cached_prompt=1024)

    expected = catalogue_nanos(
        "gpt-4o", provider="openai", input_tokens=2000, cache_read_tokens=1024, output_tokens=300
    )
    assert expected > 0
    assert catalogue_only.cost(model, usage) == catalogue_only.cost("gpt-4o", usage)
    assert catalogue_only.cost(model, usage).nanos == expected


@pytest.mark.parametrize(
    ("model", "as_the_catalogue_names_it"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o-2024-08-06"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # a snapshot with a price of its own
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet-20241022"),
        ("anthropic/claude-3-5-sonnet-20241022", "claude-3-5-sonnet-20241022"),
        ("gpt-4o-2031-01-01", "gpt-4o"),  # newer than the catalogue: priced as the model it is a snapshot of
        ("claude-sonnet-4-5-20310101", "claude-sonnet-4-5"),
    ],
)
def test_dated_snapshots_are_priced_as_the_catalogue_prices_them(
    catalogue_only: PriceList, model: str, as_the_catalogue_names_it: str
) -> None:
    usage = Usage(prompt=5000, completion=700, total=5700)

    expected = catalogue_nanos(as_the_catalogue_names_it, input_tokens=5000, output_tokens=700)
    assert catalogue_only.cost(model, usage).nanos == expected


def test_a_file_entry_overrides_the_catalogue_for_its_models_only() -> None:
    prices = PriceList(parse_budgets('prices: [{model: "gpt-4o", input: 1, output: 2}]', "budgets.yaml").prices)
    usage = Usage(prompt=1_000_000, completion=1_000_000, total=2_000_000)

    assert prices.cost("@openai-prod/gpt-4o", usage).nanos == usd("3")
    expected = catalogue_nanos("gpt-4o-mini", input_tokens=1_000_000, output_tokens=1_000_000)
    assert prices.cost("gpt-4o-mini", usage).nanos == expected


def test_anthropic_cache_reads_and_writes_cost_the_catalogues_prices_for_them(catalogue_only: PriceList) -> None:
    usage = usage_of("/v1/messages", json.dumps(ANTHROPIC_CACHED).encode())

    expected = catalogue_nanos(
        "claude-sonnet-4-5", input_tokens=21010, cache_write_tokens=1000, cache_read_tokens=20000, output_tokens=300
    )
    as_plain_input = catalogue_nanos(
        "claude-sonnet-4-5", input_tokens=21010, cache_read_tokens=20000, output_tokens=300
    )
    assert catalogue_only.cost("claude-sonnet-4-5", usage).nanos == expected
    assert expected > as_plain_input  # a cache write costs more than input: it is its own kind


def test_a_long_prompt_pays_the_catalogues_price_for_long_prompts(catalogue_only: PriceList) -> None:
    short = Usage(prompt=200_000, completion=1000, cached_prompt=50_000)
    long = Usage(prompt=200_001, completion=1000, cached_prompt=50_000)

    for usage in (short, long):
        expected = catalogue_nanos(
            "gemini-2.5-pro", input_tokens=usage.prompt or 0, cache_read_tokens=50_000, output_tokens=1000
        )
        assert catalogue_only.cost("gemini-2.5-pro", usage).nanos == expected
    assert catalogue_only.cost("gemini-2.5-pro", long).nanos > catalogue_only.cost("gemini-2.5-pro", short).nanos * 1.5


def test_a_price_that_changes_with_the_time_of_day_is_charged_as_it_stands_when_the_answer_ends() -> None:
    # DeepSeek's off-peak hours are priced apart in the catalogue; the rates are kept, and found again at the change.
    usage = Usage(prompt=10_000, completion=2000)
    clock = Clock(datetime(2031, 3, 4, 12, 0, tzinfo=UTC))
    prices = PriceList([], clock=clock)

    charged = []
    for day, hour in ((4, 12), (4, 20), (5, 12)):
        clock.instant = clock.instant.replace(day=day, hour=hour)
        charged.append(prices.cost("deepseek-chat", usage).nanos)
        expected = catalogue_nanos("deepseek-chat", at=clock.instant, input_tokens=10_000, output_tokens=2000)
        assert charged[-1] == expected
    assert charged[0] != charged[1] != charged[2]


@pytest.mark.usefixtures("host_in_tokyo")
def test_hours_of_the_day_are_utcs_whatever_the_hosts_time_zone() -> None:
    # DeepSeek's off-peak hours begin at 16:30 UTC (01:30 the next day in Tokyo): the price changes then.
    usage = Usage(prompt=10_000, completion=2000)
    clock = Clock(datetime(2031, 3, 4, 15, 30, tzinfo=UTC))
    prices = PriceList([], clock=clock)

    charged = []
    for instant in (datetime(2031, 3, 4, 15, 30, tzinfo=UTC), datetime(2031, 3, 4, 17, 0, tzinfo=UTC)):
        clock.instant = instant
        charged.append(prices.cost("deepseek-chat", usage).nanos)
        assert charged[-1] == catalogue_nanos("deepseek-chat", at=instant, input_tokens=10_000, output_tokens=2000)
    assert charged[0] != charged[1]


@pytest.mark.parametrize("model", ["mistery-model-9", "@openai-prod/", None, "", "x" * 100_000, "gpt-" + "x" * 10_000])
def test_a_model_neither_the_file_nor_the_catalogue_prices_is_unpriced_never_free(
    file_prices: PriceList, model: str | None
) -> None:
    cost = file_prices.cost(model, Usage(prompt=100, completion=20, total=120))

    assert cost.nanos == 0
    assert cost.unpriced_tokens == 120


def test_an_embeddings_model_is_charged_for_its_input_alone(catalogue_only: PriceList) -> None:
    # The catalogue has no output price for embeddings: tokens reported as output cost nothing.
    usage = Usage(prompt=1000, completion=10, total=1010)

    assert catalogue_only.cost("openai/text-embedding-3-small", usage).nanos == usd("0.00002")  # 1000 at $0.02/M


def test_a_model_the_catalogue_prices_by_the_hour_is_unpriced(catalogue_only: PriceList) -> None:
    assert catalogue_only.cost("whisper-1", Usage(prompt=100)).unpriced_tokens == 100


def test_the_prices_of_model_names_seen_are_kept_within_bounds(catalogue_only: PriceList) -> None:
    for number in range(5000):
        catalogue_only.cost(f"mystery-{number}", Usage(prompt=1))

    assert len(catalogue_only._matched) <= 4096


# Where a price comes from


def test_a_quote_names_the_file_entry_or_the_catalogues_model(
    file_prices: PriceList, catalogue_only: PriceList
) -> None:
    from_file = file_prices.quote("@openai-prod/gpt-4o")
    assert from_file is not None and from_file.entry == 2 and from_file.found is None
    assert from_file.prices.input == Decimal("2.50") and from_file.prices.cache_read is None

    found = catalogue_only.quote("anthropic/claude-3-5-sonnet-20241022")
    assert found is not None and found.entry is None and found.found is not None
    assert (found.found.provider, found.found.model) == ("anthropic", "claude-3-5-sonnet")


def test_a_provider_finds_a_model_no_provider_claims_by_its_name(catalogue_only: PriceList) -> None:
    assert catalogue_only.quote("text-embedding-3-small") is None
    found = catalogue_only.quote("text-embedding-3-small", provider="openai")

    assert found is not None and found.found is not None and found.found.provider == "openai"
    assert catalogue_only.quote("openai/text-embedding-3-small") == found


@pytest.mark.parametrize(
    ("amount", "text"),
    [("500", "$500"), ("2000", "$2,000"), ("12.5", "$12.50"), ("0.125", "$0.13"), ("0.004", "$0.004"), ("0", "$0")],
)
def test_amounts_read_as_a_person_writes_them(amount: str, text: str) -> None:
    assert dollars_text(usd(amount)) == text
