"""What LibreChat sends: the OpenAI JS SDK's headers and chat bodies of a chosen size, for benchmark users."""

from __future__ import annotations

import json

USER_COUNT = 16
FIRST_USER = 0x6651F0C2A1B2C3D4E5F60000
PATH = "/v1/chat/completions"

# As LibreChat's custom endpoint sends them (shared fixture `librechat_chat_request.json`).
HEADERS = {
    "authorization": "Bearer sk-bench-not-a-real-key",
    "content-type": "application/json",
    "accept": "application/json",
    "user-agent": "OpenAI/JS 5.23.2",
    "x-stainless-lang": "js",
    "x-stainless-package-version": "5.23.2",
    "x-stainless-os": "Linux",
    "x-stainless-arch": "x64",
    "x-stainless-runtime": "node",
    "x-stainless-runtime-version": "v22.14.0",
    "x-stainless-retry-count": "0",
    "x-stainless-timeout": "600",
    "x-portkey-api-key": "pk-bench-not-a-real-key",
    "x-portkey-virtual-key": "openai-prod-1a2b3c",
    "x-portkey-metadata": '{"_environment":"production"}',
}
# What nginx sets in their place: the best a proxy without a lookup can do.
STATIC_METADATA = '{"_environment":"production","_user":"user00@example.com"}'

_TURN = (
    "Summarise our Q3 travel policy in three bullet points, and say which expenses need a manager's "
    "approval before booking. Keep it short enough to paste into a chat message. "
)


def user_id(number: int) -> str:
    return f"{FIRST_USER + number:024x}"


def user_email(number: int) -> str:
    return f"user{number:02d}@example.com"


def chat_body(user: str, size: int, *, stream: bool) -> bytes:
    """A chat completion request of about `size` bytes: a system prompt and alternating turns."""
    messages = [{"role": "system", "content": "You are a helpful assistant for ACME's employees."}]
    body = _encode(user, messages, stream)
    while len(body) < size:
        role = "user" if len(messages) % 2 else "assistant"
        room = size - len(body) - 40
        content = (_TURN * (1 + room // len(_TURN)))[: max(1, min(room, 4096))]
        messages.append({"role": role, "content": content})
        body = _encode(user, messages, stream)
    return body


def _encode(user: str, messages: list[dict[str, str]], stream: bool) -> bytes:
    document = {
        "model": "gpt-4o-mini",
        "temperature": 1,
        "top_p": 1,
        "presence_penalty": 0,
        "frequency_penalty": 0,
        "user": user,
        "stream": stream,
        "messages": messages,
    }
    return json.dumps(document, separators=(",", ":")).encode()
