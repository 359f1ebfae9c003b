"""The packet wing's vocabularies, each defined once: evidence kinds, ref kinds, statuses, severities, gate checks.

Every other module imports these names; nothing re-spells the strings. Members are ``StrEnum``s, so they compare,
hash and serialise as the plain strings the reference writes.
"""

from __future__ import annotations

from enum import StrEnum


class EvidenceKind(StrEnum):
    """The evidence kinds the gate knows (others are accepted with a warning, as in the reference)."""

    OBJECTIVE = "objective"
    SUBAGENT_SESSION = "subagent-session"
    CODEX_SYNTHESIS = "codex-synthesis"
    OBSERVATION = "observation"
    CODE_CHANGE = "code-change"
    TEST_CHANGE = "test-change"
    ROOT_CAUSE = "root-cause"
    BLOCKER = "blocker"
    SYMPTOM = "symptom"
    MEASUREMENT = "measurement"
    FAILURE_MODE = "failure-mode"
    GAP = "gap"
    MISSING_CHECK = "missing-check"
    PROPOSAL = "proposal"
    RISK = "risk"
    ARCHITECTURE = "architecture"
    DATA_LOSS = "data-loss"
    CODE_DEFECT = "code-defect"
    SCHEMA_GAP = "schema-gap"
    CONTRACT_GAP = "contract-gap"
    GATE_GAP = "gate-gap"
    PROCESS_GAP = "process-gap"
    PLAN = "plan"


K = EvidenceKind
KNOWN_KINDS = frozenset(K)
# Records the run itself writes (seed, session capture, Prime's synthesis): never traced to a subagent output.
UNTRACED_KINDS = frozenset({K.OBJECTIVE, K.SUBAGENT_SESSION, K.CODEX_SYNTHESIS})
# Kinds that may rest on a summary alone ("process" is not a known kind; the reference exempts it anyway).
SUMMARY_ONLY_OK = frozenset({K.OBJECTIVE, "process", K.SUBAGENT_SESSION, K.CODEX_SYNTHESIS, K.BLOCKER})
# Claims of change or cause: need a file, command or test ref (gate) and rank high in contradictions.
STRONG_KINDS = frozenset({K.CODE_CHANGE, K.ROOT_CAUSE, K.TEST_CHANGE})
# Plain observations: two of them disagreeing is a low-severity contradiction.
LOW_KINDS = frozenset({K.OBSERVATION, K.MEASUREMENT, K.SYMPTOM})
# Bookkeeping records that never take part in contradictions.
INFRASTRUCTURE_KINDS = frozenset({K.SUBAGENT_SESSION, K.BLOCKER, K.OBJECTIVE})
# Kind pairs that answer each other rather than disagree (an observation and the proposal it motivates).
COMPATIBLE_KIND_PAIRS = frozenset(
    frozenset(pair)
    for pair in (
        (K.OBSERVATION, K.PROPOSAL),
        (K.OBSERVATION, K.ROOT_CAUSE),
        (K.GAP, K.PROPOSAL),
        (K.MISSING_CHECK, K.PROPOSAL),
        (K.ROOT_CAUSE, K.SYMPTOM),
        (K.FAILURE_MODE, K.PROPOSAL),
        (K.PROPOSAL, K.RISK),
    )
)


class RefKind(StrEnum):
    FILE = "file"
    RAW = "raw"
    COMMAND = "command"
    TEST = "test"
    LOG = "log"
    PACKET = "packet"
    VERIFIER = "verifier"
    EVIDENCE = "evidence"
    OBJECTIVE = "objective"


REF_KINDS = tuple(RefKind)
# Direct ids (``file:…``, ``command:…``, ``test:…``, ``log:…``) must carry a matching source_ref on their record.
DIRECT_PREFIXES = tuple(f"{kind}:" for kind in (RefKind.FILE, RefKind.COMMAND, RefKind.TEST, RefKind.LOG))
# Ref kinds that anchor a strong claim (the gate's R6 rule).
ANCHOR_REF_KINDS = frozenset({RefKind.FILE, RefKind.COMMAND, RefKind.TEST})


class FindingStatus(StrEnum):
    PENDING = "pending"
    PROPOSED = "proposed"
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


FINDING_STATUSES = tuple(FindingStatus)


class Severity(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


SEVERITY_RANK = {Severity.HIGH: 0, Severity.MEDIUM: 1, Severity.LOW: 2}


class HaltKind(StrEnum):
    CONTINUE = "continue"
    READY = "ready-to-halt"


class ContradictionForm(StrEnum):
    """How the packet lists auto-contradictions: one entry per shared span, or the reference's every pair."""

    GROUPED = "grouped"
    PAIRWISE = "pairwise"


class GateCheck(StrEnum):
    """Every check the gate runs; a failure's ``check`` field is one of these."""

    PACKET = "packet"
    STALE = "stale"
    PASS = "pass"
    SCHEMA = "schema"
    INTEGRITY = "integrity"
    PATH_LEAK = "path-leak"
    TRACEABILITY = "traceability"
    DIRECT_REF_RATIO = "direct-ref-ratio"
    COVERAGE = "coverage"
    REJECTED = "rejected"
    VERIFIER = "verifier"
    HALT = "halt"
    SYNTHESIS = "synthesis"


class GateWarning(StrEnum):
    KIND = "kind"
    CONTRADICTION = "contradiction"
    QUARANTINE = "quarantine"
