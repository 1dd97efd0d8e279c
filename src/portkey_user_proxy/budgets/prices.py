"""What an answer costs: its usage priced by the first price whose model glob matches.

Prices are USD per 1M tokens, as providers publish them. Prompt tokens read from a prompt cache
cost `cached_input` where the price names one, `input` otherwise. A model that no price matches
(and no catch-all `"*"`) is unpriced: its tokens are counted as such, never as free.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from ..dialects.usage import Usage
from .money import nanos_of_picos, picos_per_token

# Model names come from request bodies: the cache of which price each matched is bounded.
_MATCH_CACHE_ENTRIES = 4096


@dataclass(frozen=True, slots=True)
class Price:
    """One entry of the file's `prices`, in USD per 1M tokens."""

    model: str  # a glob, matched without regard to case
    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Cost:
    nanos: int  # what the priced tokens cost, in nanodollars
    unpriced_tokens: int = 0  # tokens of a model no price matched


@dataclass(frozen=True, slots=True)
class _Rates:
    """A price in picodollars per token, as the hot path uses it."""

    input: int
    output: int
    cached_input: int

    @classmethod
    def of(cls, price: Price) -> _Rates:
        cached = price.cached_input if price.cached_input is not None else price.input
        return cls(picos_per_token(price.input), picos_per_token(price.output), picos_per_token(cached))


class PriceList:
    def __init__(self, prices: Sequence[Price]) -> None:
        self.prices = tuple(prices)
        self._patterns = tuple(re.compile(fnmatch.translate(price.model.lower())) for price in self.prices)
        self._rates = tuple(_Rates.of(price) for price in self.prices)
        self._matched: dict[str, _Rates | None] = {}

    def price_of(self, model: str | None) -> Price | None:
        """The first price whose glob matches `model` (a missing model matches only a glob like `*`)."""
        index = self._index_of(model or "")
        return self.prices[index] if index is not None else None

    def cost(self, model: str | None, usage: Usage) -> Cost:
        rates = self._rates_of(model or "")
        prompt = usage.prompt if usage.prompt is not None else _prompt_from_total(usage)
        completion = usage.completion or 0
        if rates is None:
            return Cost(0, (prompt or 0) + completion)
        cached = min(usage.cached_prompt or 0, prompt or 0)
        picos = ((prompt or 0) - cached) * rates.input + cached * rates.cached_input + completion * rates.output
        return Cost(nanos_of_picos(picos))

    def _rates_of(self, model: str) -> _Rates | None:
        try:
            return self._matched[model]
        except KeyError:
            pass
        index = self._index_of(model)
        rates = self._rates[index] if index is not None else None
        if len(self._matched) >= _MATCH_CACHE_ENTRIES:
            self._matched.clear()
        self._matched[model] = rates
        return rates

    def _index_of(self, model: str) -> int | None:
        name = model.lower()
        for index, pattern in enumerate(self._patterns):
            if pattern.match(name):
                return index
        return None


def _prompt_from_total(usage: Usage) -> int | None:
    # Usage that says only its total (some embeddings providers): all of it is input.
    if usage.total is None:
        return None
    return max(usage.total - (usage.completion or 0), 0)
