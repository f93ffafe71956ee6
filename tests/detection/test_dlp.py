"""Credential and PII detection (DLP) end to end through the inspector: realistic contexts, hard
negatives, redaction, secrets split across fields, and a planted/benign corpus."""

from __future__ import annotations

import base64
import json
import random
import string
import zlib

import pytest
from mnemonic import Mnemonic

from vallum.config import Config
from vallum.detection.matcher import hyperscan_available
from vallum.detection.pipeline import Inspector
from vallum.detection.rules import builtin_rules

ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
DLP_RULES = [r for r in builtin_rules() if r.source.startswith("rules/credentials/")]
_OTHERS = sorted({r.id.split(".")[0] + ".*" for r in builtin_rules() if r not in DLP_RULES} - {"dlp.*", "pii.*"})


def _config(**detection) -> Config:
    return Config.model_validate({"detection": {"disable": _OTHERS, **detection}})


@pytest.fixture(scope="module")
def insp() -> Inspector:
    return Inspector(_config())


def rules_of(insp: Inspector, text: str, direction: str | None = "outbound") -> set[str]:
    return {f.rule for f in insp.inspect_text(text, direction=direction)}


# ----------------------------------------------------------------- synthetic value generators
R = random.Random(20261122)


def rnd(n: int, alphabet: str = ALNUM) -> str:
    return "".join(R.choice(alphabet) for _ in range(n))


def b62(n: int) -> str:
    s = ""
    while n:
        n, r = divmod(n, 62)
        s = B62[r] + s
    return s.rjust(6, "0")


def gh(prefix: str) -> str:
    body = rnd(30)
    return prefix + body + b62(zlib.crc32(body.encode()))


def luhn_complete(payload: str) -> str:
    for d in "0123456789":
        digits = [int(c) for c in payload + d]
        if sum(x if i % 2 == 0 else (x * 2 - 9 if x * 2 > 9 else x * 2) for i, x in enumerate(reversed(digits))) % 10 == 0:
            return payload + d
    raise AssertionError


def iban(country: str, bban: str) -> str:
    num = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    return f"{country}{98 - num % 97:02d}{bban}"


_BECH = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def age_key() -> str:
    gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]
    hrp, data = "age-secret-key-", [R.randrange(32) for _ in range(52)]
    chk = 1
    for val in [ord(x) >> 5 for x in hrp] + [0] + [ord(x) & 31 for x in hrp] + data + [0] * 6:
        b = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ val
        for i in range(5):
            chk ^= gen[i] if ((b >> i) & 1) else 0
    pm = chk ^ 1
    return (hrp + "1" + "".join(_BECH[d] for d in data) + "".join(_BECH[(pm >> 5 * (5 - i)) & 31] for i in range(6))).upper()


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def jwt() -> str:
    return f"{b64u(json.dumps({'alg': 'ES256', 'typ': 'JWT'}).encode())}.{b64u(json.dumps({'sub': rnd(8), 'exp': 1900000000}).encode())}.{b64u(R.randbytes(64))}"


def discord() -> str:
    return base64.b64encode(str(R.randrange(10**17, 10**19)).encode()).decode().rstrip("=") + "." + rnd(6) + "." + rnd(38)


