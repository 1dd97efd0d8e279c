"""LibreChat's MongoDB for the benchmark: mockupdb's wire-protocol stand-in in its own process.

It holds the benchmark users and writes the number of `find` commands it has answered to a file,
so the run can show that a warm cache sends no query. Run as `python -m bench.mongo COUNT_FILE`;
it prints the port once it listens. With `--writable` it runs every command on mongomock instead
(the test suite's writable stand-in), holding the same users and a group `Engineering` of all of
them, so a proxy with budgets can read and write its spend.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bson import ObjectId
from mockupdb import MockupDB

from .payloads import USER_COUNT, user_email, user_id

TEAM = "Engineering"  # the group every benchmark user is in (`--writable`)

# mockupdb announces wire version 6 by default; current pymongo requires a newer server.
HELLO = {"maxWireVersion": 21, "minWireVersion": 0, "ismaster": True, "isWritablePrimary": True}


class UsersStandIn:
    """Answers `find` by `_id` from `users`, and every other command but hello with ok.

    `on_find` is told the `_id` of each `find`, under a lock: mockupdb answers each connection
    from a thread of its own.
    """

    def __init__(self, users: list[dict[str, Any]], on_find: Callable[[Any], None]) -> None:
        self._users = {user["_id"]: user for user in users}
        self._on_find = on_find
        self._lock = threading.Lock()

    def respond(self, request: Any) -> bool:
        if request.command_name in ("ismaster", "isMaster", "hello"):
            return False  # answered by auto_ismaster
        if request.command_name == "find":
            return bool(request.replies(self._find(request.doc)))
        return bool(request.replies({"ok": 1}))

    def _find(self, command: dict[str, Any]) -> dict[str, Any]:
        wanted = command.get("filter", {}).get("_id")
        with self._lock:
            self._on_find(wanted)
        document = self._users.get(wanted)
        batch = [] if document is None else [document]
        return {"cursor": {"id": 0, "ns": f"LibreChat.{command['find']}", "firstBatch": batch}, "ok": 1}


def bench_users() -> list[dict[str, Any]]:
    return [
        {
            "_id": ObjectId(user_id(n)),
            "email": user_email(n),
            "name": f"Bench User {n}",
            "username": f"bench{n:02d}",
            "role": "USER",
            "provider": "local",
        }
        for n in range(USER_COUNT)
    ]


def _writable(on_find: Callable[[Any], None]) -> int:
    from tests.support.mongomock_server import MongomockServer

    class CountingServer(MongomockServer):
        def _respond(self, request: Any) -> bool:
            if request.command_name == "find" and request.doc.get("find") == "users":
                on_find(request.doc.get("filter", {}).get("_id"))
            return super()._respond(request)

    server = CountingServer()
    users = bench_users()
    server.engine["LibreChat"]["users"].insert_many(users)
    members = [str(user["_id"]) for user in users]
    server.engine["LibreChat"]["groups"].insert_one({"name": TEAM, "memberIds": members, "source": "local"})
    server.start()
    return int(server.address.rsplit(":", 1)[1])


def main() -> None:
    count_file = Path(sys.argv[1])
    count_file.write_text("0")
    finds = itertools.count(1)
    lock = threading.Lock()

    def count_find(_: Any) -> None:
        with lock:
            count_file.write_text(str(next(finds)))

    if "--writable" in sys.argv[2:]:
        port = _writable(count_find)
    else:
        server = MockupDB(auto_ismaster=HELLO)
        server.autoresponds(UsersStandIn(bench_users(), count_find).respond)
        port = server.run()
    print(port, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
