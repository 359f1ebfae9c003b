"""The run record: every call, round, subagent and decision of one run, as plain data.

It is what ``--json`` prints, what calibration scores and what benchmarks measure, so it holds facts
(times, tokens, statuses, reasons) rather than prose about them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

RECORD_VERSION = 1


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
    route: dict[str, Any] = field(default_factory=dict)
    prelude: dict[str, Any] = field(default_factory=dict)
    budget: list[dict[str, Any]] = field(default_factory=list)
    agent_lenses: list[dict[str, Any]] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    rounds: list[RoundRecord] = field(default_factory=list)
    subagents: list[SubagentRecord] = field(default_factory=list)
    halting: dict[str, Any] = field(default_factory=dict)
    reprelude: dict[str, Any] | None = None
    escalation: dict[str, Any] | None = None
    fallback_row: str | None = None
    fallbacks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    merge: dict[str, Any] | None = None
    packet: dict[str, Any] | None = None
    vote: dict[str, Any] | None = None  # the vote/verifier step, when the findings had discrete answers
    coda: dict[str, Any] = field(default_factory=dict)
    outcome: str = "answered"  # answered | no_answer (Outcome): whether the model produced the answer
    no_answer_reason: str | None = None
    footer: str = ""
    rendered: str = ""
    totals: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

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
