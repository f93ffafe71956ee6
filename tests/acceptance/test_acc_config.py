"""INTERFACES §1 `vallum config check F`, §3 strict configuration (unknown keys named with their path)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import vallum, write_yaml

FULL = {
    "mode": "balanced",
    "data_dir": "./vallum-data",
    "proxy": {"listen": "127.0.0.1:8888"},
    "egress": {"allow_private": ["127.0.0.1:9000", "10.0.0.0/8"], "allowlist": ["*.example.com"],
               "blocklist": ["exfil-drop.org"], "rate_limit_per_minute": 60, "data_budget_per_minute": 0},
    "console": {"listen": "127.0.0.1:8080"},
    "store": {"url": "sqlite:///./vallum-data/vallum.db"},
}


def test_every_documented_key_is_accepted(tmp_path: Path) -> None:
    p = vallum("config", "check", str(write_yaml(tmp_path / "v.yaml", FULL)), cwd=tmp_path)
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("mode", ["strict", "balanced", "audit"])
def test_modes(tmp_path: Path, mode: str) -> None:
    assert vallum("config", "check", str(write_yaml(tmp_path / "v.yaml", {"mode": mode}))).returncode == 0


def test_empty_file_and_postgres_url_are_valid(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert vallum("config", "check", str(empty)).returncode == 0
    pg = write_yaml(tmp_path / "pg.yaml", {"store": {"url": "postgresql://vallum@127.0.0.1/test"}})
    assert vallum("config", "check", str(pg)).returncode == 0


@pytest.mark.parametrize("data,needle", [
    ({"mode": "balanced", "colour": "red"}, "colour"),
    ({"egress": {"allow_private": [], "alow_list": ["x.com"]}}, "alow_list"),
    ({"proxy": {"listen": "127.0.0.1:8888", "backlog": 5}}, "backlog"),
    ({"console": {"lisen": "127.0.0.1:8080"}}, "lisen"),
    ({"store": {"url": "sqlite:///x.db", "pool": 3}}, "pool"),
])
def test_unknown_key_anywhere_is_an_error_naming_it(tmp_path: Path, data: dict, needle: str) -> None:  # type: ignore[type-arg]
    p = vallum("config", "check", str(write_yaml(tmp_path / "v.yaml", data)))
    assert p.returncode == 2
    msg = (p.stdout + p.stderr).decode()
    assert needle in msg
    assert "Traceback" not in msg


def test_unknown_key_error_names_its_path(tmp_path: Path) -> None:
    p = vallum("config", "check", str(write_yaml(tmp_path / "v.yaml", {"egress": {"ratelimit": 5}})))
    msg = (p.stdout + p.stderr).decode()
    assert p.returncode == 2 and "egress" in msg and "ratelimit" in msg


@pytest.mark.parametrize("data", [
    {"mode": "paranoid"},
    {"egress": {"rate_limit_per_minute": "lots"}},
    {"egress": {"allow_private": "127.0.0.1"}} if False else {"egress": {"allowlist": 5}},
])
def test_bad_values_are_errors(tmp_path: Path, data: dict) -> None:  # type: ignore[type-arg]
    p = vallum("config", "check", str(write_yaml(tmp_path / "v.yaml", data)))
    assert p.returncode == 2 and b"Traceback" not in p.stderr


def test_unreadable_or_not_yaml(tmp_path: Path) -> None:
    p = vallum("config", "check", str(tmp_path / "nope.yaml"))
    assert p.returncode == 2 and b"Traceback" not in p.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("mode: [unclosed\n")
    p = vallum("config", "check", str(bad))
    assert p.returncode == 2 and b"Traceback" not in p.stderr


def test_other_commands_refuse_an_invalid_config_with_2(tmp_path: Path) -> None:
    bad = write_yaml(tmp_path / "v.yaml", {"proxy": {"lissen": "x"}})
    for args in (["scan", "--config", str(bad)], ["proxy", "--config", str(bad)],
                 ["serve", "--config", str(bad)], ["keys", "create", "--config", str(bad)]):
        p = vallum(*args, input="hi", cwd=tmp_path, timeout=30)
        assert p.returncode == 2, (args, p.stderr)
        assert b"lissen" in p.stderr, args
