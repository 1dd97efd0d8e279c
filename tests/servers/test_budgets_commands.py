"""`budgets`, `budgets price` and `doctor` with BUDGETS_FILE: the period's spend from the store, the prices that
apply, and the store checked."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from genai_prices import Usage as CatalogueUsage
from genai_prices import calc_price

from portkey_user_proxy.budgets import Period, window_at
from portkey_user_proxy.budgets.catalogue import Catalogue
from portkey_user_proxy.operations.cli import main
from portkey_user_proxy.operations.exit_codes import ExitCode
from tests.support.fixtures import load_fixture
from tests.support.mongomock_server import Fault, WritableMongo
from tests.support.servers import Upstream

pytestmark = pytest.mark.usefixtures("restore_logging")  # `main` sets up logging as a process would

BUDGETS = """\
period: month
prices:
  - {model: "*", input: 1, output: 2}
teams:
  Finance: 500
  Engineering: 2000
users:
  default: 50
  alice@example.com: 200
"""


@pytest.fixture
def environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, writable_mongo: WritableMongo, upstream: Upstream
) -> pytest.MonkeyPatch:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "budgets.yaml").write_text(BUDGETS)
    with writable_mongo.client() as client:
        client[writable_mongo.librechat]["users"].insert_one(load_fixture("librechat_user.json"))
    monkeypatch.setenv("MONGO_URI", writable_mongo.uri(writable_mongo.librechat))
    monkeypatch.setenv("BUDGETS_FILE", str(tmp_path / "budgets.yaml"))
    monkeypatch.setenv("BUDGET_DATABASE", writable_mongo.database)
    monkeypatch.setenv("TEAM_METADATA_KEY", "team")
    monkeypatch.setenv("PORTKEY_URL", upstream.url)
    monkeypatch.setenv("PORTKEY_API_KEY", "pk-doctor-secret-0123")
    monkeypatch.setenv("PORTKEY_PROVIDER", "@openai-prod")
    monkeypatch.setenv("USER_LOOKUP_TIMEOUT_SECONDS", "2")
    return monkeypatch


def spend(mongo: WritableMongo, **by_scope: dict[str, float]) -> None:
    """Spend in this period, as replicas write it: dollars by scope and name."""
    period = window_at(Period.MONTH, datetime.now(UTC)).key
    with mongo.client() as client:
        client[mongo.database]["spend"].insert_many(
            [
                {"period": period, "scope": scope, "name": name, "spend": round(dollars * 10**9)}
                for scope, names in by_scope.items()
                for name, dollars in names.items()
            ]
        )


@pytest.mark.real_mongo
def test_budgets_shows_each_teams_spend_and_the_top_users(
    environment: pytest.MonkeyPatch, writable_mongo: WritableMongo, capsys: pytest.CaptureFixture[str]
) -> None:
    spend(
        writable_mongo,
        team={"Finance": 512.5, "Sales": 3.1},
        user={"alice@example.com": 150, "bob@example.com": 60, "carol@example.com": 1},
    )

    assert main(["budgets", "--top", "2"]) == ExitCode.OK

    output = capsys.readouterr().out
    lines = [line.split() for line in output.splitlines()]
    assert ["Finance", "$512.50", "of", "$500", "102%", "over", "budget"] in lines
    assert ["Engineering", "$0", "of", "$2,000", "0%"] in lines
    assert ["Sales", "$3.10", "(no", "budget)"] in lines
    assert ["alice@example.com", "$150", "of", "$200", "75%"] in lines
    assert ["bob@example.com", "$60", "of", "$50", "120%", "over", "budget"] in lines
    assert "carol@example.com" not in output  # --top 2
    window = window_at(Period.MONTH, datetime.now(UTC))
    assert f"period:    {window.describe()} ({window.key}); resets on {window.describe_reset()}" in output


@pytest.mark.real_mongo
def test_budgets_json_is_the_same_report_for_scripts(
    environment: pytest.MonkeyPatch, writable_mongo: WritableMongo, capsys: pytest.CaptureFixture[str]
) -> None:
    spend(writable_mongo, team={"Finance": 250}, user={"alice@example.com": 20})

    assert main(["budgets", "--json"]) == ExitCode.OK

    report = json.loads(capsys.readouterr().out)
    assert report["mode"] == "enforce"
    assert report["period"]["kind"] == "month"
    assert report["teams"] == [
        {"name": "Finance", "spent_usd": 250.0, "limit_usd": 500.0, "used": 0.5, "over_budget": False},
        {"name": "Engineering", "spent_usd": 0.0, "limit_usd": 2000.0, "used": 0.0, "over_budget": False},
    ]
    assert report["users"] == [
        {
            "name": "alice@example.com",
            "spent_usd": 20.0,
            "limit_usd": 200.0,
            "used": 0.1,
            "over_budget": False,
            "allowance_of": None,
        },
    ]


def test_budgets_without_a_budgets_file_says_so(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    environment.delenv("BUDGETS_FILE")

    assert main(["budgets"]) == ExitCode.BAD_SETTINGS
    assert "BUDGETS_FILE is unset" in capsys.readouterr().err


def test_budgets_with_mongodb_failing_exits_as_the_other_commands_do(
    environment: pytest.MonkeyPatch, writable_mongo: WritableMongo, capsys: pytest.CaptureFixture[str]
) -> None:
    if writable_mongo.stand_in is None:
        pytest.skip("fails the server at will: stand-in only")
    writable_mongo.stand_in.fault = Fault.HANG_UP

    assert main(["budgets"]) == ExitCode.MONGO_UNAVAILABLE
    assert (
        f"MongoDB at 127.0.0.1:{writable_mongo.address.rsplit(':', 1)[1]}/{writable_mongo.database}: unreachable"
        in (capsys.readouterr().err)
    )


def test_budgets_with_a_store_it_may_not_read_names_the_access_problem(
    environment: pytest.MonkeyPatch, writable_mongo: WritableMongo, capsys: pytest.CaptureFixture[str]
) -> None:
    if writable_mongo.stand_in is None:
        pytest.skip("refuses a database at will: stand-in only")
    writable_mongo.stand_in.refused_databases.add(writable_mongo.database)

    assert main(["budgets"]) == ExitCode.MONGO_UNAUTHORIZED
    assert ": unauthorized;" in capsys.readouterr().err


@pytest.mark.real_mongo
def test_doctor_checks_the_budgets_file_and_that_the_store_takes_writes(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["doctor", "--settings"]) == ExitCode.OK

    output = capsys.readouterr().out
    assert "budgets file         " in output and "per month, mode enforce; 2 team(s), 1 user(s)" in output
    assert "ok    budget store" in output and "a write read back" in output
    assert f"BUDGETS_FILE={Path.cwd() / 'budgets.yaml'}" in output


def test_doctor_says_which_catalogue_prices_what_the_file_does_not(
    environment: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "budgets.yaml").write_text("users: {default: 5}\n")  # no prices: the catalogue's

    main(["doctor"])

    (line,) = [line for line in capsys.readouterr().out.splitlines() if "budgets file" in line]
    catalogue = Catalogue.bundled()
    assert line.startswith("ok    budgets file")
    assert f"0 price(s) of its own, over the catalogue genai-prices {catalogue.version}, data " in line
    assert f"which knows {catalogue.model_count} models of {catalogue.provider_count} providers" in line


def test_doctor_says_a_catch_all_leaves_the_catalogue_unused(
    environment: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["doctor"])

    assert 'with a catch-all (`model: "*"`): the catalogue (genai-prices ' in capsys.readouterr().out


def test_doctor_fails_a_budget_store_it_may_not_write(
    environment: pytest.MonkeyPatch, writable_mongo: WritableMongo, capsys: pytest.CaptureFixture[str]
) -> None:
    if writable_mongo.stand_in is None:
        pytest.skip("refuses a database at will: stand-in only")
    writable_mongo.stand_in.refused_databases.add(writable_mongo.database)

    assert main(["doctor"]) == ExitCode.CHECKS_FAILED

    output = capsys.readouterr().out
    assert "FAIL  budget store" in output
    assert "needs the readWrite role on BUDGET_DATABASE" in output
    assert "ok    users collection" in output  # LibreChat's database is still read


# `budgets price`


@pytest.fixture
def no_budgets_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.delenv("BUDGETS_FILE", raising=False)
    return monkeypatch


def catalogue_price(model: str, *kinds: str) -> str:
    """genai-prices' own price per 1M tokens of the last kind, as `budgets price` writes it: a thousand tokens
    priced (below any long-prompt tier), times a thousand. Cache tokens are also input tokens, so both are named."""
    dollars = calc_price(CatalogueUsage(**dict.fromkeys(kinds, 1000)), model).total_price * 1000
    return f"${dollars:.2f} per 1M tokens"


@pytest.mark.parametrize("model", ["gpt-4o", "openai/gpt-4o", "@openai-prod/GPT-4o"])
def test_budgets_price_without_a_budgets_file_gives_the_catalogues_price(
    no_budgets_file: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], model: str
) -> None:
    assert main(["budgets", "price", model]) == ExitCode.OK

    lines = capsys.readouterr().out.splitlines()
    catalogue = Catalogue.bundled()
    assert lines[:3] == [
        f"model:       {model}",
        "priced by:   the catalogue: openai's gpt-4o (BUDGETS_FILE is unset)",
        f"catalogue:   genai-prices {catalogue.version}, data {catalogue.data_version}",
    ]
    assert f"input:       {catalogue_price('gpt-4o', 'input_tokens')}" in lines
    assert f"output:      {catalogue_price('gpt-4o', 'output_tokens')}" in lines
    cache_read = catalogue_price("gpt-4o", "input_tokens", "cache_read_tokens")
    assert f"cache read:  {cache_read}" in lines


def test_budgets_price_names_the_file_entry_that_overrides_the_catalogue(
    no_budgets_file: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "budgets.yaml").write_text(
        'prices:\n  - {model: "claude-*", input: 3.3, output: 16.5, cache_write: 4.125}\n'
        '  - {model: "gpt-4o*", input: 2, output: 8, cached_input: 1}\n'
    )
    no_budgets_file.setenv("BUDGETS_FILE", str(tmp_path / "budgets.yaml"))

    assert main(["budgets", "price", "@openai-prod/gpt-4o-mini"]) == ExitCode.OK

    assert capsys.readouterr().out.splitlines() == [
        "model:       @openai-prod/gpt-4o-mini",
        f'priced by:   the budgets file {tmp_path / "budgets.yaml"}, entry 2 of `prices` (model: "gpt-4o*")',
        "input:       $2.00 per 1M tokens",
        "output:      $8.00 per 1M tokens",
        "cache read:  $1.00 per 1M tokens",
        "cache write: $2.00 per 1M tokens (input's price: none of its own)",
    ]


def test_budgets_price_shows_the_catalogues_cache_write_and_long_prompt_prices(
    no_budgets_file: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["budgets", "price", "claude-sonnet-4-5-20250929"]) == ExitCode.OK

    output = capsys.readouterr().out
    cache_write = catalogue_price("claude-sonnet-4-5", "input_tokens", "cache_write_tokens")
    assert f"\ncache write: {cache_write}\n" in output
    assert "\nabove 200,000 input tokens, every token of the answer costs:\n  input:       $" in output


def test_budgets_price_of_a_model_nobody_prices_says_so_and_exits_apart(
    no_budgets_file: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["budgets", "price", "mystery-\x1b[31m"]) == ExitCode.UNPRICED_MODEL

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("no price for the model 'mystery-\\x1b[31m': the catalogue (genai-prices ")
    assert "has no token price for it, and BUDGETS_FILE is unset; its answers count as unpriced tokens" in captured.err


def test_budgets_price_under_a_provider_finds_what_the_name_alone_does_not(
    no_budgets_file: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["budgets", "price", "text-embedding-3-small"]) == ExitCode.UNPRICED_MODEL
    assert "--provider" in capsys.readouterr().err

    assert main(["budgets", "price", "text-embedding-3-small", "--provider", "openai"]) == ExitCode.OK
    assert "the catalogue: openai's text-embedding-3-small" in capsys.readouterr().out

    assert main(["budgets", "price", "gpt-4o", "--provider", "nowhere"]) == ExitCode.USAGE
    assert "invalid --provider: the catalogue (genai-prices " in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "codes"),
    [(["budgets"], {0, 2, 3, 4, 64}), (["budgets", "price"], {0, 2, 10, 64}), (["budgets", "check"], {0, 2, 64})],
)
def test_each_budgets_commands_help_lists_only_its_own_exit_codes(
    capsys: pytest.CaptureFixture[str], command: list[str], codes: set[int]
) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--help"])

    section = capsys.readouterr().out.split("exit codes:\n", 1)[1]
    assert {int(line.split()[0]) for line in section.splitlines() if line.startswith("  ")} == codes


def exit_code_lines(capsys: pytest.CaptureFixture[str], command: list[str]) -> dict[int, str]:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    section = capsys.readouterr().out.split("exit codes:\n", 1)[1]
    return {int(line.split()[0]): line.split(None, 1)[1] for line in section.splitlines() if line.startswith("  ")}


def test_each_commands_help_says_what_its_own_codes_mean(capsys: pytest.CaptureFixture[str]) -> None:
    # Only check-user has --metadata; `budgets` without BUDGETS_FILE exits 2 too, and its help says so.
    for command in (["serve"], ["doctor"], ["export-users"], ["budgets"], ["budgets", "price"], ["budgets", "check"]):
        assert "--metadata" not in exit_code_lines(capsys, command)[64], command
    assert "invalid --metadata" in exit_code_lines(capsys, ["check-user"])[64]
    assert "BUDGETS_FILE unset" in exit_code_lines(capsys, ["budgets"])[2]


def test_budgets_check_names_every_problem_at_once_with_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_text("period: fortnight\nprices:\n  - model: gpt-4o\n    input: 1\nteams: {Finance: -5}\n")

    assert main(["budgets", "check", str(path)]) == ExitCode.BAD_SETTINGS

    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"invalid budgets file {path}: 3 problem(s)",
        "  period: input should be 'day', 'week' or 'month'",
        "  prices[1].output: is required",
        "  teams.Finance: must be an amount of US dollars, 0 or more, e.g. 500",
    ]


def test_budgets_check_of_a_valid_file_shows_its_limits_and_the_price_each_model_gets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MONGO_URI", "not a uri")  # it reads no setting
    path = tmp_path / "budgets.yaml"
    path.write_text(
        "period: week\nprices:\n  - {model: 'gpt-4o*', input: 2, output: 8}\n"
        "  - {model: gpt-4o-mini, input: 0.1, output: 0.4}\n"
        "teams: {Finance: 500}\nusers: {default: 50, alice@example.com: 200}\n"
    )

    assert main(["budgets", "check", str(path)]) == ExitCode.OK

    out = capsys.readouterr().out
    assert "period:       week (calendar, UTC)" in out
    assert "teams:        Finance $500" in out
    assert "users:        alice@example.com $200, every other user $50" in out
    entry_2 = out.split("prices, entry 2:", 1)[1]
    assert 'never used: entry 1 of `prices` matches "gpt-4o-mini" first' in entry_2
    assert "input:       $2.00 per 1M tokens" in entry_2


def test_doctor_reports_an_invalid_budgets_file_as_one_failed_check_and_runs_the_others(
    environment: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "budgets.yaml").write_text("period: fortnight\nteams: {Finance: -5}\n")

    assert main(["doctor"]) == ExitCode.CHECKS_FAILED

    lines = capsys.readouterr().out.splitlines()
    (budgets,) = [line for line in lines if line.startswith("FAIL  budgets file")]
    assert "period: input should be" in budgets and "teams.Finance: must be" in budgets
    assert "budgets check FILE" in budgets
    assert any(line.startswith("ok    mongodb reachable") for line in lines)
    assert any(line.startswith("ok    portkey reachable") for line in lines)
    assert lines[-1].startswith("1 check(s) failed")
