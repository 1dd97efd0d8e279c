"""The budgets file (`BUDGETS_FILE`): YAML, read once at start, refused whole when any part is wrong.

    period: month          # day | week | month, calendar periods in UTC (weeks start on Monday)
    mode: enforce          # enforce: refuse over budget; warn: log and count, never refuse
    prices:                # optional, USD per 1M tokens: the first entry whose glob matches the model wins
      - {model: "gpt-4o*", input: 2.25, output: 9}   # over the catalogue's price (a negotiated one)
      - {model: "acme-llm-*", input: 1, output: 2, cached_input: 0.1, cache_write: 1.25}  # one it lacks
    teams:                 # USD per period, by the team the proxy resolves (TEAM_METADATA_KEY)
      Finance: 500         #   the team's shared pool
      Engineering: {budget: 2000, each: 20}  # a pool, and every member's own allowance
    users: {default: 50, alice@example.com: 200}

A model no entry matches is priced by the catalogue of published prices (`prices.py`). A file that
does not validate names every problem at once, each with its key and what would be valid, the way an
invalid setting does: the proxy does not start on a budget it would misread.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from .periods import Period
from .prices import Price

DEFAULT_USER = "default"  # the `users` key whose budget applies to every user without one of their own
_AMOUNT, _ENTRY = "amount", "entry"  # the two forms of a team's entry

_Dollars = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
_DOLLARS = "must be an amount of US dollars, 0 or more, e.g. 500"
_PRICE = "must be a price in US dollars per 1M tokens, 0 or more, e.g. 2.50"
_PRICE_KEYS = ("input", "output", "cached_input", "cache_write")
_MESSAGES = {
    "missing": "is required",
    "literal_error": None,  # pydantic's own words list the choices
    "dict_type": "must be a mapping of names to amounts, e.g. `Finance: 500`",
    "list_type": "must be a list of prices, each `- model: ...` with input and output",
    "model_type": "must be a mapping with model, input and output",
}


class Mode(enum.StrEnum):
    ENFORCE = "enforce"  # a request over budget is refused
    WARN = "warn"  # a request over budget is logged and counted, and forwarded


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    period: Period = Period.MONTH
    mode: Mode = Mode.ENFORCE
    prices: tuple[Price, ...] = ()
    teams: Mapping[str, Decimal] = field(default_factory=dict)  # each team's shared pool
    users: Mapping[str, Decimal] = field(default_factory=dict)  # by email in lower case, `default` left out
    default_user: Decimal | None = None
    # By group: every member's own allowance (a team's `each`), for members without an entry under `users`.
    allowances: Mapping[str, Decimal] = field(default_factory=dict)

    def team_limit(self, team: str) -> Decimal | None:
        return self.teams.get(team)

    def user_limit(self, email: str) -> Decimal | None:
        return self.users.get(email, self.default_user)


@dataclass(frozen=True, slots=True)
class BudgetsFile:
    """BUDGETS_FILE as the settings hold it: where it is, and what it said at start."""

    path: Path
    config: BudgetConfig


class BudgetFileError(Exception):
    """The file, and every problem in it: each its key and what would be valid."""

    def __init__(self, source: str, problems: str | Sequence[str]) -> None:
        self.source = source
        self.problems = (problems,) if isinstance(problems, str) else tuple(problems)
        self.problem = "; ".join(self.problems)  # all of them, on the one line an invalid setting gets
        super().__init__(f"invalid budgets file {source}: {self.problem}")


def load_budget_file(path: Path) -> BudgetConfig:
    if path.is_dir():
        # Docker mounts a missing file as an empty directory of that name: the admin meets this first.
        raise BudgetFileError(
            str(path),
            "is a directory, not a file: Docker creates an empty directory when the file it should mount is "
            "missing; remove the directory, put the budgets file at that path, and start again",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BudgetFileError(str(path), f"cannot be read ({_reason(exc)})") from None
    return parse_budgets(text, str(path))


def parse_budgets(text: str, source: str) -> BudgetConfig:
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        raise BudgetFileError(source, f"not valid YAML ({_yaml_problem(exc)})") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise BudgetFileError(source, "must be a mapping of period, mode, prices, teams, users")
    try:
        model = _File.model_validate(document)
    except ValidationError as exc:
        raise BudgetFileError(source, _problems(exc)) from None
    if problems := model.names_given_twice():
        raise BudgetFileError(source, problems)
    return model.config()


class _PriceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, Field(min_length=1)]
    input: _Dollars
    output: _Dollars
    cached_input: _Dollars | None = None
    cache_write: _Dollars | None = None


class _TeamEntry(BaseModel):
    """A team written as a mapping: its shared pool (`budget`), every member's own allowance (`each`), or both."""

    model_config = ConfigDict(extra="forbid")

    budget: _Dollars | None = None
    each: _Dollars | None = None

    @model_validator(mode="after")
    def _something(self) -> _TeamEntry:
        if self.budget is None and self.each is None:
            raise ValueError("a team needs `budget` (its shared pool), `each` (every member's own), or both")
        return self


