"""Self-consistency as a strategy of its own (issue 14 §3): N independent step-by-step samples, the discrete
answers counted by the vote step (optionally verified). ``mythos bench`` calls it beside the engine's modes;
it uses the same bounded calls (deadlines, retries, budget) and leaves the same run record.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mythos.reason import prompts
from mythos.reason.backends import LLMBackend
from mythos.reason.calls import BudgetExhausted, Caller, CallPolicy, TokenBudget
from mythos.reason.record import RunRecord
from mythos.reason.schemas import SampleReply
from mythos.reason.vocab import Outcome
from mythos.reason.vote import Vote, tally, vote_step


@dataclass
class StrategyResult:
    """What a strategy produced: the answer (None when there is none), the vote behind it, and the run
    record holding every call, its tokens and the totals."""

    answer: str | None
    vote: Vote
    samples: list[str | None] = field(default_factory=list)  # each sample's final answer (None: failed)
    record: RunRecord | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "vote": self.vote.to_dict(),
            "samples": self.samples,
            "totals": self.record.totals if self.record else {},
        }


async def self_consistency(
    question: str,
    backend: LLMBackend,
    *,
    votes: int = 5,
    temperature: float = 0.7,
    policy: CallPolicy | None = None,
    max_tokens: int | None = None,
    max_concurrency: int = 5,
    run_deadline_s: float = 300.0,
    verify: bool = False,
) -> StrategyResult:
    """Sample ``votes`` step-by-step answers at ``temperature`` and take the majority (ties: no answer);
    ``verify`` adds the verifier step, which lets a verified minority answer win. ``max_tokens`` bounds the
    whole strategy (reserved per sample before it is sent)."""
    if votes < 1:
        raise ValueError(f"votes={votes} is invalid: use 1 or more")
    if temperature < 0:
        raise ValueError(f"temperature={temperature} is invalid: use 0 or more")
    policy = policy or CallPolicy()
    t0 = time.monotonic()
    record = RunRecord(
        question=question,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        backend={"name": backend.name, "model": backend.model},
        config={"strategy": "self_consistency", "votes": votes, "temperature": temperature, "verify": verify},
    )
    record.route = {"final_mode": "self_consistency"}
    caller = Caller(
        backend,
        record,
        policy,
        TokenBudget(max_tokens=max_tokens),
        t0=t0,
        deadline_at=t0 + run_deadline_s,
        max_concurrency=max_concurrency,
    )

    async def sample(i: int) -> str | None:
        tag = f"sample:{i + 1}"
        reply, _ = await caller.call(
            phase="sample",
            lens=None,
            tag=tag,
            messages=prompts.sample_messages(question, tag),
            reply_model=SampleReply,
            prose_field="final_answer",
            temperature=temperature,
        )
        return reply.final_answer if reply is not None else None

    outcomes = await asyncio.gather(*(sample(i) for i in range(votes)), return_exceptions=True)
    samples: list[str | None] = []
    for outcome in outcomes:
        if isinstance(outcome, BudgetExhausted):
            record.fallbacks.append(f"a sample was not sent: {outcome}")
            samples.append(None)
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            samples.append(outcome)
    findings = [(f"S{i + 1}", text) for i, text in enumerate(samples) if text is not None]
    if verify and findings:
        try:
            vote = await vote_step(caller, question, findings)
        except BudgetExhausted as exc:
            record.fallbacks.append(f"the verifier was not run: {exc}")
            vote = tally(findings)
    else:
        vote = tally(findings)
    answer = vote.winner
    if answer is None and len(findings) == 1:
        answer = findings[0][1]
    record.vote = vote.to_dict()
    record.coda = {"final_answer": answer or "", "fallback": answer is None}
    record.outcome = Outcome.ANSWERED if answer is not None else Outcome.NO_ANSWER
    if answer is None:
        record.no_answer_reason = vote.note or f"the votes tied or no sample answered ({vote.decided_by})"
    record.summarize(time.monotonic() - t0)
    return StrategyResult(answer=answer, vote=vote, samples=samples, record=record)
