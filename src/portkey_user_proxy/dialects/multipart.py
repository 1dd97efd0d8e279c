"""A field of a `multipart/form-data` body, read from its first bytes as they stream through.

Audio transcriptions and image edits send their `model` as a form field beside the file; the body
is never held, so the field is looked for in the first bytes that pass (clients write it before the
file, or it is not found and the answer is priced by its own model alone).
"""

from __future__ import annotations

HEAD_BYTES = 64 * 1024  # how far into a form the field is looked for
_VALUE_LIMIT = 256


def is_form(content_type: bytes) -> bool:
    return content_type.split(b";", 1)[0].strip().lower() == b"multipart/form-data"


def form_field(head: bytes, name: bytes) -> str | None:
    """The value of the form field `name`, when `head` holds it whole; None otherwise."""
    marker = b'name="' + name + b'"'
    start = head.find(marker)
    while start > 0 and head[start - 1 : start] not in (b" ", b";"):  # not `filename="model"`
        start = head.find(marker, start + 1)
    if start <= 0:
        return None
    value_start = head.find(b"\r\n\r\n", start)
    if value_start == -1:
        return None
    value_start += 4
    end = head.find(b"\r\n", value_start, value_start + _VALUE_LIMIT + 2)
    if end == -1:
        return None
    try:
        return head[value_start:end].decode("utf-8").strip() or None
    except UnicodeDecodeError:
        return None
