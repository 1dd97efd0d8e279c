"""The price catalogue: genai-prices' data on published LLM prices, as bundled in its release.

The only module that reads genai-prices. It reads the snapshot that ships inside the installed
package and never asks for an update: no network at run time, and a newer catalogue comes with a
newer release, pinned in requirements.txt. It does not price answers through `calc_price` either:
that costs some 65 µs an answer where the proxy needs four rates found once per model
(`prices.py` keeps them), and genai-prices' look-up caches keep every name ever asked about, where
these names come from request bodies.

A model is found as genai-prices finds it (the provider whose rules claim the name, then that
provider's models, then the providers it falls back to), after `model_names.py` has taken the
name apart. Only token prices count: input, output, cache reads and cache writes; per-request,
search, audio and image prices are not charged, and the standard tier is used (no batch, flex or
priority service tiers).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import cache, cached_property

from genai_prices.data_snapshot import find_provider_by_id
from genai_prices.types import (
    ModelInfo,
    ModelPrice,
    Provider,
    StartDateConstraint,
    TieredPrices,
    TimeOfDateConstraint,
)

from .model_names import LONGEST_NAME, ModelName

PACKAGE = "genai-prices"
# A kind of price condition this module does not know: its prices are read again this often.
_UNKNOWN_CONDITION_RECHECK = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class TokenPrices:
    """USD per 1M tokens of each kind the proxy counts; a cache price of None is charged as input."""

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Tier:
    """Prices for a long prompt: an answer with more than `above` input tokens pays these for all of them."""

    above: int
    prices: TokenPrices


@dataclass(frozen=True, slots=True)
class CatalogueModel:
    """A model as the catalogue prices it at one instant."""

    provider: str  # the catalogue's provider id, e.g. `openai`
    model: str  # the catalogue's model id, e.g. `gpt-4o`
    prices: TokenPrices
    tiers: tuple[Tier, ...] = ()  # by `above`, ascending
    until: datetime | None = None  # when the prices may change (a new price starts, off-peak hours begin)


class Catalogue:
    def __init__(self, providers: Sequence[Provider]) -> None:
        self._providers = list(providers)

    @classmethod
    def bundled(cls) -> Catalogue:
        """The catalogue in the installed genai-prices, read once per process (some 20 ms and 4 MB)."""
        return _bundled()

    @property
    def version(self) -> str:
        return importlib.metadata.version(PACKAGE)

    @cached_property
    def data_version(self) -> str:
        """The bundled data's fingerprint: genai-prices numbers its releases, not its data."""
        try:
            data = importlib.resources.files("genai_prices").joinpath("data.py").read_bytes()
        except OSError:
            return "unknown"
        return "sha256:" + hashlib.sha256(data).hexdigest()[:12]

    def describe(self) -> str:
        """Which catalogue this is, e.g. `genai-prices 0.2.5, data sha256:0123456789ab`."""
        return f"{PACKAGE} {self.version}, data {self.data_version}"

    @property
    def model_count(self) -> int:
        return sum(len(provider.models) for provider in self._providers)

    @property
    def provider_count(self) -> int:
        return len(self._providers)

    def provider_id(self, name: str) -> str | None:
        """The catalogue's id of the provider `name` names (`bedrock` is `aws`), None when it knows none."""
        provider = find_provider_by_id(self._providers, name)
        return provider.id if provider is not None else None

    def find(self, name: ModelName, at: datetime, provider: str | None = None) -> CatalogueModel | None:
        """The model `name` is, priced at `at`; under `provider` (a catalogue provider id) only when given.
        None when the catalogue does not know it, or prices it by something other than tokens."""
        if not name.given or len(name.given) > LONGEST_NAME:
            return None
        for candidate in (name, name.undated()):
            if candidate is None:
                continue
            for where, ref in self._places(candidate, provider):
                found = where.find_model(ref, all_providers=self._providers)
                if found is not None:
                    return _priced(where, found, at)
        return None

    def _places(self, name: ModelName, provider: str | None) -> Iterator[tuple[Provider, str]]:
        """Where to look `name` up, and as what, in order: the first model found is the one."""
        if provider is not None:
            named = find_provider_by_id(self._providers, provider)
            if named is not None:
                yield named, name.routed
                yield named, name.bare
            return
        if name.prefix is not None and (named := find_provider_by_id(self._providers, name.prefix)) is not None:
            yield named, name.bare
        yield from self._claimants(name.routed)
        if name.prefix is not None:
            yield from self._claimants(name.bare)

    def _claimants(self, ref: str) -> Iterator[tuple[Provider, str]]:
        # genai-prices' own rule for a name without a provider: the first provider whose rules claim it.
        for provider in self._providers:
            if provider.model_match is not None and provider.model_match.is_match(ref):
                yield provider, ref
                return


@cache
def _bundled() -> Catalogue:
    from genai_prices.data import providers  # the bundled snapshot, whatever an update may have set

    return Catalogue(providers)


_TOKEN_PRICE_KEYS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")


def _priced(provider: Provider, model: ModelInfo, at: datetime) -> CatalogueModel | None:
    price = model.get_prices(at)
    values = [getattr(price, key, None) for key in _TOKEN_PRICE_KEYS]
    if values[0] is None:
        return None  # priced by the hour, the image or the request: not something tokens can pay for
    thresholds = sorted({tier.start for value in values if isinstance(value, TieredPrices) for tier in value.tiers})
    tiers = tuple(Tier(above, _token_prices(values, above + 1)) for above in thresholds)
    return CatalogueModel(provider.id, model.id, _token_prices(values, 0), tiers, _next_change(model, at))


def _token_prices(values: list[Decimal | TieredPrices | None], input_tokens: int) -> TokenPrices:
    input_price, output, cache_read, cache_write = (_at(value, input_tokens) for value in values)
    assert input_price is not None  # _priced checked it
    return TokenPrices(input_price, output if output is not None else Decimal(0), cache_read, cache_write)


def _at(value: Decimal | TieredPrices | None, input_tokens: int) -> Decimal | None:
    """A price for an answer with `input_tokens` input tokens, as genai-prices applies its tiers."""
    if not isinstance(value, TieredPrices):
        return value
    for tier in reversed(value.tiers):
        if input_tokens > tier.start:
            return tier.price
    return value.base


def _next_change(model: ModelInfo, at: datetime) -> datetime | None:
    if isinstance(model.prices, ModelPrice):
        return None
    changes: list[datetime] = []
    for conditional in model.prices:
        condition = conditional.constraint
        if condition is None:
            continue
        if isinstance(condition, StartDateConstraint):
            changes.append(datetime.combine(condition.start_date, time(), UTC))
        elif isinstance(condition, TimeOfDateConstraint):
            changes.extend(_next_time_of_day(moment, at) for moment in (condition.start_time, condition.end_time))
        else:
            changes.append(at + _UNKNOWN_CONDITION_RECHECK)
    return min((change for change in changes if change > at), default=None)


def _next_time_of_day(moment: time, at: datetime) -> datetime:
    # Times without a zone are UTC, as genai-prices reads them.
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    in_utc = datetime.combine(date(2000, 1, 1), aware).astimezone(UTC).time()
    today = datetime.combine(at.astimezone(UTC).date(), in_utc, UTC)
    return today if today > at else today + timedelta(days=1)
