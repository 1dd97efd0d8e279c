"""The soak's MongoDB: mockupdb's wire-protocol stand-in holding the soak's users, on a fixed port.

Every `find` it answers is appended to a file as the `_id` asked for, so the count of lookups per
user survives the stand-in being stopped and started again. Run it as
`python -m bench.soak_mongo PORT USERS FINDS_FILE`; it prints `ready` once it listens.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from bson import ObjectId
from mockupdb import MockupDB

# mockupdb announces wire version 6 by default; current pymongo requires a newer server.
_HELLO = {"maxWireVersion": 21, "minWireVersion": 0, "ismaster": True, "isWritablePrimary": True}
FIRST_USER = 0x5F0000000000000000000000


def user_id(number: int) -> str:
    return f"{FIRST_USER + number:024x}"


def user_email(number: int) -> str:
    return f"soak-user-{number:04d}@example.com"


class SoakUsers:
    def __init__(self, count: int, finds: TextIO) -> None:
        self._finds = finds
        self._lock = threading.Lock()
        self._users = {
            ObjectId(user_id(n)): {"_id": ObjectId(user_id(n)), "email": user_email(n), "username": f"soak{n:04d}"}
            for n in range(count)
        }

    def respond(self, request: Any) -> bool:
        if request.command_name in ("ismaster", "isMaster", "hello"):
            return False  # answered by auto_ismaster
        if request.command_name == "find":
            return bool(request.replies(self._find(request.doc)))
        return bool(request.replies({"ok": 1}))

    def _find(self, command: dict[str, Any]) -> dict[str, Any]:
        wanted = command.get("filter", {}).get("_id")
        with self._lock:
            self._finds.write(f"{wanted}\n")
            self._finds.flush()
        document = self._users.get(wanted)
        batch = [] if document is None else [document]
        return {"cursor": {"id": 0, "ns": f"LibreChat.{command['find']}", "firstBatch": batch}, "ok": 1}


def main() -> None:
    port, count, finds_path = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    with finds_path.open("a") as finds:
        server = MockupDB(port=port, auto_ismaster=_HELLO)
        server.autoresponds(SoakUsers(count, finds).respond)
        server.run()
        print("ready", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
