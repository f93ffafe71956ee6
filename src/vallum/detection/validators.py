"""Validators: checks that a candidate secret is structurally real (checksums, formats).

Each validator takes the matched secret value (the rule's secret group) and returns True when it is
plausibly real. Rules name a validator by its key in `VALIDATORS`. Validators are pure, total
functions: they never raise on odd input (a candidate that cannot be checked is rejected), and they
are cheap, because they only run on what a pattern already matched.

The encoding helpers (`base62_encode`, `crc32_base62`, `bech32_checksum_ok`, `iban_check_digits`,
`luhn_check_digit`) are public so that tests and users can build structurally valid samples.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from functools import lru_cache

Validator = Callable[[str], bool]

VALIDATORS: dict[str, Validator] = {}


def validator(*names: str) -> Callable[[Validator], Validator]:
    """Register a validator under one or more names."""

    def register(fn: Validator) -> Validator:
        for name in names:
            if name in VALIDATORS:
                raise ValueError(f"validator {name} defined twice")
            VALIDATORS[name] = fn
        return fn

    return register


def shannon_entropy(s: str) -> float:
    """Bits per character."""
    if not s:
        return 0.0
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


# ----------------------------------------------------------------------------- payment cards
def luhn_check_digit(payload: str) -> str:
    """The Luhn check digit to append to the digit string `payload`."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:  # doubled positions, counted from the right once the check digit is added
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


@validator("luhn")
def luhn(value: str) -> bool:
    """Luhn (mod 10) checksum over the digits of `value` (12 to 19 digits)."""
    digits = [int(c) for c in value if c in "0123456789"]
    if not 12 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_brand(d: str) -> str | None:
    """The card network of a digit string by IIN range and length, or None (ISO/IEC 7812)."""
    n = len(d)
    p2, p3, p4, p6 = int(d[:2]), int(d[:3]), int(d[:4]), int(d[:6])
    if d[0] == "4" and n in (16, 19):  # 13-digit Visa numbers are retired; 13 digits are mostly ids
        return "visa"
    if (51 <= p2 <= 55 or 2221 <= p4 <= 2720) and n == 16:
        return "mastercard"
    if 2200 <= p4 <= 2204 and n == 16:
        return "mir"
    if p2 in (34, 37) and n == 15:
        return "amex"
    if (p4 == 6011 or 644 <= p3 <= 649 or p2 == 65 or 622126 <= p6 <= 622925) and 16 <= n <= 19:
        return "discover"
    if 3528 <= p4 <= 3589 and 16 <= n <= 19:
        return "jcb"
    if (300 <= p3 <= 305 or p2 in (36, 38, 39) or p4 == 3095) and 14 <= n <= 19:
        return "diners"
    if p2 == 62 and 16 <= n <= 19:
        return "unionpay"
    if p4 in (6759, 6761, 6762, 6763, 5018, 5020, 5038, 5893) and 12 <= n <= 19:
        return "maestro"
    return None


@validator("payment_card")
def payment_card(value: str) -> bool:
    """A card number: Luhn-valid, a known IIN range with that range's length, one kind of separator.

    Separators (space or dash) must be used consistently: `4111 1111-1111 1111` is rejected.
    """
    seps = {c for c in value if c in " -"}
    if len(seps) > 1 or any(c not in "0123456789 -" for c in value):
        return False
    digits = value.replace(" ", "").replace("-", "")
    if not 12 <= len(digits) <= 19 or len(set(digits)) < 2:
        return False
    return _card_brand(digits) is not None and luhn(digits)


# ----------------------------------------------------------------------------- IBAN
#: IBAN length per country (SWIFT IBAN registry)
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}


def _iban_numeric(s: str) -> int:
    return int("".join(str(int(c, 36)) for c in s))


def iban_check_digits(country: str, bban: str) -> str:
    """The two check digits for an IBAN of `country` and `bban` (ISO 13616, mod 97-10)."""
    n = _iban_numeric((bban + country + "00").upper())
    return f"{98 - n % 97:02d}"


def _iban_ok(compact: str) -> bool:
    if len(compact) < 15 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum() or not compact.isascii():
        return False
    if compact[2:4] in ("00", "01", "99"):
        return False
    return _iban_numeric(compact[4:] + compact[:4]) % 97 == 1


