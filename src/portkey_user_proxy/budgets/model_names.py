"""A request's model name, read for pricing: how each way of writing a model is taken apart.

- **Case** never matters: `GPT-4o` is `gpt-4o` (providers, the catalogue and the file's globs agree).
- **Portkey's `@slug/`**: `@openai-prod/gpt-4o` names a Portkey integration (its credentials, set up
  in Portkey under a name an admin chose) before the model. The slug says nothing reliable about the
  provider, so it is dropped and the rest is read as any other name.
- **A provider prefix**: `openai/gpt-4o`, `anthropic/claude-sonnet-4-5`, `openrouter/anthropic/...`.
  The part before the first `/` is kept apart: the catalogue looks the rest up in that provider when
  it knows a provider by that name, and by the name alone otherwise.
- **Dated snapshots**: `gpt-4o-2024-08-06`, `claude-3-5-sonnet-20241022`, Vertex's `...@20240620`.
  The catalogue names the snapshots it knows (some cost other than their model); one it does not
  know, newer than the catalogue, is priced as the model it is a snapshot of (`undated`).

The budgets file's globs are matched against the name as sent, without the slug and without the
prefix (`spellings`), so `gpt-4o*` prices `@openai-prod/gpt-4o` too, and `@openai-prod/*` is possible.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DATE_SUFFIX = re.compile(r"[-@](?:\d{4}-\d{2}-\d{2}|\d{8})$")
# A name longer than this is no model's: priced as no model at all, and never kept as a cache's key
# (names come from request bodies, where a field may hold 64 KiB).
LONGEST_NAME = 256


def usable(model: str | None) -> str:
    """The name the price caches are keyed by: `model`, or "" (no model) for none or one too long."""
    return model if model is not None and len(model) <= LONGEST_NAME else ""


@dataclass(frozen=True, slots=True)
class ModelName:
    given: str  # in lower case, surrounding blanks removed
    routed: str  # without Portkey's `@slug/`
    prefix: str | None  # what comes before the first `/` of `routed`: perhaps a provider
    bare: str  # `routed` without its prefix

    @classmethod
    def parse(cls, model: str) -> ModelName:
        given = model.strip().lower()
        routed = given
        if given.startswith("@") and "/" in given:
            routed = given.partition("/")[2]
        prefix, slash, rest = routed.partition("/")
        if slash and prefix and rest:
            return cls(given, routed, prefix, rest)
        return cls(given, routed, None, routed)

    def spellings(self) -> tuple[str, ...]:
        """What the budgets file's globs are matched against, the name as sent first."""
        return tuple(dict.fromkeys((self.given, self.routed, self.bare)))

    def undated(self) -> ModelName | None:
        """The model a dated snapshot is of, e.g. `gpt-4o` for `gpt-4o-2031-01-01`; None without a date."""
        undated = _DATE_SUFFIX.sub("", self.given)
        return ModelName.parse(undated) if undated != self.given and undated else None
