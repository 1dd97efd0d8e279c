from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from portkey_user_proxy.budgets import BudgetConfig, BudgetFileError, Mode, Period, Price, load_budget_file

# The file as docs/budgets.md shows it.
EXAMPLE = """\
period: month
mode: enforce
prices:
  - model: "gpt-4o*"
    input: 2.00
    output: 8.00
    cached_input: 1.00
  - model: "claude-sonnet-4*"
    input: 3.30
    output: 16.50
    cached_input: 0.33
    cache_write: 4.125
  - model: "@vllm-local/*"
    input: 0.10
    output: 0.10
teams:
  Finance: 500
  Engineering: 2000
users:
  default: 50
  Alice@Example.com: 200
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "budgets.yaml"
    path.write_text(text)
    return path


def test_the_documented_file_reads_as_written(tmp_path: Path) -> None:
    config = load_budget_file(write(tmp_path, EXAMPLE))

    assert config.period is Period.MONTH
    assert config.mode is Mode.ENFORCE
    assert config.prices[1] == Price(
        "claude-sonnet-4*", Decimal("3.30"), Decimal("16.50"), Decimal("0.33"), cache_write=Decimal("4.125")
    )
    assert config.prices[1].input == Decimal("3.3")  # exact: never the float 3.29999...
    assert config.prices[2].cached_input is None and config.prices[2].cache_write is None  # charged as input
    assert config.teams == {"Finance": Decimal("500"), "Engineering": Decimal("2000")}
    assert config.team_limit("Finance") == Decimal("500")
    assert config.team_limit("Sales") is None  # no budget, whatever it spends
    # Emails are matched in lower case, as LibreChat stores them; `default` is everyone else's budget.
    assert config.user_limit("alice@example.com") == Decimal("200")
    assert config.user_limit("bob@example.com") == Decimal("50")


def test_a_file_without_prices_leaves_every_price_to_the_catalogue(tmp_path: Path) -> None:
    assert load_budget_file(write(tmp_path, "users: {default: 50}\n")).prices == ()


def test_an_empty_file_tracks_spend_under_no_budget(tmp_path: Path) -> None:
    assert load_budget_file(write(tmp_path, "")) == BudgetConfig()
    assert load_budget_file(write(tmp_path, "teams:\nusers:\nprices:\n")) == BudgetConfig()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("period: year", "period: input should be 'day', 'week' or 'month'"),
        ("mode: block", "mode: input should be 'enforce' or 'warn'"),
        ("teams: {Finance: -1}", "teams.Finance: must be an amount of US dollars, 0 or more, e.g. 500"),
        ("teams: {Finance: lots}", "teams.Finance: must be an amount of US dollars"),
        ("teams: {Finance: .nan}", "teams.Finance: must be an amount of US dollars"),
        ("users: {bob@example.com: yes}", "users.bob@example.com: must be an amount of US dollars"),
        ("teams: 500", "teams: must be a mapping of names to amounts"),
        ("teams: {2024: 5}", 'teams.2024: must be a name: quote one that YAML reads as a number, e.g. "2024"'),
        ("team: {Finance: 500}", "team: is not a key of the budgets file (period, mode, prices, teams, users)"),
        ("prices: [{model: a, input: 1}]", "prices[1].output: is required"),
        ("prices: [{model: a, input: 1, output: 1}, {model: b, input: x, output: 1}]", "prices[2].input: must be a"),
        (
            "prices: [{model: a, input: 1, output: 1, cache: 1}]",
            "prices[1].cache: is not a key of a price (model, input, output, cached_input, cache_write)",
        ),
        ("prices: [{model: a, input: 1, output: 1, cache_write: -1}]", "prices[1].cache_write: must be a price"),
        ("prices: [{model: '', input: 1, output: 1}]", "prices[1].model: string should have at least 1 character"),
        ("prices: {model: a}", "prices: must be a list of prices"),
        ("teams: {Finance: 1, Finance: 2}", "not valid YAML (line 1, column 21: the key 'Finance' appears twice"),
        ("teams: [Finance", "not valid YAML (line 1, column 16:"),
        ("- Finance", "must be a mapping of period, mode, prices, teams, users"),
        ("teams: {Finance: 1}\x00", "not valid YAML (ReaderError)"),  # a character YAML refuses anywhere
    ],
)
def test_an_invalid_file_is_one_line_naming_the_file_the_key_and_the_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = write(tmp_path, text)

    with pytest.raises(BudgetFileError) as caught:
        load_budget_file(path)

    message = str(caught.value)
    assert message.startswith(f"invalid budgets file {path}: {problem}"), message
    assert "\n" not in message


def test_every_problem_is_named_at_once_with_its_key_and_what_would_be_valid(tmp_path: Path) -> None:
    text = "period: fortnight\nprices:\n  - model: gpt-4o\n    input: 1\nteams: {A: -1}\n"

    with pytest.raises(BudgetFileError) as caught:
        load_budget_file(write(tmp_path, text))

    assert caught.value.problems == (
        "period: input should be 'day', 'week' or 'month'",
        "prices[1].output: is required",
        "teams.A: must be an amount of US dollars, 0 or more, e.g. 500",
    )
    assert "\n" not in str(caught.value), "one line, as an invalid setting gets"


def test_a_directory_in_the_files_place_is_named_for_what_it_is(tmp_path: Path) -> None:
    # What Docker mounts when the file is missing at `docker compose up`.
    (tmp_path / "budgets.yaml").mkdir()

    with pytest.raises(BudgetFileError, match=r"budgets\.yaml: is a directory, not a file: Docker creates"):
        load_budget_file(tmp_path / "budgets.yaml")


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"

    with pytest.raises(BudgetFileError, match=r"nowhere\.yaml: cannot be read \(No such file or directory\)"):
        load_budget_file(path)


def test_a_file_that_is_not_utf8_says_so(tmp_path: Path) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_bytes("teams: {Fran\u00e7ais: 1}".encode("latin-1"))

    with pytest.raises(BudgetFileError, match=r"budgets\.yaml: cannot be read \(UnicodeDecodeError\)$"):
        load_budget_file(path)


def test_yaml_tags_that_build_objects_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BudgetFileError, match="not valid YAML"):
        load_budget_file(write(tmp_path, "teams: !!python/object/apply:os.system ['true']"))
