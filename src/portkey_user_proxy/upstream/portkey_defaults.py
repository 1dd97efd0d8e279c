"""Portkey credentials and routing the proxy holds, so that LibreChat's configuration needs none.

`PORTKEY_API_KEY` goes out as `x-portkey-api-key`, and one optional routing default as
`x-portkey-virtual-key`, `x-portkey-provider` or `x-portkey-config`, whenever a request carries no
value of its own. A blank value, or LibreChat's unresolved `${VARIABLE}` text (what it sends when the
variable is missing from its environment), counts as none.

A request riding on the proxy's key must not choose where that key's provider credentials go: a
client's `x-portkey-custom-host`, and an `x-portkey-config` written out as JSON rather than naming a
config an admin saved in Portkey, are dropped unless `ALLOW_CLIENT_PORTKEY_ROUTING=true`.
"""

from __future__ import annotations

import re

from ..headers import RawHeaders
from ..observability.logs import RateLimitedWarnings

API_KEY = b"x-portkey-api-key"
VIRTUAL_KEY = b"x-portkey-virtual-key"
PROVIDER = b"x-portkey-provider"
CONFIG = b"x-portkey-config"
CUSTOM_HOST = b"x-portkey-custom-host"
_ROUTING = frozenset({VIRTUAL_KEY, PROVIDER, CONFIG})
# What a config saved in Portkey is called by (`pc-librechat-xxxxxx`); anything else is a config written inline.
_SAVED_CONFIG_ID = re.compile(rb"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_PORTKEY_PREFIX = b"x-portkey-"
_UNRESOLVED_VARIABLE = re.compile(rb"\$\{\s*[A-Za-z0-9_]+\s*\}")


class PortkeyDefaults:
    def __init__(
        self,
        *,
        api_key: str | None = None,
        routing: tuple[bytes, str] | None = None,
        allow_client_routing: bool = False,
    ) -> None:
        self._api_key = None if api_key is None else (API_KEY, api_key.encode("ascii"))
        self.fills_api_key = api_key is not None  # a blank key a request carries is replaced
        self._routing = None if routing is None else (routing[0], routing[1].encode("ascii"))
        self._guard_routing = api_key is not None and not allow_client_routing
        self._warnings = RateLimitedWarnings()

    def apply(self, outgoing: RawHeaders) -> RawHeaders:
        """`outgoing` with the defaults the request lacks, in place of its blank or unresolved values."""
        if self._guard_routing:
            outgoing = self._without_client_routing(outgoing)
        carried = {name for name, value in outgoing if name.startswith(_PORTKEY_PREFIX) and _is_a_value(value)}
        added: RawHeaders = []
        if self._api_key is not None and API_KEY not in carried:
            added.append(self._api_key)
        if self._routing is not None and not carried & _ROUTING:
            added.append(self._routing)
        if not added:
            return outgoing
        replaced = {name for name, _ in added}
        return [header for header in outgoing if header[0] not in replaced] + added

    def _without_client_routing(self, outgoing: RawHeaders) -> RawHeaders:
        kept = [(name, value) for name, value in outgoing if not _routes_elsewhere(name, value)]
        if len(kept) != len(outgoing):
            self._warnings.warn(
                "client-routing",
                "dropped a client's x-portkey-custom-host or inline x-portkey-config: the proxy holds "
                "PORTKEY_API_KEY (set ALLOW_CLIENT_PORTKEY_ROUTING=true to let clients route)",
            )
        return kept


def blank_api_key(outgoing: RawHeaders) -> bool:
    """Whether the request carries `x-portkey-api-key` with no key in it (blank, or an unresolved `${...}`)."""
    return any(name == API_KEY and not _is_a_value(value) for name, value in outgoing)


def _routes_elsewhere(name: bytes, value: bytes) -> bool:
    if name == CUSTOM_HOST:
        return True
    return name == CONFIG and _SAVED_CONFIG_ID.fullmatch(value.strip()) is None


def _is_a_value(value: bytes) -> bool:
    stripped = value.strip()
    return bool(stripped) and not _UNRESOLVED_VARIABLE.fullmatch(stripped)
