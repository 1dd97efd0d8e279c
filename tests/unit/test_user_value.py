"""What `_user` says: the choice of PORTKEY_USER_VALUE (the servers' tests show each on a request)."""

from __future__ import annotations

import pytest

from portkey_user_proxy.attribution.user_value import UserValue, user_value_of


def test_a_hash_without_its_secret_is_refused_naming_both_settings() -> None:
    with pytest.raises(ValueError) as refused:
        user_value_of(UserValue.EMAIL_HASH)

    assert str(refused.value) == "PORTKEY_USER_VALUE=email-hash needs USER_HASH_SECRET"
