"""Typed replies for each phase, parsed from whatever text a model returns.

Models are asked for JSON; small ones wrap it in fences, prepend chatter or fall back to the protocol's bold
labels (``**New insight:** …``). Parsing is tolerant about *shape* and strict about *substance*: a reply
without the one field a phase needs (an insight, a finding, an answer) is rejected so the engine can repair.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mythos.reason.lenses import normalize_driver, normalize_lens

STATUSES = ("evolving", "stable", "breakthrough", "negative-delta")
NO_INSIGHT_PREFIX = "no novel insight"
CHECK_NAMES = ("multi_hop", "ambiguous_tradeoffs", "hidden_assumptions", "novel_domain", "high_stakes")
# Filler a small model writes instead of content; never accepted in the field that carries a phase's substance.
GENERIC_FILLERS = frozenset(
    {
        "the answer",
        "answer",
        "one sentence",
        "one precise sentence",
        "the integrated view",
        "...",
        "…",
        "n/a",
        "tbd",
        "todo",
        "your answer",
        "final answer",
        "the final answer",
        "one line",
        "insight",
        "finding",
    }
)


class ReplyError(ValueError):
    """A reply that cannot be used: ``kind`` is "empty", "unparseable" or "template" (it copied the prompt's
    placeholder text); the message says what was missing."""

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
    """A phase's reply. ``CONTENT`` names the field that carries its substance (the answer, the insight …)."""

    model_config = ConfigDict(extra="ignore")
    CONTENT: ClassVar[str] = ""


ReplyModel = _Reply  # the public name of the base class, for type hints in other modules


def _d(description: str, **extra: Any) -> Any:
    """A field description; prompts render it as ``<description>``, a placeholder no answer can equal."""
    return {"description": description, **({"json_schema_extra": extra} if extra else {})}


class PreludeReply(_Reply):
    CONTENT: ClassVar[str] = "question_restated"
    question_restated: str = Field(**_d("the question restated more precisely, in your own words"))
    not_asking: list[str] = Field(default_factory=list, **_d("a misreading of the question to avoid"))
    complexity_checks: dict[str, bool] = Field(
        default_factory=dict,
        **_d(
            "the five complexity checks, each true or false",
            properties={name: {"type": "boolean"} for name in CHECK_NAMES},
            required=list(CHECK_NAMES),
            placeholder={name: f"<true or false: is it {name.replace('_', ' ')}?>" for name in CHECK_NAMES},
        ),
    )
    primary_drivers: list[str] = Field(
        default_factory=list, **_d("a primary driver's name from the list above (1-3 entries)")
    )
    difficulty_diagnosis: str = Field("", **_d("what makes this particular question hard"))
    problem_type: str = Field("standard", **_d("a problem type from the list above, or standard"))
    sequence: list[str] | None = Field(
        None, **_d("a lens name, in order; only for a custom problem type, else null")
    )
    sequence_reason: str | None = Field(None, **_d("why a non-standard problem type fits, else null"))
    success_criterion: str = Field("", **_d("what would make an answer good enough to stop"))

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
    CONTENT: ClassVar[str] = "new_insight"
    new_insight: str | None = Field(
        None, **_d("your one new insight about this question, in one sentence, or null if none")
    )
    analysis: str = Field("", **_d("how you applied the lens, briefly"))
    what_changed: str = Field("", **_d("what the view was before this round, and what it is now"))
    contradicts: list[int] = Field(
        default_factory=list, **_d("a round number this insight contradicts (empty list if none)")
    )
    better_supported_than_contradicted: bool | None = Field(
        None, **_d("true or false: is it better supported than what it contradicts (null if nothing)")
    )
    non_trivial: bool = Field(True, **_d("true or false: would this insight change the answer"))
    introduces_confusion: bool = Field(False, **_d("true or false: does it muddy the analysis"))
    status: str = Field(
        "evolving", **_d("one of evolving, breakthrough, stable, negative-delta", enum=list(STATUSES))
    )
    missed_driver: str | None = Field(None, **_d("a driver the diagnosis missed, or null"))
    needs_user_verification: bool = Field(
        False, **_d("true or false: does a claim need the user to verify it")
    )

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
    CONTENT: ClassVar[str] = "independent_finding"
    independent_finding: str = Field(
        **_d("your specific, falsifiable finding in one sentence (the answer if the question has one)")
    )
    reasoning: str = Field("", **_d("3-8 sentences of reasoning that reference the question"))
    confidence: str = Field("medium", **_d("one of high, medium, low", enum=["high", "medium", "low"]))
    tension_flag: str | None = Field(None, **_d("where another lens would disagree, or null"))

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
    between: list[str] = Field(default_factory=list, **_d("a finding's letter"))
    claim: str = Field("", **_d("what they disagree on"))
    better_supported: str = Field("neither", **_d("the better-supported finding's letter, or neither"))

    @field_validator("between", mode="before")
    @classmethod
    def _ids(cls, v: Any) -> list[str]:
        return [_as_text(x) for x in _as_list(v) if _as_text(x)]

    @field_validator("claim", "better_supported", mode="before")
    @classmethod
    def _text(cls, v: Any) -> str:
        return _as_text(v)


