"""The canonical encoding: deterministic, order independent, Unicode safe, injective, parseable."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vallum.audit.canonical import CanonicalError, canonical_bytes, entry_hash, entry_line
from vallum.audit.verify import parse_entry

# Text with every kind of code point except lone surrogates (which have no UTF-8 form).
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
floats = st.one_of(
    st.floats(min_value=1e-4, max_value=1e15, allow_nan=False, allow_infinity=False),
    st.floats(min_value=-1e15, max_value=-1e-4, allow_nan=False, allow_infinity=False),
    st.integers(-(2**52), 2**52).map(float),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63), floats, texts)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=20,
)
objects = st.dictionaries(texts, values, max_size=6)


@settings(deadline=None, max_examples=60)
@given(objects)
def test_deterministic_and_parses_back_to_the_same_bytes(obj):
    a = canonical_bytes(obj)
    assert a == canonical_bytes(obj)
    # What a verifier does: parse the stored text and re-encode it.
    assert canonical_bytes(json.loads(a.decode("utf-8"))) == a


@settings(deadline=None, max_examples=60)
@given(objects, st.randoms(use_true_random=False))
def test_key_order_does_not_matter(obj, rnd):
    items = list(obj.items())
    rnd.shuffle(items)
    assert canonical_bytes(dict(items)) == canonical_bytes(obj)


def _outside_strings(text: str) -> str:
    out, in_str, esc = [], False, False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        else:
            out.append(ch)
    return "".join(out)


@settings(deadline=None, max_examples=60)
@given(objects)
def test_no_whitespace_outside_strings_and_valid_utf8(obj):
    text = canonical_bytes(obj).decode("utf-8")  # strict: raises on invalid UTF-8
    structure = _outside_strings(text)
    assert not any(ch in structure for ch in " \t\r\n")
    # Control characters inside strings are always escaped, so a line never breaks.
    assert not any(ord(ch) < 0x20 for ch in text)


@settings(deadline=None, max_examples=60)
@given(objects, objects)
def test_distinct_values_have_distinct_encodings(a, b):
    # Canonical equality must coincide with value equality (1 == 1.0 are the same JSON number).
    same_value = json.loads(canonical_bytes(a)) == json.loads(canonical_bytes(b))
    assert (canonical_bytes(a) == canonical_bytes(b)) == same_value


@settings(deadline=None)
@given(texts, texts)
def test_distinct_strings_never_collide(s1, s2):
    if s1 != s2:
        assert canonical_bytes({"k": s1}) != canonical_bytes({"k": s2})
        assert canonical_bytes({s1: 1}) != canonical_bytes({s2: 1})


@settings(deadline=None)
@given(floats)
def test_floats_round_trip_exactly(x):
    raw = canonical_bytes({"x": x})
    assert json.loads(raw)["x"] == x


def test_exact_bytes_for_a_known_value():
    value = {"b": [1, 2.5, None, True], "a": 'é\n\u0001"\\', "c": {"z": 1.0, "y": -0.0}}
    assert canonical_bytes(value) == (b'{"a":"\xc3\xa9\\n\\u0001\\"\\\\","b":[1,2.5,null,true],"c":{"y":0,"z":1}}')
    assert entry_hash(value) == hashlib.sha256(canonical_bytes(value)).hexdigest()


def test_keys_sort_by_code_point():
    assert canonical_bytes({"b": 1, "a": 2, "B": 3, "é": 4, "\U0001f600": 5, "\uffff": 6}) == (
        '{"B":3,"a":2,"b":1,"é":4,"\uffff":6,"\U0001f600":5}'.encode()
    )


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e-7, 1.5e16, 1e300, "\ud800", {1: 2}, object()])
def test_values_without_a_canonical_form_are_refused(bad):
    with pytest.raises(CanonicalError):
        canonical_bytes({"x": bad} if not isinstance(bad, dict) else bad)


@given(objects)
@settings(deadline=None, max_examples=50)
def test_stored_line_parses_and_verifies(obj):
    entry = {**obj, "v": 1, "seq": 3, "kind": "decision", "ts": "2026-01-01T00:00:00.000000Z", "prev": "0" * 64}
    entry.pop("hash", None)
    enc = canonical_bytes(entry)
    line = entry_line(enc, hashlib.sha256(enc).hexdigest())
    parsed, digest = parse_entry(line.rstrip(b"\n"))
    assert digest == hashlib.sha256(enc).hexdigest()
    assert canonical_bytes(parsed) == enc


@given(objects, st.integers(0, 200), st.integers(1, 255))
@settings(deadline=None, max_examples=80)
def test_any_byte_flip_in_a_stored_line_is_caught(obj, pos, delta):
    entry = {**obj, "v": 1, "seq": 3, "kind": "decision", "ts": "2026-01-01T00:00:00.000000Z", "prev": "0" * 64}
    entry.pop("hash", None)
    enc = canonical_bytes(entry)
    line = bytearray(entry_line(enc, hashlib.sha256(enc).hexdigest()).rstrip(b"\n"))
    i = pos % len(line)
    line[i] = (line[i] + delta) % 256
    with pytest.raises(ValueError):
        parse_entry(bytes(line))
