"""LibreChat's MongoDB for the benchmark: mockupdb's wire-protocol stand-in in its own process.

It holds the benchmark users and writes the number of `find` commands it has answered to a file,
so the run can show that a warm cache sends no query. Run as `python -m bench.mongo COUNT_FILE`;
it prints the port once it listens.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

from bson import ObjectId
from mockupdb import MockupDB

from .payloads import USER_COUNT, user_email, user_id

# mockupdb announces wire version 6 by default; current pymongo requires a newer server.
_HELLO = {"maxWireVersion": 21, "minWireVersion": 0, "ismaster": True, "isWritablePrimary": True}


class StandIn:
    def __init__(self, count_file: Path) -> None:
        self._count_file = count_file
        self._finds = 0
        self._lock = threading.Lock()
        self._users = {
            ObjectId(user_id(n)): {
                "_id": ObjectId(user_id(n)),
                "email": user_email(n),
                "name": f"Bench User {n}",
                "username": f"bench{n:02d}",
                "role": "USER",
                "provider": "local",
            }
            for n in range(USER_COUNT)
        }

    def respond(self, request: Any) -> bool:
        if request.command_name in ("ismaster", "isMaster", "hello"):
            return False  # answered by auto_ismaster
        if request.command_name == "find":
            return bool(request.replies(self._find(request.doc)))
        return bool(request.replies({"ok": 1}))

    def _find(self, command: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._finds += 1
            self._count_file.write_text(str(self._finds))
        document = self._users.get(command.get("filter", {}).get("_id"))
        batch = [] if document is None else [document]
        return {"cursor": {"id": 0, "ns": f"LibreChat.{command['find']}", "firstBatch": batch}, "ok": 1}


def main() -> None:
    count_file = Path(sys.argv[1])
    count_file.write_text("0")
    server = MockupDB(auto_ismaster=_HELLO)
    server.autoresponds(StandIn(count_file).respond)
    print(server.run(), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