class MergeReply(_Reply):
    CONTENT: ClassVar[str] = "synthesis"
    synthesis: str = Field(
        **_d("the integrated view of the findings, keeping real tensions (state the answer if there is one)")
    )
    convergent_points: list[str] = Field(default_factory=list, **_d("a point at least two findings share"))
    tensions: list[Tension] = Field(default_factory=list)
    coverage: dict[str, Any] = Field(
        default_factory=dict,
        **_d(
            "whether every finding is represented",
            properties={
                "all_represented": {"type": "boolean"},
                "dropped": {"type": "array", "items": {"type": "string"}},
                "low_confidence_flagged": {"type": "boolean"},
            },
            required=["all_represented", "dropped", "low_confidence_flagged"],
            placeholder={
                "all_represented": "<true or false>",
                "dropped": ["<a dropped finding's letter>"],
                "low_confidence_flagged": "<true or false>",
            },
        ),
    )

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
    CONTENT: ClassVar[str] = "final_answer"
    final_answer: str = Field(**_d("your actual answer to the question, stated directly"))
    residual_uncertainty: list[str] = Field(
        default_factory=list, **_d("something unknown that would change the answer")
    )
    load_bearing_assumptions: str = Field("", **_d("the assumptions the answer rests on, in one line"))
    cross_check: str = Field("", **_d("whether the answer is consistent with every step, and where not"))
    trajectory: list[str] = Field(default_factory=list, **_d("one line per reasoning step"))

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


class SampleReply(_Reply):
    """One step-by-step sample (self-consistency): the reasoning comes first here on purpose — it is the
    strategy being measured — and the answer must be short enough to vote on."""

    CONTENT: ClassVar[str] = "final_answer"
    reasoning: str = Field("", **_d("your step-by-step reasoning"))
    final_answer: str = Field(**_d("only the final answer: a number, a name, yes/no, or one short phrase"))

    @field_validator("reasoning", "final_answer", mode="before")
    @classmethod
    def _text(cls, v: Any) -> str:
        return _as_text(v)

    @field_validator("final_answer")
    @classmethod
    def _required(cls, v: str) -> str:
        if not v:
            raise ValueError("final_answer is empty")
        return v


class VerifyReply(_Reply):
    """A verifier's check of one candidate answer (the vote step, ``vote.py``)."""

    CONTENT: ClassVar[str] = "verdict"
    verdict: str = Field(**_d("one of correct, incorrect, unsure", enum=["correct", "incorrect", "unsure"]))
    check: str = Field("", **_d("your own check of the candidate, step by step, in 1-4 sentences"))

    @field_validator("verdict", mode="before")
    @classmethod
    def _verdict(cls, v: Any) -> str:
        text = _as_text(v).lower()
        for word in ("incorrect", "correct", "unsure"):
            if text.startswith(word):
                return word
        return ""

    @field_validator("check", mode="before")
    @classmethod
    def _text(cls, v: Any) -> str:
        return _as_text(v)

    @field_validator("verdict")
    @classmethod
    def _required(cls, v: str) -> str:
        if not v:
            raise ValueError("verdict must be correct, incorrect or unsure")
        return v


# ------------------------------------------------------------------------------------------------ shapes


