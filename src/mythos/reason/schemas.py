"""Typed replies for each phase, parsed from whatever text a model returns.

Models are asked for JSON; small ones wrap it in fences, prepend chatter or fall back to the protocol's bold
labels (``**New insight:** …``). Parsing is tolerant about *shape* and strict about *substance*: a reply
without the one field a phase needs (an insight, a finding, an answer) is rejected so the engine can repair.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mythos.reason.lenses import normalize_driver, normalize_lens

STATUSES = ("evolving", "stable", "breakthrough", "negative-delta")
NO_INSIGHT_PREFIX = "no novel insight"


class ReplyError(ValueError):
    """A reply that cannot be used: ``kind`` is "empty" or "unparseable"; the message says what was missing."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        return [value] if value.strip() else []
    return [value]


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_as_text(v)}" for k, v in value.items() if _as_text(v))
    if isinstance(value, list):
        return "; ".join(_as_text(v) for v in value if _as_text(v))
    return str(value)


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "y")
    return bool(value)


class _Reply(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PreludeReply(_Reply):
    question_restated: str
    not_asking: list[str] = Field(default_factory=list)
    complexity_checks: dict[str, bool] = Field(default_factory=dict)
    primary_drivers: list[str] = Field(default_factory=list)
    difficulty_diagnosis: str = ""
    problem_type: str = "standard"
    sequence: list[str] | None = None
    sequence_reason: str | None = None
    success_criterion: str = ""

    @field_validator("question_restated", "difficulty_diagnosis", "success_criterion", mode="before")
    @classmethod
    def _text(cls, v: Any) -> str:
        return _as_text(v)

    @field_validator("not_asking", mode="before")
    @classmethod
    def _texts(cls, v: Any) -> list[str]:
        return [_as_text(x) for x in _as_list(v) if _as_text(x)]

    @field_validator("complexity_checks", mode="before")
    @classmethod
    def _checks(cls, v: Any) -> dict[str, bool]:
        if not isinstance(v, dict):
            return {}
        return {str(k).strip().lower().replace("-", "_").replace(" ", "_"): _as_bool(x) for k, x in v.items()}

    @field_validator("primary_drivers", mode="before")
    @classmethod
    def _drivers(cls, v: Any) -> list[str]:
        names = [normalize_driver(_as_text(x)) for x in _as_list(v)]
        return list(dict.fromkeys(n for n in names if n))[:3]

    @field_validator("problem_type", mode="before")
    @classmethod
    def _ptype(cls, v: Any) -> str:
        text = _as_text(v).lower().replace("/", "_").replace(" ", "_").replace("-", "_")
        return text or "standard"

    @field_validator("sequence", mode="before")
    @classmethod
    def _sequence(cls, v: Any) -> list[str] | None:
        if v is None:
            return None
        items = v.replace("→", ",").split(",") if isinstance(v, str) else _as_list(v)
        names = [normalize_lens(_as_text(x)) for x in items]
        return [n for n in names if n] or None

    @field_validator("question_restated")
    @classmethod
    def _required(cls, v: str) -> str:
        if not v:
            raise ValueError("question_restated is empty")
        return v


class RoundReply(_Reply):
    analysis: str = ""
    new_insight: str | None = None
    what_changed: str = ""
    contradicts: list[int] = Field(default_factory=list)
    better_supported_than_contradicted: bool | None = None
    non_trivial: bool = True
    introduces_confusion: bool = False
    status: str = "evolving"
    missed_driver: str | None = None
    needs_user_verification: bool = False

    @field_validator("analysis", "what_changed", mode="before")
    @classmethod
    def _text(cls, v: Any) -> str:
        return _as_text(v)

    @field_validator("new_insight", mode="before")
    @classmethod
    def _insight(cls, v: Any) -> str | None:
        text = _as_text(v)
        if not text or text.lower().startswith(NO_INSIGHT_PREFIX) or text.lower() in ("none", "null", "n/a"):
            return None
        return text

    @field_validator("contradicts", mode="before")
    @classmethod
    def _ints(cls, v: Any) -> list[int]:
        out = []
        for x in _as_list(v):
            match = re.search(r"\d+", str(x))
            if match:
                out.append(int(match.group()))
        return out

    @field_validator("non_trivial", "introduces_confusion", "needs_user_verification", mode="before")
    @classmethod
    def _bools(cls, v: Any) -> bool:
        return _as_bool(v)

    @field_validator("better_supported_than_contradicted", mode="before")
    @classmethod
    def _opt_bool(cls, v: Any) -> bool | None:
        return None if v is None else _as_bool(v)

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, v: Any) -> str:
        text = _as_text(v).lower().replace("_", "-").replace(" ", "-")
        for status in STATUSES:
            if text.startswith(status):
                return status
        return "evolving"

    @field_validator("missed_driver", mode="before")
    @classmethod
    def _driver(cls, v: Any) -> str | None:
        return normalize_driver(_as_text(v)) if v else None


