"""Fixtures for the console tests (helpers live in console_harness)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from console_harness import ConsoleEnv, make_env
from starlette.testclient import TestClient


@pytest.fixture
def env(tmp_data_dir: Path) -> Iterator[ConsoleEnv]:
    e = make_env(tmp_data_dir)
    yield e
    e.store.engine.dispose()


@pytest.fixture
def client(env: ConsoleEnv) -> Iterator[TestClient]:
    with TestClient(env.app) as c:
        yield c


