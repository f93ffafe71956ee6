"""Builds a held-out DLP evaluation set (JSON Lines) the way an external evaluator would.

Values are synthetic but structurally valid (checksums where the vendor has one). The set is
written once and kept; rules must not be tuned against the literal values.

    python tests/detection/corpus/dlp_heldout_build.py SEED OUT.jsonl
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import random
import string
import sys
import urllib.parse
import zlib

from mnemonic import Mnemonic

ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
UP = string.ascii_uppercase
DIG = string.digits
B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_BECH = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"

R = random.Random()


def rnd(n: int, alphabet: str = ALNUM) -> str:
    return "".join(R.choice(alphabet) for _ in range(n))


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def crc_b62(body: str) -> str:
    n, s = zlib.crc32(body.encode()), ""
    while n:
        n, r = divmod(n, 62)
        s = B62[r] + s
    return s.rjust(6, "0")


def gh(prefix: str) -> str:
    body = rnd(30)
    return prefix + body + crc_b62(body)


def luhn(payload: str) -> str:
    for d in DIG:
        ds = [int(c) for c in payload + d]
        tot = sum(x if i % 2 == 0 else (x * 2 - 9 if x > 4 else x * 2) for i, x in enumerate(reversed(ds)))
        if tot % 10 == 0:
            return payload + d
    raise AssertionError


def iban(country: str, bban: str) -> str:
    num = int("".join(str(int(c, 36)) for c in bban + country + "00"))
    return f"{country}{98 - num % 97:02d}{bban}"


def bech32_age() -> str:
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


def jwt(alg: str = "HS256") -> str:
    h = b64u(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    p = b64u(json.dumps({"sub": rnd(10, DIG), "name": "svc", "iat": 1763700000, "exp": 1893456000}).encode())
    return f"{h}.{p}.{b64u(R.randbytes(32 if alg == 'HS256' else 256))}"


def pem(kind: str = "RSA ") -> str:
    body = base64.b64encode(b"\x30\x82\x04\xa4\x02\x01\x00\x02\x82\x01\x01\x00" + R.randbytes(600)).decode()
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{lines}\n-----END {kind}PRIVATE KEY-----"


def openssh() -> str:
    body = base64.b64encode(b"openssh-key-v1\x00\x00\x00\x00\x04none" + R.randbytes(300)).decode()
    lines = "\n".join(body[i:i + 70] for i in range(0, len(body), 70))
    return f"-----BEGIN OPENSSH PRIVATE KEY-----\n{lines}\n-----END OPENSSH PRIVATE KEY-----"


def pgp() -> str:
    body = base64.b64encode(b"\x95\x03\xc6\x04" + R.randbytes(400)).decode()
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{lines}\n=Ab3x\n-----END PGP PRIVATE KEY BLOCK-----"


def discord() -> str:
    sid = str(R.randrange(10**17, 10**19))
    return b64u(sid.encode()) + "." + rnd(6, ALNUM + "-_") + "." + rnd(38, ALNUM + "-_")


def pypi() -> str:
    mac = b"\x02\x01\x08pypi.org\x02\x25\x00\x02\x01\x04" + rnd(36).encode() + R.randbytes(60)
    return "pypi-AgEIcHlwaS5vcmc" + b64u(mac)[20:]


def sentry_org() -> str:
    payload = json.dumps({"iat": 1763700000.1, "url": "https://sentry.io", "region_url": "https://us.sentry.io", "org": "acme"})
    return "sntrys_" + base64.b64encode(payload.encode()).decode().rstrip("=") + "_" + rnd(43, ALNUM + "/+")


def onepass() -> str:
    payload = json.dumps({"signInAddress": "my.1password.com", "userAuth": {"method": "SRPg-4096", "alg": "PBES2g-HS256", "iterations": 650000, "salt": rnd(22)}, "email": f"{rnd(12).lower()}@1passwordserviceaccounts.com", "srpX": rnd(64, HEX), "muk": {"alg": "A256GCM", "ext": True, "k": rnd(43), "key_ops": ["encrypt", "decrypt"], "kty": "oct", "kid": "mp"}, "secretKey": "A3-" + rnd(6, UP + DIG), "throttleSecret": {"seed": rnd(64, HEX), "deviceUuid": rnd(26, "abcdefghijklmnopqrstuvwxyz234567")}, "deviceUuid": rnd(26, "abcdefghijklmnopqrstuvwxyz234567")})
    return "ops_" + b64u(payload.encode())


def grafana_cloud() -> str:
    payload = json.dumps({"o": str(R.randrange(10**5, 10**7)), "n": "stack-" + rnd(6, DIG) + "-hm-read-token", "k": rnd(24), "m": {"r": "prod-eu-west-0"}})
    return "glc_" + base64.b64encode(payload.encode()).decode().rstrip("=")


def mnemonic(nbytes: int) -> str:
    return Mnemonic("english").to_mnemonic(R.randbytes(nbytes))


# --------------------------------------------------------------------------- credential types
# (family, type, make) — the vendors' documented formats
TYPES: list[tuple[str, str, object]] = [
    ("cloud", "aws_access_key_id", lambda: "AKIA" + rnd(16, UP + "234567")),
    ("cloud", "aws_secret_access_key", lambda: rnd(40, ALNUM + "/+")),
    ("cloud", "aws_session_token", lambda: "IQoJb3JpZ2luX2VjE" + rnd(300, ALNUM + "/+") + "=="),
    ("cloud", "gcp_service_account", lambda: rnd(40, HEX)),
    ("cloud", "google_api_key", lambda: "AIzaSy" + rnd(33, ALNUM + "-_")),
    ("cloud", "gcp_oauth_client_secret", lambda: "GOCSPX-" + rnd(28, ALNUM + "-_")),
    ("cloud", "google_oauth_access_token", lambda: "ya29.a0AfB_by" + rnd(150, ALNUM + "-_")),
    ("cloud", "azure_storage_key", lambda: base64.b64encode(R.randbytes(64)).decode()),
    ("cloud", "azure_sas", lambda: urllib.parse.quote(base64.b64encode(R.randbytes(32)).decode(), safe="")),
    ("cloud", "azure_client_secret", lambda: rnd(3, ALNUM) + R.choice(DIG) + "Q~" + rnd(34, ALNUM + "_~.-")),
    ("source_hosting", "github_pat_classic", lambda: gh("ghp_")),
    ("source_hosting", "github_oauth", lambda: gh("gho_")),
    ("source_hosting", "github_app_installation", lambda: gh("ghs_")),
    ("source_hosting", "github_user_to_server", lambda: gh("ghu_")),
    ("source_hosting", "github_fine_grained", lambda: f"github_pat_11{rnd(20, UP + DIG)}_{rnd(59)}"),
    ("source_hosting", "gitlab_pat", lambda: "glpat-" + rnd(20, ALNUM + "-_")),
    ("source_hosting", "gitlab_runner", lambda: "glrt-" + rnd(20, ALNUM + "-_")),
    ("source_hosting", "gitlab_deploy", lambda: "gldt-" + rnd(20, ALNUM + "-_")),
    ("source_hosting", "bitbucket_app_password", lambda: "ATBB" + rnd(24) + rnd(8, HEX.upper())),
    ("ai_providers", "openai_project", lambda: f"sk-proj-{rnd(74, ALNUM + '-_')}T3BlbkFJ{rnd(74, ALNUM + '-_')}"),
    ("ai_providers", "openai_legacy", lambda: f"sk-{rnd(20)}T3BlbkFJ{rnd(20)}"),
    ("ai_providers", "anthropic", lambda: f"sk-ant-api03-{rnd(93, ALNUM + '-_')}AA"),
    ("ai_providers", "huggingface", lambda: "hf_" + rnd(34, string.ascii_letters)),
    ("ai_providers", "groq", lambda: "gsk_" + rnd(52)),
    ("ai_providers", "replicate", lambda: "r8_" + rnd(37)),
    ("ai_providers", "mistral", lambda: rnd(32)),
    ("ai_providers", "cohere", lambda: rnd(40)),
    ("ai_providers", "xai", lambda: "xai-" + rnd(80)),
    ("ai_providers", "perplexity", lambda: "pplx-" + rnd(48)),
    ("ai_providers", "deepseek", lambda: "sk-" + rnd(32, HEX)),
    ("ai_providers", "openrouter", lambda: "sk-or-v1-" + rnd(64, HEX)),
    ("ai_providers", "google_ai_studio", lambda: "AIzaSy" + rnd(33, ALNUM + "-_")),
    ("payments", "stripe_secret", lambda: "sk_live_51" + rnd(97)),
    ("payments", "stripe_restricted", lambda: "rk_live_51" + rnd(97)),
    ("payments", "square_access", lambda: "EAAA" + rnd(60, ALNUM + "-_")),
    ("payments", "square_oauth_secret", lambda: "sq0csp-" + rnd(43, ALNUM + "-_")),
    ("payments", "braintree", lambda: f"access_token$production${rnd(16, HEX)}${rnd(32, HEX)}"),
    ("payments", "paypal_secret", lambda: "E" + rnd(79, ALNUM + "-_")),
    ("comms", "slack_bot", lambda: f"xoxb-{rnd(11, DIG)}-{rnd(13, DIG)}-{rnd(24)}"),
    ("comms", "slack_user", lambda: f"xoxp-{rnd(11, DIG)}-{rnd(11, DIG)}-{rnd(13, DIG)}-{rnd(32, HEX)}"),
    ("comms", "slack_webhook", lambda: f"https://hooks.slack.com/services/T{rnd(8, UP + DIG)}/B{rnd(10, UP + DIG)}/{rnd(24)}"),
    ("comms", "discord_bot", discord),
    ("comms", "discord_webhook", lambda: f"https://discord.com/api/webhooks/{rnd(19, DIG)}/{rnd(68, ALNUM + '-_')}"),
    ("comms", "telegram_bot", lambda: f"{R.randrange(10**8, 10**10)}:AA{rnd(33, ALNUM + '-_')}"),
    ("comms", "twilio_api_key", lambda: "SK" + rnd(32, HEX)),
    ("comms", "twilio_auth_token", lambda: rnd(32, HEX)),
    ("comms", "sendgrid", lambda: f"SG.{rnd(22, ALNUM + '-_')}.{rnd(43, ALNUM + '-_')}"),
    ("comms", "mailgun", lambda: "key-" + rnd(32, HEX)),
    ("comms", "mailgun_v2", lambda: f"{rnd(32, HEX)}-{rnd(8, HEX)}-{rnd(8, HEX)}"),
    ("comms", "mailchimp", lambda: rnd(32, HEX) + "-us" + str(R.randrange(1, 22))),
    ("registries", "npm", lambda: gh("npm_")),
    ("registries", "pypi", pypi),
    ("registries", "rubygems", lambda: "rubygems_" + rnd(48, HEX)),
    ("registries", "nuget", lambda: "oy2" + rnd(43, string.ascii_lowercase + DIG)),
    ("registries", "dockerhub", lambda: "dckr_pat_" + rnd(27, ALNUM + "-_")),
    ("infra", "digitalocean", lambda: "dop_v1_" + rnd(64, HEX)),
    ("infra", "heroku_new", lambda: "HRKU-AA" + rnd(58, ALNUM + "-_")),
    ("infra", "heroku_legacy", lambda: f"{rnd(8, HEX)}-{rnd(4, HEX)}-{rnd(4, HEX)}-{rnd(4, HEX)}-{rnd(12, HEX)}"),
    ("infra", "cloudflare_api_token", lambda: rnd(40, ALNUM + "-_")),
    ("infra", "cloudflare_global_key", lambda: rnd(37, HEX)),
    ("infra", "vercel", lambda: rnd(24)),
    ("infra", "netlify", lambda: "nfp_" + rnd(36)),
    ("infra", "flyio", lambda: "FlyV1 fm2_" + rnd(300, ALNUM + "+/") + "," + "fm2_" + rnd(120, ALNUM + "+/")),
    ("infra", "supabase", lambda: "sbp_" + rnd(40, HEX)),
    ("infra", "datadog_api", lambda: rnd(32, HEX)),
    ("infra", "sentry_org", sentry_org),
    ("infra", "grafana_sa", lambda: f"glsa_{rnd(32)}_{rnd(8, HEX)}"),
    ("infra", "grafana_cloud", grafana_cloud),
    ("infra", "newrelic", lambda: "NRAK-" + rnd(27, UP + DIG)),
    ("infra", "vault", lambda: "hvs.CAESI" + rnd(86, ALNUM + "-_")),
    ("infra", "terraform_cloud", lambda: f"{rnd(14)}.atlasv1.{rnd(67)}"),
    ("infra", "doppler", lambda: "dp.pt." + rnd(43)),
    ("infra", "onepassword_sa", onepass),
    ("infra", "databricks", lambda: "dapi" + rnd(32, HEX)),
    ("infra", "atlassian", lambda: "ATATT3xFfGF0" + rnd(170, ALNUM + "-_") + "=" + rnd(8, HEX.upper())),
    ("infra", "linear", lambda: "lin_api_" + rnd(40)),
    ("infra", "notion", lambda: "ntn_" + rnd(11, DIG) + rnd(35)),
    ("infra", "shopify", lambda: "shpat_" + rnd(32, HEX)),
    ("infra", "pinecone", lambda: "pcsk_" + rnd(5) + "_" + rnd(63)),
    ("generic", "rsa_private_key", pem),
    ("generic", "ec_private_key", lambda: pem("EC ")),
    ("generic", "pkcs8_private_key", lambda: pem("")),
    ("generic", "openssh_private_key", openssh),
    ("generic", "pgp_private_key", pgp),
    ("generic", "jwt", jwt),
    ("generic", "age", bech32_age),
    ("generic", "url_password", lambda: rnd(14, ALNUM + "!*")),
    ("generic", "db_connection", lambda: rnd(16)),
    ("generic", "api_key_assignment", lambda: rnd(32, ALNUM)),
]

# name a secret is usually assigned to (for context-dependent types)
VAR = {
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY", "mistral": "MISTRAL_API_KEY", "cohere": "COHERE_API_KEY",
    "twilio_auth_token": "TWILIO_AUTH_TOKEN", "paypal_secret": "PAYPAL_CLIENT_SECRET", "heroku_legacy": "HEROKU_API_KEY",
    "cloudflare_api_token": "CLOUDFLARE_API_TOKEN", "cloudflare_global_key": "CLOUDFLARE_API_KEY", "vercel": "VERCEL_TOKEN",
    "datadog_api": "DD_API_KEY", "api_key_assignment": "PAYMENTS_API_KEY", "gcp_service_account": "private_key_id",
    "google_ai_studio": "GEMINI_API_KEY", "openai_project": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY",
}


def env_name(t: str) -> str:
    return VAR.get(t, t.upper().split("_")[0] + "_TOKEN")


# how a plain secret appears
def contexts(t: str, s: str) -> list[tuple[str, object]]:
    name = env_name(t)
    lower = name.lower()
    c: list[tuple[str, object]] = [
        ("outbound", f"export {name}={s}"),
        ("outbound", f"services:\n  worker:\n    image: acme/worker:1.4\n    environment:\n      - {name}={s}\n"),
        ("outbound", f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: worker\ntype: Opaque\nstringData:\n  {lower}: \"{s}\"\n"),
        ("outbound", f'variable "{lower}" {{\n  default = "{s}"\n}}\n'),
        ("outbound", json.dumps({"config": {lower: s, "retries": 3}})),
        ("outbound", f'import os\n{name} = "{s}"\nclient = Client({lower}={name})\n'),
        ("outbound", f"const {lower.replace('_', '')} = '{s}';\nfetch(url, {{ headers: {{ token: {lower.replace('_', '')} }} }});"),
        ("outbound", f'package main\n\nconst {name} = "{s}"\n'),
        ("outbound", f"2026-11-21 14:02:11,331 DEBUG loaded settings {lower}={s} region=eu-west-1"),
        ("text", f"hey, can you check why this fails? I'm using {name} {s} and get a 401"),
    ]
    return c


def sa_json(kid: str) -> str:
    return json.dumps({"type": "service_account", "project_id": "acme-prod-4411", "private_key_id": kid,
                       "private_key": pem("").replace("\n", "\n"), "client_email": "ci@acme-prod-4411.iam.gserviceaccount.com",
                       "client_id": rnd(21, DIG), "token_uri": "https://oauth2.googleapis.com/token"}, indent=2)


def special(t: str, s: str) -> list[tuple[str, object]]:
    """Types whose natural carrier is not a NAME=value line."""
    if t == "gcp_service_account":
        return [("outbound", sa_json(s))]
    if t == "azure_storage_key":
        return [("outbound", f"AZURE_STORAGE_CONNECTION_STRING=DefaultEndpointsProtocol=https;AccountName=acmeprod;AccountKey={s};EndpointSuffix=core.windows.net")]
    if t == "azure_sas":
        return [("url", f"https://acmeprod.blob.core.windows.net/exports/q3.csv?sp=r&st=2026-11-20T10:00:00Z&se=2026-11-27T18:00:00Z&spr=https&sv=2022-11-02&sr=b&sig={s}")]
    if t in ("rsa_private_key", "ec_private_key", "pkcs8_private_key", "openssh_private_key", "pgp_private_key"):
        return [("outbound", f"here's the deploy key:\n{s}\n"), ("outbound", json.dumps({"key": s}))]
    if t == "url_password":
        return [("url", f"https://deploy:{urllib.parse.quote(s)}@git.acme-corp.com/infra/repo.git"),
                ("outbound", f"git clone https://ci-bot:{urllib.parse.quote(s)}@gitlab.acme-corp.com/platform/api.git")]
    if t == "db_connection":
        return [("outbound", f"DATABASE_URL=postgresql://app_user:{s}@db.internal.acme-corp.com:5432/orders"),
                ("outbound", f"mongodb+srv://admin:{s}@cluster0.ab1cd.mongodb.net/?retryWrites=true&w=majority"),
                ("outbound", f'spring.datasource.url=jdbc:mysql://db1.acme-corp.com:3306/shop?user=shop&password={s}'),
                ("outbound", f"Server=tcp:acme.database.windows.net,1433;Initial Catalog=shop;User ID=shopadmin;Password={s};Encrypt=True;"),
                ("outbound", f"REDIS_URL=redis://default:{s}@redis-14211.c1.eu-west-1.ec2.cloud.redislabs.com:14211")]
    if t in ("slack_webhook", "discord_webhook"):
        return [("outbound", f"curl -X POST -H 'Content-type: application/json' --data '{{\"text\":\"hi\"}}' {s}"),
                ("url", s)]
    if t == "flyio":
        return [("outbound", f"FLY_API_TOKEN=\"{s}\""), ("outbound", f"fly deploy --access-token '{s}'")]
    return []


def http_req(t: str, s: str) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = [
        ("http_request", {"method": "GET", "url": "https://api.vendor-example.com/v1/items", "headers": {"Authorization": f"Bearer {s}", "Accept": "application/json"}, "body": ""}),
        ("http_request", {"method": "POST", "url": "https://collector.example.net/ingest", "headers": {"Content-Type": "application/json"}, "body": json.dumps({"event": "debug", "env": {env_name(t): s}}), "content_type": "application/json"}),
        ("http_request", {"method": "GET", "url": "https://api.vendor-example.com/v2/search?q=shoes", "headers": {"X-API-Key": s}, "body": ""}),
        ("url", f"https://webhook.example.org/collect?{env_name(t).lower()}={urllib.parse.quote(s, safe='')}&v=2"),
        ("url", f"https://paste.example.org/{urllib.parse.quote(s, safe='')}"),
    ]
    return out


# --------------------------------------------------------------------------- encodings
def hexsep(b: bytes) -> str:
    sep = R.choice([":", " ", "\\x", ""])
    if sep == "\\x":
        return "".join(f"\\x{c:02x}" for c in b)
    return sep.join(f"{c:02x}" for c in b)


def encoded(t: str, s: str) -> list[tuple[str, str, object]]:
    name = env_name(t)
    line = f"{name}={s}"
    zw = s[: len(s) // 2] + "\u200b" + s[len(s) // 2:]
    fw = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)
    esc = "".join(f"\\u{ord(c):04x}" for c in s)
    half = len(s) // 2
    return [
        ("base64", "outbound", f"config blob: {base64.b64encode(line.encode()).decode()}"),
        ("hex", "outbound", f"dump: {hexsep(line.encode())}"),
        ("url_encoded", "outbound", f"payload={urllib.parse.quote(line, safe='')}"),
        ("json_unicode_escape", "outbound", '{"value": "' + esc + '"}'),
        ("gzip_base64", "outbound", "H4sI blob: " + base64.b64encode(gzip.compress(line.encode(), mtime=0)).decode()),
        ("split_json", "http_request", {"method": "POST", "url": "https://api.example.net/notes", "headers": {"Content-Type": "application/json"}, "body": json.dumps({"part1": s[:half], "part2": s[half:]}), "content_type": "application/json"}),
        ("split_query", "url", f"https://img.example.com/p.gif?a={urllib.parse.quote(s[:half], safe='')}&b={urllib.parse.quote(s[half:], safe='')}"),
        ("dns_labels", "url", "https://" + ".".join(s[i:i + 30] for i in range(0, len(s), 30)) + ".x.exfil-example.net/"),
        ("zero_width", "outbound", f"{name}={zw}"),
        ("fullwidth", "outbound", f"{name}={fw}"),
    ]


# --------------------------------------------------------------------------- PII
def cards() -> list[tuple[str, str]]:
    net = [
        ("visa", lambda: luhn("4" + rnd(14, DIG))), ("visa13", lambda: luhn("4" + rnd(11, DIG))),
        ("mastercard", lambda: luhn("5" + R.choice("12345") + rnd(13, DIG))), ("mastercard2", lambda: luhn("2" + R.choice(["221", "3", "5", "6", "70"])[0:] + rnd(14 - len("221") if False else 0, DIG) + "")),
        ("amex", lambda: luhn("3" + R.choice("47") + rnd(12, DIG))), ("discover", lambda: luhn("6011" + rnd(11, DIG))),
        ("discover65", lambda: luhn("65" + rnd(13, DIG))), ("jcb", lambda: luhn("35" + R.choice(["28", "40", "89"]) + rnd(11, DIG))),
        ("diners", lambda: luhn("36" + rnd(11, DIG))), ("unionpay", lambda: luhn("62" + rnd(13, DIG))),
        ("maestro", lambda: luhn("6759" + rnd(11, DIG))), ("mir", lambda: luhn("220" + R.choice("01234") + rnd(11, DIG))),
    ]
    out = []
    for name, make in net:
        n = make()
        if name == "mastercard2":
            n = luhn("2" + R.choice(["22", "3", "5", "6"]) + rnd(14 - len("2") - 1, DIG))[:15]
            n = luhn("2" + str(R.randrange(221, 720)).rjust(3, "0")[:3] + rnd(11, DIG))
            if not (222100 <= int(n[:6]) <= 272099):
                n = luhn("2221" + rnd(11, DIG))
        out.append((name, n))
    return out


def grouped(n: str, sep: str) -> str:
    if len(n) == 15 and n[0] == "3":
        return sep.join([n[:4], n[4:10], n[10:]])
    return sep.join(n[i:i + 4] for i in range(0, len(n), 4))


IBAN_BBAN = {"DE": 18, "GB": None, "FR": 23, "ES": 20, "IT": None, "NL": None, "BE": 12, "CH": 17, "PL": 24,
             "SA": 20, "NO": 11, "AT": 16, "IE": None, "SE": 20, "DK": 14, "PT": 21, "FI": 14, "LU": 16}


def make_iban(cc: str) -> str:
    if cc == "GB":
        return iban(cc, rnd(4, UP) + rnd(14, DIG))
    if cc == "IE":
        return iban(cc, rnd(4, UP) + rnd(14, DIG))
    if cc == "NL":
        return iban(cc, rnd(4, UP) + rnd(10, DIG))
    if cc == "IT":
        return iban(cc, R.choice(UP) + rnd(10, DIG) + rnd(12, DIG))
    return iban(cc, rnd(IBAN_BBAN[cc], DIG))


def spaced_iban(s: str) -> str:
    return " ".join(s[i:i + 4] for i in range(0, len(s), 4))


def ssn() -> str:
    while True:
        a, g, s = R.randrange(1, 900), R.randrange(1, 100), R.randrange(1, 10000)
        if a != 666:
            return f"{a:03d}-{g:02d}-{s:04d}"


# --------------------------------------------------------------------------- negatives
def negatives() -> list[tuple[str, str, object]]:
    u = lambda: f"{rnd(8, HEX)}-{rnd(4, HEX)}-4{rnd(3, HEX)}-{R.choice('89ab')}{rnd(3, HEX)}-{rnd(12, HEX)}"  # noqa: E731
    sha1 = lambda: rnd(40, HEX)  # noqa: E731
    sha256 = lambda: hashlib.sha256(R.randbytes(8)).hexdigest()  # noqa: E731
    sha512 = lambda: hashlib.sha512(R.randbytes(8)).hexdigest()  # noqa: E731
    sri = lambda: "sha512-" + base64.b64encode(hashlib.sha512(R.randbytes(8)).digest()).decode()  # noqa: E731
    sri384 = lambda: "sha384-" + base64.b64encode(hashlib.sha384(R.randbytes(8)).digest()).decode()  # noqa: E731
    rec = lambda: "sha256=" + b64u(hashlib.sha256(R.randbytes(8)).digest())  # noqa: E731
    n: list[tuple[str, str, object]] = []
    add = lambda cat, kind, c: n.append((cat, kind, c))  # noqa: E731
    for _ in range(6):
        add("uuid", "outbound", f"request_id={u()} trace_id={u()}")
        add("uuid", "url", f"https://api.example.com/v1/orders/{u()}/items?session={u()}")
        add("git_sha", "outbound", f"commit {sha1()}\nAuthor: Dev <dev@example.com>\n\n    fix flaky test")
        add("git_sha", "url", f"https://github.com/acme/api/commit/{sha1()}")
        add("hash", "outbound", f"{sha256()}  dist/vallum-1.2.0.tar.gz")
        add("hash", "outbound", f"SHA512 ({rnd(6).lower()}.iso) = {sha512()}")
        add("sri", "outbound", f'<script src="https://cdn.example.com/lib.min.js" integrity="{sri384()}" crossorigin="anonymous"></script>')
        add("wheel_record", "outbound", f"vallum/detection/{rnd(6).lower()}.py,{rec()},{R.randrange(1000, 40000)}")
        add("lockfile", "outbound", f'"node_modules/{rnd(7).lower()}": {{\n  "version": "4.1.{R.randrange(9)}",\n  "resolved": "https://registry.npmjs.org/x/-/x-4.1.0.tgz",\n  "integrity": "{sri()}"\n}}')
        add("lockfile", "outbound", f'[[package]]\nname = "{rnd(6).lower()}"\nversion = "2.3.1"\nfiles = [\n    {{file = "x-2.3.1-py3-none-any.whl", hash = "sha256:{sha256()}"}},\n]')
        add("docker_digest", "outbound", f"FROM python:3.12-slim@sha256:{sha256()}")
        add("docker_digest", "url", f"https://registry-1.docker.io/v2/library/nginx/manifests/sha256:{sha256()}")
        add("aws_arn", "outbound", f"arn:aws:iam::{rnd(12, DIG)}:role/service-role/lambda-{rnd(8).lower()}")
        add("aws_request_id", "outbound", f"x-amz-request-id: {rnd(16, UP + DIG)}\nx-amz-id-2: {base64.b64encode(R.randbytes(57)).decode()}")
        add("aws_request_id", "outbound", f"START RequestId: {u()} Version: $LATEST")
    img = base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + R.randbytes(400)).decode()
    font = base64.b64encode(b"wOF2\x00\x01\x00\x00" + R.randbytes(600)).decode()
    for _ in range(3):
        img = base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + R.randbytes(400)).decode()
        font = base64.b64encode(b"wOF2\x00\x01\x00\x00" + R.randbytes(600)).decode()
        add("base64_media", "outbound", f'<img alt="logo" src="data:image/png;base64,{img}">')
        add("base64_media", "outbound", f"@font-face{{font-family:Inter;src:url(data:font/woff2;base64,{font}) format('woff2')}}")
        add("base64_media", "http_request", {"method": "POST", "url": "https://api.example.com/upload", "headers": {"Content-Type": "application/json"}, "body": json.dumps({"filename": "a.png", "data": img}), "content_type": "application/json"})
    # JWT-looking but not JWTs
    for _ in range(4):
        add("jwt_lookalike", "outbound", f"eyJ{rnd(30)}.eyJ{rnd(40)}.{rnd(30)}")
        add("jwt_lookalike", "outbound", "token format: " + b64u(b'{"typ":"JWT"}') + "." + b64u(b'{"sub":"1"}') + "." + rnd(20))
    mini = [
        'var e=function(t,n){return t.a0x9Kq2=n.bZ7pQ3w,t};module.exports={aKq8z:e,b3Xv7Q:function(t){return t.Zx81kqPm}};',
        '!function(e){var t={};function n(r){if(t[r])return t[r].exports;var o=t[r]={i:r,l:!1,exports:{}};return e[r].call(o.exports,o,o.exports,n),o.l=!0,o.exports}}',
        'const _0x3f2a=["aGVsbG8=","d29ybGQ="];(function(_0x1b2c3d,_0x4e5f6a){var _0x7a8b9c=function(_0x2d3e4f){while(--_0x2d3e4f){_0x1b2c3d.push(_0x1b2c3d.shift());}};}(_0x3f2a,0x1f4));',
        'webpackJsonp([3],{"2Hq7":function(e,t,n){"use strict";Object.defineProperty(t,"__esModule",{value:!0});var r=n("Xxa5"),o=n.n(r),i=n("exGp"),a=n.n(i);t.default={name:"tokenInput",data:function(){return{token:"",apiKey:""}}}}});',
    ]
    for m in mini:
        add("minified_js", "outbound", m)
    for p in ["sk-...", "<YOUR_API_KEY>", "sk-proj-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "OPENAI_API_KEY=sk-your-key-here",
              "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "AWS_ACCESS_KEY_ID=AKIAXXXXXXXXXXXXXXXX", "api_key: ${API_KEY}",
              "STRIPE_SECRET_KEY=sk_live_...", "password: changeme", "export GITHUB_TOKEN=<your-token>",
              "Authorization: Bearer YOUR_ACCESS_TOKEN", "token = os.environ['SLACK_BOT_TOKEN']",
              "api_key = \"{{ vault_api_key }}\"", "SENDGRID_API_KEY=SG.xxxxxxxx.xxxxxxxx", "password=********",
              "DATABASE_URL=postgres://user:password@localhost:5432/db", "xoxb-your-bot-token", "hf_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
              "ANTHROPIC_API_KEY=sk-ant-api03-...", "Set `api_key` to the value shown in your dashboard.",
              "client_secret: REPLACE_ME", "AKIAIOSFODNN7EXAMPL"]:
        add("placeholder", "outbound", p)
    for s in ["The quarterly report shows a token increase in revenue across all secret-sauce product lines.",
              "Please rotate the key on the front door; the password for the wifi is on the fridge.",
              "Remember to pass the bearer token in the header, never in the query string.",
              "Our API uses keys that begin with a vendor prefix followed by random characters.",
              "max_tokens=4096 temperature=0.2 top_p=0.95 presence_penalty=0.1",
              "The secret to good bread is patience: let the dough rest for twelve hours.",
              "next_page_token=CiAKGjBpNDd2Nmp2Zml2cXRvMjMY7ZOzmgISBwiNARDpByAB",
              "Call 555-0143 or +1 (415) 555-2671 before 17:00 on 2026-11-21.",
              "ISBN 978-3-16-148410-0, order #4412-8812-1193, tracking 1Z999AA10123456784.",
              "Version 3.12.1 released on 2026-10-02 with 1402 commits from 311 contributors.",
              "In a BIP-39 wallet the seed phrase is twelve or twenty-four words long; never share it.",
              "abandon ship and wander across the mountain valley before winter comes again this year friend",
              "The account number field accepts up to 34 characters (IBAN) and validates mod 97.",
              "secret_name: prod-db-credentials  # the AWS Secrets Manager name, not the value",
              "password_hash = \"$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG\"",
              "kubectl get pods -n payments\nNAME                              READY\napi-7d9c8b6f5d-x2k9z               1/1",
              "Use the token_url https://oauth2.example.com/token to obtain tokens.",
              "the SSN field must look like 123-45-6789 in the form",
              ]:
        add("english", "outbound", s)
    # numbers failing checksums
    for _ in range(6):
        c = luhn("4" + rnd(14, DIG))
        bad = c[:-1] + str((int(c[-1]) + 3) % 10)
        add("bad_luhn", "outbound", f"card {grouped(bad, ' ')} exp 09/29")
        ib = make_iban(R.choice(["DE", "FR", "ES", "NL"]))
        badib = ib[:2] + f"{(int(ib[2:4]) + 7) % 97 + 2:02d}" + ib[4:]
        add("bad_iban", "outbound", f"IBAN: {spaced_iban(badib)}")
        add("invalid_ssn", "outbound", R.choice([f"ssn 000-{rnd(2, DIG)}-{rnd(4, '123456789')}", f"id 666-{rnd(2, '123456789')}-{rnd(4, '123456789')}", f"ref 9{rnd(2, DIG)}-{rnd(2, '123456789')}-{rnd(4, '123456789')}"]))
        add("order_number", "outbound", f"Order {rnd(16, DIG)} shipped; invoice INV-{rnd(10, DIG)}")
    ws = Mnemonic("english").wordlist
    for _ in range(4):
        while True:
            words = [R.choice(ws) for _ in range(12)]
            if not Mnemonic("english").check(" ".join(words)):
                break
        add("bip39_bad_checksum", "outbound", " ".join(words))
    for _ in range(6):
        add("hash_in_url", "url", f"https://cdn.example.com/assets/app.{rnd(20, HEX)}.js")
        add("hash_in_url", "url", f"https://www.youtube.com/watch?v={rnd(11, ALNUM + '-_')}&list=PL{rnd(32, ALNUM + '-_')}")
        add("hash_in_url", "url", f"https://s3.amazonaws.com/bucket/{sha256()}/blob?versionId={rnd(32, ALNUM + '._')}")
        add("hash_in_url", "http_request", {"method": "GET", "url": f"https://api.example.com/v1/files/{sha1()}", "headers": {"If-None-Match": f'"{rnd(32, HEX)}"', "X-Request-Id": u()}, "body": ""})
        add("pubkey", "outbound", f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{rnd(43, ALNUM + '+/')} dev@laptop")
        add("stripe_publishable", "outbound", f"STRIPE_PUBLISHABLE_KEY=pk_live_51{rnd(97)}")
    return n


def build(seed: int) -> list[dict]:
    R.seed(seed)
    rows: list[dict] = []

    def pos(family: str, typ: str, variant: str, kind: str, content: object) -> None:
        rows.append({"id": f"p{len(rows)}", "expect": "block", "family": family, "type": typ, "variant": variant, "kind": kind, "content": content})

    for family, typ, make in TYPES:
        s = make()
        sp = special(typ, s)
        if sp:
            for kind, c in sp:
                pos(family, typ, "context", kind, c)
        else:
            ctxs = contexts(typ, s)
            for kind, c in R.sample(ctxs, 2):
                pos(family, typ, "context", kind, c)
        if not sp or typ in ("slack_webhook",):
            kind, c = R.choice(http_req(typ, make()))
            pos(family, typ, "http", kind, c)
        # one encoded form for every type with a self-identifying format, two for a few
        if typ not in ("gcp_service_account", "azure_storage_key", "azure_sas", "url_password", "db_connection") and "private_key" not in typ:
            for variant, kind, c in R.sample(encoded(typ, make()), 1):
                pos(family, typ, variant, kind, c)
    for name, n in cards():
        sep = R.choice([" ", "-", ""])
        tmpl = R.choice(["Card: {n} exp 04/28 cvc 311", '{{"card_number": "{n}", "exp": "04/28"}}', "pls charge {n} for the renewal", "cc={n}"])
        pos("pii", f"card_{name}", "context", "outbound", tmpl.format(n=grouped(n, sep)))
    for name, n in cards()[:6]:
        pos("pii", f"card_{name}", "http", "http_request", {"method": "POST", "url": "https://shop.example.com/checkout", "headers": {"Content-Type": "application/x-www-form-urlencoded"}, "body": f"name=Jo+Doe&card={n}&exp=0428", "content_type": "application/x-www-form-urlencoded"})
    for cc in IBAN_BBAN:
        ib = make_iban(cc)
        pos("pii", f"iban_{cc}", "context", "outbound", R.choice([f"Please wire to IBAN {spaced_iban(ib)} by Friday", f'{{"iban": "{ib}", "bic": "DEUTDEFF"}}', f"Beneficiary: ACME Ltd\nIBAN: {ib}"]))
    for _ in range(6):
        pos("pii", "us_ssn", "context", "outbound", R.choice(["Employee SSN: {s}", "ssn={s}", '{{"name": "J. Doe", "ssn": "{s}"}}', "my social security number is {s}"]).format(s=ssn()))
    for nb in (16, 16, 32, 32, 16, 32):
        m = mnemonic(nb)
        words = m.split()
        style = R.choice(["plain", "numbered", "comma"])
        if style == "numbered":
            m = "\n".join(f"{i + 1}. {w}" for i, w in enumerate(words))
        elif style == "comma":
            m = ", ".join(words)
        pos("pii", f"bip39_{len(words)}", style, "outbound", f"my wallet recovery phrase:\n{m}")
    for cat, kind, c in negatives():
        rows.append({"id": f"n{len(rows)}", "expect": "allow", "family": cat, "type": cat, "variant": "negative", "kind": kind, "content": c})
    return rows


if __name__ == "__main__":
    seed, out = int(sys.argv[1]), sys.argv[2]
    with open(out, "w") as f:
        for r in build(seed):
            f.write(json.dumps(r) + "\n")
