"""What an answer costs: its usage priced by the budgets file's `prices`, or else by the catalogue.

Prices are USD per 1M tokens, as providers publish them. The first entry of the file's `prices`
whose glob matches the model wins (`model_names.py` says which spellings of the name are tried);
a model no entry matches is priced by the catalogue (`catalogue.py`: genai-prices' published
prices), so the file only overrides or adds. Of the prompt, tokens read from a prompt cache cost
the cache-read price and tokens written to one the cache-write price, each the input price where
none is named. A model neither prices is unpriced: its tokens are counted as such, never as free.

`cost` runs once per answer: a model's prices are found once, turned into picodollars per token,
and kept; a catalogue price that changes at a known instant (a new price starts, off-peak hours)
is found again from that instant on.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from ..dialects.usage import Usage
from .catalogue import Catalogue, CatalogueModel, Tier, TokenPrices
from .model_names import ModelName, usable
from .money import nanos_of_picos, picos_per_token
from .periods import Clock, SystemClock

# Model names come from request bodies: the cache of the prices each one was found to have is bounded.
_MATCH_CACHE_ENTRIES = 4096


@dataclass(frozen=True, slots=True)
class Price:
    """One entry of the file's `prices`, in USD per 1M tokens; cache prices left out are input's."""

    model: str  # a glob, matched without regard to case
    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None  # cache reads
    cache_write: Decimal | None = None

    def token_prices(self) -> TokenPrices:
        return TokenPrices(self.input, self.output, self.cached_input, self.cache_write)


@dataclass(frozen=True, slots=True)
class Cost:
    nanos: int  # what the priced tokens cost, in nanodollars
    unpriced_tokens: int = 0  # tokens of a model no price matched


@dataclass(frozen=True, slots=True)
class Quote:
    """The prices that apply to a model, and where they come from: a file entry, or the catalogue."""

    prices: TokenPrices
    tiers: tuple[Tier, ...] = ()
    until: datetime | None = None  # when they may change
    entry: int | None = None  # the budgets file's `prices` entry that applies, counted from 1
    found: CatalogueModel | None = None  # else the catalogue's model

    @classmethod
    def of_catalogue(cls, found: CatalogueModel) -> Quote:
        return cls(found.prices, found.tiers, found.until, found=found)


@dataclass(frozen=True, slots=True)
class _Rates:
    """Prices in picodollars per token, as the hot path uses them."""

    input: int
    output: int
    cache_read: int
    cache_write: int
    tiers: tuple[tuple[int, _Rates], ...] = ()  # (above, rates) by `above`, ascending
    until: datetime | None = None

    @classmethod
    def of(cls, quote: Quote) -> _Rates:
        tiers = tuple((tier.above, cls._flat(tier.prices)) for tier in quote.tiers)
        return cls._flat(quote.prices, tiers, quote.until)

    @classmethod
    def _flat(
        cls, prices: TokenPrices, tiers: tuple[tuple[int, _Rates], ...] = (), until: datetime | None = None
    ) -> _Rates:
        input_rate = picos_per_token(prices.input)
        return cls(
            input_rate,
            picos_per_token(prices.output),
            picos_per_token(prices.cache_read) if prices.cache_read is not None else input_rate,
            picos_per_token(prices.cache_write) if prices.cache_write is not None else input_rate,
            tiers,
            until,
        )

    def for_prompt(self, prompt: int) -> _Rates:
        """The rates of the tier a prompt of this many input tokens falls in."""
        rates = self
        for above, tier in self.tiers:
            if prompt > above:
                rates = tier
        return rates


class PriceList:
    def __init__(
        self,
        prices: Sequence[Price],
        *,
        catalogue: Catalogue | Literal["bundled"] | None = "bundled",
        clock: Clock | None = None,
    ) -> None:
        """`catalogue`: what prices the models no entry matches; None for the file's prices only."""
        self.prices = tuple(prices)
        self.catalogue = Catalogue.bundled() if catalogue == "bundled" else catalogue
        self._clock = clock or SystemClock()
        self._patterns = tuple(re.compile(fnmatch.translate(price.model.lower())) for price in self.prices)
        self._matched: dict[str, _Rates | None] = {}

    def price_of(self, model: str | None) -> Price | None:
        """The file's first price whose glob matches `model` (a missing model matches only a glob like `*`)."""
        index = self._entry_of(ModelName.parse(model or ""))
        return self.prices[index] if index is not None else None

    def quote(self, model: str | None, provider: str | None = None) -> Quote | None:
        """The prices `model` is charged at now; `provider` (a catalogue provider) narrows the catalogue's search."""
        name = ModelName.parse(model or "")
        index = self._entry_of(name)
        if index is not None:
            return Quote(self.prices[index].token_prices(), entry=index + 1)
        if self.catalogue is None:
            return None
        found = self.catalogue.find(name, self._clock.now(), provider)
        return Quote.of_catalogue(found) if found is not None else None

    def cost(self, model: str | None, usage: Usage) -> Cost:
        # Called once per answer: the rates are looked up in the cache inline, and `min` is spelled out.
        key = usable(model)
        try:
            rates = self._matched[key]
        except KeyError:
            rates = self._find(key)
        else:
            if rates is not None and rates.until is not None and self._clock.now() >= rates.until:
                rates = self._find(key)
        prompt = (usage.prompt if usage.prompt is not None else _prompt_from_total(usage)) or 0
        completion = usage.completion or 0
        if rates is None:
            return Cost(0, prompt + completion)
        if rates.tiers:
            rates = rates.for_prompt(prompt)
        cached = usage.cached_prompt or 0
        cached = cached if cached < prompt else prompt
        written = usage.cache_write or 0
        written = written if written < prompt - cached else prompt - cached
        picos = (
            (prompt - cached - written) * rates.input
            + cached * rates.cache_read
            + written * rates.cache_write
            + completion * rates.output
        )
        return Cost(nanos_of_picos(picos))

    def _find(self, model: str) -> _Rates | None:
        quote = self.quote(model)
        rates = _Rates.of(quote) if quote is not None else None
        if len(self._matched) >= _MATCH_CACHE_ENTRIES:
            self._matched.clear()
        self._matched[model] = rates
        return rates

    def _entry_of(self, name: ModelName) -> int | None:
        spellings = name.spellings()
        for index, pattern in enumerate(self._patterns):
            if any(pattern.match(spelling) for spelling in spellings):
                return index
        return None


def _prompt_from_total(usage: Usage) -> int | None:
    # Usage that says only its total and perhaps its completion (some embeddings providers): the rest is input.
    if usage.total is None:
        return None
    return max(usage.total - (usage.completion or 0), 0)
