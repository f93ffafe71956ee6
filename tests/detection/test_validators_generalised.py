"""Validators added while generalising DLP against the held-out sets (docs/dlp.md)."""

from __future__ import annotations

import pytest

from vallum.detection.validators import VALIDATORS


@pytest.mark.parametrize(("value", "ok"), [
    ("AKIAQS4RTKFZGBWPMQ7N", True),
    ("akiaqs4rtkfzgbwpmq7n", True),           # a DNS label, lower-cased on the way
    ("AKIAIOSFODNN7EXAMPLE", True),           # AWS's documented example is reported on purpose
    ("akiaiosfodnn7example", False),
    ("AKIAXXXXXXXXXXXXXXXX", False),          # a mask
    ("AKIAQS4RTKAAAAAAAMQ7", False),
    ("Akiaqs4rtkfzgbwpmq7n", False),          # mixed case is not how keys or hostnames look
    ("asiapacificheadquart", False),          # lower case without a base32 digit
])
def test_aws_key_id(value, ok):
    assert VALIDATORS["aws_key_id"](value) is ok


@pytest.mark.parametrize(("value", "ok"), [
    ("xoxb-2417386498-2418756123587-Xk9mP2vL8qRt7wZ1nB6cF3hJ", True),
    ("xoxb-0000000000-0000000000000-XXXXXXXXXXXXXXXXXXXXXXXX", False),
    ("SG.xxxxxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", False),
    ("dop_v1_" + "0" * 64, False),
])
def test_not_masked(value, ok):
    assert VALIDATORS["not_masked"](value) is ok


def test_mir_cards_are_cards():
    assert VALIDATORS["payment_card"]("2200 3841 1166 2740") is True
    assert VALIDATORS["payment_card"]("2200 3841 1166 2741") is False  # Luhn fails
    assert VALIDATORS["payment_card"]("2205 3841 1166 2748") is False  # outside Mir's 2200-2204


@pytest.mark.parametrize("phrase", [
    "ZOO ZOO ZOO ZOO ZOO ZOO ZOO ZOO ZOO ZOO ZOO WRONG",
    "zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo wrong",
])
def test_seed_phrase_either_case(phrase):
    assert VALIDATORS["bip39_seed_phrase"](phrase)


def test_seed_phrase_mixed_case_is_prose():
    assert not VALIDATORS["bip39_seed_phrase"]("Zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo Wrong")
