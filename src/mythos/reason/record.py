"""The run record: every call, round, subagent and decision of one run, as plain data.

It is what ``--json`` prints, what calibration scores and what benchmarks measure, so it holds facts
(times, tokens, statuses, reasons) rather than prose about them.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

RECORD_VERSION = 1


OMIT = {"omit_default": True}  # field metadata: left out of the JSON while it holds its default


class RecordPart:
    """A typed part of the run record (route, halting, merge, coda). It serialises to exactly the dict it
    replaced — fields marked ``OMIT`` appear only once set, an unset part is ``{}`` — and still reads like one
    (``record.route["final_mode"]``, ``.get``, ``in``, truthiness), so records and their readers keep working."""

    def is_set(self) -> bool:
        return True

    def _emitted(self, key: str) -> bool:
        spec = self.__dataclass_fields__.get(key)  # type: ignore[attr-defined]
        if spec is None or not self.is_set():
            return False
        if spec.metadata.get("omit_default"):
            default = spec.default_factory() if spec.default_factory is not MISSING else spec.default
            return getattr(self, key) != default
        return True

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if self._emitted(f.name)}  # type: ignore[arg-type]

    def __getitem__(self, key: str) -> Any:
        if self._emitted(key):
            return getattr(self, key)
        raise KeyError(key)

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self.__dataclass_fields__:  # type: ignore[attr-defined]
            raise KeyError(f"{type(self).__name__} has no field {key!r}")
        setattr(self, key, value)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if self._emitted(key) else default

    def __contains__(self, key: str) -> bool:
        return self._emitted(key)

    def __bool__(self) -> bool:
        return self.is_set()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RecordPart | dict):
            mine = self.to_dict()
            return mine == (other.to_dict() if isinstance(other, RecordPart) else other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def _plain(value: Any) -> Any:
    if isinstance(value, RecordPart):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(eq=False)
class Route(RecordPart):
    """How the run was routed: the computed score, the table's mode, a forced mode, and the mode it ran in."""

    score: int | None = None
    default_mode: str | None = None
    forced_mode: str | None = None
    final_mode: str | None = None
    forced: bool = False
    forced_by: str | None = field(default=None, metadata=OMIT)  # "api" | "keyword:<kw>"
    prelude_failed: bool = field(default=False, metadata=OMIT)  # the default diagnosis and mode were used

    def is_set(self) -> bool:
        return self.final_mode is not None


@dataclass(eq=False)
class Halting(RecordPart):
    reason: str | None = None  # HaltReason
    at_round: int | None = None
    skipped_lenses: list[str] | None = field(default=None, metadata=OMIT)
    budget_rounds: int | None = field(default=None, metadata=OMIT)

    def is_set(self) -> bool:
        return self.reason is not None


@dataclass(eq=False)
class Merge(RecordPart):
    synthesis: str = ""
    convergent_points: list[str] = field(default_factory=list)
    tensions: list[dict[str, Any]] = field(default_factory=list)
    coverage: dict[str, Any] = field(default_factory=dict, metadata=OMIT)
    silent: bool = False  # too few usable findings: merged without forcing a synthesis
    source: str = "findings"  # packet | findings | none
    failed: bool = field(default=False, metadata=OMIT)


@dataclass(eq=False)
class Coda(RecordPart):
    final_answer: str = ""
    residual_uncertainty: list[str] = field(default_factory=list)
    load_bearing_assumptions: str = ""
    cross_check: str = ""
    trajectory: list[str] = field(default_factory=list)
    fallback: bool = field(default=False, metadata=OMIT)  # assembled by the engine: no real answer

    def is_set(self) -> bool:
        return bool(self.final_answer) or self.fallback


PARTS: dict[str, type[RecordPart]] = {"route": Route, "halting": Halting, "merge": Merge, "coda": Coda}


