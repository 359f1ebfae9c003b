"""Byte-exact JSON output: serde_json's pretty printer and ryu float layout, so packets match the reference.

Python's ``json`` differs from serde_json in two places that matter for byte identity: float text (``1e-05`` vs
``0.00001``, f32 fields printed as the shortest decimal that round-trips as an f32) and it cannot stream. This
module writes the same bytes serde_json 1.0.x (ryu) writes, one top-level item at a time.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterable
from typing import IO, Any

_encode_str: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]


class F32(float):
    """A float the reference stores as f32: printed as the shortest decimal that round-trips through f32."""

    __slots__ = ()


def _digits_and_point(text: str) -> tuple[str, int]:
    """Split a positive decimal (``123.45``, ``1e-05``) into significant digits and k, value = 0.d1d2… × 10^k."""
    mantissa, _, exponent = text.partition("e")
    exp = int(exponent) if exponent else 0
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    k = len(whole) + exp
    stripped = digits.lstrip("0")
    k -= len(digits) - len(stripped)
    return stripped.rstrip("0") or "0", k


def _layout(digits: str, k: int, low: int, high: int) -> str:
    n = len(digits)
    if 0 < k <= high:
        if n <= k:
            return digits + "0" * (k - n) + ".0"
        return digits[:k] + "." + digits[k:]
    if low < k <= 0:
        return "0." + "0" * (-k) + digits
    mantissa = digits[0] + ("." + digits[1:] if n > 1 else "")
    return f"{mantissa}e{k - 1}"


def _to_f32(value: float) -> float | None:
    try:
        return struct.unpack("<f", struct.pack("<f", value))[0]
    except OverflowError:
        return None


def _shortest_f32_digits(value: float) -> str:
    """Shortest decimal (as ``%e`` text) that reads back as the same f32; the nearest one among ties of length."""
    for precision in range(1, 10):
        text = f"{value:.{precision - 1}e}"
        if _to_f32(float(text)) == value:
            return text
    return f"{value:.8e}"


_f32_cache: dict[float, str] = {}
_f64_cache: dict[float, str] = {}


def format_f64(value: float) -> str:
    cached = _f64_cache.get(value)
    if cached is not None and (value != 0.0 or math.copysign(1.0, value) > 0):
        return cached
    if not math.isfinite(value):
        return "null"
    if value == 0.0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    digits, k = _digits_and_point(repr(abs(value)))
    text = sign + _layout(digits, k, -5, 16)
    if len(_f64_cache) < 4096:
        _f64_cache[value] = text
    return text


def format_f32(value: float) -> str:
    cached = _f32_cache.get(value)
    if cached is not None and (value != 0.0 or math.copysign(1.0, value) > 0):
        return cached
    if not math.isfinite(value):
        return "null"
    single = _to_f32(value)
    if single is None or not math.isfinite(single):
        return "null"
    if single == 0.0:
        return "-0.0" if math.copysign(1.0, single) < 0 else "0.0"
    sign = "-" if single < 0 else ""
    digits, k = _digits_and_point(_shortest_f32_digits(abs(single)))
    text = sign + _layout(digits, k, -6, 13)
    if len(_f32_cache) < 4096:
        _f32_cache[value] = text
    return text


def f32_value(value: float) -> float | None:
    """The float a reader of the packet sees for an f32 field (None where the reference writes ``null``)."""
    text = format_f32(value)
    return None if text == "null" else float(text)


_INDENTS = ["\n" + "  " * level for level in range(64)]
_KEYS: list[dict[str, str]] = [{} for _ in range(64)]


def _key_cache(level: int) -> dict[str, str]:
    """Per-depth cache of ``<newline+indent>"key": `` so each key is escaped once per compile, not per record."""
    return _KEYS[level] if level < len(_KEYS) else {}


def _indent(level: int) -> str:
    return _INDENTS[level] if level < len(_INDENTS) else "\n" + "  " * level


_REF_KEYS = ("source_id", "path", "kind", "hash", "hash_alg", "span", "observed_at")
_REF_TEMPLATES: dict[int, str] = {}


def _ref_text(ref: dict, level: int) -> str | None:
    """Source refs are most of a packet's bytes: render the fixed 7-field shape with one template."""
    template = _REF_TEMPLATES.get(level)
    if template is None:
        inner, outer = _indent(level + 1), _indent(level)
        template = _REF_TEMPLATES[level] = (
            "{" + ",".join(inner.replace("%", "%%") + f'"{key}": %s' for key in _REF_KEYS) + outer + "}"
        )
    source_id, path, kind, digest, alg, span, observed = ref.values()
    enc = _encode_str
    try:  # the C encoder raises TypeError for anything but str; such refs take the generic path
        return template % (
            enc(source_id),
            enc(path),
            enc(kind),
            enc(digest),
            enc(alg),
            "null" if span is None else enc(span),
            enc(observed),
        )
    except TypeError:
        return None