def _team_form(value: object) -> str:
    return _ENTRY if isinstance(value, dict) else _AMOUNT


# `Finance: 500` (the shared pool alone) or `Engineering: {budget: 2000, each: 20}`, told apart by shape,
# so that a problem is reported for the form written, not for both.
_Team = Annotated[Annotated[_Dollars, Tag(_AMOUNT)] | Annotated[_TeamEntry, Tag(_ENTRY)], Discriminator(_team_form)]


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    period: Period = Period.MONTH
    mode: Mode = Mode.ENFORCE
    prices: list[_PriceEntry] = []
    teams: dict[str, _Team] = {}
    users: dict[str, _Dollars] = {}

    @field_validator("prices", mode="before")
    @classmethod
    def _no_prices(cls, value: object) -> object:
        # `prices:` with nothing under it is YAML's null: none, as if the key were left out.
        return [] if value is None else value

    @field_validator("teams", "users", mode="before")
    @classmethod
    def _no_budgets(cls, value: object) -> object:
        return {} if value is None else value

    def names_given_twice(self) -> list[str]:
        """Two entries the proxy reads as one (teams ignoring case, users' emails ignoring case and blanks):
        one of the two would silently never apply."""
        problems = []
        for section, names, same in (("teams", self.teams, _team_key), ("users", self.users, _user_key)):
            seen: dict[str, str] = {}
            for name in names:
                first = seen.setdefault(same(name), name)
                if first != name:
                    problems.append(f"{section}.{name}: the same as {first!r} (names are compared ignoring case)")
        return problems

    def config(self) -> BudgetConfig:
        users = {_user_key(name): limit for name, limit in self.users.items() if _user_key(name) != DEFAULT_USER}
        prices = tuple(Price(p.model, p.input, p.output, p.cached_input, p.cache_write) for p in self.prices)
        pools: dict[str, Decimal] = {}
        allowances: dict[str, Decimal] = {}
        for team, entry in self.teams.items():
            if isinstance(entry, _TeamEntry):
                if entry.budget is not None:
                    pools[team] = entry.budget
                if entry.each is not None:
                    allowances[team] = entry.each
            else:
                pools[team] = entry  # the short form: `Finance: 500`, the shared pool alone
        default = next((limit for name, limit in self.users.items() if _user_key(name) == DEFAULT_USER), None)
        return BudgetConfig(self.period, self.mode, prices, pools, users, default, allowances)


def _team_key(name: str) -> str:
    return name.strip().casefold()  # as LibreChat's group names are matched (TEAM_GROUPS)


def _user_key(name: str) -> str:
    return name.strip().lower()  # emails, and `default` however it is written


def _problems(exc: ValidationError) -> list[str]:
    return [f"{_key_of(error)}: {_problem_of(error)}" for error in exc.errors()]


def _key_of(error: ErrorDetails) -> str:
    key = ""
    for part in error["loc"]:
        if part in ("[key]", _AMOUNT, _ENTRY):
            continue
        if isinstance(part, int) and key == "prices":
            key += f"[{part + 1}]"  # counted from 1, as a person counts the entries
        else:
            key += f".{part}" if key else str(part)
    return key or "(the file)"


def _problem_of(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        if len(error["loc"]) == 1:
            return "is not a key of the budgets file (period, mode, prices, teams, users)"
        if error["loc"][0] == "teams":
            return "is not a key of a team (budget, each)"
        return "is not a key of a price (model, input, output, cached_input, cache_write)"
    if kind == "value_error":
        return str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
    if error["loc"][-1] == "[key]":
        return 'must be a name: quote one that YAML reads as a number, e.g. "2024"'
    if error["loc"][0] in ("teams", "users") and len(error["loc"]) > 1:
        return _DOLLARS
    if error["loc"][0] == "prices" and error["loc"][-1] in _PRICE_KEYS and kind != "missing":
        return _PRICE
    message = _MESSAGES.get(kind)
    return message or error["msg"][0].lower() + error["msg"][1:]


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice: the second would silently replace the first."""


def _mapping_without_duplicates(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} appears twice in one mapping", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or type(exc).__name__
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else str(problem)


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
