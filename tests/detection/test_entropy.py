"""The high-entropy detector: unknown secrets are reported, harmless randomness is not."""

from __future__ import annotations

import base64
import hashlib
import random
import string
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vallum.config import Config
from vallum.detection import entropy
from vallum.detection.entropy import harmless_reason, high_entropy_tokens, is_wordlike
from vallum.detection.matcher import hyperscan_available
from vallum.detection.pipeline import Inspector
from vallum.detection.rules import builtin_rules

_OTHERS = sorted({r.id.split(".")[0] + ".*" for r in builtin_rules()
                  if not r.source.startswith("rules/credentials/")} - {"dlp.*", "pii.*"})
ALNUM = string.ascii_letters + string.digits


def _insp(mode: str = "balanced", **ent) -> Inspector:
    return Inspector(Config.model_validate({"mode": mode, "detection": {"disable": _OTHERS, "entropy": ent}}))


@pytest.fixture(scope="module")
def insp() -> Inspector:
    return _insp()


def entropy_hits(insp: Inspector, text: str) -> list:
    return [f for f in insp.inspect_text(text, direction="outbound") if f.category == "entropy"]


R = random.Random(5)
UNKNOWN = "".join(R.choice(ALNUM) for _ in range(40))  # a secret in no known format


@pytest.mark.parametrize("text", [
    f"ACME_INTERNAL_CREDENTIAL {UNKNOWN}",
    f"https://partner.example.com/callback?sig={UNKNOWN}&user=42",
    f'{{"session": "{UNKNOWN}"}}',
    f"X-Acme-Auth: {UNKNOWN}",
])
def test_unknown_secret_is_reported(insp, text):
    hits = entropy_hits(insp, text)
    assert len(hits) == 1
    f = hits[0]
    assert f.rule == "entropy.high_entropy_string" and str(f.action) == "warn"
    assert f.evidence.endswith("[redacted]") and UNKNOWN not in f.evidence
    assert f.extra and f.extra["length"] == 40 and f.extra["entropy"] >= 4.2


def test_strict_mode_blocks_and_audit_warns():
    assert str(entropy_hits(_insp("strict"), f"v {UNKNOWN}")[0].action) == "block"
    assert str(entropy_hits(_insp("audit"), f"v {UNKNOWN}")[0].action) == "warn"


def test_disabled_and_thresholds():
    assert entropy_hits(_insp(enabled=False), f"v {UNKNOWN}") == []
    assert entropy_hits(_insp(min_length=48), f"v {UNKNOWN}") == []
    assert entropy_hits(_insp(threshold=5.5), f"v {UNKNOWN}") == []


def test_known_credential_is_not_also_reported_as_entropy(insp):
    key = "sk_live_" + "".join(R.choice(ALNUM) for _ in range(40))
    findings = insp.inspect_text(f"STRIPE_KEY={key}", direction="outbound")
    assert {f.rule for f in findings} == {"dlp.stripe_secret_key"}
    generic = "".join(R.choice(ALNUM) for _ in range(36))
    findings = insp.inspect_text(f"api_key = '{generic}'", direction="outbound")
    assert {f.rule for f in findings} == {"dlp.generic_api_key"}


def _png_data_uri() -> str:
    return "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + R.randbytes(300)).decode()


HARMLESS = [
    f"request {uuid.UUID(int=R.getrandbits(128))} done",
    f"commit {hashlib.sha1(b'x').hexdigest()} and tree {hashlib.sha256(b'y').hexdigest()}",
    f"md5 {hashlib.md5(b'z').hexdigest()} sha512 {hashlib.sha512(b'z').hexdigest()}",
    f'<link integrity="sha512-{base64.b64encode(hashlib.sha512(b"a").digest()).decode()}">',
    f"pkg/__init__.py,sha256={base64.urlsafe_b64encode(hashlib.sha256(b'b').digest()).decode().rstrip('=')},1024",
    f"image@sha256:{hashlib.sha256(b'c').hexdigest()}",
    f'<img src="{_png_data_uri()}">',
    "src: url(data:font/woff2;base64,d09GMgABAAAAA" + base64.b64encode(R.randbytes(200)).decode() + ")",
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJ" + base64.b64encode(R.randbytes(90)).decode(),
    "const onUserAuthenticationStateChangedHandler=useCallback(function(){return getCurrentUserProfileSettings()})",
    "/home/runner/work/acme-platform/acme-platform/node_modules/@babel/runtime/helpers/interopRequireDefault.js",
    "https://github.com/acme/platform/blob/main/services/authentication/token_refresh_worker.py#L120",
    "2026-11-22T04:41:45.123456+00:00 2026-11-22",
    "order 12345678901234567890123 reference",
    "0x742d35Cc6634C0532925a3b844Bc454e4438f44e",
    "objectid 507f1f77bcf86cd799439011",
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC" + base64.b64encode(R.randbytes(200)).decode() + " me@host",
    "The quick brown fox jumps over the lazy dog, again and again, for the fortieth time today.",
]


