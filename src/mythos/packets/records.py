"""Evidence records, verifier findings and source refs: strict parsing into the packet's field order.

Compile and ingest share these parsers, so anything ingest accepts is something compile accepts. Field order is
serde's struct order in the reference, which the byte-for-byte packet depends on.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from .errors import PacketError
from .jsonfmt import F32
from .sources import HASH_ALG

EVIDENCE_FIELDS = (
    "id",
    "kind",
    "summary",
    "source_ids",
    "source_refs",
    "observed_at",
    "agent_id",
    "lane",
    "confidence",
    "rationale",
    "diff_ref",
    "span_before",
    "span_after",
)
EVIDENCE_OPTIONAL_STRINGS = ("agent_id", "lane", "rationale", "diff_ref", "span_before", "span_after")
FINDING_FIELDS = (
    "id",
    "summary",
    "status",
    "verifier_score",
    "source_ids",
    "source_refs",
    "agent_id",
    "lane",
    "closure_reason",
)
# observed_at is stamped on findings at ingest (as the reference does) but is not part of a packet finding.
FINDING_ACCEPTED = (*FINDING_FIELDS, "observed_at")
REF_FIELDS = ("source_id", "path", "kind", "hash", "hash_alg", "span", "observed_at")

_intern = sys.intern


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate field {key!r}")
            seen.add(key)
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: Any) -> bool:
    if type(value) is str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if type(value) is dict:
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if type(value) is list:
        return any(_has_lone_surrogate(item) for item in value)
    return False


def loads_strict(text: str) -> Any:
    """``json.loads`` without NaN/Infinity, without silently merged duplicate keys, and without lone surrogates.

    ``"\\ud800"`` is valid JSON text but not a Unicode string: it cannot be written back as UTF-8, so it is
    refused here (the reference's parser rejects it too) instead of crashing the writer later.
    """
    value = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise ValueError(
            "a string holds a lone UTF-16 surrogate escape (\\ud800-\\udfff without its pair); "
            "write the character itself or a valid surrogate pair"
        )
    return value


def _problem(where: str, field: str, message: str, fix: str, value: object = None) -> PacketError:
    return PacketError(f"{where}: {message}", field=field, value=value, fix=fix)


def _string(obj: dict, name: str, where: str, *, required: bool) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise _problem(where, name, f"missing required field {name!r}", f"add {name!r} as a string")
        return None
    if type(value) is not str:
        raise _problem(
            where,
            name,
            f"field {name!r} must be a string, got {type(value).__name__}",
            f"write {name!r} as a JSON string",
            value,
        )
    return value


def _string_list(obj: dict, name: str, where: str) -> list[str]:
    value = obj.get(name)
    if value is None:
        raise _problem(where, name, f"missing required field {name!r}", f"add {name!r} as a list of strings")
    if type(value) is not list or any(type(item) is not str for item in value):
        raise _problem(
            where, name, f"field {name!r} must be a list of strings", f'write {name!r} as ["..."]', value
        )
    return [_intern(item) for item in value]


def _number(obj: dict, name: str, where: str, *, required: bool) -> float | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise _problem(where, name, f"missing required field {name!r}", f"add {name!r} as a number")
        return None
    if type(value) not in (int, float):
        raise _problem(
            where,
            name,
            f"field {name!r} must be a number, got {type(value).__name__}",
            f"write {name!r} as a JSON number",
            value,
        )
    return float(value)


def _unknown(obj: dict, allowed: tuple[str, ...], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise _problem(
                where,
                key,
                f"unknown field {key!r}",
                f"remove it; allowed fields are {', '.join(allowed)}",
                key,
            )


def _object(obj: object, where: str, what: str) -> dict:
    if type(obj) is not dict:
        raise _problem(
            where,
            what,
            f"{what} must be a JSON object, got {type(obj).__name__}",
            f"write each {what} as one JSON object on one line",
            obj,
        )
    return obj


_REF_SET = frozenset(REF_FIELDS)
_EVIDENCE_SET = frozenset(EVIDENCE_FIELDS)


def parse_ref(obj: object, where: str) -> dict:
    if type(obj) is dict and _REF_SET.issuperset(
        obj
    ):  # fast path for well-formed refs; errors take the slow path
        sid, path, kind, digest = obj.get("source_id"), obj.get("path"), obj.get("kind"), obj.get("hash")
        alg, span, observed = obj.get("hash_alg", HASH_ALG), obj.get("span"), obj.get("observed_at")
        if (
            type(sid) is str
            and type(path) is str
            and type(kind) is str
            and type(digest) is str
            and type(observed) is str
            and (alg == HASH_ALG or alg is None)
            and (span is None or type(span) is str)
        ):
            return {
                "source_id": _intern(sid),
                "path": _intern(path),
                "kind": _intern(kind),
                "hash": digest,
                "hash_alg": HASH_ALG,
                "span": span,
                "observed_at": _intern(observed),
            }
    ref = _object(obj, where, "source_ref")
    _unknown(ref, REF_FIELDS, where)
    parsed = {
        "source_id": _intern(_string(ref, "source_id", where, required=True)),
        "path": _intern(_string(ref, "path", where, required=True)),
        "kind": _intern(_string(ref, "kind", where, required=True)),
        "hash": _string(ref, "hash", where, required=True),
        "hash_alg": _intern(_string(ref, "hash_alg", where, required=False) or HASH_ALG),
        "span": _string(ref, "span", where, required=False),
        "observed_at": _intern(_string(ref, "observed_at", where, required=True)),
    }
    if parsed["hash_alg"] != HASH_ALG:
        raise _problem(
            where,
            "hash_alg",
            f"source_ref {parsed['source_id']!r} uses unsupported hash_alg {parsed['hash_alg']!r}",
            f"use {HASH_ALG!r} or leave hash_alg out",
            parsed["hash_alg"],
        )
    return parsed


def _refs(obj: dict, where: str) -> list[dict]:
    if "source_refs" not in obj:
        return []
    value = obj["source_refs"]
    if type(value) is not list:
        raise _problem(
            where,
            "source_refs",
            "field 'source_refs' must be a list of objects",
            "write source_refs as [{...}] or leave it out",
            value,
        )
    return [parse_ref(item, f"{where} source_refs[{n}]") for n, item in enumerate(value)]


def _fast_evidence(obj: dict, where: str) -> dict | None:
    """The common shape (what ingest writes) without per-field calls; None sends the record to the checked path."""
    rid, kind, summary, sids, observed = (
        obj.get("id"),
        obj.get("kind"),
        obj.get("summary"),
        obj.get("source_ids"),
        obj.get("observed_at"),
    )
    if not (
        type(rid) is str
        and type(kind) is str
        and type(summary) is str
        and type(observed) is str
        and type(sids) is list
        and all(type(sid) is str for sid in sids)
    ):
        return None
    parsed: dict[str, Any] = {
        "id": rid,
        "kind": _intern(kind),
        "summary": summary,
        "source_ids": [_intern(sid) for sid in sids],
    }
    if "source_refs" in obj:
        refs = obj["source_refs"]
        if type(refs) is not list:
            return None
        if refs:
            parsed["source_refs"] = [
                parse_ref(ref, f"{where} source_refs[{n}]") for n, ref in enumerate(refs)
            ]
    parsed["observed_at"] = _intern(observed)
    for name in ("agent_id", "lane"):
        value = obj.get(name)
        if value is not None:
            if type(value) is not str:
                return None
            parsed[name] = _intern(value)
    confidence = obj.get("confidence")
    if confidence is not None:
        if type(confidence) not in (int, float):
            return None
        parsed["confidence"] = float(confidence)
    for name in ("rationale", "diff_ref", "span_before", "span_after"):
        value = obj.get(name)
        if value is not None:
            if type(value) is not str:
                return None
            parsed[name] = value
    return parsed


def parse_evidence(obj: object, where: str) -> dict:
    """Validate one evidence record; return it with keys in packet order and None/empty optionals dropped."""
    if type(obj) is dict and _EVIDENCE_SET.issuperset(obj):
        fast = _fast_evidence(obj, where)
        if fast is not None:
            return fast
    record = _object(obj, where, "evidence record")
    _unknown(record, EVIDENCE_FIELDS, where)
    parsed: dict[str, Any] = {
        "id": _string(record, "id", where, required=True),
        "kind": _intern(_string(record, "kind", where, required=True)),
        "summary": _string(record, "summary", where, required=True),
        "source_ids": _string_list(record, "source_ids", where),
    }
    refs = _refs(record, where)
    if refs:
        parsed["source_refs"] = refs
    parsed["observed_at"] = _intern(_string(record, "observed_at", where, required=True))
    for name in ("agent_id", "lane"):
        value = _string(record, name, where, required=False)
        if value is not None:
            parsed[name] = _intern(value)
    confidence = _number(record, "confidence", where, required=False)
    if confidence is not None:
        parsed["confidence"] = confidence
    for name in ("rationale", "diff_ref", "span_before", "span_after"):
        value = _string(record, name, where, required=False)
        if value is not None:
            parsed[name] = value
    return parsed


def parse_finding(obj: object, where: str) -> dict:
    """Validate one verifier finding; return it with keys in packet order (observed_at is dropped)."""
    record = _object(obj, where, "verifier finding")
    _unknown(record, FINDING_ACCEPTED, where)
    _string(record, "observed_at", where, required=False)
    parsed: dict[str, Any] = {
        "id": _string(record, "id", where, required=True),
        "summary": _string(record, "summary", where, required=True),
        "status": _intern(_string(record, "status", where, required=True)),
        "verifier_score": F32(_number(record, "verifier_score", where, required=True)),
        "source_ids": _string_list(record, "source_ids", where),
    }
    refs = _refs(record, where)
    if refs:
        parsed["source_refs"] = refs
    for name in ("agent_id", "lane", "closure_reason"):
        value = _string(record, name, where, required=False)
        if value is not None:
            parsed[name] = _intern(value) if name != "closure_reason" else value
    return parsed
