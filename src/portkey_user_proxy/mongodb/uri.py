"""MONGO_URI taken apart where pymongo takes it apart, so that what is shown of it never holds a secret.

pymongo ends the options' part of the URI at the first `?` (the `/` before it is optional), the
hosts at the first `/` before that, and the credentials at the last `@` of the hosts; options are
separated by `&` or by `;`. Anything split differently shows a secret as part of a harmless value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus

from pymongo.common import URI_OPTIONS_DEPRECATION_MAP, URI_OPTIONS_VALIDATOR_MAP

# Options whose values help and are never secret; any other option's value may be one.
PLAIN_OPTIONS = frozenset(
    {
        "appname",
        "authmechanism",
        "authsource",
        "compressors",
        "connecttimeoutms",
        "directconnection",
        "loadbalanced",
        "maxpoolsize",
        "minpoolsize",
        "readpreference",
        "replicaset",
        "retryreads",
        "retrywrites",
        "serverselectiontimeoutms",
        "sockettimeoutms",
        "ssl",
        "timeoutms",
        "tls",
        "tlsallowinvalidcertificates",
        "tlsallowinvalidhostnames",
        "tlsinsecure",
        "w",
    }
)
# Every option name pymongo knows: only these are named when shown, an unknown key may be pasted text.
_KNOWN_OPTIONS = frozenset(URI_OPTIONS_VALIDATOR_MAP) | {name.lower() for name in URI_OPTIONS_DEPRECATION_MAP}
_HIDDEN = "(hidden)"


@dataclass(frozen=True, slots=True)
class MongoUriParts:
    scheme: str  # mongodb or mongodb+srv
    userinfo: str | None  # as written, None when the URI carries no credentials
    hosts: str
    path: str | None  # the database (as written) after the `/`; None without a `/`
    query: str | None  # the options as written, after the `?`; None without a `?`

    @classmethod
    def of(cls, uri: str) -> MongoUriParts:
        scheme, _, rest = uri.partition("://")
        before_options, question, query = rest.partition("?")
        authority, slash, path = before_options.partition("/")
        userinfo, at, hosts = authority.rpartition("@")
        return cls(scheme, userinfo if at else None, hosts, path if slash else None, query if question else None)

    def options(self) -> list[tuple[str, str | None]]:
        """Each option as (key, value decoded); None for a piece that is not key=value."""
        if not self.query:
            return []
        # Split on both separators: pymongo refuses a URI that mixes them, so this never splits less.
        pieces = [piece.partition("=") for piece in re.split("[&;]", self.query) if piece]
        return [(key, unquote_plus(value) if equals else None) for key, equals, value in pieces]


def masked_mongo_uri(uri: str) -> str:
    """The URI without its credentials, nor the values of options that may be secrets."""
    parts = MongoUriParts.of(uri)
    credentials = "(credentials hidden)@" if parts.userinfo is not None else ""
    path = "" if parts.path is None else f"/{parts.path}"
    query = "" if parts.query is None else "?" + "&".join(_shown_option(key, value) for key, value in parts.options())
    return f"{parts.scheme}://{credentials}{parts.hosts}{path}{query}"


def _shown_option(key: str, value: str | None) -> str:
    if key.lower() not in _KNOWN_OPTIONS or value is None:
        return _HIDDEN
    return f"{key}={value if key.lower() in PLAIN_OPTIONS else _HIDDEN}"


def mongo_uri_secrets(uri: str) -> set[str]:
    """The user, password and option values (other than plain ones) of a MongoDB URI, as written and decoded."""
    parts = MongoUriParts.of(uri)
    userinfo = (parts.userinfo or "").split(":")
    options = parts.options()
    values = [value for key, value in options if value is not None and key.lower() not in PLAIN_OPTIONS]
    # A key pymongo does not know, or a piece without `=`, may be a secret pasted in the wrong place.
    pasted = [key for key, value in options if value is None or key.lower() not in _KNOWN_OPTIONS]
    # A compound value (authMechanismProperties=AWS_SESSION_TOKEN:...) counts piece by piece too.
    pieces = [piece for value in values for piece in re.split("[,:]", value)]
    texts = (uri, *userinfo, *values, *pasted, *pieces)
    return {form for text in texts if text for form in (text, unquote(text))}
