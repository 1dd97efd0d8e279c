"""What went wrong when MongoDB did not answer a query, and where, in words safe to log.

A failure falls into one of four classes, each with its own fix: `unreachable` (nothing answers at
the address in MONGO_URI), `unauthorized` (MongoDB answers but refuses: credentials missing or wrong,
or no read access to LibreChat's database), `timeout` (it answers, too slowly) and `error`
(anything else). Descriptions name the server and database and the error's class and code, never
the error's text: driver messages can quote commands, and a URI's credentials must not leak.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import (
    AutoReconnect,
    ConfigurationError,
    ConnectionFailure,
    ExecutionTimeout,
    NetworkTimeout,
    OperationFailure,
)

# Unauthorized, AuthenticationFailed, UserNotFound, and MongoDB Atlas' own authentication error.
_REFUSAL_CODES = frozenset({13, 18, 11, 8000})
_TIMEOUT_CODES = frozenset({50})  # MaxTimeMSExpired


class MongoFailure(enum.StrEnum):
    UNREACHABLE = "unreachable"
    UNAUTHORIZED = "unauthorized"
    TIMEOUT = "timeout"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Failure:
    kind: MongoFailure
    detail: str  # the error's class and code, e.g. "OperationFailure code 13 Unauthorized"


def classify(exc: BaseException, client: AsyncMongoClient[Any]) -> Failure:
    if isinstance(exc, TimeoutError):
        # The lookup's own deadline: while the driver still looks for a server it never reached
        # one (refused, unresolvable or silent), which is an outage, not a slow query.
        if not client.topology_description.has_readable_server():
            return Failure(MongoFailure.UNREACHABLE, f"no server answered: {_server_errors(client)}")
        return Failure(MongoFailure.TIMEOUT, "the server is known, the query was not answered in time")
    if isinstance(exc, OperationFailure):
        return _operation_failure(exc)
    if _failed_dns_lookup(exc):
        # A mongodb+srv:// host is found through DNS before any server is asked: MongoDB never saw it.
        cause = type(exc.__cause__).__name__
        return Failure(
            MongoFailure.UNREACHABLE,
            f"the DNS lookup of mongodb+srv://'s SRV record failed ({cause}): check the host name in MONGO_URI "
            "and that the proxy's DNS resolves it",
        )
    if isinstance(exc, NetworkTimeout):
        return Failure(MongoFailure.TIMEOUT, type(exc).__name__)
    if isinstance(exc, ConnectionFailure | AutoReconnect):
        return Failure(MongoFailure.UNREACHABLE, type(exc).__name__)
    return Failure(MongoFailure.ERROR, type(exc).__name__)


def _failed_dns_lookup(exc: BaseException) -> bool:
    """pymongo raises a failed SRV or TXT lookup as a ConfigurationError caused by dnspython's own error."""
    cause = exc.__cause__
    return isinstance(exc, ConfigurationError) and cause is not None and type(cause).__module__.startswith("dns.")


def _operation_failure(exc: OperationFailure) -> Failure:
    details = exc.details or {}
    name = details.get("codeName")
    detail = f"{type(exc).__name__} code {exc.code}" + (f" {name}" if isinstance(name, str) else "")
    if exc.code in _REFUSAL_CODES or name in ("Unauthorized", "AuthenticationFailed"):
        return Failure(MongoFailure.UNAUTHORIZED, detail)
    if exc.code in _TIMEOUT_CODES or isinstance(exc, ExecutionTimeout):
        return Failure(MongoFailure.TIMEOUT, detail)
    return Failure(MongoFailure.ERROR, detail)


def _server_errors(client: AsyncMongoClient[Any]) -> str:
    errors = {type(server.error).__name__ for server in client.topology_description.server_descriptions().values()}
    errors.discard("NoneType")
    return ", ".join(sorted(errors)) or "no reply yet"


def location(client: AsyncMongoClient[Any], database: str) -> str:
    """`host:port/database` for messages; the driver's addresses never hold credentials. A mongodb+srv://
    host, whose servers DNS has not named yet, has no port: `host (SRV)`."""
    addresses = client.topology_description.server_descriptions().keys()
    hosts = ",".join(f"{host}:{port}" if port is not None else f"{host} (SRV)" for host, port in addresses) or "?"
    return f"{hosts}/{database}"


def advice(kind: MongoFailure) -> str:
    """What an operator should change, for each class of failure."""
    return _ADVICE[kind]


_ADVICE = {
    MongoFailure.UNREACHABLE: "check MONGO_URI's host and port, and that MongoDB runs and is reachable from the proxy",
    MongoFailure.UNAUTHORIZED: "MONGO_URI needs a user (and authSource) with read access to LibreChat's database",
    MongoFailure.TIMEOUT: "MongoDB answers too slowly: check its load, or raise USER_LOOKUP_TIMEOUT_SECONDS",
    MongoFailure.ERROR: "see MongoDB's own log for the failed query",
}
