"""BUDGET_WEBHOOK_URL and BUDGET_WEBHOOK_THRESHOLDS: read at start, refused there with one line, the URL never shown."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest

from portkey_user_proxy.operations.doctor import effective_settings
from portkey_user_proxy.settings import Settings, SettingsError, load_settings

SECRET = "T0001/B0002/webhook-secret-path"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting from the machine's environment or a stray `.env` reaches these tests."""
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_without_a_url_there_are_no_warnings_and_the_thresholds_are_80_and_100_percent() -> None:
    settings = load_settings()

    assert settings.budget_webhook_url is None
    assert settings.budget_webhook_thresholds == "0.8,1.0"
    assert settings.budget_webhook_threshold_values == (Decimal("0.8"), Decimal("1"))


@pytest.mark.parametrize("blank", ["", "  "])
def test_an_empty_url_leaves_warnings_off(monkeypatch: pytest.MonkeyPatch, blank: str) -> None:
    monkeypatch.setenv("BUDGET_WEBHOOK_URL", blank)

    assert load_settings().budget_webhook_url is None


def test_the_url_is_kept_as_a_secret_and_hidden_from_the_settings_doctor_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUDGET_WEBHOOK_URL", f" https://hooks.slack.com/services/{SECRET} ")
    monkeypatch.setenv("BUDGET_WEBHOOK_THRESHOLDS", "1, 0.5,0.80,0.8")

    settings = load_settings()

    assert settings.budget_webhook_url is not None
    assert settings.budget_webhook_url.get_secret_value() == f"https://hooks.slack.com/services/{SECRET}"
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())
    assert ("BUDGET_WEBHOOK_URL", "(set, hidden)") in effective_settings(settings)
    assert ("BUDGET_WEBHOOK_THRESHOLDS", "1, 0.5,0.80,0.8") in effective_settings(settings)
    # Lowest first, each once.
    assert settings.budget_webhook_threshold_values == (Decimal("0.5"), Decimal("0.8"), Decimal("1"))


@pytest.mark.parametrize(
    "url",
    [
        f"ftp://hooks.slack.com/services/{SECRET}",
        f"hooks.slack.com/services/{SECRET}",
        f"https:///services/{SECRET}",
        f"https://hooks.slack.com:99999/services/{SECRET}",
        f"javascript:alert('{SECRET}')",
    ],
)
def test_a_url_that_is_not_http_is_refused_with_one_line_that_does_not_quote_it(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("BUDGET_WEBHOOK_URL", url)

    with pytest.raises(SettingsError) as raised:
        load_settings()

    assert str(raised.value) == (
        "invalid setting BUDGET_WEBHOOK_URL: must be an http:// or https:// URL with a host, "
        "e.g. https://hooks.slack.com/services/T000/B000/XXXX"
    )
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize(
    ("thresholds", "problem"),
    [
        ("80%,100%", ""),
        ("0.8;1.0", ""),
        ("", ""),
        (" , ", ""),
        ("0,1", "; each above 0"),
        ("-0.5", "; each above 0"),
        ("nan", "; each above 0"),
        ("inf", "; each above 0"),
        ("80,100", "; each at most 10 (a fraction: 0.8, not 80)"),
        (",".join(f"0.{n}" for n in range(1, 10)) + ",1,2", "; at most 10 of them"),
    ],
)
def test_thresholds_that_are_not_fractions_of_a_budget_are_refused_with_one_line(
    monkeypatch: pytest.MonkeyPatch, thresholds: str, problem: str
) -> None:
    monkeypatch.setenv("BUDGET_WEBHOOK_THRESHOLDS", thresholds)

    with pytest.raises(SettingsError) as raised:
        load_settings()

    assert str(raised.value) == (
        "invalid setting BUDGET_WEBHOOK_THRESHOLDS: must be fractions of the budget, comma-separated, "
        f"e.g. 0.8,1.0 for 80% and 100%{problem}"
    )