# (rule id, make the secret, how it appears): every family, fresh values each time
GENERATORS: list[tuple[str, object]] = [
    ("dlp.github_token", lambda: gh("ghp_")),
    ("dlp.github_oauth_token", lambda: gh("gho_")),
    ("dlp.github_app_token", lambda: gh("ghs_")),
    ("dlp.github_refresh_token", lambda: gh("ghr_")),
    ("dlp.github_fine_grained_pat", lambda: f"github_pat_{rnd(22)}_{rnd(59)}"),
    ("dlp.gitlab_pat", lambda: "glpat-" + rnd(20)),
    ("dlp.gitlab_token", lambda: "glrt-" + rnd(24)),
    ("dlp.bitbucket_app_password", lambda: "ATBB" + rnd(32)),
    ("dlp.aws_access_key_id", lambda: "AKIA" + rnd(16, string.ascii_uppercase + "234567")),
    ("dlp.aws_session_token", lambda: "IQoJb3JpZ2luX2Vj" + rnd(200, ALNUM + "+/")),
    ("dlp.google_api_key", lambda: "AIza" + rnd(35, ALNUM + "-_")),
    ("dlp.gcp_oauth_client_secret", lambda: "GOCSPX-" + rnd(28)),
    ("dlp.google_oauth_access_token", lambda: "ya29.a0" + rnd(100)),
    ("dlp.azure_ad_client_secret", lambda: rnd(3) + "8Q~" + rnd(31)),
    ("dlp.alibaba_access_key_id", lambda: "LTAI5t" + rnd(18)),
    ("dlp.openai_api_key", lambda: f"sk-proj-{rnd(60)}T3BlbkFJ{rnd(60)}"),
    ("dlp.anthropic_api_key", lambda: f"sk-ant-api03-{rnd(93, ALNUM + '-_')}AA"),
    ("dlp.huggingface_token", lambda: "hf_" + rnd(34, string.ascii_letters)),
    ("dlp.groq_api_key", lambda: "gsk_" + rnd(52)),
    ("dlp.replicate_api_token", lambda: "r8_" + rnd(37)),
    ("dlp.xai_api_key", lambda: "xai-" + rnd(80)),
    ("dlp.perplexity_api_key", lambda: "pplx-" + rnd(48)),
    ("dlp.deepseek_api_key", lambda: "sk-" + rnd(32, HEX)),
    ("dlp.openrouter_api_key", lambda: "sk-or-v1-" + rnd(64, HEX)),
    ("dlp.langsmith_api_key", lambda: f"lsv2_pt_{rnd(32, HEX)}_{rnd(10, HEX)}"),
    ("dlp.stripe_secret_key", lambda: "sk_live_" + rnd(99)),
    ("dlp.stripe_restricted_key", lambda: "rk_live_" + rnd(99)),
    ("dlp.stripe_test_key", lambda: "sk_test_" + rnd(99)),
    ("dlp.stripe_webhook_secret", lambda: "whsec_" + rnd(32)),
    ("dlp.square_access_token", lambda: "EAAA" + rnd(60)),
    ("dlp.square_oauth_secret", lambda: "sq0csp-" + rnd(43)),
    ("dlp.braintree_access_token", lambda: f"access_token$production${rnd(16, HEX)}${rnd(32, HEX)}"),
    ("dlp.slack_bot_token", lambda: f"xoxb-{rnd(12, string.digits)}-{rnd(13, string.digits)}-{rnd(24)}"),
    ("dlp.slack_user_token", lambda: f"xoxp-{rnd(12, string.digits)}-{rnd(12, string.digits)}-{rnd(13, string.digits)}-{rnd(32, HEX)}"),
    ("dlp.slack_app_token", lambda: f"xapp-1-A{rnd(10, string.ascii_uppercase)}-{rnd(13, string.digits)}-{rnd(64, HEX)}"),
    ("dlp.slack_webhook_url", lambda: f"https://hooks.slack.com/services/T{rnd(10, string.ascii_uppercase)}/B{rnd(10, string.ascii_uppercase)}/{rnd(24)}"),
    ("dlp.discord_bot_token", discord),
    ("dlp.discord_webhook_url", lambda: f"https://discord.com/api/webhooks/{rnd(19, string.digits)}/{rnd(68)}"),
    ("dlp.telegram_bot_token", lambda: f"{R.randrange(10**8, 10**10)}:AA{rnd(33)}"),
    ("dlp.twilio_api_key", lambda: "SK" + rnd(32, HEX)),
    ("dlp.sendgrid_api_key", lambda: f"SG.{rnd(22)}.{rnd(43)}"),
    ("dlp.mailgun_api_key", lambda: "key-" + rnd(32, HEX)),
    ("dlp.mailchimp_api_key", lambda: rnd(32, HEX) + "-us14"),
    ("dlp.npm_token", lambda: gh("npm_")),
    ("dlp.pypi_token", lambda: "pypi-" + b64u(b"\x02\x01\x08pypi.org\x02\x25\x00" + R.randbytes(80))),
    ("dlp.rubygems_api_key", lambda: "rubygems_" + rnd(48, HEX)),
    ("dlp.nuget_api_key", lambda: "oy2" + rnd(43, string.ascii_lowercase + string.digits)),
    ("dlp.dockerhub_token", lambda: "dckr_pat_" + rnd(27)),
    ("dlp.artifactory_api_key", lambda: "AKCp" + rnd(69)),
    ("dlp.digitalocean_token", lambda: "dop_v1_" + rnd(64, HEX)),
    ("dlp.heroku_api_key", lambda: "HRKU-AA" + rnd(58)),
    ("dlp.flyio_token", lambda: "fo1_" + rnd(43)),
    ("dlp.supabase_token", lambda: "sbp_" + rnd(40, HEX)),
    ("dlp.sentry_token", lambda: "sntryu_" + rnd(64, HEX)),
    ("dlp.grafana_service_account_token", lambda: f"glsa_{rnd(32)}_{rnd(8, HEX)}"),
    ("dlp.grafana_cloud_token", lambda: "glc_" + rnd(100)),
    ("dlp.newrelic_api_key", lambda: "NRAK-" + rnd(27, string.ascii_uppercase + string.digits)),
    ("dlp.vault_token", lambda: "hvs.CAESI" + rnd(90)),
    ("dlp.terraform_cloud_token", lambda: f"{rnd(14)}.atlasv1.{rnd(67)}"),
    ("dlp.doppler_token", lambda: "dp.pt." + rnd(43)),
    ("dlp.databricks_token", lambda: "dapi" + rnd(32, HEX)),
    ("dlp.atlassian_api_token", lambda: "ATATT3xFfGF0" + rnd(180)),
    ("dlp.linear_api_key", lambda: "lin_api_" + rnd(40)),
    ("dlp.notion_token", lambda: "ntn_" + rnd(11, string.digits) + rnd(35)),
    ("dlp.shopify_token", lambda: "shpat_" + rnd(32, HEX)),
    ("dlp.postman_api_key", lambda: f"PMAK-{rnd(24, HEX)}-{rnd(34, HEX)}"),
    ("dlp.pulumi_access_token", lambda: "pul-" + rnd(40, HEX)),
    ("dlp.figma_pat", lambda: "figd_" + rnd(40)),
    ("dlp.age_secret_key", age_key),
    ("dlp.jwt", jwt),
    ("pii.payment_card", lambda: luhn_complete("4" + rnd(14, string.digits))),
    ("pii.iban", lambda: iban("DE", rnd(18, string.digits))),
    ("pii.crypto_seed_phrase", lambda: Mnemonic("english").to_mnemonic(R.randbytes(16))),
]

