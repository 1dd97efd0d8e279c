"""What a request will cost, guessed before it is sent: the amount its admission holds of a budget.

The prompt is the forwarder's estimate of the request body's tokens. The answer's length is the
smaller of the request's own cap (`max_tokens` and its kin) and what recent answers of the same model
produced on this replica; with no history, the cap, or `DEFAULT_OUTPUT_TOKENS` without one. The
estimate is never below what recent answers of the model cost on average. So when requests cost
about what recent ones did, holds add up to about what the answers will cost.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..dialects.usage import Usage
from .model_names import usable
from .money import PICOS_PER_NANO, nanos_of_picos
from .prices import PriceList

# An answer's length when neither the request caps it nor this replica has seen the model answer yet:
# a long chat answer. Once the model has answered, its recent answers say better.
DEFAULT_OUTPUT_TOKENS = 1_000
# A request's own cap counts up to this: `max_tokens` comes from the client, and one request asking for
# a billion tokens must not hold a whole team's budget while it runs. Beyond any model's output limit.
MAX_ESTIMATED_OUTPUT_TOKENS = 128_000
_WEIGHT = 0.2  # of the newest answer in the running averages: the last five or so answers count most
_MODELS_KEPT = 1_000  # model names come from request bodies: bounded, forgotten all at once when full
_MILLION = 1_000_000
_NANOS_PER_PICO_A_TOKEN = _MILLION // PICOS_PER_NANO  # what a million tokens at 1 picodollar each cost


@dataclass(frozen=True, slots=True)
class Demand:
    """What the forwarder knows of a request before it is sent."""

    model: str | None  # the request body's model
    prompt_tokens: int  # an estimate of the prompt's tokens
    max_output_tokens: int | None  # the body's max_tokens / max_completion_tokens / max_output_tokens, if any


@dataclass(slots=True)
class _Model:
    input_picos: int  # per prompt token, from the price list (0 when no price matches)
    output_picos: int  # per output token
    output_tokens: float | None = None  # running average of recent answers; None before the first
    cost_nanos: float = 0.0  # running average of their cost


class RecentAnswers:
    """Per model: its price per token, and running averages of what recent answers produced and cost.

    The price is looked up once per model, so an estimate is a few integer operations.
    """

    def __init__(self, prices: PriceList) -> None:
        self._prices = prices
        self._models: dict[str, _Model] = {}

    def learn(self, model: str | None, output_tokens: int, cost_nanos: int) -> None:
        known = self._model(model)
        if known.output_tokens is None:
            known.output_tokens, known.cost_nanos = float(output_tokens), float(cost_nanos)
            return
        known.output_tokens += _WEIGHT * (output_tokens - known.output_tokens)
        known.cost_nanos += _WEIGHT * (cost_nanos - known.cost_nanos)

    def estimate(self, demand: Demand) -> int:
        """The request's likely cost in nanodollars (0 when its model has no price)."""
        known = self._model(demand.model)
        cap = demand.max_output_tokens
        if cap is not None:
            cap = min(max(cap, 0), MAX_ESTIMATED_OUTPUT_TOKENS)
        if known.output_tokens is None:
            output, floor = (cap if cap is not None else DEFAULT_OUTPUT_TOKENS), 0
        else:
            usual = round(known.output_tokens)
            output, floor = (min(cap, usual) if cap is not None else usual), round(known.cost_nanos)
        picos = max(demand.prompt_tokens, 0) * known.input_picos + output * known.output_picos
        return max(nanos_of_picos(picos), floor)

    def _model(self, model: str | None) -> _Model:
        name = usable(model)
        known = self._models.get(name)
        if known is None:
            if len(self._models) >= _MODELS_KEPT:
                self._models.clear()
            # A million tokens cost a whole number of nanodollars: 1,000 per picodollar a token, exactly.
            prompt = self._prices.cost(name, Usage(prompt=_MILLION, completion=0)).nanos
            output = self._prices.cost(name, Usage(prompt=0, completion=_MILLION)).nanos
            known = self._models[name] = _Model(prompt // _NANOS_PER_PICO_A_TOKEN, output // _NANOS_PER_PICO_A_TOKEN)
        return known
