"""The soak's MongoDB: mockupdb's wire-protocol stand-in holding the soak's users, on a fixed port.

Every `find` it answers is appended to a file as the `_id` asked for, so the count of lookups per
user survives the stand-in being stopped and started again. Run it as
`python -m bench.soak_mongo PORT USERS FINDS_FILE`; it prints `ready` once it listens.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

from bson import ObjectId
from mockupdb import MockupDB

from .mongo import HELLO, UsersStandIn

FIRST_USER = 0x5F0000000000000000000000


def user_id(number: int) -> str:
    return f"{FIRST_USER + number:024x}"


def user_email(number: int) -> str:
    return f"soak-user-{number:04d}@example.com"


def soak_users(count: int) -> list[dict[str, Any]]:
    return [{"_id": ObjectId(user_id(n)), "email": user_email(n), "username": f"soak{n:04d}"} for n in range(count)]


def main() -> None:
    port, count, finds_path = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    with finds_path.open("a") as finds:

        def record(wanted: Any) -> None:
            finds.write(f"{wanted}\n")
            finds.flush()

        server = MockupDB(port=port, auto_ismaster=HELLO)
        server.autoresponds(UsersStandIn(soak_users(count), record).respond)
        server.run()
        print("ready", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