class SubagentReply(_Reply):
    independent_finding: str
    reasoning: str = ""
    confidence: str = "medium"
    tension_flag: str | None = None

    @field_validator("independent_finding", "reasoning", mode="before")
    @classmethod
    def _text(cls, v: Any) -> str:
        return _as_text(v)

    @field_validator("confidence", mode="before")
    @classmethod
    def _confidence(cls, v: Any) -> str:
        text = _as_text(v).lower()
        for level in ("high", "medium", "low", "n/a"):
            if text.startswith(level):
                return level
        return "medium"

    @field_validator("tension_flag", mode="before")
    @classmethod
    def _tension(cls, v: Any) -> str | None:
        return _as_text(v) or None

    @field_validator("independent_finding")
    @classmethod
    def _required(cls, v: str) -> str:
        if not v:
            raise ValueError("independent_finding is empty")
        return v


class Tension(_Reply):
    between: list[str] = Field(default_factory=list)
    claim: str = ""
    better_supported: str = "neither"

    @field_validator("between", mode="before")
    @classmethod
    def _ids(cls, v: Any) -> list[str]:
        return [_as_text(x) for x in _as_list(v) if _as_text(x)]

    @field_validator("claim", "better_supported", mode="before")
    @classmethod
    def _text(cls, v: Any) -> str:
        return _as_text(v)


class MergeReply(_Reply):
    convergent_points: list[str] = Field(default_factory=list)
    tensions: list[Tension] = Field(default_factory=list)
    synthesis: str
    coverage: dict[str, Any] = Field(default_factory=dict)

    @field_validator("convergent_points", mode="before")
    @classmethod
    def _texts(cls, v: Any) -> list[str]:
        return [_as_text(x) for x in _as_list(v) if _as_text(x)]

    @field_validator("tensions", mode="before")
    @classmethod
    def _tensions(cls, v: Any) -> list:
        return [x if isinstance(x, dict) else {"claim": _as_text(x)} for x in _as_list(v) if x]

    @field_validator("synthesis", mode="before")
    @classmethod
    def _text(cls, v: Any) -> str:
        return _as_text(v)

    @field_validator("coverage", mode="before")
    @classmethod
    def _coverage(cls, v: Any) -> dict:
        return v if isinstance(v, dict) else {}

    @field_validator("synthesis")
    @classmethod
    def _required(cls, v: str) -> str:
        if not v:
            raise ValueError("synthesis is empty")
        return v


class CodaReply(_Reply):
    trajectory: list[str] = Field(default_factory=list)
    cross_check: str = ""
    final_answer: str
    residual_uncertainty: list[str] = Field(default_factory=list)
    load_bearing_assumptions: str = ""

    @field_validator("trajectory", "residual_uncertainty", mode="before")
    @classmethod
    def _texts(cls, v: Any) -> list[str]:
        return [_as_text(x) for x in _as_list(v) if _as_text(x)]

    @field_validator("cross_check", "final_answer", "load_bearing_assumptions", mode="before")
    @classmethod
    def _text(cls, v: Any) -> str:
        return _as_text(v)

    @field_validator("final_answer")
    @classmethod
    def _required(cls, v: str) -> str:
        if not v:
            raise ValueError("final_answer is empty")
        return v


# ------------------------------------------------------------------------------------------------ extraction

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
_LABEL = re.compile(r"^\s*(?:[-*]\s*)?\*\*([A-Za-z][A-Za-z /-]*?):?\*\*:?\s*(.*)$")


def extract_json(text: str) -> dict | None:
    """Find the first JSON object in a reply: the whole text, a fenced block, or the outermost braces."""
    candidates = [text.strip()]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(value, dict):
            return value
    return None


def extract_labels(text: str) -> dict[str, str]:
    """Read the protocol's bold-label markdown (``**New insight:** …``) into snake_case keys."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        match = _LABEL.match(line)
        if match and match.group(2).strip():
            key = match.group(1).strip().lower().replace(" ", "_").replace("-", "_")
            out.setdefault(key, match.group(2).strip())
    return out


_LABEL_ALIASES = {
    "insight": "new_insight",
    "finding": "independent_finding",
    "convergence": "status",
    "answer": "final_answer",
    "tension_flag": "tension_flag",
    "q": "question_restated",
}


def parse_reply(text: str | None, model: type[_Reply]) -> _Reply:
    """Parse ``text`` into ``model`` or raise ReplyError naming what is wrong."""
    if text is None or not text.strip():
        raise ReplyError("empty", "the reply was empty")
    data: dict | None = extract_json(text)
    if data is None:
        labels = extract_labels(text)
        data = {_LABEL_ALIASES.get(k, k): v for k, v in labels.items()} if labels else None
    if data is None:
        raise ReplyError("unparseable", f"no JSON object or labelled fields in the reply ({text[:80]!r})")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        raise ReplyError("unparseable", f"reply does not fit {model.__name__}: {problems}") from None
