"""What `_user` holds for a resolved user: the email, or, where emails must not leave, a stand-in.

Portkey passes metadata on to some providers (as Vertex AI labels, for one), so some admins must
not send emails. `id` is LibreChat's own id; `username` is LibreChat's username followed by the id,
because usernames are chosen by their users and need not be unique (`ceo` may be anyone, or look
like another user's id, the fallback marker or an email); `email-hash` is an HMAC-SHA256 of the
lower-cased email under `USER_HASH_SECRET`: stable per user, unguessable without the secret, and
`check-user` maps it back to the person. Whatever the mode, two people never share a value.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Callable

from pydantic import SecretStr

from .directory import User
from .metadata import MAX_LENGTH, clip

UserValueOf = Callable[[User], str]


class UserValue(enum.StrEnum):
    EMAIL = "email"
    USERNAME = "username"
    ID = "id"
    EMAIL_HASH = "email-hash"


def email_of(user: User) -> str:
    return user.email


def user_value_of(kind: UserValue, hash_secret: SecretStr | None = None) -> UserValueOf:
    """The function that turns a resolved user into their `_user` value."""
    if kind is UserValue.EMAIL:
        return email_of
    if kind is UserValue.USERNAME:
        return username_and_id
    if kind is UserValue.ID:
        return lambda user: user.id
    if hash_secret is None:
        raise ValueError("PORTKEY_USER_VALUE=email-hash needs USER_HASH_SECRET")
    key = hash_secret.get_secret_value().encode("utf-8")
    return lambda user: email_hash(key, user.email)


def username_and_id(user: User) -> str:
    """`username (id)`: the id makes it one person's, and it never looks like an id, a marker or an email.

    The id alone for users without a username (OAuth and LDAP users may have none) and for usernames
    shaped like an email (OpenID sign-ins may use the email as username): this mode sends no email.
    """
    username = user.fields.get("USERNAME", "").strip()
    if not username or "@" in username:
        return user.id
    suffix = f" ({user.id})"
    # Shortened here, never by the metadata's own shortening, which would cut the id off.
    return clip(username, MAX_LENGTH - len(suffix)) + suffix


def email_hash(key: bytes, email: str) -> str:
    """64 hex digits, well within Portkey's 128 characters for a metadata value."""
    return hmac.new(key, email.strip().lower().encode("utf-8"), hashlib.sha256).hexdigest()
