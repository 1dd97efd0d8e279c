"""Which of a user's groups count: the servers' tests show teams on requests; here, the names read."""

from __future__ import annotations

from portkey_user_proxy.attribution.teams import group_names, tenant_of


def test_a_users_group_names_are_trimmed_and_those_without_a_usable_name_left_out() -> None:
    # Group documents come from LibreChat's MongoDB as they are: a name may be missing, blank or not text.
    names = [" Sales ", None, "", "  ", 3, "Finance", "Sales"]

    assert group_names(names) == ("Finance", "Sales")


def test_a_tenant_is_a_users_tenantid_when_it_is_text_with_something_in_it() -> None:
    assert tenant_of({"tenantId": "acme"}) == "acme"
    for missing in ({}, {"tenantId": None}, {"tenantId": "  "}, {"tenantId": 7}):
        assert tenant_of(missing) is None
