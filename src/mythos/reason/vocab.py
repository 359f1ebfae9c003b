"""The engine's vocabularies, defined once: modes, statuses, halting reasons, fallback rows, error kinds.

They are ``StrEnum``s so a record still serialises to the same JSON strings and old records still compare
equal (``HaltReason.NO_DELTA == "no_delta"``).
"""

from __future__ import annotations

from enum import StrEnum


class Mode(StrEnum):
    DIRECT = "direct"
    SILENT = "silent"
    TRACE = "trace"
    AGENT = "agent"
    NONE = "none"  # the run stopped before the Prelude finished


ROUTABLE_MODES = (Mode.DIRECT, Mode.SILENT, Mode.TRACE, Mode.AGENT)


class CallStatus(StrEnum):
    PENDING = "pending"
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


class RoundStatus(StrEnum):
    EVOLVING = "evolving"
    STABLE = "stable"
    BREAKTHROUGH = "breakthrough"
    NEGATIVE_DELTA = "negative-delta"
    FAILED = "failed"


class SubagentStatus(StrEnum):
    PENDING = "pending"
    OK = "ok"
    NO_INSIGHT = "no_insight"
    FAILED = "failed"
    RECOVERED = "recovered"
    RECOVERY_FAILED = "recovery_failed"


class HaltReason(StrEnum):
    NEGATIVE_DELTA = "negative_delta"
    NO_DELTA = "no_delta"
    TRIVIAL_DELTA = "trivial_delta"
    SELF_CONSISTENT = "self_consistent"
    MAX_ROUNDS = "max_rounds"
    ROUND_FAILED = "round_failed"
    SCOPE_DRIFT = "scope_drift"
    ESCALATED = "escalated"
    BUDGET = "budget"
    RUN_DEADLINE = "run_deadline"
    SINGLE_CALL = "single_call"
    ENGINE_ERROR = "engine_error"


CONVERGED = (
    HaltReason.NEGATIVE_DELTA,
    HaltReason.NO_DELTA,
    HaltReason.TRIVIAL_DELTA,
    HaltReason.SELF_CONSISTENT,
)


class FallbackRow(StrEnum):
    NONE = "none"
    ONE_FAILED = "one_failed"
    RECOVERED = "recovered"
    ALL_FAILED = "all_failed"


class ErrorKind(StrEnum):
    """Why an attempt or a call failed; the first six come from backends, the rest from the engine."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    HTTP_429 = "http_429"
    HTTP_5XX = "http_5xx"
    HTTP_4XX = "http_4xx"
    GARBAGE = "garbage"
    DEADLINE = "deadline"  # the call's own deadline ended it (recorded so a replay ends it the same way)
    RUN_DEADLINE = "run_deadline"
    EMPTY = "empty"
    UNPARSEABLE = "unparseable"
    TEMPLATE = "template"  # the reply copied the prompt's placeholder text instead of answering
    TRUNCATED = "truncated"  # the reply hit the token limit (finish_reason: length)
    PROSE = "prose"
    BUDGET = "budget"
    CLIENT_ERROR = "client_error"


class Outcome(StrEnum):
    """Whether the run has a real answer: the CLI's exit status follows it."""

    ANSWERED = "answered"  # the model wrote the answer
    NO_ANSWER = "no_answer"  # the engine had to assemble it (exit 3)
