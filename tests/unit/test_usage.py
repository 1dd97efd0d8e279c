from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portkey_user_proxy.dialects.usage import Usage, UsageScanner, tokens


def scanned(*chunks: bytes, merges: bool = False) -> UsageScanner:
    scanner = UsageScanner(merges=merges)
    for chunk in chunks:
        scanner.feed(chunk)
    return scanner


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


CHAT_STREAM = (
    b'data: {"choices":[{"delta":{"content":"the \\"usage\\": {\\"total_tokens\\": 999}"}}],"usage":null}\n\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6,'
    b'"prompt_tokens_details":{"cached_tokens":0}}}\n\n'
    b"data: [DONE]\n\n"
)
ANTHROPIC_STREAM = (
    b"event: message_start\n"
    b'data: {"type":"message_start","message":{"usage":{"input_tokens":25,"output_tokens":1}}}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":5}}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":15}}\n\n'
)


def test_the_usage_object_of_a_stream_is_read_and_text_that_looks_like_one_is_not() -> None:
    scanner = scanned(CHAT_STREAM)

    assert scanner.found
    assert scanner.reported == {
        "prompt_tokens": 5,
        "completion_tokens": 1,
        "total_tokens": 6,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def test_usage_in_parts_is_merged_field_by_field() -> None:
    assert scanned(ANTHROPIC_STREAM, merges=True).reported == {"input_tokens": 25, "output_tokens": 15}


def test_otherwise_the_last_usage_object_is_the_answers() -> None:
    # A Responses answer echoes the request's tools, whose schemas may name a property `usage`, before its own.
    echoed = b'{"tools": [{"parameters": {"usage": {"prompt_tokens": 0}}}], "usage": {"input_tokens": 9}}'

    assert scanned(echoed).reported == {"input_tokens": 9}


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 8, 13, 64])
@pytest.mark.parametrize("stream", [CHAT_STREAM, ANTHROPIC_STREAM])
def test_any_chunking_reads_the_same_usage(stream: bytes, size: int) -> None:
    assert scanned(*pieces(stream, size), merges=True).reported == scanned(stream, merges=True).reported


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_cutting_a_stream_anywhere_reads_the_same_usage(data: st.DataObject) -> None:
    stream = data.draw(st.sampled_from([CHAT_STREAM, ANTHROPIC_STREAM]))
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=12)))
    chunks = [stream[start:end] for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True)]

    assert scanned(*chunks).reported == scanned(stream).reported


@pytest.mark.parametrize(
    "body",
    [
        b'{"usage": null}',
        b'{"usage": "many"}',
        b'{"metadata": {"usage": "x"}}',
        b'["usage", {"total_tokens": 3}]',
        b'{"text": "\\"usage\\": {\\"total_tokens\\": 3}"}',
        b'{"usage": {"total_tokens": 3',  # cut off: never complete
        b"",
    ],
)
def test_no_usage_object_reports_nothing(body: bytes) -> None:
    scanner = scanned(body)

    assert not scanner.found
    assert scanner.reported == {}


def test_a_json_response_reports_its_top_level_usage_whatever_comes_after_it() -> None:
    body = json.dumps(
        {"output": [{"text": "x" * 100_000}], "usage": {"input_tokens": 3, "output_tokens": 4}, "user": "u"}
    ).encode()

    assert scanned(*pieces(body, 4096)).reported == {"input_tokens": 3, "output_tokens": 4}


def test_a_usage_key_without_an_end_keeps_a_bounded_tail() -> None:
    scanner = UsageScanner()
    scanner.feed(b'{"usage": {"total_tokens": ' + b"1" * 100)
    for _ in range(100):
        scanner.feed(b"9" * 10_000)

    assert len(scanner._pending) <= 10_000
    assert not scanner.found


@pytest.mark.parametrize(
    ("reported", "names", "expected"),
    [
        ({"a": 3, "b": 4}, ("a", "b"), 7),
        ({"a": 3}, ("a", "b"), 3),
        ({}, ("a",), None),
        ({"a": 0}, ("a",), 0),  # nothing spent is a count, not an unknown
        ({"a": 2**40 - 1, "b": 2**40}, ("a", "b"), 2**40 - 1),
        ({"a": True, "b": -1, "c": 1.5, "d": "7", "e": 2**60}, ("a", "b", "c", "d", "e"), None),
    ],
)
def test_tokens_sums_only_valid_counts(reported: dict[str, object], names: tuple[str, ...], expected: int) -> None:
    assert tokens(reported, *names) == expected


def test_usage_counts_only_what_is_known() -> None:
    assert list(Usage(5, None, 6).counts()) == [("prompt", 5), ("total", 6)]


def test_cache_reads_and_writes_are_counted_inside_the_prompt_never_as_kinds_of_their_own() -> None:
    # The `kind` label keeps its three values: cache tokens are priced apart, counted as prompt.
    usage = Usage(1105, 7, 1112, cached_prompt=1000, cache_write=100)

    assert list(usage.counts()) == [("prompt", 1105), ("completion", 7), ("total", 1112)]


def test_a_usage_object_longer_than_a_kilobyte_is_read_whole() -> None:
    # Providers add detail objects to usage; a few kilobytes of them are still one usage object.
    details = {f"modality_{n}": n for n in range(150)}
    usage = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12, "prompt_tokens_details": details}
    body = json.dumps({"usage": usage, "choices": [{"message": {"content": "x" * 5000}}]}).encode()

    assert 1024 < len(json.dumps(usage)) < 4096
    assert scanned(body).reported == usage


@pytest.mark.parametrize("offset", [0, 1])
def test_usage_followed_by_text_in_any_language_is_read(offset: int) -> None:
    # The window decoded after `"usage":` may end inside a character of the model's answer that follows.
    usage = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
    answer = "a" * offset + "é" * 3000
    body = json.dumps({"usage": usage, "choices": [{"message": {"content": answer}}]}, ensure_ascii=False).encode()

    assert scanned(body).reported == usage


def test_spaces_after_a_usage_key_never_grow_the_tail_kept() -> None:
    # A hostile or broken upstream can pad without end: what is kept between chunks stays bounded.
    scanner = UsageScanner()
    scanner.feed(b'{"usage":')
    for _ in range(100):
        scanner.feed(b" " * 10_000)

    assert len(scanner._pending) <= 10_000
    assert not scanner.found


def test_usage_far_into_a_chunk_and_cut_by_its_end_is_read() -> None:
    usage = b'{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}'
    event = b'data: {"choices":[{"delta":{"content":"' + b"x" * 3000 + b'"}}],"usage":' + usage + b"}\n\n"
    cut = event.index(b"completion_tokens")

    assert scanned(event[:cut], event[cut:]).reported == json.loads(usage)


def test_an_answer_ending_in_a_quoted_usage_hides_no_usage_after_it() -> None:
    # `"usage` at the end of the model's text is followed by the string's closing quote: text, not the key.
    body = (
        b'{"choices":[{"message":{"content":"the field is \\"usage"}}],'
        b'"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}'
    )

    assert scanned(body).reported == {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