# contexts in which secrets travel: .env, JSON, YAML, shell, logs, Python, HTTP headers, markdown
CONTEXTS = [
    "SECRET_VALUE={s}",
    '{{"credentials": {{"value": "{s}"}}, "region": "eu-west-1"}}',
    "deploy:\n  value: {s}\n  region: eu-west-1",
    "curl -s https://api.example.com/v1/run -d 'value={s}'",
    "2026-11-22T03:12:44Z INFO worker started with value {s} (pid 4412)",
    'client = Client(value="{s}", timeout=30)',
    "Here is the value you asked for: `{s}`. Let me know if it works.",
]


def planted_corpus(seed: int = 7) -> list[tuple[str, str]]:
    R.seed(seed)
    lines = []
    for i, (rid, make) in enumerate(GENERATORS * 4):
        ctx = CONTEXTS[(i * 3 + i // len(GENERATORS)) % len(CONTEXTS)]
        lines.append((rid, ctx.format(s=make())))
    return lines


def test_at_least_sixty_credential_types():
    cred = [r for r in DLP_RULES if r.category == "credential"]
    assert len(cred) >= 60
    assert all(r.severity in ("high", "critical") and str(r.action) == "block" for r in cred)
    # every credential rule has a keyword gate except the Discord bot token (no literal in it)
    assert [r.id for r in cred if not r.keywords] == ["dlp.discord_bot_token"]


def test_planted_corpus_every_secret_found(insp):
    missed = []
    for rid, line in planted_corpus():
        if rid not in rules_of(insp, line):
            missed.append((rid, line[:120]))
    assert not missed, missed


def test_planted_corpus_covers_every_generator():
    assert len(planted_corpus()) == 4 * len(GENERATORS) >= 280


def test_benign_corpus_has_no_credential_findings(insp):
    lines = benign_corpus()
    assert len(lines) >= 300
    hits = []
    for line in lines:
        for f in insp.inspect_text(line, direction="outbound"):
            if f.category in ("credential", "pii"):
                hits.append((f.rule, line[:120]))
    assert not hits, hits


def benign_corpus() -> list[str]:
    from pathlib import Path

    text = (Path(__file__).parent / "corpus" / "dlp_benign.txt").read_text(encoding="utf-8")
    r = random.Random(99)
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    # harmless randomness, generated: UUIDs, digests, SRI hashes, git SHAs, image data
    import hashlib
    import uuid

    for i in range(60):
        data = r.randbytes(40)
        lines.append(f"request_id={uuid.UUID(bytes=r.randbytes(16), version=4)} status=200 latency_ms={r.randrange(900)}")
        lines.append(f"commit {hashlib.sha1(data).hexdigest()} Merge pull request #{r.randrange(9999)} from acme/fix-{i}")
        lines.append(f'<script src="/app.{hashlib.md5(data).hexdigest()[:8]}.js" integrity="sha384-{base64.b64encode(hashlib.sha384(data).digest()).decode()}" crossorigin="anonymous"></script>')
        lines.append(f"acme_lib/module_{i}.py,sha256={b64u(hashlib.sha256(data).digest())},{r.randrange(99999)}")
    return lines


# ----------------------------------------------------------------- contexts and hard negatives
@pytest.mark.parametrize("text,rule", [
    ("AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\nAWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "dlp.aws_secret_access_key"),
    ("AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE", "dlp.aws_access_key_id"),
    ("card 4242 4242 4242 4242", "pii.payment_card"),
])
def test_documented_example_values_are_reported(insp, text, rule):
    assert rule in rules_of(insp, text)


@pytest.mark.parametrize("text", [
    "Classic GitHub tokens start with ghp_ and are 40 characters; fine-grained ones start with github_pat_.",
    "Set OPENAI_API_KEY in your environment; keys look like sk-proj-… and must never be committed.",
    "AWS access key IDs begin with AKIA (long-term) or ASIA (temporary).",
    "api_key = os.environ['OPENAI_API_KEY']",
    "password = getpass.getpass('Password: ')",
    "DATABASE_URL=postgres://postgres:postgres@localhost:5432/postgres",
    "token = request.headers.get('Authorization')",
    "The quick brown fox jumps over the lazy dog.",
    "id: 123e4567-e89b-12d3-a456-426614174000",
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "git checkout 9fceb02d0ae598e95dc970b74767f19372d61af8",
    "phone +44 20 7946 0958, order 2026-11-22-0042",
    "stripe publishable key pk_live_51H8abcdefghijklmnopqrstuvwxyz0123456789",
])
def test_hard_negatives_have_no_credential_findings(insp, text):
    found = {f.rule for f in insp.inspect_text(text, direction="outbound") if f.category in ("credential", "pii")}
    assert not found, found


def test_evidence_is_redacted(insp):
    token = gh("ghp_")
    findings = insp.inspect_text(f"export GITHUB_TOKEN={token}", direction="outbound")
    f = next(f for f in findings if f.rule == "dlp.github_token")
    assert f.evidence.endswith("[redacted]") and token not in f.evidence and len(f.evidence) <= 16
    assert f.category == "credential" and f.severity == "critical" and str(f.action) == "block"
    for f in findings:
        assert token[4:] not in f.evidence


def test_generic_rule_defers_to_vendor_rule(insp):
    token = gh("ghp_")
    assert rules_of(insp, f"GITHUB_TOKEN={token}") == {"dlp.github_token"}
    assert rules_of(insp, f"ACME_TOKEN={rnd(32)}") == {"dlp.generic_api_key"}


def test_github_checksum_decides_rule_and_severity(insp):
    good = gh("ghp_")
    bad = good[:-1] + ("A" if good[-1] != "A" else "B")
    assert "dlp.github_token" in rules_of(insp, good) and "dlp.github_token_unverified" not in rules_of(insp, good)
    assert "dlp.github_token_unverified" in rules_of(insp, bad) and "dlp.github_token" not in rules_of(insp, bad)


def test_secret_split_across_json_fields(insp):
    token = gh("ghp_")
    fields = [("body.token_part1", token[:20]), ("body.token_part2", token[20:])]
    assert not any(f.rule == "dlp.github_token" for loc, v in fields for f in insp.inspect_text(v, direction="outbound"))
    found = insp.inspect_fields(fields)
    hit = [f for f in found if f.rule == "dlp.github_token"]
    assert hit and hit[0].location.startswith("joined(") and "body.token_part1" in hit[0].location


def test_aws_key_id_and_secret_in_two_fields(insp):
    key_id = "AKIA" + rnd(16, string.ascii_uppercase + "234567")
    secret = rnd(40, ALNUM + "/+")
    found = insp.inspect_fields([("body.access_key", key_id), ("body.secret", secret)])
    rules = {f.rule for f in found}
    assert "dlp.aws_access_key_id" in rules
    assert "dlp.aws_secret_near_key_id" in rules


def test_secret_split_across_query_parameters(insp):
    key = "sk_live_" + rnd(40)
    found = insp.inspect_fields([("url.query.a", key[:15]), ("url.query.b", key[15:])])
    assert "dlp.stripe_secret_key" in {f.rule for f in found}


@pytest.mark.parametrize("text", [
    '{"type": "service_account", "project_id": "acme", "private_key_id": "' + "ab" * 20 + '", "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\\n-----END PRIVATE KEY-----\\n"}',
])
def test_gcp_service_account_json(insp, text):
    rules = rules_of(insp, text)
    assert {"dlp.gcp_service_account_key", "dlp.private_key_pem"} <= rules


def test_config_can_disable_and_override(insp):
    token = gh("ghp_")
    cfg = _config(disable=[*_OTHERS, "dlp.github_token"], rules={"dlp.stripe_test_key": {"action": "warn"}})
    other = Inspector(cfg)
    assert "dlp.github_token" not in rules_of(other, token)
    f = [f for f in other.inspect_text("sk_test_" + rnd(30), direction="outbound") if f.rule == "dlp.stripe_test_key"]
    assert f and str(f[0].action) == "warn"


def test_audit_mode_warns_instead_of_blocking():
    insp = Inspector(Config.model_validate({"mode": "audit", "detection": {"disable": _OTHERS}}))
    v = insp.scan("key " + gh("ghp_"), "outbound")
    assert str(v.action) == "warn" and v.findings


@pytest.mark.skipif(not hyperscan_available(), reason="hyperscan is not installed here")
def test_engines_agree_on_planted_corpus():
    hs, rx = Inspector(_config(), engine="hyperscan"), Inspector(_config(), engine="re")
    text = "\n".join(line for _, line in planted_corpus(11)[:120])
    assert [f.to_dict() for f in hs.inspect_text(text)] == [f.to_dict() for f in rx.inspect_text(text)]


@pytest.mark.skipif(not hyperscan_available(), reason="hyperscan is not installed here")
def test_hyperscan_accepts_every_dlp_rule(insp):
    # every rule is prefiltered by Hyperscan, except those a gate decides for (they always reach it)
    sel = insp.raw._selector
    assert sel is not None
    assert [insp.raw.rules[i].id for i in sel.always if not insp.raw.rules[i].gate] == []
