"""Validators: checksums and structure rules, with independent reference encoders (not the code
under test) generating the valid values, and single-character changes that must fail."""

from __future__ import annotations

import base64
import json
import string
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mnemonic import Mnemonic

from vallum.detection import validators as v

ALNUM = string.ascii_letters + string.digits
B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


# ----------------------------------------------------------------- independent reference encoders
def ref_base62(n: int) -> str:
    s = ""
    while n:
        n, r = divmod(n, 62)
        s = B62[r] + s
    return s.rjust(6, "0")


def ref_github_token(prefix: str, body: str) -> str:
    return prefix + body + ref_base62(zlib.crc32(body.encode()))


def ref_luhn_complete(payload: str) -> str:
    for d in "0123456789":
        digits = [int(c) for c in payload + d]
        total = sum(x if i % 2 == 0 else (x * 2 - 9 if x * 2 > 9 else x * 2)
                    for i, x in enumerate(reversed(digits)))
        if total % 10 == 0:
            return payload + d
    raise AssertionError("no check digit")


def ref_iban(country: str, bban: str) -> str:
    rearranged = bban + country + "00"
    num = int("".join(str(int(c, 36)) for c in rearranged))
    return f"{country}{98 - num % 97:02d}{bban}"


_BECH = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def ref_bech32(hrp: str, data: list[int]) -> str:
    gen = [0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3]

    def polymod(values):
        chk = 1
        for val in values:
            b = chk >> 25
            chk = (chk & 0x1FFFFFF) << 5 ^ val
            for i in range(5):
                chk ^= gen[i] if ((b >> i) & 1) else 0
        return chk

    exp = [ord(x) >> 5 for x in hrp] + [0] + [ord(x) & 31 for x in hrp]
    pm = polymod(exp + data + [0] * 6) ^ 1
    return hrp + "1" + "".join(_BECH[d] for d in data) + "".join(_BECH[(pm >> 5 * (5 - i)) & 31] for i in range(6))


def mutate(s: str, i: int, alphabet: str) -> str:
    c = s[i]
    repl = alphabet[(alphabet.index(c) + 1) % len(alphabet)] if c in alphabet else alphabet[0]
    return s[:i] + repl + s[i + 1 :]


