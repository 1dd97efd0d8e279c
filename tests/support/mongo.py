"""LibreChat's MongoDB for the tests: a wire-protocol stand-in (mockupdb), or a real server.

pymongo's real driver talks to either over TCP. With `TEST_MONGO_URI` set, the same tests run
against that server (a throwaway database is created and dropped); the fault-injection tests, which
need to stop or slow the server at will, run on the stand-in only.
"""

from __future__ import annotations

import itertools
import socket
import threading
import uuid
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient

from tests.support.wire_server import HANDSHAKE, WireServer, hosts_and_options, real_mongo_uri

# What MongoDB puts in a first batch when the driver names no batch size.
_DEFAULT_BATCH = 101


class StandInMongo:
    """`find` on `users` and `groups` (equality, array membership, `_id` sort), in batches with `getMore`."""

    def __init__(self, port: int = 0) -> None:
        self.users: dict[ObjectId, dict[str, Any]] = {}
        self.groups: list[dict[str, Any]] = []
        self.finds = 0
        self.gate: threading.Event | None = None  # when set to an unset Event, finds wait for it
        self.refuse_reads = False  # answer reads as MongoDB does a client without read access
        self.refuse_more = False  # the same for `getMore` alone: a read that fails after its first batch
        self.refused_collections: set[str] = set()  # `find` on these is refused as `refuse_reads` does
        # Commands taken and never answered ("find", "getMore"): a server that answers `hello` and then freezes.
        self.unanswered: set[str] = set()
        self._server = WireServer(self._respond, port)
        self._cursors: dict[int, list[dict[str, Any]]] = {}
        self._cursor_ids = itertools.count(1)
        self._lock = threading.Lock()  # mockupdb answers each connection from a thread of its own

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self._server.port}/LibreChat"

    def start(self) -> StandInMongo:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def add_user(self, document: dict[str, Any]) -> None:
        self.users[document["_id"]] = document

    def add_group(self, document: dict[str, Any]) -> None:
        self.groups.append(document)

    def reset(self) -> None:
        self.users.clear()
        self.groups.clear()
        self.finds = 0
        self.gate = None
        self.refuse_reads = False
        self.refuse_more = False
        self.refused_collections.clear()
        self.unanswered.clear()

    def _respond(self, request: Any) -> bool:
        name = request.command_name
        if name in HANDSHAKE:
            return False  # answered by mockupdb
        if name in ("saslStart", "authenticate"):
            return bool(request.replies(_REFUSED_LOGIN))  # the stand-in knows no MongoDB users
        if name in self.unanswered:
            return True  # taken, never answered: the client waits until its own deadline
        refused = self.refuse_reads or request.doc.get("find") in self.refused_collections
        if (refused and name in ("find", "count", "aggregate")) or (self.refuse_more and name == "getMore"):
            return bool(request.replies(_UNAUTHORIZED))
        # LibreChat's users live in `LibreChat`: a URI naming another database finds nobody.
        users = self.users if request.doc.get("$db", "LibreChat") == "LibreChat" else {}
        if name == "find":
            return bool(request.replies(self._find(request.doc)))
        if name == "count":
            return bool(request.replies({"n": len(users), "ok": 1}))
        if name == "getMore":
            return bool(request.replies(self._get_more(request.doc)))
        return bool(request.replies({"ok": 1}))

    def _find(self, command: dict[str, Any]) -> dict[str, Any]:
        self.finds += 1
        if self.gate is not None:
            self.gate.wait(30)
        collection = command["find"]
        query = command.get("filter", {})
        found = [document for document in self._stored(command) if _matches(document, query)]
        if "_id" in command.get("sort", {}):
            found.sort(key=lambda document: document["_id"], reverse=command["sort"]["_id"] < 0)
        if command.get("limit"):
            found = found[: abs(command["limit"])]
        projection = command.get("projection") or {}
        results = [_project(document, projection) for document in found]
        return self._batch(f"LibreChat.{collection}", results, command.get("batchSize", _DEFAULT_BATCH), "firstBatch")

    def _stored(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        if command.get("$db", "LibreChat") != "LibreChat":
            return []  # LibreChat's collections live in `LibreChat`: another database holds nothing
        return list(self.users.values()) if command["find"] == "users" else self.groups

    def _get_more(self, command: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            results = self._cursors.pop(command["getMore"], [])
        namespace = f"LibreChat.{command['collection']}"
        return self._batch(namespace, results, command.get("batchSize", len(results)), "nextBatch")

    def _batch(self, namespace: str, results: list[dict[str, Any]], size: int, kind: str) -> dict[str, Any]:
        batch, rest = results[:size], results[size:]
        cursor_id = 0
        if rest:
            with self._lock:
                cursor_id = next(self._cursor_ids)
                self._cursors[cursor_id] = rest
        return {"cursor": {"id": cursor_id, "ns": namespace, kind: batch}, "ok": 1}


class FrozenMongo:
    """A MongoDB that accepts connections and never answers anything: a frozen server, not a stopped one."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self._listener.getsockname()[1]}/LibreChat"

    def start(self) -> FrozenMongo:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (Linux)
        self._thread.join(timeout=10)
        self._listener.close()
        for connection in self._accepted:
            connection.close()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._accepted.append(connection)  # held open, never read from or written to


class RealMongo:
    def __init__(self, uri: str) -> None:
        self._database = f"portkey_user_proxy_test_{uuid.uuid4().hex[:8]}"
        self._client: MongoClient[Any] = MongoClient(uri, serverSelectionTimeoutMS=5000)
        hosts, options = hosts_and_options(uri)
        self.uri = f"{hosts}/{self._database}" + (f"?{options}" if options else "")

    def add_user(self, document: dict[str, Any]) -> None:
        self._client[self._database]["users"].insert_one(document)

    def add_group(self, document: dict[str, Any]) -> None:
        self._client[self._database]["groups"].insert_one(document)

    def reset(self) -> None:
        self._client[self._database]["users"].delete_many({})
        self._client[self._database]["groups"].delete_many({})

    def stop(self) -> None:
        self._client.drop_database(self._database)
        self._client.close()


_UNAUTHORIZED = {"ok": 0, "code": 13, "codeName": "Unauthorized", "errmsg": "not authorized on LibreChat"}
_REFUSED_LOGIN = {"ok": 0, "code": 18, "codeName": "AuthenticationFailed", "errmsg": "Authentication failed."}


def _matches(document: dict[str, Any], query: dict[str, Any]) -> bool:
    # As in MongoDB, a scalar matches an array field that holds it.
    for key, wanted in query.items():
        value = document.get(key)
        if not (value == wanted or (isinstance(value, list) and not isinstance(wanted, list) and wanted in value)):
            return False
    return True


def _project(document: dict[str, Any], projection: dict[str, Any]) -> dict[str, Any]:
    if not projection:
        return dict(document)
    keep_id = projection.get("_id", 1)
    return {key: value for key, value in document.items() if (key == "_id" and keep_id) or projection.get(key)}


def needs_stand_in() -> pytest.MarkDecorator:
    return pytest.mark.skipif(real_mongo_uri() is not None, reason="stops or slows MongoDB: stand-in only")