@dataclass
class CallRecord:
    index: int
    phase: str  # prelude | reprelude | round | subagent | recovery | merge | coda | direct
    lens: str | None
    tag: str
    t_start: float  # seconds since the run started
    t_end: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    estimated_tokens: bool = False
    attempts: int = 0
    retries: int = 0  # transport retries (timeouts, connection errors, 429, 5xx)
    repairs: int = 0  # repair retries after an empty or unusable reply
    status: str = "pending"  # ok | failed | skipped
    error_kind: str | None = None
    error: str | None = None
    deadline_s: float | None = None  # the call's deadline (scaled up for a measured slow backend)
    waited_s: float = 0.0  # backoff and Retry-After waits between attempts
    # what each attempt got back: {"text", "tokens_in", "tokens_out", "finish_reason"} or {"error": kind}
    # (a deadline that ended the call included) — enough to replay the run exactly
    replies: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RoundRecord:
    number: int
    lens: str
    application: int
    driver: str | None
    status: str  # evolving | stable | breakthrough | negative-delta | failed
    insight: str | None
    what_changed: str = ""
    discarded: bool = False
    call: int | None = None
    note: str | None = None


@dataclass
class SubagentRecord:
    letter: str
    lens_id: str
    base: str
    status: str = "pending"  # ok | no_insight | failed | recovered | recovery_failed
    finding: str | None = None
    reasoning: str = ""
    confidence: str = "medium"
    tension_flag: str | None = None
    low_confidence: bool = False
    error: str | None = None
    call: int | None = None
    recovery_call: int | None = None
    packet_evidence_id: str | None = None


@dataclass
class RunRecord:
    question: str
    started_at: str
    backend: dict[str, str]
    config: dict[str, Any]
    version: int = RECORD_VERSION
    invocation: dict[str, Any] = field(default_factory=dict)
    route: Route = field(default_factory=Route)
    prelude: dict[str, Any] = field(default_factory=dict)
    budget: list[dict[str, Any]] = field(default_factory=list)
    agent_lenses: list[dict[str, Any]] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    rounds: list[RoundRecord] = field(default_factory=list)
    subagents: list[SubagentRecord] = field(default_factory=list)
    halting: Halting = field(default_factory=Halting)
    reprelude: dict[str, Any] | None = None
    escalation: dict[str, Any] | None = None
    fallback_row: str | None = None
    fallbacks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    merge: Merge | None = None
    packet: dict[str, Any] | None = None
    vote: dict[str, Any] | None = None  # the vote/verifier step, when the findings had discrete answers
    coda: Coda = field(default_factory=Coda)
    outcome: str = "answered"  # answered | no_answer (Outcome): whether the model produced the answer
    no_answer_reason: str | None = None
    footer: str = ""
    rendered: str = ""
    totals: dict[str, Any] = field(default_factory=dict)

    def __setattr__(self, name: str, value: Any) -> None:
        # the typed parts accept the dicts they replaced (model_dump()s, older callers)
        if name in PARTS and isinstance(value, dict):
            kind = PARTS[name]
            known = kind.__dataclass_fields__  # type: ignore[attr-defined]
            value = kind(**{k: v for k, v in value.items() if k in known})
        object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in PARTS:
            part = getattr(self, name)
            out[name] = None if part is None else part.to_dict()
        return out

    def invocation_text(self) -> str:
        """The invocation that started the run (keyword + question), as a replay needs it."""
        keyword = self.invocation.get("keyword")
        return f"{keyword} {self.question}" if keyword else self.question

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False)

    def summarize(self, wall_s: float, price_in: float = 0.0, price_out: float = 0.0) -> None:
        """Fill ``totals``: per-phase calls and tokens, overall sums, cost at the configured prices."""
        by_phase: dict[str, dict[str, int]] = {}
        for call in self.calls:
            if call.status == "skipped":
                continue
            phase = by_phase.setdefault(call.phase, {"calls": 0, "tokens_in": 0, "tokens_out": 0})
            phase["calls"] += 1
            phase["tokens_in"] += call.tokens_in
            phase["tokens_out"] += call.tokens_out
        tokens_in = sum(p["tokens_in"] for p in by_phase.values())
        tokens_out = sum(p["tokens_out"] for p in by_phase.values())
        self.totals = {
            "calls": sum(p["calls"] for p in by_phase.values()),
            "failed_calls": sum(1 for c in self.calls if c.status == "failed"),
            "retries": sum(c.retries for c in self.calls),
            "repairs": sum(c.repairs for c in self.calls),
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "tokens": tokens_in + tokens_out,
            "estimated_tokens": any(c.estimated_tokens for c in self.calls),
            "cost": round((tokens_in * price_in + tokens_out * price_out) / 1e6, 6),
            "by_phase": by_phase,
            "wall_s": round(wall_s, 4),
        }