@pytest.mark.parametrize("text", HARMLESS)
def test_harmless_randomness_is_not_reported(insp, text):
    assert entropy_hits(insp, text) == []


def test_multiline_base64_image_is_skipped():
    body = base64.encodebytes(b"\x89PNG\r\n\x1a\n" + R.randbytes(600)).decode()
    assert high_entropy_tokens(body) == []


def test_certificate_body_skipped_private_key_body_is_not():
    der = base64.encodebytes(R.randbytes(300)).decode()
    assert high_entropy_tokens(f"-----BEGIN CERTIFICATE-----\n{der}-----END CERTIFICATE-----") == []
    assert high_entropy_tokens(f"-----BEGIN ACME SECRET-----\n{der}-----END ACME SECRET-----") != []


def test_private_key_block_reported_once_by_its_rule(insp):
    body = base64.encodebytes(R.randbytes(400)).decode()
    findings = insp.inspect_text(f"-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----", direction="outbound")
    assert [f.rule for f in findings] == ["dlp.private_key_pem"]


@pytest.mark.parametrize("token,reason", [
    ("6f1c2a9e-3b7d-4e58-9a2c-1d4f6b8e0c3a", "UUID"),
    ("da39a3ee5e6b4b0d3255bfef95601890afd80709", "hex digest or id"),
    ("sha384-oqVuAfXRKap7fdgcCY5uykM6+R9GqQ8K/uxy9rx7HNQlGYl1kPzQho1wx4JwY8wC", "SRI hash"),
    ("getElementByIdentifierAndRender", "identifier"),
    ("20261122043210123456", "number"),
])
def test_harmless_reasons(token, reason):
    assert harmless_reason(token) == reason


def test_labelled_hash_uses_previous_piece():
    assert harmless_reason("AVx3bZ9Tq2QwqfEx8a0aW4kQv1B0dO3k4c5lqA2mFqQ", "sha256=") == "labelled hash"
    assert harmless_reason("AVx3bZ9Tq2QwqfEx8a0aW4kQv1B0dO3k4c5lqA2mFqQ", "token=") is None


@given(st.text(alphabet=ALNUM, min_size=24, max_size=64))
@settings(max_examples=200, deadline=None)
def test_random_tokens_never_wordlike_when_entropy_high(tok):
    # the identifier filter must not swallow random strings that are dense in digits and case changes
    if sum(c.isdigit() for c in tok) >= 4 and sum(c.isupper() for c in tok) >= 4 and sum(c.islower() for c in tok) >= 4:
        parts = [p for p in __import__("re").findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+", tok) if p.isalpha()]
        if sum(len(p) for p in parts) / max(1, len(parts)) < 3.5:
            assert not is_wordlike(tok)


@given(st.text(max_size=300))
@settings(max_examples=200, deadline=None)
def test_detector_is_total(text):
    for tok, h in high_entropy_tokens(text):
        assert len(tok) >= 20 and h > 0


def test_gate_agrees_with_split_path(monkeypatch):
    texts = [f"a {UNKNOWN} b", "short words only here", "x" * 50, "ab/cd/" * 10, HARMLESS[0]]
    with_gate = [high_entropy_tokens(t) for t in texts]
    monkeypatch.setattr(entropy, "_hs", None)
    assert [high_entropy_tokens(t) for t in texts] == with_gate


@pytest.mark.skipif(not hyperscan_available(), reason="hyperscan is not installed here")
def test_engines_agree():
    cfg = Config.model_validate({"detection": {"disable": _OTHERS}})
    hs, rx = Inspector(cfg, engine="hyperscan"), Inspector(cfg, engine="re")
    text = "\n".join([f"v {UNKNOWN}", *HARMLESS])
    assert [f.to_dict() for f in hs.inspect_text(text)] == [f.to_dict() for f in rx.inspect_text(text)]


def test_clean_text_is_cheap():
    import time

    prose = ("The deployment finished without errors and the team moved on to the next ticket. " * 130)[:10240]
    high_entropy_tokens(prose)
    t = time.perf_counter()
    for _ in range(50):
        assert high_entropy_tokens(prose) == []
    per_call = (time.perf_counter() - t) / 50
    assert per_call < 0.002  # generous bound for a shared, loaded machine; typical is microseconds