def _placeholder(info: Any) -> Any:
    """The prompt's stand-in for one field: a ``<description>``, never a value a model could pass off."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "placeholder" in extra:
        return extra["placeholder"]
    annotation = info.annotation
    args = getattr(annotation, "__args__", ()) or ()
    inner = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
    if inner is not None:
        return [shape_dict(inner)]
    text = f"<{info.description or 'see above'}>"
    origin = getattr(annotation, "__origin__", None)
    if origin is list or (args and any(getattr(a, "__origin__", None) is list for a in args)):
        return [text]
    return text


def shape_dict(model: type[BaseModel]) -> dict[str, Any]:
    return {name: _placeholder(info) for name, info in model.model_fields.items()}


@functools.cache
def shape_text(model: type[_Reply]) -> str:
    """The reply shape for a prompt, rendered from the model (declared once, here): field order as declared,
    the content field first, each value a description in angle brackets."""
    return (
        "Reply with one JSON object with exactly these keys (replace every <description> with your own "
        "content; never copy the descriptions):\n"
        + json.dumps(shape_dict(model), indent=1, ensure_ascii=False)
    )


@functools.cache
def placeholders(model: type[_Reply]) -> frozenset[str]:
    """Every placeholder string a prompt for ``model`` shows, normalized, for echo detection."""
    out: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            out.add(_norm(value))
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)

    walk(shape_dict(model))
    return frozenset(out)


def json_schema(model: type[_Reply]) -> dict[str, Any]:
    """The reply's JSON schema for constrained decoding: every key required, no extra keys, so a server that
    enforces it cannot return an object missing the answer."""
    schema = model.model_json_schema()

    def fix(node: Any) -> None:
        if isinstance(node, dict):
            node.pop("placeholder", None)
            if node.get("type") == "object" and isinstance(node.get("properties"), dict):
                node["required"] = list(node["properties"])
                node["additionalProperties"] = False
            for value in node.values():
                fix(value)
        elif isinstance(node, list):
            for value in node:
                fix(value)

    fix(schema)
    return schema


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().strip("\"'`.").strip()).lower()


def template_echoes(data: dict[str, Any], model: type[_Reply]) -> list[str]:
    """The fields whose value is the prompt's placeholder (or an unfilled ``<…>``; for the content field, also
    generic filler such as "the answer") — what a reply copied from the template instead of answering."""
    shown = placeholders(model)

    def echoed(value: Any) -> bool:
        if isinstance(value, str):
            norm = _norm(value)
            return bool(norm) and (norm in shown or (norm.startswith("<") and norm.endswith(">")))
        if isinstance(value, list):
            return any(echoed(v) for v in value)
        if isinstance(value, dict):
            return any(echoed(v) for v in value.values())
        return False

    out = [name for name in model.model_fields if name in data and echoed(data[name])]
    content = model.CONTENT
    value = data.get(content)
    if (
        content
        and content not in out
        and isinstance(value, str)
        and (_norm(value) in GENERIC_FILLERS or _paraphrases_a_placeholder(value))
    ):
        out.append(content)
    return out


ECHO_RUN = 4
"""Words in a row that a short content value shares with a placeholder to count as a paraphrased echo."""
ECHO_MAX_WORDS = 12
"""Content longer than this is judged on its own: a real answer may quote a few words of an instruction."""


@functools.cache
def _every_placeholder() -> frozenset[str]:
    """The placeholders of every reply shape: a prompt may show several (a subagent sees the Prelude's)."""
    out: set[str] = set()
    todo = list(_Reply.__subclasses__())
    while todo:
        model = todo.pop()
        todo.extend(model.__subclasses__())
        out |= placeholders(model)
    return frozenset(out)


def _paraphrases_a_placeholder(value: str) -> bool:
    """A short content value built from a placeholder's words ("this particular question hard to answer" from
    "what makes this particular question hard"): a small model rewording the template, not answering."""
    words = re.findall(r"[a-z0-9]+", value.lower())
    if not ECHO_RUN <= len(words) <= ECHO_MAX_WORDS:
        return False
    runs = {tuple(words[i : i + ECHO_RUN]) for i in range(len(words) - ECHO_RUN + 1)}
    for text in _every_placeholder():
        placeholder = re.findall(r"[a-z0-9]+", text)
        if any(tuple(placeholder[i : i + ECHO_RUN]) in runs for i in range(len(placeholder) - ECHO_RUN + 1)):
            return True
    return False


def template_echo(data: dict[str, Any], model: type[_Reply]) -> str | None:
    """Why a reply is a template echo, or None: its content field was copied, or most of its fields were.
    A few copied side fields are dropped instead (they fall back to their defaults; never used as content)."""
    echoes = template_echoes(data, model)
    present = [name for name in model.model_fields if name in data]
    if model.CONTENT in echoes or (echoes and 2 * len(echoes) > len(present)):
        name = model.CONTENT if model.CONTENT in echoes else echoes[0]
        return f"{name}={data[name]!r}"
    return None


def is_template_text(text: str, model: type[_Reply]) -> bool:
    """A whole prose reply that is only a placeholder or filler (used before prose is accepted as an answer)."""
    norm = _norm(text)
    return (
        norm in placeholders(model)
        or norm in GENERIC_FILLERS
        or (norm.startswith("<") and norm.endswith(">"))
    )


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
    echo = template_echo(data, model)
    if echo:
        raise ReplyError(
            "template", f"the reply copied the prompt's placeholder instead of answering ({echo[:120]})"
        )
    data = {k: v for k, v in data.items() if k not in template_echoes(data, model)}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        raise ReplyError("unparseable", f"reply does not fit {model.__name__}: {problems}") from None
