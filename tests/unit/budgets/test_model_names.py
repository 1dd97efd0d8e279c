from __future__ import annotations

import pytest

from portkey_user_proxy.budgets.model_names import ModelName


@pytest.mark.parametrize(
    ("model", "routed", "prefix", "bare"),
    [
        ("gpt-4o", "gpt-4o", None, "gpt-4o"),
        (" GPT-4o ", "gpt-4o", None, "gpt-4o"),
        ("openai/gpt-4o", "openai/gpt-4o", "openai", "gpt-4o"),
        # Portkey's integration slug is an admin's name for credentials, not a provider: dropped.
        ("@openai-prod/gpt-4o", "gpt-4o", None, "gpt-4o"),
        ("@router/anthropic/claude-3.5-sonnet", "anthropic/claude-3.5-sonnet", "anthropic", "claude-3.5-sonnet"),
        (
            "openrouter/anthropic/claude-3.5-sonnet",
            "openrouter/anthropic/claude-3.5-sonnet",
            "openrouter",
            "anthropic/claude-3.5-sonnet",
        ),
        ("@openai-prod", "@openai-prod", None, "@openai-prod"),
        ("/gpt-4o", "/gpt-4o", None, "/gpt-4o"),
    ],
)
def test_a_name_is_taken_apart_into_integration_provider_and_model(
    model: str, routed: str, prefix: str | None, bare: str
) -> None:
    name = ModelName.parse(model)

    assert (name.routed, name.prefix, name.bare) == (routed, prefix, bare)


def test_globs_are_tried_on_the_name_as_sent_then_without_slug_then_without_prefix() -> None:
    assert ModelName.parse("@azure-eu/openai/GPT-4o").spellings() == (
        "@azure-eu/openai/gpt-4o",
        "openai/gpt-4o",
        "gpt-4o",
    )
    assert ModelName.parse("gpt-4o").spellings() == ("gpt-4o",)


@pytest.mark.parametrize(
    ("model", "undated"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("claude-3-5-sonnet@20240620", "claude-3-5-sonnet"),  # Vertex AI's spelling
        ("@openai-prod/gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o", None),
        ("o1-2024", None),
        ("claude-3-5-sonnet-20241022-v2:0", None),
    ],
)
def test_a_dated_snapshot_names_the_model_it_is_a_snapshot_of(model: str, undated: str | None) -> None:
    found = ModelName.parse(model).undated()

    assert (found.routed if found is not None else None) == undated
