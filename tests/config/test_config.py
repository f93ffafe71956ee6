from __future__ import annotations

import subprocess
import sys

import pytest

from vallum.config import Config, ConfigError, load_config, parse_config


def test_defaults_match_interfaces():
    c = Config()
    assert c.mode == "balanced"
    assert c.proxy.listen == "127.0.0.1:8888"
    assert c.console.listen == "127.0.0.1:8080"
    assert c.egress.rate_limit_per_minute == 60
    assert c.egress.data_budget_per_minute == 0
    assert c.data_dir == "./vallum-data"


def test_unknown_key_names_key_and_path():
    with pytest.raises(ConfigError) as exc:
        parse_config({"egress": {"allowlst": ["a.com"]}})
    assert "allowlst" in str(exc.value) and "egress.allowlst" in str(exc.value)


def test_unknown_top_level_key():
    with pytest.raises(ConfigError, match="unknown key 'modee'"):
        parse_config({"modee": "strict"})


def test_bad_mode_rejected():
    with pytest.raises(ConfigError, match="mode"):
        parse_config({"mode": "paranoid"})


def test_all_interface_keys_accepted(tmp_path):
    p = tmp_path / "vallum.yaml"
    p.write_text(
        """
mode: strict
data_dir: ./d
proxy: {listen: 127.0.0.1:9999}
egress:
  allow_private: ["127.0.0.1:9000", "10.0.0.0/8"]
  allowlist: ["*.example.com"]
  blocklist: [evil.test]
  rate_limit_per_minute: 5
  data_budget_per_minute: 1000
console: {listen: 127.0.0.1:9090}
store: {url: "sqlite:///./d/v.db"}
"""
    )
    c = load_config(p)
    assert c.mode == "strict" and c.egress.allowlist == ["*.example.com"]
    assert c.store_url() == "sqlite:///./d/v.db"


def test_empty_file_is_defaults(tmp_path):
    p = tmp_path / "empty.yaml"
    p.write_text("")
    assert load_config(p) == Config()


def test_not_a_mapping(tmp_path):
    p = tmp_path / "list.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)


def test_config_check_cli(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("mode: audit\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("egress:\n  nope: 1\n")
    r = subprocess.run([sys.executable, "-m", "vallum.cli", "config", "check", str(good)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "vallum.cli", "config", "check", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "egress.nope" in r.stderr
