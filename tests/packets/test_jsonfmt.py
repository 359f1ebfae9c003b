"""Byte-level JSON output: serde_json pretty layout and ryu float text, checked against known values and properties."""

from __future__ import annotations

import io
import json
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mythos.packets.hashing import fnv1a64, line_count
from mythos.packets.jsonfmt import (
    F32,
    Stream,
    dumps_compact,
    dumps_pretty,
    format_f32,
    format_f64,
    write_pretty_object,
)

F64_CASES = [
    (1e-6, "1e-6"),
    (1.5e-6, "1.5e-6"),
    (0.00001, "0.00001"),
    (0.000015, "0.000015"),
    (1e-7, "1e-7"),
    (1e14, "100000000000000.0"),
    (1e15, "1000000000000000.0"),
    (1e16, "1e16"),
    (1e20, "1e20"),
    (1e300, "1e300"),
    (5e-324, "5e-324"),
    (1.0, "1.0"),
    (-0.0, "-0.0"),
    (0.1 + 0.2, "0.30000000000000004"),
]
F32_CASES = [
    (0.81, "0.81"),
    (0.7, "0.7"),
    (123456789, "123456790.0"),
    (16777217, "16777216.0"),
    (0.30000000000000004, "0.3"),
    (5e-324, "0.0"),
    (0.000001, "0.000001"),
    (0.0000015, "0.0000015"),
    (1e-7, "1e-7"),
    (1e12, "1000000000000.0"),
    (1e13, "1e13"),
    (1.5e13, "1.5e13"),
    (3.4028235e38, "3.4028235e38"),
    (1e300, "null"),
    (float("nan"), "null"),
]


@pytest.mark.parametrize(("value", "text"), F64_CASES)
def test_f64_layout_matches_serde(value, text):
    assert format_f64(value) == text


@pytest.mark.parametrize(("value", "text"), F32_CASES)
def test_f32_layout_matches_serde(value, text):
    assert format_f32(value) == text


def _f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


@settings(max_examples=400)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_f64_text_round_trips(value):
    assert float(format_f64(value)) == value


@settings(max_examples=400)
@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_f32_text_round_trips_and_is_shortest(value):
    text = format_f32(value)
    assert _f32(float(text)) == value or (value == 0 and float(text) == 0)
    digits = len(text.lstrip("-").split("e")[0].replace(".", "").strip("0")) or 1
    if digits > 1 and value != 0:
        shorter = f"{value:.{digits - 2}e}"
        assert _f32(float(shorter)) != value


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(json_values)
def test_pretty_matches_pythons_indent_2_without_floats(value):
    assert dumps_pretty(value) == json.dumps(value, indent=2, ensure_ascii=False)
    assert dumps_compact(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def test_streamed_object_equals_pretty_dump():
    items = [{"a": "x", "b": [1, F32(0.7)]}, {"c": []}]
    out = io.StringIO()
    write_pretty_object(out, [("list", Stream(iter(items))), ("empty", Stream(iter([]))), ("n", F32(0.2))])
    assert out.getvalue() == dumps_pretty({"list": items, "empty": [], "n": F32(0.2)}) + "\n"
    assert json.loads(out.getvalue())["list"][0]["b"][1] == 0.7


def test_fnv_and_line_count_reference_values():
    assert fnv1a64(b"") == "cbf29ce484222325"
    assert fnv1a64(b"a") == "af63dc4c8601ec8c"
    data = bytes(range(256)) * 3 + b"tail"
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) % 2**64
    assert fnv1a64(data) == f"{h:016x}"
    assert [line_count(x) for x in (b"", b"a", b"a\n", b"a\nb", b"a\r\nb\n", b"a\rb")] == [1, 1, 1, 2, 2, 1]
    assert math.isfinite(float(format_f64(1e308)))
