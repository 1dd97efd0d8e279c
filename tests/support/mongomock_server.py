"""A MongoDB for tests that write: mockupdb speaks the wire protocol, mongomock runs each command.

The proxy's real async driver talks to it over TCP as to a server, and gets MongoDB's semantics
for what the proxy does (`$inc` with upsert, unique and TTL index definitions, sorted finds). With
`TEST_MONGO_URI` set, `writable_mongo` gives that server instead; tests that stop or fail the
server at will (`needs_stand_in`) run on the stand-in only.
"""

from __future__ import annotations

import contextlib
import enum
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import mongomock
import pytest
from pymongo import MongoClient
from pymongo.errors import BulkWriteError

from tests.support.fixtures import load_fixture
from tests.support.wire_server import HANDSHAKE, WireServer, hosts_and_options, real_mongo_uri

_UNAUTHORIZED = {"ok": 0, "code": 13, "codeName": "Unauthorized", "errmsg": "not authorized"}
_SESSIONS = frozenset({"endSessions", "killCursors", "ping", "buildInfo", "buildinfo"})
_LATE_BOUND_SECONDS = 30.0  # a late answer the test never releases: the server is not stuck for ever


class Fault(enum.Enum):
    NONE = "none"
    HANG_UP = "hang up"  # every command's connection is closed: an outage as the driver sees one
    UNAUTHORIZED = "unauthorized"  # every command is refused: a role without access


class MongomockServer:
    def __init__(self) -> None:
        self.engine: Any = mongomock.MongoClient()  # untyped: every command goes through dict-shaped documents
        self.fault = Fault.NONE
        self.commands: list[str] = []  # command names, in the order they arrived
        self.refused_databases: set[str] = set()  # commands on these are refused: a role without access
        # Commands run at once, answered only once `answer_late_now()` is called: a write applied whose
        # answer comes after the driver gave up. mockupdb serves one request at a time: meanwhile, the
        # server answers nothing else.
        self.answer_late: frozenset[str] = frozenset()
        self._late = threading.Event()
        self._server = WireServer(self._respond)
        # mockupdb answers each connection from a thread of its own; a real server serializes
        # the writes to one document, and this lock does the same for mongomock, which does not.
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"mongodb://127.0.0.1:{self._server.port}"

    def start(self) -> MongomockServer:
        self._server.start()
        return self

    def answer_late_now(self) -> None:
        self._late.set()

    def reset(self) -> None:
        """Every command answered at once, on every database."""
        self.fault = Fault.NONE
        self.refused_databases.clear()
        self.answer_late = frozenset()
        self._late.clear()

    def stop(self) -> None:
        self._server.stop()

    def _respond(self, request: Any) -> bool:
        name = request.command_name
        if name in HANDSHAKE:
            return False  # answered by mockupdb: the server stays known to the driver
        if name in _SESSIONS:
            return bool(request.replies({"ok": 1}))
        if self.fault is Fault.HANG_UP:
            return bool(request.hangup())
        if self.fault is Fault.UNAUTHORIZED or request.doc.get("$db") in self.refused_databases:
            return bool(request.replies(_UNAUTHORIZED))
        with self._lock:
            self.commands.append(name)
            handler = _COMMANDS.get(name)
            if handler is None:
                return bool(request.replies({"ok": 0, "code": 59, "errmsg": f"no such command: {name}"}))
            try:
                reply = handler(self.engine[request.doc["$db"]], request.doc)
            except mongomock.DuplicateKeyError as exc:
                reply = {"ok": 0, "code": 11000, "codeName": "DuplicateKey", "errmsg": str(exc)}
            except mongomock.OperationFailure as exc:
                reply = {"ok": 0, "code": exc.code or 2, "errmsg": str(exc)}
        if name in self.answer_late:
            self._late.wait(_LATE_BOUND_SECONDS)
        with contextlib.suppress(OSError):  # a late answer finds the connection closed by the driver
            request.replies(reply)
        return True


Command = Callable[[Any, dict[str, Any]], dict[str, Any]]


def _find(database: Any, command: dict[str, Any]) -> dict[str, Any]:
    name = command["find"]
    cursor = database[name].find(command.get("filter", {}), command.get("projection") or None)
    if command.get("sort"):
        cursor = cursor.sort(list(command["sort"].items()))
    if command.get("skip"):
        cursor = cursor.skip(command["skip"])
    if command.get("limit"):
        cursor = cursor.limit(abs(command["limit"]))
    return _cursor(database, name, list(cursor))


def _aggregate(database: Any, command: dict[str, Any]) -> dict[str, Any]:
    name = command["aggregate"]
    return _cursor(database, name, list(database[name].aggregate(command["pipeline"])))


def _cursor(database: Any, collection: str, documents: list[Any]) -> dict[str, Any]:
    # Every result in the first batch: the tests' result sets are small.
    return {"cursor": {"id": 0, "ns": f"{database.name}.{collection}", "firstBatch": documents}, "ok": 1}


def _update(database: Any, command: dict[str, Any]) -> dict[str, Any]:
    collection = database[command["update"]]
    matched = modified = 0
    upserted = []
    write_errors = []
    for index, update in enumerate(command["updates"]):
        method = collection.update_many if update.get("multi") else collection.update_one
        try:
            result = method(update["q"], update["u"], upsert=bool(update.get("upsert")))
        except mongomock.DuplicateKeyError as exc:
            write_errors.append({"index": index, "code": 11000, "errmsg": str(exc)})
            continue
        matched += result.matched_count
        modified += result.modified_count
        if result.upserted_id is not None:
            upserted.append({"index": index, "_id": result.upserted_id})
    reply: dict[str, Any] = {"n": matched + len(upserted), "nModified": modified, "ok": 1}
    if upserted:
        reply["upserted"] = upserted
    if write_errors:
        reply["writeErrors"] = write_errors
    return reply


