from __future__ import annotations

import importlib.metadata
import re
from datetime import UTC, date, datetime, time
from decimal import Decimal

import pytest
from genai_prices.types import (
    ClauseEquals,
    ClauseStartsWith,
    ConditionalPrice,
    ModelInfo,
    ModelPrice,
    Provider,
    StartDateConstraint,
    Tier,
    TieredPrices,
)

from portkey_user_proxy.budgets import PriceList
from portkey_user_proxy.budgets.catalogue import Catalogue, TokenPrices
from portkey_user_proxy.budgets.model_names import ModelName
from portkey_user_proxy.dialects.usage import Usage


class Clock:
    def __init__(self, now: datetime) -> None:
        self.instant = now

    def now(self) -> datetime:
        return self.instant


def acme(*models: ModelInfo) -> Catalogue:
    """A catalogue of one provider, written as genai-prices' data is."""
    provider = Provider(id="acme", name="Acme", api_pattern="", model_match=ClauseStartsWith(starts_with="acme-"))
    provider.models = list(models)
    return Catalogue([provider])


def test_the_bundled_catalogue_says_what_it_is() -> None:
    catalogue = Catalogue.bundled()

    assert catalogue.version == importlib.metadata.version("genai-prices")
    assert re.fullmatch(r"sha256:[0-9a-f]{12}", catalogue.data_version)
    assert catalogue.describe() == f"genai-prices {catalogue.version}, data {catalogue.data_version}"
    assert catalogue.model_count > 1000 and catalogue.provider_count > 20
    assert catalogue.provider_id("bedrock") == "aws" and catalogue.provider_id("no-such-provider") is None


def test_a_new_price_applies_from_its_first_day_and_the_old_one_until_then() -> None:
    cut = ModelInfo(
        id="acme-1",
        match=ClauseEquals(equals="acme-1"),
        prices=[
            ConditionalPrice(prices=ModelPrice(input_mtok=Decimal(2), output_mtok=Decimal(4))),
            ConditionalPrice(
                constraint=StartDateConstraint(start_date=date(2031, 6, 1)),
                prices=ModelPrice(input_mtok=Decimal(1), output_mtok=Decimal(2)),
            ),
        ],
    )
    clock = Clock(datetime(2031, 5, 31, 23, 59, tzinfo=UTC))
    prices = PriceList([], catalogue=acme(cut), clock=clock)
    million = Usage(prompt=1_000_000, completion=1_000_000)

    assert prices.cost("acme-1", million).nanos == 6 * 10**9
    found = acme(cut).find(ModelName.parse("acme-1"), clock.instant)
    assert found is not None and found.until == datetime(2031, 6, 1, tzinfo=UTC)
    clock.instant = datetime.combine(date(2031, 6, 1), time(), UTC)
    assert prices.cost("acme-1", million).nanos == 3 * 10**9


def test_tiers_are_read_for_every_token_kind_at_their_threshold() -> None:
    tiered = ModelInfo(
        id="acme-long",
        match=ClauseEquals(equals="acme-long"),
        prices=ModelPrice(
            input_mtok=TieredPrices(base=Decimal(1), tiers=[Tier(start=1000, price=Decimal(2))]),
            output_mtok=Decimal(5),
            cache_read_mtok=TieredPrices(base=Decimal("0.1"), tiers=[Tier(start=1000, price=Decimal("0.2"))]),
        ),
    )

    found = acme(tiered).find(ModelName.parse("acme-long"), datetime.now(UTC))

    assert found is not None and found.until is None
    assert found.prices == TokenPrices(Decimal(1), Decimal(5), Decimal("0.1"), None)
    assert [(tier.above, tier.prices) for tier in found.tiers] == [
        (1000, TokenPrices(Decimal(2), Decimal(5), Decimal("0.2"), None))
    ]


@pytest.mark.parametrize("model", ["acme-2", "other-1", "acme-"])
def test_a_model_the_catalogue_does_not_list_is_not_found(model: str) -> None:
    only = ModelInfo(id="acme-1", match=ClauseEquals(equals="acme-1"), prices=ModelPrice(input_mtok=Decimal(1)))

    assert acme(only).find(ModelName.parse(model), datetime.now(UTC)) is None