# ----------------------------------------------------------------- GitHub / npm CRC32
@given(st.text(alphabet=ALNUM, min_size=30, max_size=30), st.sampled_from(["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "npm_"]),
       st.data())
@settings(max_examples=150, deadline=None)
def test_crc32_checksum_valid_and_any_change_fails(body, prefix, data):
    token = ref_github_token(prefix, body)
    assert v.VALIDATORS["github_checksum"](token)
    assert not v.VALIDATORS["crc32_base62_mismatch"](token)
    i = data.draw(st.integers(min_value=4, max_value=len(token) - 1))
    bad = mutate(token, i, ALNUM)
    assert not v.VALIDATORS["github_checksum"](bad)


def test_crc32_checksum_rejects_wrong_shapes():
    good = ref_github_token("ghp_", "a" * 15 + "B" * 15)
    assert v.crc32_base62_checksum(good)
    assert not v.crc32_base62_checksum(good[:-1])
    assert not v.crc32_base62_checksum(good + "x")
    assert not v.crc32_base62_checksum("ghp" + good[3:].replace("_", ""))
    assert not v.crc32_base62_checksum("ghp_" + "é" * 36)


# ----------------------------------------------------------------- Luhn / cards
@given(st.text(alphabet=string.digits, min_size=11, max_size=18), st.data())
@settings(max_examples=200, deadline=None)
def test_luhn_valid_and_single_digit_change_fails(payload, data):
    number = ref_luhn_complete(payload)
    assert v.luhn(number)
    i = data.draw(st.integers(min_value=0, max_value=len(number) - 1))
    d = data.draw(st.sampled_from([c for c in string.digits if c != number[i]]))
    assert not v.luhn(number[:i] + d + number[i + 1 :])


@pytest.mark.parametrize("number", ["4111111111111111", "4111 1111 1111 1111", "5500-0000-0000-0004",
                                    "378282246310005", "6011111111111117", "3530111333300000",
                                    "30569309025904", "2223003122003222"])
def test_payment_card_accepts_test_cards(number):
    assert v.payment_card(number)


@pytest.mark.parametrize("number", [
    "4111111111111112",       # Luhn fails
    "4111 1111-1111 1111",    # mixed separators
    "0000000000000000",       # no network range
    "1234567812345670",       # Luhn-valid, but no network starts with 1
    "9111111111111111",       # no network
    "41111111111111111",      # Visa is 13, 16 or 19 digits
    "37828224631000",         # Amex is 15 digits
    "4222222222222",          # 13-digit Visa: retired, and 13-digit numbers are mostly ids
])
def test_payment_card_rejects(number):
    assert not v.payment_card(number)


@given(st.text(alphabet=string.digits, min_size=14, max_size=14))
def test_payment_card_visa_property(rest):
    number = ref_luhn_complete("4" + rest)
    assert v.payment_card(number)
    assert v.payment_card(" ".join(number[i : i + 4] for i in range(0, 16, 4)))


# ----------------------------------------------------------------- IBAN
IBAN_SPECS = {"DE": 18, "GB": 18, "FR": 23, "NL": 14, "ES": 20, "IT": 23, "CH": 17, "NO": 11}


@given(st.sampled_from(sorted(IBAN_SPECS)), st.data())
@settings(max_examples=200, deadline=None)
def test_iban_valid_and_single_change_fails(country, data):
    n = IBAN_SPECS[country]
    bban = data.draw(st.text(alphabet=string.digits + string.ascii_uppercase, min_size=n, max_size=n))
    iban = ref_iban(country, bban)
    if iban[2:4] in ("00", "01", "99"):
        return  # check digits the validator refuses as implausible
    assert v.iban(iban)
    grouped = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    assert v.iban(grouped)
    i = data.draw(st.integers(min_value=2, max_value=len(iban) - 1))
    alphabet = string.digits if iban[i].isdigit() else string.ascii_uppercase
    assert not v.iban(mutate(iban, i, alphabet))


@pytest.mark.parametrize("value", ["DE89370400440532013000", "GB82 WEST 1234 5698 7654 32", "NL91ABNA0417164300",
                                   "DE89 3704 0044 0532 0130 00 EUR"])
def test_iban_accepts_published_examples(value):
    assert v.iban(value)


@pytest.mark.parametrize("value", ["DE89370400440532013001", "DE8937040044053201300", "XX89370400440532013000",
                                   "de89370400440532013000", "GB82WEST123456987654321"])
def test_iban_rejects(value):
    assert not v.iban(value)


# ----------------------------------------------------------------- US SSN
@pytest.mark.parametrize("ssn", ["536-22-8741", "001-01-0001", "665-99-9999", "899-45-1234"])
def test_ssn_accepts(ssn):
    assert v.us_ssn(ssn)


@pytest.mark.parametrize("ssn", ["000-22-8741", "666-22-8741", "900-22-8741", "999-99-9999", "536-00-8741",
                                 "536-22-0000", "078-05-1120", "123-45-6789", "111-11-1111", "53-622-8741x"])
def test_ssn_rejects(ssn):
    assert not v.us_ssn(ssn)


@given(st.integers(1, 899), st.integers(1, 99), st.integers(1, 9999))
def test_ssn_structure_property(area, group, serial):
    ssn = f"{area:03d}-{group:02d}-{serial:04d}"
    expected = area != 666 and ssn.replace("-", "") not in {"078051120", "219099999", "123456789"} \
        and len(set(ssn.replace("-", ""))) > 1
    assert v.us_ssn(ssn) == expected


# ----------------------------------------------------------------- bech32 / age
@given(st.lists(st.integers(0, 31), min_size=52, max_size=52), st.data())
@settings(max_examples=150, deadline=None)
def test_age_key_valid_and_single_change_fails(data5, data):
    key = ref_bech32("age-secret-key-", data5).upper()
    assert v.age_secret_key(key)
    i = data.draw(st.integers(min_value=16, max_value=len(key) - 1))
    assert not v.age_secret_key(mutate(key, i, _BECH.upper()))


def test_bech32_rejects_mixed_case_and_bad_chars():
    key = ref_bech32("age-secret-key-", [1] * 52).upper()
    assert v.bech32_checksum_ok(key)
    assert not v.bech32_checksum_ok(key[:20] + key[20:].lower())
    assert not v.age_secret_key(key[:-1] + "B")  # 'b' is not in the bech32 alphabet
    assert not v.age_secret_key(key[:-1])


# ----------------------------------------------------------------- BIP-39
MN = Mnemonic("english")


@given(st.sampled_from([16, 20, 24, 28, 32]), st.binary(min_size=32, max_size=32))
@settings(max_examples=100, deadline=None)
def test_bip39_generated_phrases_validate(nbytes, entropy):
    phrase = MN.to_mnemonic(entropy[:nbytes])
    assert v.bip39_seed_phrase(phrase)
    assert v.bip39_seed_phrase("my wallet words: " + phrase + " (keep safe)")


@given(st.lists(st.sampled_from(MN.wordlist), min_size=12, max_size=12))
@settings(max_examples=200, deadline=None)
def test_bip39_checksum_agrees_with_reference(words):
    # the reference implementation (Trezor's `mnemonic`) is the oracle
    assert v.bip39_checksum_ok(words) == MN.check(" ".join(words))


def test_bip39_rejects_non_wordlist_and_short():
    assert not v.bip39_seed_phrase("abandon " * 11 + "zzzzzz")
    assert not v.bip39_seed_phrase("abandon " * 10 + "about")
    assert v.bip39_seed_phrase("abandon " * 11 + "about")


# ----------------------------------------------------------------- JWT
def _b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def test_jwt_requires_alg_and_json_parts():
    sig = "c2lnbmF0dXJlLWJ5dGVzLWhlcmUtMTIzNDU2Nzg"
    assert v.jwt(f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64({'sub': 'x'})}.{sig}")
    assert not v.jwt(f"{_b64({'typ': 'JWT'})}.{_b64({'sub': 'x'})}.{sig}")
    assert not v.jwt(f"{_b64({'alg': 5})}.{_b64({'sub': 'x'})}.{sig}")
    assert not v.jwt(f"{_b64({'alg': 'HS256'})}.bm90IGpzb24.{sig}")
    assert not v.jwt("eyJhbGciOi.eyJzdWIiOi.signature")


@given(st.text(alphabet=ALNUM + "-_", min_size=1, max_size=80))
def test_jwt_never_raises(s):
    v.jwt(s + "." + s + "." + s)


# ----------------------------------------------------------------- placeholders and generic values
@pytest.mark.parametrize("value", ["changeme", "<your-api-key>", "${API_KEY}", "$API_KEY", "{{ secrets.TOKEN }}",
                                   "xxxxxxxxxxxxxxxx", "********", "your_api_key_here", "REPLACE_ME", "null",
                                   "os.environ['X']", "%API_KEY%", "sk-...", "aaaaaaaaaaaa", "INSERT_YOUR_TOKEN"])
def test_placeholders(value):
    assert v.is_placeholder(value)


@pytest.mark.parametrize("value", ["kn6CUHEFcBVwLB76JkHEZ3TQ", "Tr0ub4dor&3", "9f8e7d6c5b4a39281706f5e4"])
def test_not_placeholders(value):
    assert not v.is_placeholder(value)


def test_generic_assignment_checks_key_and_value():
    assert v.generic_assignment("API_KEY=kn6CUHEFcBVwLB76JkHEZ3TQn6Xt")
    assert not v.generic_assignment("next_page_token: kn6CUHEFcBVwLB76JkHEZ3TQn6Xt")
    assert not v.generic_assignment("secret_name: kn6CUHEFcBVwLB76JkHEZ3TQn6Xt")
    assert not v.generic_assignment("API_KEY=getApiKeyFromEnvironment")
    assert not v.generic_assignment("API_KEY=6f1c2a9e-3b7d-4e58-9a2c-1d4f6b8e0c3a")
    assert not v.generic_assignment("API_KEY=/etc/secrets/api/key/file")


@given(st.text(min_size=0, max_size=200))
def test_validators_are_total(s):
    # a validator never raises, whatever it is given
    for fn in v.VALIDATORS.values():
        assert fn(s) in (True, False)