def _insert(database: Any, command: dict[str, Any]) -> dict[str, Any]:
    documents = command["documents"]
    try:
        database[command["insert"]].insert_many(documents, ordered=command.get("ordered", True))
    except BulkWriteError as exc:
        # As MongoDB answers: the command succeeds, listing the documents it refused (a duplicate key) by index.
        errors = [{key: error[key] for key in ("index", "code", "errmsg")} for error in exc.details["writeErrors"]]
        return {"n": exc.details["nInserted"], "writeErrors": errors, "ok": 1}
    return {"n": len(documents), "ok": 1}


def _delete(database: Any, command: dict[str, Any]) -> dict[str, Any]:
    collection = database[command["delete"]]
    deleted = 0
    for delete in command["deletes"]:
        method = collection.delete_one if delete.get("limit") == 1 else collection.delete_many
        deleted += method(delete["q"]).deleted_count
    return {"n": deleted, "ok": 1}


def _create_indexes(database: Any, command: dict[str, Any]) -> dict[str, Any]:
    collection = database[command["createIndexes"]]
    for index in command["indexes"]:
        options = {key: value for key, value in index.items() if key not in ("key", "v")}
        collection.create_index(list(index["key"].items()), **options)
    return {"ok": 1}


def _list_indexes(database: Any, command: dict[str, Any]) -> dict[str, Any]:
    name = command["listIndexes"]
    indexes = []
    for index_name, info in database[name].index_information().items():
        options = {key: value for key, value in info.items() if key not in ("key", "v")}
        indexes.append({"v": 2, "key": dict(info["key"]), "name": index_name, **options})
    return _cursor(database, name, indexes)


def _drop(database: Any, command: dict[str, Any]) -> dict[str, Any]:
    database.drop_collection(command["drop"])
    return {"ok": 1}


def _drop_database(database: Any, command: dict[str, Any]) -> dict[str, Any]:
    database.client.drop_database(database.name)
    return {"ok": 1}


def _list_databases(database: Any, command: dict[str, Any]) -> dict[str, Any]:
    names = database.client.list_database_names()
    return {"databases": [{"name": name, "sizeOnDisk": 1, "empty": False} for name in names], "ok": 1}


def _count(database: Any, command: dict[str, Any]) -> dict[str, Any]:
    return {"n": database[command["count"]].count_documents(command.get("query", {})), "ok": 1}


_COMMANDS: dict[str, Command] = {
    "find": _find,
    "aggregate": _aggregate,
    "update": _update,
    "insert": _insert,
    "delete": _delete,
    "createIndexes": _create_indexes,
    "listIndexes": _list_indexes,
    "drop": _drop,
    "dropDatabase": _drop_database,
    "count": _count,
    "listDatabases": _list_databases,
}


@dataclass
class WritableMongo:
    """A database of the test's own on a server that takes writes: the stand-in, or TEST_MONGO_URI's."""

    address: str  # mongodb://host:port, without a database
    database: str
    stand_in: MongomockServer | None  # None on a real server

    @property
    def librechat(self) -> str:
        """A LibreChat database of the test's own, beside `database` (both dropped after the test)."""
        return f"{self.database}_librechat"

    def client(self) -> MongoClient[Any]:
        return MongoClient(self.address, serverSelectionTimeoutMS=5000)

    def uri(self, database: str) -> str:
        """A MONGO_URI naming `database` on this server."""
        hosts, _, options = self.address.partition("/?")
        return f"{hosts.rstrip('/')}/{database}" + (f"?{options}" if options else "")


def real_mongo_address() -> str | None:
    """TEST_MONGO_URI without its database: the tests name their own databases."""
    uri = real_mongo_uri()
    if uri is None:
        return None
    hosts, options = hosts_and_options(uri)
    return hosts + (f"/?{options}" if options else "")


@pytest.fixture(scope="session")
def shared_mongomock() -> Iterator[MongomockServer]:
    server = MongomockServer().start()
    yield server
    server.stop()


@pytest.fixture
def mongomock_server(shared_mongomock: MongomockServer) -> Iterator[MongomockServer]:
    """The stand-in, answering every command, with no commands recorded."""
    shared_mongomock.reset()
    shared_mongomock.commands.clear()
    yield shared_mongomock
    shared_mongomock.reset()


@pytest.fixture
def writable_mongo(request: pytest.FixtureRequest) -> Iterator[WritableMongo]:
    """A fresh database, dropped after the test: on TEST_MONGO_URI's server when set, else the stand-in."""
    database = f"portkey_user_proxy_test_{uuid.uuid4().hex[:8]}"
    address = real_mongo_address()
    if address is not None:
        mongo = WritableMongo(address, database, None)
    else:
        stand_in: MongomockServer = request.getfixturevalue("mongomock_server")
        mongo = WritableMongo(stand_in.address, database, stand_in)
    yield mongo
    if mongo.stand_in is not None:
        mongo.stand_in.reset()  # the database is dropped on a server that answers
    with mongo.client() as client:
        client.drop_database(database)
        client.drop_database(mongo.librechat)


@pytest.fixture
def writable_librechat(writable_mongo: WritableMongo) -> WritableMongo:
    """LibreChat's fixture user and groups, on the server where the budget database lives too."""
    with writable_mongo.client() as client:
        database = client[writable_mongo.librechat]
        database["users"].insert_one(load_fixture("librechat_user.json"))
        database["groups"].insert_many(load_fixture("librechat_groups.json"))
    return writable_mongo
