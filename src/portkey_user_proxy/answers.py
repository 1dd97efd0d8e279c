"""Where the request path's failures become the client's answers: one mapping, at the top of the path.

The code below the forwarder says what went wrong in its own terms: a body over its limit
(`BodyTooLarge`), an attribution refused under fail-closed, the upstream failing before its response
began (an `httpx.HTTPError`). Here each becomes a row of the catalogue in errors.py, looked up by the
failure's class. The inbound side's refusals are answers already: they are about the HTTP request
itself. A failure nothing here answers is a bug, which `inbound/last_resort.py` ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from . import errors
from .attribution.decision import Attribution
from .budgets import BudgetExceeded, BudgetStoreUnavailable
from .errors import ProxyError
from .inbound.body import BodyTooLarge
from .inbound.limits import too_large
from .upstream.client import UpstreamPolicy

# By class; a subclass finds its nearest ancestor's answer.
_ANSWERS: dict[type[Exception], Callable[[Any], ProxyError]] = {
    ProxyError: lambda error: error,
    BodyTooLarge: lambda exc: too_large(exc.limit),
    BudgetExceeded: lambda exc: errors.BUDGET_EXCEEDED.error(message=str(exc)),
    BudgetStoreUnavailable: lambda exc: errors.BUDGET_STORE_UNAVAILABLE.error(message=str(exc)),
}


def answer_for(exc: Exception) -> ProxyError | None:
    """The client's answer to a failure of the request path; None when none is meant for it (a bug)."""
    for cls in type(exc).__mro__:
        answer = _ANSWERS.get(cls)
        if answer is not None:
            return answer(exc)
    return None


def refusal(attribution: Attribution) -> ProxyError:
    """The client's answer to an attribution rejected under UNRESOLVED_USER_POLICY=fail-closed."""
    if attribution.directory_failed:
        return errors.USER_LOOKUP_UNAVAILABLE.error()
    return errors.USER_NOT_IDENTIFIED.error(reason=attribution.reason)


def error_before_response(exc: httpx.HTTPError, policy: UpstreamPolicy) -> ProxyError:
    """The client's answer when the upstream failed before sending response headers."""
    target = policy.target
    if isinstance(exc, httpx.ConnectTimeout):
        return errors.UPSTREAM_CONNECT_TIMEOUT.error(target=target, seconds=policy.connect_timeout)
    if isinstance(exc, httpx.ProxyError):  # the environment's proxy refused the tunnel (407, 403, ...)
        return errors.UPSTREAM_PROXY_REFUSED.error(target=target, hint=policy.unreachable_hint)
    if isinstance(exc, httpx.ConnectError):
        return errors.UPSTREAM_UNREACHABLE.error(target=target, hint=policy.unreachable_hint)
    if isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout):
        return errors.UPSTREAM_TIMEOUT.error(target=target, seconds=policy.read_timeout)
    if isinstance(exc, httpx.PoolTimeout):
        return errors.UPSTREAM_BUSY.error()
    return errors.UPSTREAM_ERROR.error(target=target, failure=type(exc).__name__)
