"""Fixtures of the audit tests (helpers live in auditkit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    return tmp_path / "audit"


@pytest.fixture(autouse=True)
def _keep_sigterm_handler():
    """The factory installs a SIGTERM handler in the main thread; keep pytest's own."""
    import signal

    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)
