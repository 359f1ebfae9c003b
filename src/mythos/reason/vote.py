"""The vote/verifier step for questions with discrete answers (issue 14 §3).

Independent findings (agent subagents, self-consistency samples, the rounds' insights) are reduced to short
normalized answers and counted. When they disagree, each distinct candidate is checked by a verifier call on
its own merits, so a correct minority is kept rather than averaged away: one verified candidate wins
whatever its count; several verified ones fall back to their count; none verified leaves the plurality,
marked as such. Open questions (no discrete answers) skip the step.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

_MARKER = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:|=|would be|should be)?\s*[:=]?\s*(.+)", re.IGNORECASE
)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_ARTICLES = {"a", "an", "the"}
MAX_WORDS = 6  # a longer answer is prose, not a discrete answer to vote on


def _canon_number(text: str) -> str:
    value = text.replace(",", "")
    if "." in value:
        value = value.rstrip("0").rstrip(".")
    return value


def extract_answer(text: str | None) -> str | None:
    """The discrete answer a text commits to — a number, yes/no, or a short phrase — normalized so equal
    answers compare equal (``"The answer is 1,200."`` → ``"1200"``); None when the text is open prose."""
    if not text:
        return None
    candidate = text.strip()
    match = _MARKER.search(candidate)
    if match:
        candidate = re.split(r"(?<=[^\d])[.;\n]|[.;]\s|\n", match.group(1).strip(), maxsplit=1)[0]
    numbers = _NUMBER.findall(candidate)
    words = re.findall(r"[a-z0-9]+", candidate.lower())
    if words and words[0] in ("yes", "no") and (match or len(words) <= MAX_WORDS):
        return words[0]
    if numbers and (match or len(words) <= MAX_WORDS):
        return _canon_number(numbers[-1])
    words = [w for w in words if w not in _ARTICLES]
    if words and (match or len(candidate.split()) <= MAX_WORDS) and len(words) <= MAX_WORDS:
        return " ".join(words)
    return None


@dataclass
class Candidate:
    answer: str
    sources: list[str]  # who proposed it (subagent letters, sample numbers, round numbers)
    verdict: str | None = None  # correct | incorrect | unsure, once verified
    check: str = ""

    @property
    def count(self) -> int:
        return len(self.sources)


@dataclass
class Vote:
    candidates: list[Candidate] = field(default_factory=list)
    voters: int = 0  # how many findings were looked at
    discrete: bool = False  # enough of them commit to a short answer to vote at all
    winner: str | None = None
    decided_by: str = "none"  # unanimous | majority | plurality | verifier | tie | none
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for cand, data in zip(self.candidates, out["candidates"], strict=True):
            data["count"] = cand.count
        return out

    def prompt_block(self) -> str | None:
        """What the merge/Coda prompt is told about the vote (None for an open question)."""
        if not self.discrete or not self.candidates:
            return None
        lines = []
        for c in self.candidates:
            verdict = f"; verifier: {c.verdict}" if c.verdict else ""
            lines.append(
                f"- {c.answer!r}: proposed by {', '.join(c.sources)} ({c.count}/{self.voters}){verdict}"
            )
        head = "VOTE ON THE DISCRETE ANSWER (counted by the engine, not by you):"
        tail = (
            f"Decision: {self.winner!r} ({self.decided_by}). State this answer unless the reasoning above "
            "shows it is wrong; a verified minority answer outranks an unverified majority."
            if self.winner
            else "No answer won: weigh the candidates on their reasoning, not on their counts."
        )
        return "\n".join([head, *lines, tail])


def tally(findings: list[tuple[str, str | None]]) -> Vote:
    """Count the discrete answers in ``(source, text)`` findings; decide when no verification is needed."""
    vote = Vote(voters=len(findings))
    by_answer: dict[str, Candidate] = {}
    for source, text in findings:
        answer = extract_answer(text)
        if answer is None:
            continue
        by_answer.setdefault(answer, Candidate(answer, [])).sources.append(source)
    committed = sum(c.count for c in by_answer.values())
    vote.candidates = sorted(by_answer.values(), key=lambda c: -c.count)
    vote.discrete = committed >= 2 and 2 * committed >= len(findings)
    if not vote.discrete:
        vote.note = "open question: too few findings commit to a short answer to vote"
        return vote
    if len(vote.candidates) == 1:
        vote.winner, vote.decided_by = vote.candidates[0].answer, "unanimous"
    else:
        _decide_by_count(vote, vote.candidates, "majority")
    return vote


def _decide_by_count(vote: Vote, pool: list[Candidate], label: str) -> None:
    top = max(c.count for c in pool)
    leaders = [c for c in pool if c.count == top]
    if len(leaders) == 1:
        vote.winner, vote.decided_by = leaders[0].answer, label
    else:
        vote.winner, vote.decided_by = None, "tie"


Verifier = Callable[[Candidate, int], Awaitable[tuple[str, str] | None]]


async def verify(vote: Vote, verifier: Verifier, max_candidates: int = 3) -> Vote:
    """Check each distinct candidate (the ``max_candidates`` most proposed) with ``verifier(candidate, i)``
    → (verdict, check) or None when the call failed, then decide: one verified candidate wins regardless of
    its count; several → the most proposed of them; none → the plurality, said to be unverified."""
    if not vote.discrete or len(vote.candidates) < 2:
        return vote
    pool = vote.candidates[:max_candidates]
    results = await asyncio.gather(*(verifier(c, i) for i, c in enumerate(pool)))
    for cand, result in zip(pool, results, strict=True):
        if result is not None:
            cand.verdict, cand.check = result
    verified = [c for c in pool if c.verdict == "correct"]
    if len(verified) == 1:
        vote.winner, vote.decided_by = verified[0].answer, "verifier"
        top = max(c.count for c in vote.candidates)
        if verified[0].count < top:
            vote.note = f"the verifier kept a minority answer ({verified[0].count}/{vote.voters})"
    elif verified:
        _decide_by_count(vote, verified, "verifier")
    else:
        survivors = [c for c in vote.candidates if c.verdict != "incorrect"] or vote.candidates
        _decide_by_count(vote, survivors, "plurality")
        vote.note = "no candidate was verified correct: the count decides"
    return vote


async def vote_step(
    caller: Any,
    question: str,
    findings: list[tuple[str, str | None]],
    supports: dict[str, str] | None = None,
    max_candidates: int = 3,
) -> Vote:
    """Tally ``findings`` and, when they disagree, verify each candidate with one call through ``caller``
    (a ``calls.Caller``; its budget and deadlines apply). ``supports`` maps a source to its reasoning."""
    from mythos.reason import prompts
    from mythos.reason.schemas import VerifyReply

    vote = tally(findings)
    supports = supports or {}

    async def check(cand: Candidate, i: int) -> tuple[str, str] | None:
        tag = f"verify:{i + 1}"
        support = next((supports[s] for s in cand.sources if supports.get(s)), "")
        reply, _ = await caller.call(
            phase="verify",
            lens=None,
            tag=tag,
            messages=prompts.verify_messages(question, cand.answer, support, tag),
            reply_model=VerifyReply,
            max_tokens=min(400, caller.policy.max_tokens_per_call),
        )
        return (reply.verdict, reply.check) if reply is not None else None

    return await verify(vote, check, max_candidates)
