"""INTERFACES §1 `vallum config check F`, §3 strict configuration (unknown keys named with their path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from acc_support import vallum_all, write_yaml

FULL = {
    "mode": "balanced",
    "data_dir": "./vallum-data",
    "proxy": {"listen": "127.0.0.1:8888"},
    "egress": {"allow_private": ["127.0.0.1:9000", "10.0.0.0/8"], "allowlist": ["*.example.com"],
               "blocklist": ["exfil-drop.org"], "rate_limit_per_minute": 60, "data_budget_per_minute": 0},
    "console": {"listen": "127.0.0.1:8080"},
    "store": {"url": "sqlite:///./vallum-data/vallum.db"},
}


def _check_all(tmp: Path, docs: list[Any]) -> list[Any]:
    paths = []
    for i, doc in enumerate(docs):
        f = tmp / f"c{i}.yaml"
        if isinstance(doc, str):
            f.write_text(doc)
        elif doc is not None:
            write_yaml(f, doc)
        paths.append(f)
    return vallum_all(*[(("config", "check", str(f)), {"cwd": tmp}) for f in paths])


def test_valid_configs(tmp_path: Path) -> None:
    docs = [FULL, {"mode": "strict"}, {"mode": "audit"}, "",
            {"store": {"url": "postgresql://vallum@127.0.0.1/test"}}]
    for doc, p in zip(docs, _check_all(tmp_path, docs), strict=True):
        assert p.returncode == 0, (doc, p.stdout, p.stderr)


UNKNOWN = [
    ({"mode": "balanced", "colour": "red"}, "colour", None),
    ({"egress": {"allow_private": [], "alow_list": ["x.com"]}}, "alow_list", "egress"),
    ({"proxy": {"listen": "127.0.0.1:8888", "backlog": 5}}, "backlog", "proxy"),
    ({"store": {"url": "sqlite:///x.db", "pool": 3}}, "pool", "store"),
]


def test_unknown_key_anywhere_is_an_error_naming_it_and_its_path(tmp_path: Path) -> None:
    results = _check_all(tmp_path, [d for d, _, _ in UNKNOWN])
    for (doc, key, parent), p in zip(UNKNOWN, results, strict=True):
        msg = (p.stdout + p.stderr).decode()
        assert p.returncode == 2, (doc, msg)
        assert key in msg, (doc, msg)
        if parent:
            assert parent in msg, (doc, msg)
        assert "Traceback" not in msg


def test_bad_values_and_unreadable_files_are_errors(tmp_path: Path) -> None:
    docs = [{"mode": "paranoid"}, {"egress": {"rate_limit_per_minute": "lots"}}, "mode: [unclosed\n", None]
    for doc, p in zip(docs, _check_all(tmp_path, docs), strict=True):
        assert p.returncode == 2, (doc, p.stdout, p.stderr)
        assert b"Traceback" not in p.stderr


def test_other_commands_refuse_an_invalid_config_with_2(tmp_path: Path) -> None:
    bad = write_yaml(tmp_path / "v.yaml", {"proxy": {"lissen": "x"}})
    cmds = [("scan", "--config", str(bad)), ("proxy", "--config", str(bad)),
            ("serve", "--config", str(bad)), ("keys", "create", "--config", str(bad))]
    for args, p in zip(cmds, vallum_all(*[(c, {"input": "hi", "cwd": tmp_path, "timeout": 30}) for c in cmds]),
                       strict=True):
        assert p.returncode == 2, (args, p.stderr)
        assert b"lissen" in p.stderr, args


def test_busy_listen_address_is_a_clear_error_2(tmp_path: Path) -> None:
    """`--listen H:P` on a port that is taken: exit 2 with a message, never a traceback."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        addr = f"127.0.0.1:{taken.getsockname()[1]}"
        cfg = write_yaml(tmp_path / "v.yaml", {"data_dir": str(tmp_path / "data")})
        cmds = [("proxy", "--listen", addr, "--config", str(cfg)),
                ("serve", "--listen", addr, "--config", str(cfg), "--store", f"sqlite:///{tmp_path / 's.db'}"),
                ("mcp", "serve", "--listen", addr, "--config", str(cfg), "--", "true")]
        for args, p in zip(cmds, vallum_all(*[(c, {"cwd": tmp_path, "timeout": 60}) for c in cmds]), strict=True):
            assert p.returncode == 2, (args, p.returncode, p.stderr[-1500:])
            assert b"Traceback" not in p.stderr, args
