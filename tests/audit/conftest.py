"""Fixtures of the audit tests (helpers live in auditkit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    return tmp_path / "audit"
