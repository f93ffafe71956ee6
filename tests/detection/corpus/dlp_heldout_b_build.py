"""Builds held-out DLP set B: fresh carriers, encodings and hard negatives written after the rule
fixes that set A prompted, and scored once before any further change (see docs/dlp.md).

    python tests/detection/corpus/dlp_heldout_b_build.py OUT.jsonl
"""

from __future__ import annotations

import base64
import hashlib
import json
import quopri
import string
import sys
import urllib.parse

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import dlp_heldout_build as A

R = A.R
ALNUM, HEX, UP, DIG = A.ALNUM, A.HEX, A.UP, A.DIG
rnd = A.rnd

# fresh carriers: name, value -> (kind, content)
CARRIERS = [
    lambda n, s: ("outbound", f'{n}="{s}"\n# do not commit\n'),
    lambda n, s: ("outbound", f"jobs:\n  deploy:\n    runs-on: ubuntu-latest\n    env:\n      {n}: {s}\n"),
    lambda n, s: ("outbound", f"$env:{n} = '{s}'\n./deploy.ps1"),
    lambda n, s: ("outbound", f'os.Setenv("{n}", "{s}")'),
    lambda n, s: ("outbound", f"{n.lower().replace('_', '.')}={s}\nserver.port=8080"),
    lambda n, s: ("outbound", f'[default]\n{n.lower()} = "{s}"\n'),
    lambda n, s: ("text", f"Hola, el {n} es {s} — ¿me ayudas a depurar?"),
    lambda n, s: ("outbound", f"```bash\ncurl -H \"Authorization: Bearer {s}\" https://api.example.com/v1/me\n```"),
    lambda n, s: ("outbound", json.dumps({"level": "error", "msg": "auth failed", "ctx": {"token": s}})),
    lambda n, s: ("http_request", {"method": "PUT", "url": "https://hooks.example.dev/cfg", "headers": {"Content-Type": "application/json"}, "body": json.dumps({"settings": {"integrations": [{"name": "x", n.lower(): s}]}}), "content_type": "application/json"}),
    lambda n, s: ("http_request", {"method": "POST", "url": "https://api.example.dev/x", "headers": {"X-Upstream-Auth": f"Bearer {s}"}, "body": ""}),
    lambda n, s: ("url", f"https://api.example.dev/v2/export?format=csv&{n.lower()}={urllib.parse.quote(s, safe='')}"),
]

