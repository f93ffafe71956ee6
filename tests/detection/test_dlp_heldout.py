"""Held-out DLP evaluation through the public surface (`vallum.scan`, `vallum scan --batch`).

Set A (tests/detection/corpus/dlp_heldout_a.jsonl) was written before the rules were generalised
and scored first (docs/dlp.md has the before/after table); set B was written after and scored once,
untuned. Both are kept as floors: a change that loses recall or adds a false positive fails here.
"""

from __future__ import annotations

import collections
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import vallum

CORPUS = Path(__file__).parent / "corpus"
DLP = ("credential", "pii")
EVIDENCE = re.compile(r"^[^…]{0,4}…\[redacted\]$")

# family -> minimum positives caught (set A, 382 positives); negatives: no block at all
FLOOR_A = {"ai_providers": 51, "cloud": 31, "comms": 46, "generic": 28, "infra": 93, "payments": 24,
           "pii": 46, "registries": 20, "source_hosting": 36}
FLOOR_B = {"recall": 103, "false_positives": 0}  # first scan was 99 and 1 (docs/dlp.md)


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (CORPUS / name).read_text().splitlines() if line.strip()]


def _score(rows: list[dict]) -> tuple[collections.Counter, list[str], list[dict], list]:
    caught: collections.Counter = collections.Counter()
    false_pos, missed, findings = [], [], []
    for r in rows:
        v = vallum.scan(r["content"], kind=r["kind"])
        findings.extend(v.findings)
        hit = v.action.value == "block" and any(f.category in DLP for f in v.findings)
        if r["expect"] == "block":
            if hit:
                caught[r["family"]] += 1
            else:
                missed.append(r)
        elif v.action.value == "block":
            false_pos.append(f"{r['id']} {r['type']}: {[f.rule for f in v.findings]}")
    return caught, false_pos, missed, findings


@pytest.fixture(scope="module")
def set_a():
    return _score(_rows("dlp_heldout_a.jsonl"))


@pytest.fixture(scope="module")
def set_b():
    return _score(_rows("dlp_heldout_b.jsonl"))


def test_set_a_sizes():
    rows = _rows("dlp_heldout_a.jsonl")
    pos = [r for r in rows if r["expect"] == "block"]
    assert len(pos) >= 200 and len(rows) - len(pos) >= 200
    assert len({r["type"] for r in pos if r["family"] != "pii"}) >= 60


def test_set_a_recall_floor_per_family(set_a):
    caught, _, missed, _ = set_a
    low = {fam: (caught[fam], floor) for fam, floor in FLOOR_A.items() if caught[fam] < floor}
    assert not low, (low, [(m["type"], m["variant"]) for m in missed])


def test_set_a_no_false_positives(set_a):
    assert set_a[1] == []


def test_set_b_floor(set_b):
    caught, false_pos, _, _ = set_b
    assert sum(caught.values()) >= FLOOR_B["recall"]
    assert len(false_pos) <= FLOOR_B["false_positives"], false_pos


def test_evidence_never_holds_a_secret(set_a, set_b):
    for f in set_a[3] + set_b[3]:
        if f.category in (*DLP, "entropy"):
            assert EVIDENCE.match(f.evidence), (f.rule, f.evidence)


def test_batch_cli_agrees_with_library():
    rows = _rows("dlp_heldout_b.jsonl")
    lines = "\n".join(json.dumps({"id": r["id"], "kind": r["kind"], "content": r["content"]}) for r in rows)
    exe = Path(sys.executable).with_name("vallum")
    out = subprocess.run([str(exe), "scan", "--batch", "-"], input=lines, capture_output=True, text=True, timeout=120)
    got = [json.loads(line) for line in out.stdout.splitlines()]
    assert [g["id"] for g in got] == [r["id"] for r in rows]
    for r, g in zip(rows, got):
        assert g["action"] == vallum.scan(r["content"], kind=r["kind"]).action.value, r["id"]


# ------------------------------------------------------------------ locations on http_request / url
GH = "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"


@pytest.mark.parametrize(("content", "kind", "location"), [
    ({"method": "GET", "url": "https://api.example.com/", "headers": {"Authorization": f"Bearer {GH}"}, "body": ""},
     "http_request", "headers.authorization"),
    ({"method": "POST", "url": "https://api.example.com/", "headers": {"Content-Type": "application/json"},
      "body": json.dumps({"a": {"b": GH}}), "content_type": "application/json"}, "http_request", "body.json.a.b"),
    ({"method": "POST", "url": "https://login.example.com/", "headers": {"Content-Type": "application/json"},
      "body": json.dumps({"user": "bob", "password": "Tr0ub4dor&3x"}), "content_type": "application/json"},
     "http_request", "body.json.password"),
    ({"method": "POST", "url": "https://login.example.com/", "headers": {},
      "body": "user=bob&password=Tr0ub4dor%263x", "content_type": "application/x-www-form-urlencoded"},
     "http_request", "body.form.password"),
    ({"method": "GET", "url": "https://api.example.com/", "headers": {"DD-API-KEY": "3f2c9ad0b5e14c7a8e6d1f0b2c4a9e87"}, "body": ""},
     "http_request", "headers.dd-api-key"),
    ({"method": "GET", "url": "https://api.example.com/", "headers": {"Authorization": "Basic YWxpY2U6UzNjcjN0UGFzc3cwcmQh"}, "body": ""},
     "http_request", "headers.authorization"),
    (f"https://collector.example.net/c?token={GH}", "url", "url.query.token"),
])
def test_location_names_the_field(content, kind, location):
    v = vallum.scan(content, kind=kind)
    assert v.action.value == "block"
    assert location in {f.location for f in v.findings if f.category in DLP}, v.findings


@pytest.mark.parametrize("text", [
    "GITHUB_TOKEN=ghp_iK2ZWeqhFWCEP\u200byYngFb51yBMWXaSCr1R1Q1J",        # zero-width space inside
    "GITHUB_TOKEN=ghp_iK2ZWeqhFWCEP\u00adyYngFb51yBMWXaSCr1R1Q1J",        # soft hyphen
    "token ｇｈｐ＿ｉＫ２ＺＷｅｑｈＦＷＣＥＰｙＹｎｇＦｂ５１ｙＢＭＷＸａＳＣｒ１Ｒ１Ｑ１Ｊ",  # full-width
])
def test_invisible_and_fullwidth_evasions(text):
    v = vallum.scan(text, kind="outbound")
    assert "dlp.github_token" in {f.rule for f in v.findings}
