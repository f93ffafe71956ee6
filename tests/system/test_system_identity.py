"""Identity on the data path: Proxy-Authorization, trusted X-Vallum-Principal, per-agent listeners."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from system_support import StackThread, make_config, proxy_client, upstream, wait_until

from vallum.config import Config
from vallum.runtime.identity import (
    IdentityResolver,
    check_secret,
    hash_secret,
    parse_principal_header,
)


def test_hashes_round_trip_and_reject() -> None:
    for method in ("scrypt", "sha256"):
        h = hash_secret("s3cret-pass", method=method)
        assert "s3cret" not in h
        assert check_secret("s3cret-pass", h)
        assert not check_secret("s3cret-pasS", h)
    assert not check_secret("x", "plain:x")


def test_principal_header_forms() -> None:
    p = parse_principal_header("user=alice; agent=agent:x; session=s1; role=admin")
    assert (p.user, p.agent, p.session, p.source) == ("alice", "agent:x", "s1", "header")
    assert parse_principal_header("bob").user == "bob"
    assert parse_principal_header("role=admin") is None
    assert parse_principal_header("  ") is None


def test_untrusted_header_is_ignored_and_bad_credentials_fail() -> None:
    cfg = Config.model_validate({"identity": {"trusted_header_cidrs": ["10.0.0.0/8"], "credentials": [
        {"name": "ci", "secret_hash": hash_secret("pw", method="sha256"), "agent": "agent:ci"}]}})
    resolve = IdentityResolver(cfg.identity).resolver()
    assert resolve("127.0.0.1", [(b"X-Vallum-Principal", b"user=root")]).user is None
    assert resolve("10.1.2.3", [(b"X-Vallum-Principal", b"user=root")]).user == "root"
    basic = base64.b64encode(b"ci:wrong")
    assert resolve("10.1.2.3", [(b"Proxy-Authorization", b"Basic " + basic)]).source == "proxy_auth_failed"
    ok = resolve("127.0.0.1", [(b"Proxy-Authorization", b"Basic " + base64.b64encode(b"ci:pw"))])
    assert (ok.user, ok.agent, ok.source) == ("ci", "agent:ci", "proxy_auth")


def test_identity_config_is_strict() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Config.model_validate({"identity": {"credentials": [{"name": "a", "secret_hash": "plaintext"}]}})
    with pytest.raises(ValidationError):
        Config.model_validate({"identity": {"trusted_header_cidrs": ["not-a-cidr"]}})
    with pytest.raises(ValidationError):
        Config.model_validate({"identity": {"listeners": [{"listen": "127.0.0.1:0"}]}})


def test_identity_methods_on_a_running_stack(tmp_path: Path) -> None:
    with upstream() as up:
        cfg = make_config(tmp_path / "d", up, identity={
            "require_auth": True,
            "trusted_header_cidrs": ["127.0.0.1/32"],
            "credentials": [{"name": "alice", "secret_hash": hash_secret("alice-pw"), "agent": "agent:mail"},
                            {"name": "bot", "secret_hash": hash_secret("tok-123", method="sha256")}],
            "listeners": [{"listen": "127.0.0.1:0", "agent": "agent:ci"}]})
        with StackThread(cfg) as st:
            target = f"http://127.0.0.1:{up}/who"
            with proxy_client(st.proxy) as c:
                r = c.get(target)
                assert r.status_code == 407 and r.json()["rule"] == "identity.proxy_auth"
                r = c.get(target, headers={"proxy-authorization": "Basic " + base64.b64encode(b"alice:nope").decode()})
                assert r.status_code == 407
            with proxy_client(f"alice:alice-pw@{st.proxy}") as c:
                r = c.get(target)
                assert r.status_code == 200
            with proxy_client(st.proxy, headers={"proxy-authorization": "Bearer tok-123",
                                                 "x-vallum-principal": "user=spoofed"}) as c:
                r = c.get(target)
                assert r.status_code == 200
                # the header is stripped before forwarding, and credentials win over it
                assert r.json()["principal_header"] is None
            with proxy_client(st.proxy, headers={"x-vallum-principal": "user=carol; session=s9"}) as c:
                r = c.get(target)
                assert r.status_code == 200 and r.json()["principal_header"] is None
            with proxy_client(st.stack.listen["listener:agent:ci"]) as c:
                assert c.get(target).status_code == 200
            recs = wait_until(lambda: [r for r in st.services.recent.records if r.direction == "request"]
                              if len(st.services.recent.records) >= 10 else None)
            who = {(r.principal.user, r.principal.agent, r.principal.source) for r in recs}
            assert ("alice", "agent:mail", "proxy_auth") in who
            assert ("bot", None, "proxy_auth") in who
            assert ("carol", None, "header") in who
            assert (None, "agent:ci", "listener") in who
            assert (None, None, "proxy_auth_missing") in who


def test_identity_hash_command() -> None:
    import subprocess
    import sys

    for method in ("sha256", "scrypt"):
        r = subprocess.run([sys.executable, "-m", "vallum", "identity", "hash", "--stdin", "--method", method],
                           input="agent-pw\n", capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        h = r.stdout.strip()
        assert h.startswith(f"{method}:") and check_secret("agent-pw", h) and not check_secret("agent-p", h)
    r = subprocess.run([sys.executable, "-m", "vallum", "identity", "hash", "--stdin"], input="\n",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "empty secret" in r.stderr