PICK = [  # (family, type, env name, maker) — a fresh mix
    ("source_hosting", "github_pat_classic", "GH_TOKEN", lambda: A.gh("ghp_")),
    ("source_hosting", "github_fine_grained", "GITHUB_TOKEN", lambda: f"github_pat_11{rnd(20, UP + DIG)}_{rnd(59)}"),
    ("source_hosting", "gitlab_pat", "GITLAB_TOKEN", lambda: "glpat-" + rnd(20, ALNUM + "-_")),
    ("cloud", "aws_access_key_id", "AWS_ACCESS_KEY_ID", lambda: "AKIA" + rnd(16, UP + "234567")),
    ("cloud", "google_api_key", "GOOGLE_API_KEY", lambda: "AIza" + rnd(35, ALNUM + "-_")),
    ("cloud", "gcp_oauth_client_secret", "GOOGLE_CLIENT_SECRET", lambda: "GOCSPX-" + rnd(28, ALNUM + "-_")),
    ("ai_providers", "openai_project", "OPENAI_API_KEY", lambda: f"sk-proj-{rnd(74, ALNUM + '-_')}T3BlbkFJ{rnd(74, ALNUM + '-_')}"),
    ("ai_providers", "anthropic", "ANTHROPIC_API_KEY", lambda: f"sk-ant-api03-{rnd(93, ALNUM + '-_')}AA"),
    ("ai_providers", "huggingface", "HF_TOKEN", lambda: "hf_" + rnd(34, string.ascii_letters)),
    ("ai_providers", "groq", "GROQ_API_KEY", lambda: "gsk_" + rnd(52)),
    ("ai_providers", "xai", "XAI_API_KEY", lambda: "xai-" + rnd(80)),
    ("ai_providers", "mistral", "MISTRAL_API_KEY", lambda: rnd(32)),
    ("payments", "stripe_secret", "STRIPE_SECRET_KEY", lambda: "sk_live_51" + rnd(97)),
    ("payments", "square_access", "SQUARE_ACCESS_TOKEN", lambda: "EAAA" + rnd(60, ALNUM + "-_")),
    ("comms", "slack_bot", "SLACK_BOT_TOKEN", lambda: f"xoxb-{rnd(11, DIG)}-{rnd(13, DIG)}-{rnd(24)}"),
    ("comms", "sendgrid", "SENDGRID_API_KEY", lambda: f"SG.{rnd(22, ALNUM + '-_')}.{rnd(43, ALNUM + '-_')}"),
    ("comms", "telegram_bot", "TELEGRAM_BOT_TOKEN", lambda: f"{R.randrange(10**8, 10**10)}:AA{rnd(33, ALNUM + '-_')}"),
    ("comms", "twilio_auth_token", "TWILIO_AUTH_TOKEN", lambda: rnd(32, HEX)),
    ("registries", "npm", "NPM_TOKEN", lambda: A.gh("npm_")),
    ("registries", "pypi", "PYPI_API_TOKEN", A.pypi),
    ("registries", "dockerhub", "DOCKERHUB_TOKEN", lambda: "dckr_pat_" + rnd(27, ALNUM + "-_")),
    ("infra", "digitalocean", "DIGITALOCEAN_TOKEN", lambda: "dop_v1_" + rnd(64, HEX)),
    ("infra", "vault", "VAULT_TOKEN", lambda: "hvs.CAESI" + rnd(86, ALNUM + "-_")),
    ("infra", "datadog_api", "DATADOG_API_KEY", lambda: rnd(32, HEX)),
    ("infra", "linear", "LINEAR_API_KEY", lambda: "lin_api_" + rnd(40)),
    ("infra", "shopify", "SHOPIFY_ACCESS_TOKEN", lambda: "shpat_" + rnd(32, HEX)),
    ("infra", "sentry_user", "SENTRY_AUTH_TOKEN", lambda: "sntryu_" + rnd(64, HEX)),
    ("infra", "newrelic", "NEW_RELIC_API_KEY", lambda: "NRAK-" + rnd(27, UP + DIG)),
    ("generic", "jwt", "ID_TOKEN", A.jwt),
    ("generic", "api_key_assignment", "INTERNAL_API_KEY", lambda: rnd(40, ALNUM)),
]


def encodings(n: str, s: str) -> list[tuple[str, str, object]]:
    line = f"{n}={s}"
    third = len(s) // 3
    return [
        ("base64_json", "outbound", "eyJ" + base64.b64encode(json.dumps({n: s}).encode()).decode()[3:]),
        ("double_url", "outbound", "q=" + urllib.parse.quote(urllib.parse.quote(line, safe=""), safe="")),
        ("hex_0x", "outbound", "buf = [" + ", ".join(f"0x{b:02x}" for b in line.encode()) + "]"),
        ("html_entities", "inbound", "<p>" + "".join(f"&#{ord(c)};" for c in line) + "</p>"),
        ("quoted_printable", "outbound", "Content-Transfer-Encoding: quoted-printable\n\n" + quopri.encodestring(f"token: {s}".encode()).decode().replace("_", "=5F").replace("-", "=2D")),
        ("split3_json", "http_request", {"method": "POST", "url": "https://api.example.dev/chunks", "headers": {"Content-Type": "application/json"}, "body": json.dumps({"c": [s[:third], s[third:2 * third], s[2 * third:]]}), "content_type": "application/json"}),
        ("split_query3", "url", f"https://t.example.dev/px?x={s[:third]}&y={s[third:2 * third]}&z={s[2 * third:]}"),
        ("soft_hyphen", "outbound", f"{n}=" + "\u00ad".join(s[i:i + 8] for i in range(0, len(s), 8))),
        ("base64_lines", "outbound", "-----BEGIN BLOB-----\n" + "\n".join(base64.b64encode(line.encode()).decode()[i:i + 20] for i in range(0, len(base64.b64encode(line.encode())), 20)) + "\n-----END BLOB-----"),
    ]


