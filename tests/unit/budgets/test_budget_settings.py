from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest

from portkey_user_proxy.budgets import BudgetsFile
from portkey_user_proxy.settings import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting from the machine's environment or a stray `.env` reaches these tests."""
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_without_a_budgets_file_budgets_are_off() -> None:
    settings = load_settings()

    assert settings.budgets_file is None
    assert settings.budget_database == "portkey_user_proxy"
    assert settings.budget_store_failure == "allow"


@pytest.mark.parametrize("blank", ["", "  "])
def test_an_empty_budgets_file_setting_leaves_budgets_off(monkeypatch: pytest.MonkeyPatch, blank: str) -> None:
    monkeypatch.setenv("BUDGETS_FILE", blank)

    assert load_settings().budgets_file is None


def test_the_budgets_file_is_read_once_at_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_text("period: week\nteams: {Finance: 500}\n")
    monkeypatch.setenv("BUDGETS_FILE", str(path))
    monkeypatch.setenv("TEAM_METADATA_KEY", "team")
    monkeypatch.setenv("BUDGET_STORE_FAILURE", "deny")
    monkeypatch.setenv("BUDGET_DATABASE", "proxy_budgets")

    settings = load_settings()
    path.write_text("teams: {Finance: 1}\n")  # changes after start are not read (until a restart)

    assert isinstance(settings.budgets_file, BudgetsFile)
    assert settings.budgets_file.path == path
    assert settings.budgets_file.config.teams == {"Finance": Decimal("500")}
    assert settings.budget_store_failure == "deny"
    assert settings.budget_database == "proxy_budgets"


def test_an_invalid_budgets_file_stops_the_start_with_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_text("teams:\n  Finance: five hundred\n")
    monkeypatch.setenv("BUDGETS_FILE", str(path))

    with pytest.raises(SettingsError) as raised:
        load_settings()

    assert str(raised.value) == (
        f"invalid setting BUDGETS_FILE: {path}: teams.Finance: must be an amount of US dollars, 0 or more, e.g. 500"
    )


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("BUDGET_STORE_FAILURE", "open", "Input should be 'allow' or 'deny'"),
        ("BUDGET_DATABASE", "my budgets", "must be a MongoDB database name"),
        ("BUDGET_DATABASE", "a.b", "must be a MongoDB database name"),
        ("BUDGET_DATABASE", "x" * 64, "must be a MongoDB database name"),
        ("BUDGET_DATABASE", "LibreChat", "must not be LibreChat's database (the one MONGO_URI names)"),
        ("BUDGETS_FILE", "/nowhere/budgets.yaml", "/nowhere/budgets.yaml: cannot be read (No such file or directory)"),
    ],
)
def test_invalid_budget_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError) as raised:
        load_settings()

    assert str(raised.value).startswith(f"invalid setting {variable}: {problem}")


def test_team_budgets_without_team_lookups_stop_the_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_text("teams: {Finance: 500}\nusers: {default: 50}\n")
    monkeypatch.setenv("BUDGETS_FILE", str(path))

    with pytest.raises(SettingsError) as raised:
        load_settings()

    assert str(raised.value) == (
        f"invalid setting BUDGETS_FILE: {path} sets team budgets, and TEAM_METADATA_KEY is unset: set it, so the "
        "proxy looks each user's team up in LibreChat's groups"
    )
    path.write_text("users: {default: 50}\n")
    assert load_settings().budgets_file is not None  # user budgets alone need no teams


def test_the_budget_database_is_refused_when_it_is_the_one_mongo_uri_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGO_URI", "mongodb://mongodb:27017/chat?authSource=admin")
    monkeypatch.setenv("BUDGET_DATABASE", "chat")

    with pytest.raises(SettingsError, match="BUDGET_DATABASE: must not be LibreChat's database"):
        load_settings()
