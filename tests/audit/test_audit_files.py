"""Segment files: line splitting and tail reading agree on any content."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from vallum.audit.files import first_line, last_line, segment_name, segment_number, split_lines

chunks = st.lists(
    st.one_of(st.binary(max_size=30), st.just(b"\n"), st.integers(4000, 9000).map(lambda n: b"y" * n)), max_size=8
)


@settings(deadline=None)
@given(chunks)
def test_split_lines_keeps_every_byte(parts):
    data = b"".join(parts)
    lines, torn = split_lines(data)
    assert b"\n" not in torn
    assert b"".join(x + b"\n" for x in lines) + torn == data


@given(chunks)
@settings(deadline=None, max_examples=60)
def test_first_and_last_line_match_split_lines(parts):
    data = b"".join(parts)
    lines, _ = split_lines(data)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "f"
        p.write_bytes(data)
        assert last_line(p) == (lines[-1] if lines else None)
        assert first_line(p) == (lines[0] if lines else None)


@settings(deadline=None)
@given(st.integers(1, 10**9))
def test_segment_names_round_trip_and_sort(n):
    name = segment_name(n)
    assert segment_number(Path(name)) == n
    assert (segment_name(n) < segment_name(n + 1)) or len(segment_name(n + 1)) > len(name)
