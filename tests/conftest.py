"""Shared fixtures. Tests never open connections outside loopback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# CI and developer machines are small and shared: wall-clock limits in property tests only produce
# flakes. Tests that need more or fewer examples say so themselves.
settings.register_profile("vallum", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("vallum")

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output"


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT


@pytest.fixture
def tmp_data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "vallum-data"
    d.mkdir()
    return d


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("VALLUM_TESTING", "1")
    # The optional semantic classifier (ml extra) is exercised by its own tests, which re-enable it;
    # elsewhere pattern behaviour is under test and must not depend on whether the extra is installed.
    os.environ.setdefault("VALLUM_DISABLE_SEMANTIC", "1")