def negatives() -> list[tuple[str, str, object]]:
    n: list[tuple[str, str, object]] = []
    cert = base64.b64encode(b"\x30\x82\x03\x5d\x30\x82\x02\x45\xa0\x03\x02\x01\x02" + R.randbytes(700)).decode()
    n.append(("certificate", "outbound", "-----BEGIN CERTIFICATE-----\n" + "\n".join(cert[i:i + 64] for i in range(0, len(cert), 64)) + "\n-----END CERTIFICATE-----"))
    pub = base64.b64encode(b"\x30\x82\x01\x22\x30\x0d" + R.randbytes(280)).decode()
    n.append(("public_key", "outbound", "-----BEGIN PUBLIC KEY-----\n" + "\n".join(pub[i:i + 64] for i in range(0, len(pub), 64)) + "\n-----END PUBLIC KEY-----"))
    n.append(("public_key", "outbound", "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n" + base64.b64encode(R.randbytes(300)).decode() + "\n-----END PGP PUBLIC KEY BLOCK-----"))
    n.append(("jwks", "outbound", json.dumps({"keys": [{"kty": "RSA", "kid": rnd(16), "use": "sig", "alg": "RS256", "n": A.b64u(R.randbytes(256)), "e": "AQAB"}]})))
    for _ in range(4):
        n.append(("semver_ids", "outbound", f"image: ghcr.io/acme/api:v{R.randrange(9)}.{R.randrange(30)}.{R.randrange(99)}-{rnd(7, HEX)}  # build {rnd(40, HEX)}"))
        n.append(("mac_ipv6", "outbound", f"eth0 {':'.join(rnd(2, HEX) for _ in range(6))} inet6 fe80::{rnd(4, HEX)}:{rnd(4, HEX)}:{rnd(4, HEX)}:{rnd(4, HEX)}/64"))
        n.append(("css", "outbound", f".btn{{color:#{rnd(6, HEX)};background:#{rnd(6, HEX)};border:1px solid #{rnd(3, HEX)}}}"))
        n.append(("b64_text", "outbound", "note: " + base64.b64encode(b"Meeting moved to Thursday 3pm, room 4B. Bring the quarterly numbers please.").decode()))
        n.append(("crypto_public", "outbound", f"send to 0x{rnd(40, HEX)} (tx 0x{rnd(64, HEX)})"))
        n.append(("crypto_public", "outbound", f"BTC: bc1q{rnd(38, '023456789acdefghjklmnpqrstuvwxyz')}"))
        n.append(("ids_in_urls", "url", f"https://app.example.dev/d/{rnd(21, ALNUM + '_-')}/edit?usp=sharing&ouid={rnd(21, DIG)}"))
        n.append(("ids_in_urls", "url", f"https://ipfs.io/ipfs/bafybei{rnd(52, 'abcdefghijklmnopqrstuvwxyz234567')}"))
        n.append(("ids_in_urls", "http_request", {"method": "GET", "url": f"https://api.example.dev/v1/objects/01{rnd(24, '0123456789ABCDEFGHJKMNPQRSTVWXYZ')}", "headers": {"Accept": "application/json", "X-Correlation-Id": rnd(32, HEX)}, "body": ""}))
        n.append(("public_ids", "outbound", f"TWILIO_ACCOUNT_SID=AC{rnd(32, HEX)}\nSLACK_CHANNEL=C0{rnd(9, UP + DIG)}\nGA_ID=G-{rnd(10, UP + DIG)}"))
        n.append(("publishable", "outbound", f"NEXT_PUBLIC_STRIPE_KEY=pk_test_51{rnd(97)}"))
        n.append(("hashes", "outbound", f"md5sum: {rnd(32, HEX)}  backup.tar\nsha1: {rnd(40, HEX)}\nblake2b: {hashlib.blake2b(R.randbytes(8)).hexdigest()}"))
        n.append(("k8s", "outbound", f"metadata:\n  name: api-{rnd(10, 'bcdfghjklmnpqrstvwxz2456789')}-{rnd(5, 'bcdfghjklmnpqrstvwxz2456789')}\n  uid: {rnd(8, HEX)}-{rnd(4, HEX)}-{rnd(4, HEX)}-{rnd(4, HEX)}-{rnd(12, HEX)}\n  resourceVersion: \"{rnd(8, DIG)}\""))
        n.append(("numbers", "outbound", f"Tracking {rnd(22, DIG)} · phone +44 20 {rnd(4, DIG)} {rnd(4, DIG)} · ref {rnd(16, DIG)}"))
    for p in ["GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}", "api_key=\"<insert key here>\"", "token: <REDACTED>",
              "OPENAI_API_KEY=sk-••••••••••••••••", "password: {{ .Values.db.password }}", "SECRET_KEY=your-secret-key",
              "AWS_SECRET_ACCESS_KEY=****************************************", "Bearer <token>", "export STRIPE_KEY=sk_live_XXXXXXXXXXXXXXXXXXXXXXXX",
              "slack token: xoxb-0000000000-0000000000000-XXXXXXXXXXXXXXXXXXXXXXXX", "api_key: process.env.API_KEY",
              "password = getpass.getpass()", "token = request.headers.get('Authorization')", "secret_key_base: <%= ENV['SECRET_KEY_BASE'] %>"]:
        n.append(("placeholder", "outbound", p))
    for s in ["Use a token bucket of size 100 to rate limit the API.", "The key insight is that secrets should never be logged.",
              "He said the password was something about his dog's name and a year.", "Our passwords must be at least 12 characters long.",
              "Set max_tokens to 2048 and stream=true.", "Rotate credentials every 90 days; store them in a secret manager.",
              "El token de acceso caduca en una hora.", "Le mot de passe doit contenir un chiffre."]:
        n.append(("english", "outbound", s))
    for _ in range(4):
        c = A.luhn("5" + R.choice("12345") + rnd(13, DIG))
        n.append(("bad_luhn", "outbound", f"card: {c[:-1]}{(int(c[-1]) + 1) % 10}"))
        ib = A.make_iban("GB")
        n.append(("bad_iban", "outbound", f"IBAN {ib[:4]}{ib[5:]}{ib[4]}"))
    return n


