"""The one way the proxy builds a MongoDB client, and the database a MONGO_URI names.

Each client bounds how long it looks for a server and connects (a lookup gives up after its own
timeout; the budget store works in the background with a longer one), and names the proxy to
MongoDB's logs. Nothing connects until the first query.
"""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient, uri_parser
from pymongo.asynchronous.database import AsyncDatabase

# The database LibreChat's own default MONGO_URI names, and where it looks when the URI names none.
LIBRECHAT_DATABASE = "LibreChat"
APP_NAME = "portkey-user-proxy"


def mongo_client(uri: str, timeout: float | None = None, **options: Any) -> AsyncMongoClient[Any]:
    """A client for `uri`; `timeout` (seconds) bounds finding a server and connecting to it."""
    if timeout is not None:
        timeout_ms = max(1, int(timeout * 1000))
        options = {"serverSelectionTimeoutMS": timeout_ms, "connectTimeoutMS": timeout_ms, **options}
    return AsyncMongoClient(uri, appname=APP_NAME, **options)


def librechat_database(client: AsyncMongoClient[Any]) -> AsyncDatabase[Any]:
    """The database the client's URI names, or LibreChat's default."""
    return client.get_default_database(default=LIBRECHAT_DATABASE)


def parsed_uri(uri: str) -> dict[str, Any]:
    """pymongo's reading of `uri` (hosts, credentials, database, options), strict about unknown options."""
    # An SRV URI is parsed as a plain one: parsing it for real would query DNS.
    plain = "mongodb://" + uri.removeprefix("mongodb+srv://").removeprefix("mongodb://")
    return uri_parser.parse_uri(plain)


def database_named(uri: str) -> str:
    """The database `uri` names, as `librechat_database` reads it, without building a client."""
    return parsed_uri(uri).get("database") or LIBRECHAT_DATABASE
