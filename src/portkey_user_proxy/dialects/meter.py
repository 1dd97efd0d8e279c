"""What an answer says of its own cost, read from its bytes as they pass to the client.

`AnswerMeter` is fed each chunk after it was relayed, never holding one back: it finds the usage the
dialect reports (`usage.UsageScanner`), the model that served the answer, and how much output went
by, which is what an estimate is made of when the usage never arrives (the client left first, the
upstream failed, or the answer carries none). A compressed answer is relayed as it came; a copy is
decoded for reading (gzip and deflate; any other coding leaves the answer unreadable, and its cost
estimated). Only JSON and server-sent events are read: a file or audio download holds no usage.

Estimates, and which way they err (the README's Budgets section says the same):
- the prompt: the request body's bytes over `BYTES_PER_TOKEN`, base64 payloads (images, files) left
  out. JSON syntax and message roles count too, so for text it errs high by a few percent;
  an image counts as nothing, so a prompt of images errs low.
- the output of a stream: one token per event relayed (OpenAI sends about one token per chunk;
  Anthropic and Gemini several), so it errs low; tokens a reasoning model spent thinking and never
  sent are not counted.
- the output of a JSON answer cut short: its relayed bytes over `BYTES_PER_TOKEN`.
"""

from __future__ import annotations

import enum
import re
import zlib
from dataclasses import dataclass

import orjson

from .dialect import Dialect
from .usage import Usage, UsageScanner

# About four bytes of English text or JSON per token, for the tokenizers of OpenAI, Anthropic and Google.
BYTES_PER_TOKEN = 4
_EVENT = b"data:"
_MODEL_WINDOW = 4096  # the answer's model is named in its envelope, before any generated text
_MODEL_MAX_LENGTH = 256
# Decoding stops here: a compressed answer that inflates beyond it (a bomb) is estimated instead.
_MAX_DECODED_BYTES = 64 * 1024 * 1024
_BASE64_MARKERS = (b";base64,", b'"data":"')
_BASE64 = re.compile(rb"[A-Za-z0-9+/=\\]*")  # JSON may escape `/` as `\/`


class Readability(enum.Enum):
    READABLE = "readable"  # JSON or events, as they came or decoded
    BINARY = "binary"  # not JSON or events: a file, audio, an image
    ENCODED = "encoded"  # a content coding the proxy cannot decode


def readability(content_type: bytes | None, content_encoding: bytes | None) -> Readability:
    media = (content_type or b"").split(b";", 1)[0].strip().lower()
    if media and not (media == b"text/event-stream" or media == b"application/json" or media.endswith(b"+json")):
        return Readability.BINARY
    if content_encoding is not None and _decoder(content_encoding) is _UNDECODABLE:
        return Readability.ENCODED
    return Readability.READABLE


@dataclass(frozen=True, slots=True)
class Reading:
    """What the meter read: the usage reported (None: none), and the output relayed, in tokens (estimated)."""

    usage: Usage | None
    model: str | None
    output_tokens: int


class AnswerMeter:
    def __init__(self, dialect: Dialect, content_type: bytes | None, content_encoding: bytes | None) -> None:
        self._dialect = dialect
        self._scanner = UsageScanner(dialect.usage_key, merges=dialect.usage_in_parts)
        self._model_key = dialect.model_key
        self._events = (content_type or b"").lower().startswith(b"text/event-stream")
        self._decoder = _decoder(content_encoding) if content_encoding is not None else None
        self._raw_deflate_allowed = content_encoding is not None and content_encoding.strip().lower() == b"deflate"
        self._decoded = 0
        self._output = 0  # events, or bytes of a JSON answer
        self._tail = b""
        self._model: str | None = None
        self._head: bytes | None = b""  # the answer's first bytes, until its model is found (None: looked)

    def feed(self, chunk: bytes) -> None:
        if self._decoder is not None:
            chunk = self._decode(chunk)
        if self._head is not None:
            self._find_model(self._head, chunk)
        self._scanner.feed(chunk)
        if self._events:
            # An event's `data:` may be split across chunks: the previous chunk's last bytes join the search.
            joined = self._tail + chunk
            self._output += joined.count(_EVENT)
            self._tail = joined[-(len(_EVENT) - 1) :]
        else:
            self._output += len(chunk)

    def reading(self) -> Reading:
        found = self._scanner.found
        usage = self._dialect.usage(self._scanner.reported) if found else None
        tokens = self._output if self._events else self._output // BYTES_PER_TOKEN
        return Reading(usage, self._model, tokens)

    def _decode(self, chunk: bytes) -> bytes:
        decoder = self._decoder
        if decoder is None or isinstance(decoder, _Undecodable):
            return b""
        try:
            decoded = decoder.decompress(chunk, _MAX_DECODED_BYTES - self._decoded)
        except zlib.error:
            if self._decoded == 0 and self._raw_deflate_allowed:
                # `deflate` without zlib's framing, as some servers send it: tried once, from the start.
                self._raw_deflate_allowed = False
                self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                return self._decode(chunk)
            decoded, self._decoder = b"", _UNDECODABLE  # not what it said it was: read no further
        self._decoded += len(decoded)
        if self._decoded >= _MAX_DECODED_BYTES:
            self._decoder = _UNDECODABLE
        return decoded

    def _find_model(self, head: bytes, chunk: bytes) -> None:
        head = (head + chunk)[:_MODEL_WINDOW]
        start = head.find(self._model_key)
        value = _string_after(head, start + len(self._model_key)) if start != -1 else None
        if value is not None:
            self._model, self._head = value or None, None
        else:
            self._head = head if len(head) < _MODEL_WINDOW else None  # past the envelope: look no more


def _string_after(data: bytes, index: int) -> str | None:
    """The JSON string that is the value of the key ending at `index`, when it is whole in `data`."""
    colon = data.find(b":", index, index + 16)
    if colon == -1 or data[index:colon].strip():
        return None
    opening = data.find(b'"', colon, colon + 16)
    if opening == -1 or data[colon + 1 : opening].strip():
        return None
    closing = data.find(b'"', opening + 1, opening + 2 + _MODEL_MAX_LENGTH)
    if closing == -1:
        return None
    try:
        value = orjson.loads(data[opening : closing + 1])
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, str) else None


def prompt_tokens(body: bytes | None) -> int:
    """An estimate of a request body's prompt in tokens (see the module's docstring); 0 for no body read."""
    if not body:
        return 0
    return max(len(body) - _base64_bytes(body), 0) // BYTES_PER_TOKEN


def _base64_bytes(body: bytes) -> int:
    """The bytes of base64 payloads: data URLs (`;base64,...`) and `"data":"..."` (Anthropic's sources, audio)."""
    total = 0
    for marker in _BASE64_MARKERS:
        start = body.find(marker)
        while start != -1:
            payload = start + len(marker)
            end = body.find(b'"', payload)
            if end == -1:
                break
            if _BASE64.fullmatch(body, payload, end):  # text that merely mentions `;base64,` counts as text
                total += end - payload
            start = body.find(marker, end)
    return total


class _Undecodable:
    pass


_UNDECODABLE = _Undecodable()


def _decoder(content_encoding: bytes) -> zlib._Decompress | _Undecodable | None:
    coding = content_encoding.strip().lower()
    if coding in (b"", b"identity"):
        return None
    if coding in (b"gzip", b"x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if coding == b"deflate":
        return zlib.decompressobj(zlib.MAX_WBITS | 32)  # zlib's framing, as RFC 9110 says (gzip's accepted too)
    return _UNDECODABLE
