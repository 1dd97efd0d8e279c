"""The shared fixtures folder: documents shaped like LibreChat's and like provider requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bson import json_util

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def load_fixture(name: str) -> Any:
    return json_util.loads((FIXTURES / name).read_text())