@validator("iban")
def iban(value: str) -> bool:
    """IBAN: known country, that country's length, mod-97 == 1.

    Accepts the compact or the space-grouped form. When a match ran on into a following group (a
    trailing word), the prefix of the country's length is checked if it ends at a space.
    """
    v = value.strip().upper()
    if v != value.strip():  # IBANs are written upper-case; lower-case runs are prose
        return False
    length = IBAN_LENGTHS.get(v[:2])
    if length is None:
        return False
    compact = v.replace(" ", "")
    if len(compact) == length:
        return _iban_ok(compact)
    if len(compact) > length:
        # find where the country's length ends in the spaced form; it must end at a group boundary
        count = 0
        for i, ch in enumerate(v):
            if ch != " ":
                count += 1
            if count == length:
                rest = v[i + 1 :]
                return (rest == "" or rest.startswith(" ")) and _iban_ok(compact[:length])
    return False


# ----------------------------------------------------------------------------- US SSN
#: published as examples (Woolworth wallet card, advertising) or the canonical placeholder
_SSN_EXAMPLES = frozenset({"078051120", "219099999", "123456789"})


@validator("us_ssn")
def us_ssn(value: str) -> bool:
    """US Social Security number structure: no area 000, 666 or 9xx; no group 00; no serial 0000."""
    d = value.replace("-", "").replace(" ", "")
    if len(d) != 9 or not d.isdigit() or not d.isascii():
        return False
    area, group, serial = d[:3], d[3:5], d[5:]
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    if all(len(set(part)) == 1 for part in (area, group, serial)):
        return False  # 111-22-3333: a form's dummy value
    return not (len(set(d)) == 1 or d in _SSN_EXAMPLES)


# ----------------------------------------------------------------------------- CRC32 / base62
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def base62_encode(n: int, width: int = 6) -> str:
    """`n` in base 62 (0-9, A-Z, a-z), left-padded with '0' to `width`."""
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = BASE62[r] + out
    return out.rjust(width, "0")


def crc32_base62(body: str) -> str:
    """The 6-character checksum GitHub and npm append to a token: base62(CRC32(body))."""
    return base62_encode(binascii.crc32(body.encode("ascii")))


@validator("github_checksum", "npm_checksum", "crc32_base62")
def crc32_base62_checksum(value: str) -> bool:
    """GitHub classic (`ghp_…`, `gho_…`, …) and npm (`npm_…`) tokens: the last 6 characters are the
    base62 CRC32 of the 30 random characters before them."""
    _, sep, rest = value.partition("_")
    if not sep or len(rest) != 36 or not rest.isascii() or not rest.isalnum():
        return False
    return crc32_base62(rest[:30]) == rest[30:]


