"""Invocation parsing and mode routing (protocol §2).

The complexity score is computed first; a keyword then overrides the *routing only* — never the score,
the drivers or the diagnosis.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

MODES = ("direct", "silent", "trace", "agent")
KEYWORDS: dict[str, str] = {"trace": "trace", "deep": "agent", "agent": "agent", "quick": "silent"}


class EmptyQuestion(ValueError):
    """The invocation held only mode keywords (or nothing): there is no question to reason about."""


@dataclass(frozen=True)
class Invocation:
    question: str
    forced_mode: str | None
    keyword: str | None


_LEADING_TOKEN = re.compile(r"\s*(\S+)")


def parse_invocation(args: str) -> Invocation:
    """Strip a run of leading bare keywords (the last one wins); the rest is the question, verbatim.

    Only a token that equals a keyword after lower-casing counts (``trace:`` or ``tracer`` do not), and the
    body of the question is never scanned, so "How deep is it?" stays a question with no forced mode.
    """
    rest = args
    forced: str | None = None
    keyword: str | None = None
    while True:
        match = _LEADING_TOKEN.match(rest)
        if not match or match.group(1).lower() not in KEYWORDS:
            break
        keyword = match.group(1).lower()
        forced = KEYWORDS[keyword]
        rest = rest[match.end() :]
    question = rest.strip()
    if not question:
        raise EmptyQuestion(
            f"no question left in {args!r} after the mode keywords; "
            "write it after the keyword, e.g. `mythos think trace Should we adopt X?`"
        )
    return Invocation(question=question, forced_mode=forced, keyword=keyword)


@dataclass(frozen=True)
class Route:
    score: int
    default_mode: str
    forced_mode: str | None
    final_mode: str
    forced: bool

    def to_dict(self) -> dict:
        return asdict(self)


def default_mode_for(score: int) -> str:
    if score <= 1:
        return "direct"
    return "silent" if score <= 3 else "agent"


def route(score: int, forced_mode: str | None, *, explicit: bool = False) -> Route:
    """Apply the routing table: c=1 direct, 2-3 silent, 4-5 agent; a keyword wins, except quick at c=1
    stays direct (it exists to suppress escalation, and direct is the cheapest answer) [D-4, D-5].
    An ``explicit`` mode (API or --mode) is taken literally [D-3]."""
    if not 1 <= score <= 5:
        raise ValueError(f"complexity score {score} is outside 1..5")
    if forced_mode is not None and forced_mode not in MODES:
        raise ValueError(f"forced mode {forced_mode!r} is not one of {', '.join(MODES)}")
    default = default_mode_for(score)
    final = forced_mode or default
    if forced_mode == "silent" and score == 1 and not explicit:
        final = "direct"
    return Route(
        score=score,
        default_mode=default,
        forced_mode=forced_mode,
        final_mode=final,
        forced=forced_mode is not None,
    )