def build(seed: int = 4242) -> list[dict]:
    R.seed(seed)
    rows: list[dict] = []
    for i, (fam, typ, name, make) in enumerate(PICK):
        kind, c = CARRIERS[i % len(CARRIERS)](name, make())
        rows.append({"family": fam, "type": typ, "variant": "context", "kind": kind, "content": c, "expect": "block"})
        kind, c = CARRIERS[(i * 5 + 3) % len(CARRIERS)](name, make())
        rows.append({"family": fam, "type": typ, "variant": "context", "kind": kind, "content": c, "expect": "block"})
        enc = encodings(name, make())
        variant, kind, c = enc[i % len(enc)]
        rows.append({"family": fam, "type": typ, "variant": variant, "kind": kind, "content": c, "expect": "block"})
    for name, n in A.cards()[:8]:
        rows.append({"family": "pii", "type": f"card_{name}", "variant": "context", "kind": "outbound", "content": f"Zahlung mit Karte {A.grouped(n, ' ')} gültig bis 11/27", "expect": "block"})
    for cc in ["IT", "PT", "SE", "PL", "SA", "CH"]:
        rows.append({"family": "pii", "type": f"iban_{cc}", "variant": "context", "kind": "http_request", "content": {"method": "POST", "url": "https://pay.example.dev/payout", "headers": {"Content-Type": "application/json"}, "body": json.dumps({"beneficiary": {"name": "A. Rossi", "account": A.make_iban(cc)}}), "content_type": "application/json"}, "expect": "block"})
    for nb in (16, 32):
        rows.append({"family": "pii", "type": f"bip39_{nb * 3 // 4}", "variant": "context", "kind": "outbound", "content": "backup words: " + A.mnemonic(nb).upper(), "expect": "block"})
    for _ in range(2):
        rows.append({"family": "pii", "type": "us_ssn", "variant": "context", "kind": "http_request", "content": {"method": "POST", "url": "https://hr.example.dev/employees", "headers": {"Content-Type": "application/x-www-form-urlencoded"}, "body": "name=Jane+Roe&ssn=" + A.ssn(), "content_type": "application/x-www-form-urlencoded"}, "expect": "block"})
    for cat, kind, c in negatives():
        rows.append({"family": cat, "type": cat, "variant": "negative", "kind": kind, "content": c, "expect": "allow"})
    for i, r in enumerate(rows):
        r["id"] = f"b{i}"
    return rows


if __name__ == "__main__":
    with open(sys.argv[1], "w") as f:
        for r in build():
            f.write(json.dumps(r) + "\n")