def pretty_parts(obj: Any, level: int, parts: list[str]) -> None:
    """Append serde_json ``to_writer_pretty`` text for ``obj`` (2-space indent) to ``parts``."""
    kind = type(obj)
    if kind is str:
        parts.append(_encode_str(obj))
    elif kind is dict:
        if not obj:
            parts.append("{}")
            return
        if len(obj) == 7 and tuple(obj) == _REF_KEYS:
            text = _ref_text(obj, level)
            if text is not None:
                parts.append(text)
                return
        keys = _key_cache(level)
        first = True
        for key, value in obj.items():
            prefix = keys.get(key)
            if prefix is None:
                prefix = keys[key] = _indent(level + 1) + _encode_str(key) + ": "
            vtype = type(value)
            if vtype is str:
                parts.append(("{" if first else ",") + prefix + _encode_str(value))
            elif value is None:
                parts.append(("{" if first else ",") + prefix + "null")
            else:
                parts.append(("{" if first else ",") + prefix)
                pretty_parts(value, level + 1, parts)
            first = False
        parts.append(_indent(level) + "}")
    elif kind is list or kind is tuple:
        if not obj:
            parts.append("[]")
            return
        inner = _indent(level + 1)
        if type(obj[0]) is str:
            try:
                parts.append("[" + inner + ("," + inner).join(map(_encode_str, obj)) + _indent(level) + "]")
                return
            except TypeError:
                pass  # a mixed list: fall through to item-by-item
        sep = "["
        for item in obj:
            parts.append(sep + inner)
            sep = ","
            pretty_parts(item, level + 1, parts)
        parts.append(_indent(level) + "]")
    elif kind is F32:
        parts.append(format_f32(obj))
    elif kind is float:
        parts.append(format_f64(obj))
    elif obj is None:
        parts.append("null")
    elif obj is True:
        parts.append("true")
    elif obj is False:
        parts.append("false")
    elif kind is int:
        parts.append(str(obj))
    elif isinstance(obj, float):
        parts.append(format_f64(float(obj)))
    else:
        raise TypeError(f"cannot serialise {kind.__name__} into a packet")


def dumps_pretty(obj: Any) -> str:
    parts: list[str] = []
    pretty_parts(obj, 0, parts)
    return "".join(parts)


def write_pretty_object(out: IO[str], fields: Iterable[tuple[str, Any]]) -> None:
    """Stream a top-level object whose values may be iterators of items, flushing text as it goes.

    A value that is a ``Stream`` is written item by item, so a million-record section never exists as one string.
    """
    out.write("{")
    sep = ""
    for key, value in fields:
        out.write(sep + "\n  " + _encode_str(key) + ": ")
        sep = ","
        if isinstance(value, Stream):
            _write_stream(out, value)
        else:
            parts: list[str] = []
            pretty_parts(value, 1, parts)
            out.write("".join(parts))
    out.write("\n}\n")


class Stream:
    """A lazily produced JSON array (see ``write_pretty_object``)."""

    def __init__(self, items: Iterable[Any]):
        self.items = items


def _write_stream(out: IO[str], stream: Stream) -> None:
    parts: list[str] = []
    wrote = False
    for item in stream.items:
        parts.append(("[" if not wrote else ",") + "\n    ")
        wrote = True
        pretty_parts(item, 2, parts)
        if len(parts) > 20000:
            out.write("".join(parts))
            parts.clear()
    if not wrote:
        out.write("[]")
        return
    parts.append("\n  ]")
    out.write("".join(parts))


def dumps_compact(obj: Any) -> str:
    """serde_json ``to_string``: no spaces; our floats laid out like ryu."""
    parts: list[str] = []
    _compact_parts(obj, parts)
    return "".join(parts)


def _compact_parts(obj: Any, parts: list[str]) -> None:
    kind = type(obj)
    if kind is str:
        parts.append(_encode_str(obj))
    elif kind is dict:
        parts.append("{")
        sep = ""
        for key, value in obj.items():
            parts.append(sep + _encode_str(key) + ":")
            sep = ","
            _compact_parts(value, parts)
        parts.append("}")
    elif kind is list or kind is tuple:
        if obj and all(type(item) is str for item in obj):
            parts.append("[" + ",".join(map(_encode_str, obj)) + "]")
            return
        parts.append("[")
        sep = ""
        for item in obj:
            parts.append(sep)
            sep = ","
            _compact_parts(item, parts)
        parts.append("]")
    else:
        pretty_parts(obj, 0, parts)
