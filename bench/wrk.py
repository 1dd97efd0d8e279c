"""Non-stream chat completions under wrk: a Lua script sends LibreChat's requests, rotating users."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from .payloads import HEADERS, PATH, USER_COUNT, chat_body, user_id
from .processes import LOAD_CPU, pinned

BODY_SIZE = 2048

_SCRIPT = """\
local bodies = {{{bodies}}}
local headers = {{{headers}}}
local requests = {{}}
local n = 0

init = function(args)
    for i, body in ipairs(bodies) do
        requests[i] = wrk.format("POST", "{path}", headers, body)
    end
end

request = function()
    n = n + 1
    return requests[(n % #requests) + 1]
end

done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("BENCH %d %d %d %d %d %d\\n", summary.requests, summary.duration,
        latency:percentile(50), latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int  # answered, errors included
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers and socket errors


def write_script(folder: Path) -> Path:
    bodies = ", ".join(_lua_string(chat_body(user_id(n), BODY_SIZE, stream=False).decode()) for n in range(USER_COUNT))
    headers = ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in HEADERS.items())
    script = folder / "chat.lua"
    script.write_text(_SCRIPT.format(bodies=bodies, headers=headers, path=PATH))
    return script


def run(script: Path, port: int, connections: int, seconds: float) -> WrkResult:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script), f"http://127.0.0.1:{port}"]
    output = subprocess.run(pinned(command, LOAD_CPU), capture_output=True, text=True, timeout=seconds + 30, check=True)
    line = next(line for line in output.stdout.splitlines() if line.startswith("BENCH "))
    requests, duration_us, p50_us, p99_us, status_errors, socket_errors = map(int, line.split()[1:])
    return WrkResult(
        requests, requests / (duration_us / 1e6), p50_us / 1000, p99_us / 1000, status_errors + socket_errors
    )


def _lua_string(text: str) -> str:
    # Parenthesised: a table constructor would read `{[==[` as the start of a `[key] =` field.
    return "([==[" + text + "]==])"
