"""What an answer says of its cost: usage, model and output read as the bytes pass, whatever their coding."""

from __future__ import annotations

import gzip
import json
import zlib

from portkey_user_proxy.dialects import UNKNOWN, dialect_for
from portkey_user_proxy.dialects.meter import AnswerMeter, Readability, prompt_tokens, readability
from portkey_user_proxy.dialects.usage import Usage

CHAT = dialect_for("/v1/chat/completions")
ANSWER = json.dumps({"id": "c1", "model": "gpt-4o-2024-08-06", "usage": {"prompt_tokens": 9, "completion_tokens": 4}})


def fed(meter: AnswerMeter, data: bytes, size: int = 7) -> AnswerMeter:
    for start in range(0, len(data), size):
        meter.feed(data[start : start + size])
    return meter


def test_a_gzip_answer_is_read_from_a_decoded_copy() -> None:
    reading = fed(AnswerMeter(CHAT, b"application/json", b"gzip"), gzip.compress(ANSWER.encode())).reading()

    assert reading.usage == Usage(9, 4, None, None)
    assert reading.model == "gpt-4o-2024-08-06"


def test_a_deflate_answer_is_read_and_identity_is_plain() -> None:
    deflated = fed(AnswerMeter(CHAT, b"application/json", b"deflate"), zlib.compress(ANSWER.encode()))
    plain = fed(AnswerMeter(CHAT, b"application/json", b"identity"), ANSWER.encode())

    assert deflated.reading().usage == plain.reading().usage == Usage(9, 4, None, None)


def test_an_answer_that_is_not_what_its_coding_says_is_read_no_further() -> None:
    reading = fed(AnswerMeter(CHAT, b"application/json", b"gzip"), ANSWER.encode()).reading()

    assert reading.usage is None  # estimated by the caller, never a crash


def test_a_compression_bomb_is_decoded_only_so_far() -> None:
    bomb = gzip.compress(b" " * (80 * 1024 * 1024) + ANSWER.encode())
    meter = fed(AnswerMeter(CHAT, b"application/json", b"gzip"), bomb, size=64 * 1024)

    assert meter.reading().usage is None  # its usage lay past the 64 MiB decoded


def test_files_audio_and_unknown_codings_are_not_read() -> None:
    assert readability(b"audio/mpeg", None) is Readability.BINARY
    assert readability(b"application/json", b"br") is Readability.ENCODED
    assert readability(b"text/event-stream; charset=utf-8", b"gzip") is Readability.READABLE
    assert readability(None, None) is Readability.READABLE


def test_a_streams_output_is_counted_in_events_and_a_json_answers_in_bytes() -> None:
    events = b"".join(b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n' for _ in range(12))
    stream = fed(AnswerMeter(CHAT, b"text/event-stream", None), events).reading()
    body = fed(AnswerMeter(UNKNOWN, b"application/json", None), b"x" * 400).reading()

    assert stream.output_tokens == 12
    assert body.output_tokens == 100
    assert stream.usage is None and stream.model is None


def test_the_model_is_read_from_the_answers_envelope_only() -> None:
    late = b'{"choices": [' + b" " * 5000 + b'], "model": "from-the-text"}'

    assert fed(AnswerMeter(CHAT, b"application/json", None), late).reading().model is None


def test_a_prompt_estimate_leaves_base64_payloads_out() -> None:
    text = json.dumps({"messages": [{"role": "user", "content": "x" * 400}]}).encode()
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}}
    with_image = json.dumps({"messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 400}, image]}]})

    assert prompt_tokens(text) == len(text) // 4
    assert prompt_tokens(with_image.encode()) < len(text) // 4 + 40
    assert prompt_tokens(None) == 0
