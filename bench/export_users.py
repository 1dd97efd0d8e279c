"""Peak memory of `export-users` on a large LibreChat: `python -m bench.export_users [--users N]`.

A mockupdb stand-in in a process of its own serves N generated users (by default 100,000; a tenth of them
Entra users listed by `idOnTheSource`) in batches with `getMore`, and groups in which every user is a
member: the member → team map is then as large as it gets for N users. `export-users` runs as a
child process, writing to a file; its peak RSS is read from the kernel once it exits (the parent
stays small: a child's peak counts the parent's pages until it execs) and compared with the same
export without groups and of a small collection. The file is checked: one row per user, in `_id`
order, every user with the team the rule gives.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bson import ObjectId
from mockupdb import MockupDB

from .mongo import HELLO

FIRST_USER = 0x660000000000000000000000
GROUP_SIZE = 2_000  # members per group: 50 groups for 100,000 users
_DEFAULT_BATCH = 101


def user_id(number: int) -> str:
    return f"{FIRST_USER + number:024x}"


def member_key(number: int) -> str:
    return f"entra-{number:08d}" if number % 10 == 0 else user_id(number)


def generated_users(count: int) -> list[dict[str, Any]]:
    users = []
    for n in range(count):
        user = {
            "_id": ObjectId(user_id(n)),
            "email": f"user-{n:06d}@example.com",
            "name": f"User {n}",
            "username": f"user{n:06d}",
            "role": "USER",
            "provider": "openid" if n % 10 == 0 else "local",
        }
        if n % 10 == 0:
            user["idOnTheSource"] = member_key(n)
        users.append(user)
    return users


def generated_groups(count: int) -> list[dict[str, Any]]:
    """Team NNNN holds a slice of the users; every user is also in `Whole company`, which sorts after them."""
    groups = [
        {"name": f"Team {start // GROUP_SIZE:04d}", "memberIds": [member_key(n) for n in range(start, stop)]}
        for start, stop in ((start, min(start + GROUP_SIZE, count)) for start in range(0, count, GROUP_SIZE))
    ]
    groups.append({"name": "Whole company", "memberIds": [member_key(n) for n in range(count)]})
    return groups


class ExportStandIn:
    """`find` on users (all, `_id` order) and groups (all), with cursors continued by `getMore`."""

    def __init__(self, users: list[dict[str, Any]], groups: list[dict[str, Any]]) -> None:
        self._collections = {"users": users, "groups": groups}
        self._cursors: dict[int, tuple[str, int]] = {}  # cursor id -> (collection, next offset)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def respond(self, request: Any) -> bool:
        command = request.doc
        if request.command_name in ("ismaster", "isMaster", "hello"):
            return False  # answered by auto_ismaster
        if request.command_name == "find":
            size = command.get("batchSize", _DEFAULT_BATCH)
            return bool(request.replies(self._batch(command["find"], 0, size, "firstBatch", None)))
        if request.command_name == "getMore":
            with self._lock:
                collection, offset = self._cursors.pop(command["getMore"])
            size = command.get("batchSize", len(self._collections[collection]))
            return bool(request.replies(self._batch(collection, offset, size, "nextBatch", command["getMore"])))
        return bool(request.replies({"ok": 1}))

    def _batch(self, collection: str, offset: int, size: int, kind: str, cursor_id: int | None) -> dict[str, Any]:
        documents = self._collections[collection]
        batch = documents[offset : offset + size]
        more = offset + size < len(documents)
        if more:
            with self._lock:
                cursor_id = cursor_id or next(self._ids)
                self._cursors[cursor_id] = (collection, offset + size)
        return {"cursor": {"id": cursor_id if more else 0, "ns": f"LibreChat.{collection}", kind: batch}, "ok": 1}


def serve(users: int, groups: bool) -> None:
    server = MockupDB(auto_ismaster=HELLO)
    server.autoresponds(ExportStandIn(generated_users(users), generated_groups(users) if groups else []).respond)
    print(server.run(), flush=True)
    threading.Event().wait()


def run_export(users: int, *, groups: bool = True) -> tuple[int, float, Path]:
    """Peak RSS in KiB, and seconds, of one `export-users` child against `users` generated users."""
    stand_in = [sys.executable, "-m", "bench.export_users", "--users", str(users), "--serve"]
    server = subprocess.Popen([*stand_in, *([] if groups else ["--no-groups"])], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    port = int(server.stdout.readline())
    output = Path(tempfile.mkstemp(prefix="export-users-", suffix=".csv")[1])
    uri = f"mongodb://127.0.0.1:{port}/LibreChat"
    environment = {**os.environ, "MONGO_URI": uri, "USER_LOOKUP_TIMEOUT_SECONDS": "5"}
    if groups:  # the team column, and so the pass over `groups`, only when teams are asked for
        environment["TEAM_METADATA_KEY"] = "team"
    command = [sys.executable, "-m", "portkey_user_proxy", "export-users"]
    try:
        started = time.perf_counter()
        with output.open("w") as out, tempfile.TemporaryFile("w+") as errors:
            process = subprocess.Popen(command, stdout=out, stderr=errors, env=environment)
            # wait4 reports this child's own peak RSS (Popen.wait would reap it without one).
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            errors.seek(0)
            message = errors.read().strip()
        elapsed = time.perf_counter() - started
    finally:
        server.kill()
        server.wait()
    if process.returncode != 0:
        raise SystemExit(f"export-users failed ({process.returncode}): {message}")
    return usage.ru_maxrss, elapsed, output


def check(output: Path, users: int) -> None:
    with output.open(newline="") as file:
        rows = csv.reader(file)
        header = next(rows)
        assert header == ["id", "email", "name", "username", "role", "provider", "team"], header
        count = 0
        for n, row in enumerate(rows):
            assert row[0] == user_id(n), f"row {n}: {row[0]}"
            assert row[6] == f"Team {n // GROUP_SIZE:04d}", f"row {n}: team {row[6]!r}"
            count += 1
    assert count == users, f"{count} rows for {users} users"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.export_users", description=__doc__)
    parser.add_argument("--users", type=int, default=100_000, help="users to generate (default 100,000)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the stand-in's own process
    parser.add_argument("--no-groups", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.users, not args.no_groups)
        return
    small_peak, _, small_output = run_export(1_000)
    small_output.unlink()
    groupless_peak, _, groupless_output = run_export(args.users, groups=False)
    groupless_output.unlink()
    peak, elapsed, output = run_export(args.users)
    try:
        check(output, args.users)
        size = output.stat().st_size
    finally:
        output.unlink()
    memberships = args.users * 2
    groups = -(-args.users // GROUP_SIZE) + 1
    print(f"users:                 {args.users:,} ({memberships:,} group memberships in {groups} groups)")
    print(f"export file:           {size / 1e6:.1f} MB, checked: one row per user in _id order, each with its team")
    print(f"export time:           {elapsed:.1f} s")
    print(f"peak RSS:              {peak / 1024:.1f} MiB")
    print(f"  the same, no groups: {groupless_peak / 1024:.1f} MiB (the member -> team map is the difference)")
    print(f"  1,000 users:         {small_peak / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
