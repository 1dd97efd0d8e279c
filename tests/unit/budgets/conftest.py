"""What budgets' tests share beyond tests.support: the host's time zone, moved."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest


@pytest.fixture
def host_in_tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The host's local time zone, as a server outside UTC has it: there, it is already tomorrow from 15:00 UTC."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