# ----------------------------------------------------------------------------- bech32 (age)
BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _bech32_polymod(values: list[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= _BECH32_GEN[i] if ((top >> i) & 1) else 0
    return chk


def _bech32_hrp_expand(hrp: str) -> list[int]:
    return [ord(x) >> 5 for x in hrp] + [0] + [ord(x) & 31 for x in hrp]


def bech32_checksum_ok(value: str) -> bool:
    """A bech32 string (BIP-173, constant 1; no length limit, as age uses it) with a valid checksum."""
    if value.lower() != value and value.upper() != value:
        return False  # mixed case is invalid bech32
    v = value.lower()
    pos = v.rfind("1")
    if pos < 1 or pos + 7 > len(v) or not v.isascii():
        return False
    hrp, data = v[:pos], v[pos + 1 :]
    if any(c not in BECH32_CHARSET for c in data) or any(not 33 <= ord(c) <= 126 for c in hrp):
        return False
    return _bech32_polymod(_bech32_hrp_expand(hrp) + [BECH32_CHARSET.index(c) for c in data]) == 1


def bech32_create_checksum(hrp: str, data: list[int]) -> str:
    """The 6 checksum characters for 5-bit `data` under `hrp` (to build valid samples)."""
    polymod = _bech32_polymod(_bech32_hrp_expand(hrp) + data + [0] * 6) ^ 1
    return "".join(BECH32_CHARSET[(polymod >> 5 * (5 - i)) & 31] for i in range(6))


@validator("age_secret_key")
def age_secret_key(value: str) -> bool:
    """An `age` X25519 identity: bech32 with HRP `age-secret-key-` carrying 32 bytes."""
    v = value.lower()
    return v.startswith("age-secret-key-1") and len(v) == 16 + 58 and bech32_checksum_ok(value)


# ----------------------------------------------------------------------------- JWT
def b64url_decode(s: str) -> bytes | None:
    """Decode unpadded base64url; None when it is not valid base64url."""
    try:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except (binascii.Error, ValueError):
        return None


@validator("jwt")
def jwt(value: str) -> bool:
    """A JSON Web Token (JWS compact form): the header is base64url JSON with an `alg` member."""
    parts = value.split(".")
    if len(parts) != 3:
        return False
    raw = b64url_decode(parts[0])
    if raw is None:
        return False
    try:
        header = json.loads(raw)
        payload = json.loads(b64url_decode(parts[1]) or b"")
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(header, dict) and isinstance(header.get("alg"), str) and isinstance(payload, dict)


# ----------------------------------------------------------------------------- BIP-39
@lru_cache(maxsize=1)
def bip39_wordlist() -> tuple[str, ...]:
    """The BIP-39 English wordlist (2048 words), from the `mnemonic` package (Trezor's reference)."""
    from mnemonic import Mnemonic

    words = tuple(Mnemonic("english").wordlist)
    if len(words) != 2048:
        raise RuntimeError("the BIP-39 English wordlist must have 2048 words")
    return words


@lru_cache(maxsize=1)
def _bip39_index() -> dict[str, int]:
    return {w: i for i, w in enumerate(bip39_wordlist())}


def bip39_checksum_ok(words: list[str]) -> bool:
    """Whether `words` (12/15/18/21/24 BIP-39 English words) carry a valid checksum."""
    n = len(words)
    if n not in (12, 15, 18, 21, 24):
        return False
    index = _bip39_index()
    try:
        bits = "".join(f"{index[w]:011b}" for w in words)
    except KeyError:
        return False
    cs_len = n // 3  # ENT / 32 bits of checksum, ENT = n * 11 - cs_len
    ent_bits = bits[: n * 11 - cs_len]
    entropy = int(ent_bits, 2).to_bytes(len(ent_bits) // 8, "big")
    digest = hashlib.sha256(entropy).digest()
    expected = f"{int.from_bytes(digest, 'big'):0256b}"[:cs_len]
    return bits[n * 11 - cs_len :] == expected


_WORD_SPLIT = re.compile(r"[^a-z]+")


@validator("bip39_seed_phrase")
def bip39_seed_phrase(value: str) -> bool:
    """A run of lower-case words contains a BIP-39 seed phrase: 12 to 24 consecutive wordlist words
    with a valid checksum (any window of the run, longest first)."""
    words = [w for w in _WORD_SPLIT.split(value.lower() if value.isupper() else value) if w]
    if len(words) < 12:
        return False
    index = _bip39_index()
    # split into maximal runs of wordlist words, then try windows of the valid lengths
    runs: list[list[str]] = [[]]
    for w in words:
        if w in index:
            runs[-1].append(w)
        elif runs[-1]:
            runs.append([])
    for run in runs:
        if len(run) < 12:
            continue
        for size in (24, 21, 18, 15, 12):
            for start in range(0, len(run) - size + 1):
                window = run[start : start + size]
                if bip39_checksum_ok(window):
                    return True
    return False


# ----------------------------------------------------------------------------- placeholders
#: values that stand for a secret in examples and templates rather than being one
PLACEHOLDER_WORDS = frozenset({
    "changeme", "change_me", "changeit", "password", "passw0rd", "secret", "mysecret", "token",
    "apikey", "api_key", "yourkey", "your_key", "yourtoken", "yoursecret", "yourpassword",
    "example", "sample", "dummy", "fake", "test", "testing", "placeholder", "redacted", "removed",
    "hidden", "none", "null", "nil", "undefined", "true", "false", "todo", "fixme", "xxx",
    "default", "admin", "root", "guest", "user", "username", "pass", "insert", "replace", "here",
    "secret_key", "access_key", "notasecret", "notsecret", "your", "my", "enter",
    # well-known defaults of development images and tutorials
    "postgres", "mysql", "mariadb", "mongo", "mongodb", "redis", "rabbitmq", "sa", "letmein",
    "tiger",  # scott/tiger, the classic Oracle and SQLAlchemy example
    "foo", "bar", "baz", "qux", "foobar", "hunter2", "s3cr3t", "p4ssw0rd", "pa55word", "passw0rd!",
})
_PLACEHOLDER_RE = re.compile(
    r"""^(?:
        [<\[{(].*[>\]})]                  # <your-key>, [TOKEN], {{ secret }}, (redacted)
      | \$\{?[A-Za-z_][A-Za-z0-9_.:-]*\}?  # $VAR, ${VAR}, ${VAR:-x}
      | \$\(.*\)                          # $(command)
      | %\(?[A-Za-z_][A-Za-z0-9_]*\)?s?%? # %VAR%, %(name)s
      | \{\{.*\}\}                        # {{ template }}
      | (?:os\.)?(?:environ|getenv|env|process\.env|secrets|vars|params|settings|config)\b.*
      | .*\*{3,}.*                        # ******** masks
      | .*(?:x{4,}|X{4,}|\.{3,}|_{4,}|-{4,}|•{3,}|…).*   # xxxx, ...., ____ fill
      | .*(?:your|my|example|sample|dummy|placeholder|redacted|changeme|replace|insert)
         [-_ ]?(?:api|secret|key|token|pass|here|own|value|actual|real).*
      | (?i:.*(?:REPLACE|INSERT|CHANGE)[-_ ]?(?:ME|THIS|WITH|YOUR|HERE).*)
      | (?i:(?:test|fake|dummy|mock|sample|example)[-_]?(?:key|token|secret|password|pass|pwd).*)
    )$""",
    re.VERBOSE | re.IGNORECASE,
)


def is_placeholder(value: str) -> bool:
    """Whether `value` looks like a stand-in for a secret (changeme, xxxx, <your-key>, ${VAR}, …)."""
    v = value.strip().strip("'\"`")
    if not v:
        return True
    low = v.lower()
    if low in PLACEHOLDER_WORDS or low.strip("_-.") in PLACEHOLDER_WORDS:
        return True
    if len(set(low)) <= 2:  # aaaaaaaa, 00000000, abababab
        return True
    if low in ("0123456789", "1234567890", "abcdefgh", "qwerty", "12345678", "123456789") or low.startswith(
        ("abcdef0123", "0123456789abcdef", "1234567890abcdef", "abcdefghij")
    ):
        return True
    return bool(_PLACEHOLDER_RE.match(v))


@validator("not_placeholder")
def not_placeholder(value: str) -> bool:
    """Rejects stand-ins for secrets (see `is_placeholder`)."""
    return not is_placeholder(value)


_CODE_VALUE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+$")
#: a type or class name (`PKCS7PrivateKeyTypes`, `_PasswordType`): words glued in PascalCase
_PASCAL_IDENT_RE = re.compile(r"^_?(?:[A-Z][a-z]+|[A-Z0-9]+)+$")


def _type_name(v: str) -> bool:
    return bool(_PASCAL_IDENT_RE.match(v)) and len(re.findall(r"[A-Z][a-z]{2,}", v)) >= 2
_WORDISH_RE = re.compile(r"^[a-z]+(?:[_-][a-z]+)*$")


@validator("password_value")
def password_value(value: str) -> bool:
    """A password literal: not a placeholder, not a reference to code or configuration, not a word.

    Rejects dotted attribute paths (`settings.DB_PASSWORD`), bare lower-case words and snake_case
    names (`hunter` is allowed only with a digit or symbol, `get_password` never), and very short values.
    """
    v = value.strip().strip("'\"`")
    if len(v) < 6 or is_placeholder(v):
        return False
    if (_CODE_VALUE_RE.match(v) or _WORDISH_RE.match(v) or re.fullmatch(r"[A-Za-z]+[?!:]?", v) or _type_name(v)
            or re.fullmatch(r"[A-Za-z]+(?:_[A-Za-z]+)+", v)):  # PGresult_ptr: an identifier
        return False  # a reference or a bare word (`Optional`, `None`, `getpass`), not a literal
    # an environment variable name is a reference, not a password
    return not (v.isupper() and re.fullmatch(r"[A-Z_]+", v))


@validator("generic_secret")
def generic_secret(value: str) -> bool:
    """A value assigned to a secret-looking key: long, random-looking, not a placeholder or a name.

    Requires at least two character classes (upper, lower, digit) and an entropy that rises with
    length (3.0 bits/char for 16 characters, 3.5 from 24), so identifiers and words do not pass.
    """
    v = value.strip().strip("'\"`")
    if len(v) < 16 or is_placeholder(v) or _CODE_VALUE_RE.match(v) or _WORDISH_RE.match(v.lower()) or _type_name(v):
        return False
    if "/" in v and not re.search(r"[+=]", v) and v.count("/") >= 2 and re.match(r"^[\w./-]+$", v):
        # a path (a/b/c) rather than base64
        parts = [p for p in v.split("/") if p]
        if all(_WORDISH_RE.match(p.lower().replace(".", "_")) for p in parts):
            return False
    classes = sum((any(c.islower() for c in v), any(c.isupper() for c in v), any(c.isdigit() for c in v)))
    if classes < 2:
        return False
    if re.fullmatch(r"[0-9a-fA-F-]{36}", v) and v.count("-") == 4:
        return False  # a UUID is an identifier, not a secret
    need = 3.0 if len(v) < 24 else 3.5
    return shannon_entropy(v) >= need


# ----------------------------------------------------------------------------- other structures
@validator("discord_bot_token")
def discord_bot_token(value: str) -> bool:
    """Discord bot token: the first segment is the base64 of the bot's numeric snowflake id."""
    first = value.split(".", 1)[0]
    raw = b64url_decode(first)
    if raw is None:
        return False
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return False
    return text.isdigit() and 17 <= len(text) <= 20


@validator("base64_json")
def base64_json(value: str) -> bool:
    """A base64(url) value that decodes to a JSON object (Sentry, 1Password service tokens)."""
    body = value.split("_", 1)[1] if "_" in value[:8] else value
    raw = b64url_decode(body.replace("+", "-").replace("/", "_").rstrip("="))
    if raw is None:
        return False
    try:
        return isinstance(json.loads(raw), dict)
    except (ValueError, UnicodeDecodeError):
        return False


@validator("pypi_macaroon")
def pypi_macaroon(value: str) -> bool:
    """PyPI API token: `pypi-` + base64url of a macaroon whose location is (test.)pypi.org."""
    raw = b64url_decode(value[5:]) if value.startswith("pypi-") else None
    return raw is not None and (b"pypi.org" in raw[:40])


@validator("high_entropy")
def high_entropy(value: str) -> bool:
    """At least 3.0 bits/char and two character classes: rules out words, repeats and masks."""
    if is_placeholder(value):
        return False
    classes = sum((any(c.islower() for c in value), any(c.isupper() for c in value),
                   any(c.isdigit() for c in value)))
    return classes >= 2 and shannon_entropy(value) >= 3.0


@validator("crc32_base62_mismatch")
def crc32_base62_mismatch(value: str) -> bool:
    """A GitHub/npm-shaped token whose checksum does NOT match, but which still looks random.

    Reported separately (lower severity) so that a mistyped, truncated or invented token in the
    right format is not silently passed.
    """
    _, sep, rest = value.partition("_")
    if not sep or len(rest) != 36 or crc32_base62_checksum(value):
        return False
    return high_entropy(rest)


@validator("not_masked")
def not_masked(value: str) -> bool:
    """Not a masked or zeroed example (`xoxb-0000000000-…-XXXXXXXXXXXX`): no run of 8 equal characters."""
    return not is_placeholder(value) and re.search(r"(.)\1{7}", value) is None


@validator("aws_key_id")
def aws_key_id(value: str) -> bool:
    """An AWS access key ID whose 16 characters after the prefix are not a mask (`AKIAXXXXXXXX…`)."""
    body = value[4:]
    # lower-cased (a DNS label): one case throughout, and a base32 digit
    if not value.isupper() and (not value.islower() or not re.search(r"[2-7]", body) or "example" in body):
        return False
    return len(set(body)) > 3 and not re.search(r"(.)\1{5}", body)


@validator("aws_secret_key")
def aws_secret_key(value: str) -> bool:
    """An AWS secret access key: 40 base64 characters, mixed case, not a hex digest, random-looking.

    Placeholder words are not checked: AWS's documented example secret ends in EXAMPLEKEY and is
    reported on purpose.
    """
    if len(value) != 40 or re.fullmatch(r"[0-9a-fA-F]+", value):
        return False
    if not (any(c.islower() for c in value) and any(c.isupper() for c in value)):
        return False
    return shannon_entropy(value) >= 3.5


@validator("url_password")
def url_password(value: str) -> bool:
    """A password from `scheme://user:password@host`: not a placeholder, a variable or a port."""
    v = value.strip()
    if is_placeholder(v) or v.startswith(("$", "%", "{")):
        return False
    if v.isdigit() and len(v) <= 5:  # host:port@… parsed as user:password
        return False
    if v.isalpha() and v.islower() and len(v) < 6:  # github://org:repo@sha, ftp://user:pass@…
        return False
    if re.search(r"[\[\]<>{}]", v):  # a documented URL template, not a password
        return False
    return len(v) >= 3


_ASSIGN_SPLIT = re.compile(r"""["']?\s{0,3}(?::=|=>|=|:)\s{0,3}["'`]?""")
#: key names that hold a secret's *metadata*, not the secret
_NOT_SECRET_KEY = re.compile(
    r"(?:^|[_.-])(?:name|names|id|ids|type|url|uri|endpoint|path|file|ref|arn|version|count|"
    r"limit|length|len|size|expiry|expires|expiration|ttl|header|field|label|prefix|format|"
    r"hash|digest|salt|policy|reset|hint|rotation|provider|manager|store|env|var|key_id|usage|arn)$"
    r"|(?:page|next|continuation|cursor|sync|pagination|csrf|xsrf|nonce|max|tokens|public|publishable)",
    re.IGNORECASE,
)


def _snake(key: str) -> str:
    """`SecretId` -> `Secret_Id`, so that name checks see camelCase word boundaries."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key)


def _split_assignment(match: str) -> tuple[str, str] | None:
    m = _ASSIGN_SPLIT.search(match)
    if m is None:
        return None
    return match[: m.start()], match[m.end() :]


@validator("generic_assignment")
def generic_assignment(value: str) -> bool:
    """`name = value` where the name says secret and the value looks like one (see `generic_secret`).

    The name is checked too: `next_page_token`, `secret_name`, `token_url`, `max_tokens`… hold no secret.
    """
    parts = _split_assignment(value)
    if parts is None:
        return False
    key, val = parts
    if _NOT_SECRET_KEY.search(_snake(key)) or val.startswith(("arn:", "urn:", "projects/")):
        return False
    if val.strip("'\"`").lower().startswith(_vendor_prefixes()):
        return False  # a vendor-specific rule reports it, with a better message
    return generic_secret(val)


@lru_cache(maxsize=1)
def _vendor_prefixes() -> tuple[str, ...]:
    """Literal prefixes of the built-in vendor credential rules (their keywords), e.g. `ghp_`, `sk-`."""
    from vallum.detection.rules import builtin_rules  # late: rules are data loaded on first use

    out = set()
    for r in builtin_rules():
        if r.category != "credential" or not r.id.startswith("dlp.") or "generic" in r.id:
            continue
        for k in r.keywords:
            if (len(k) >= 4 or not k.isalpha()) and len(k) >= 3 and k[0].isalnum() and " " not in k:
                out.add(k)
    return tuple(sorted(out))


@validator("password_assignment")
def password_assignment(value: str) -> bool:
    """`password = value` where the value is a literal password (see `password_value`)."""
    parts = _split_assignment(value)
    if parts is None:
        return False
    key, val = parts
    if _NOT_SECRET_KEY.search(_snake(key)) or re.search(r"(?:min|max|length|policy|confirm)", key, re.I):
        return False
    return password_value(val)


@validator("basic_auth")
def basic_auth(value: str) -> bool:
    """HTTP Basic credentials: base64 of printable `user:password` with a real-looking password."""
    try:
        raw = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return False
    _user, sep, password = raw.partition(":")
    if not sep or not raw.isprintable() or not password:
        return False
    return not is_placeholder(password) and len(password) >= 4
