"""One engine call = deadline + transport retries with backoff + one repair retry + budget + a CallRecord.

This is the only place that talks to a backend, so every call in every mode is bounded the same way and
leaves the same trace in the run record.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from typing import TypeVar

from mythos.reason.backends import BackendError, LLMBackend, Message
from mythos.reason.record import CallRecord, RunRecord
from mythos.reason.schemas import ReplyError, _Reply, parse_reply

T = TypeVar("T", bound=_Reply)

REPAIR_PROMPT = (
    "Your previous reply could not be used ({reason}). Reply again with only the JSON object "
    "described above — no prose, no code fences."
)


@functools.cache
def reply_schema(reply_model: type[_Reply]) -> dict:
    """The JSON schema of a phase's reply, for servers that can constrain decoding to it."""
    return reply_model.model_json_schema()


class BudgetExhausted(Exception):
    """The run's token or cost budget is spent; no further calls are made."""


@dataclass
class CallPolicy:
    call_deadline_s: float = 60.0  # whole call, retries included
    attempt_timeout_s: float = 30.0  # one HTTP attempt
    max_retries: int = 2  # transport retries per call
    max_repairs: int = 1  # repair retries per call (empty / unparseable replies)
    backoff_base_s: float = 0.25
    backoff_max_s: float = 4.0
    max_tokens_per_call: int = 800
    temperature: float = 0.0


@dataclass
class TokenBudget:
    """Stops the run once the spent tokens or cost reach a limit (checked before each call; a single call
    may overshoot by its own size)."""

    max_tokens: int | None = None
    max_cost: float | None = None
    price_in_per_mtok: float = 0.0
    price_out_per_mtok: float = 0.0
    spent_in: int = 0
    spent_out: int = 0

    @property
    def cost(self) -> float:
        return (self.spent_in * self.price_in_per_mtok + self.spent_out * self.price_out_per_mtok) / 1e6

    def exhausted(self) -> str | None:
        if self.max_tokens is not None and self.spent_in + self.spent_out >= self.max_tokens:
            return f"token budget of {self.max_tokens} spent ({self.spent_in + self.spent_out} used)"
        if self.max_cost is not None and self.cost >= self.max_cost:
            return f"cost budget of {self.max_cost} spent ({self.cost:.4f} used)"
        return None


class Caller:
    def __init__(
        self,
        backend: LLMBackend,
        record: RunRecord,
        policy: CallPolicy,
        budget: TokenBudget,
        *,
        t0: float,
        deadline_at: float,
        max_concurrency: int = 4,
    ):
        self.backend = backend
        self.record = record
        self.policy = policy
        self.budget = budget
        self.t0 = t0
        self.deadline_at = deadline_at  # monotonic time at which the run must stop calling
        self.semaphore = asyncio.Semaphore(max(1, max_concurrency))

    def now(self) -> float:
        return time.monotonic() - self.t0

    def remaining(self) -> float:
        return self.deadline_at - time.monotonic()

    async def call(
        self,
        *,
        phase: str,
        lens: str | None,
        tag: str,
        messages: list[Message],
        reply_model: type[T],
        max_tokens: int | None = None,
        deadline_s: float | None = None,
        prose_field: str | None = None,
    ) -> tuple[T | None, CallRecord]:
        """Run one call to completion; never raises except BudgetExhausted. A failed call returns (None, rec)."""
        rec = CallRecord(index=len(self.record.calls), phase=phase, lens=lens, tag=tag, t_start=self.now())
        self.record.calls.append(rec)
        reason = self.budget.exhausted()
        if reason:
            rec.status, rec.error_kind, rec.error, rec.t_end = "skipped", "budget", reason, rec.t_start
            raise BudgetExhausted(reason)
        limit = min(deadline_s or self.policy.call_deadline_s, self.remaining())
        if limit <= 0:
            rec.status, rec.error_kind, rec.error = "failed", "run_deadline", "the run deadline had passed"
            rec.t_end = self.now()
            return None, rec
        async with self.semaphore:
            rec.t_start = self.now()  # time spent waiting for a slot is not call time
            started = time.monotonic()
            try:
                async with asyncio.timeout(limit):
                    parsed = await self._attempts(
                        rec, messages, reply_model, max_tokens, started + limit, prose_field
                    )
            except TimeoutError:
                parsed = None
                rec.status, rec.error_kind = "failed", "timeout"
                rec.error = f"no usable reply within the call deadline of {limit:.1f}s"
        rec.t_end = self.now()
        return parsed, rec

    async def _attempts(
        self,
        rec: CallRecord,
        messages: list[Message],
        reply_model: type[T],
        max_tokens: int | None,
        call_deadline: float,
        prose_field: str | None = None,
    ) -> T | None:
        policy = self.policy
        convo = list(messages)
        while True:
            rec.attempts += 1
            timeout = max(0.05, min(policy.attempt_timeout_s, call_deadline - time.monotonic()))
            try:
                completion = await self.backend.complete(
                    convo,
                    max_tokens=max_tokens or policy.max_tokens_per_call,
                    temperature=policy.temperature,
                    timeout=timeout,
                    tag=rec.tag,
                    schema=reply_schema(reply_model),
                )
            except BackendError as exc:
                rec.replies.append({"error": exc.kind})
                rec.error_kind, rec.error = exc.kind, str(exc)
                if exc.retryable and rec.retries < policy.max_retries:
                    rec.retries += 1
                    delay = min(policy.backoff_max_s, policy.backoff_base_s * 2 ** (rec.retries - 1))
                    if time.monotonic() + delay >= call_deadline:
                        rec.status = "failed"
                        return None
                    await asyncio.sleep(delay)
                    continue
                if exc.kind == "garbage" and rec.repairs < policy.max_repairs:
                    rec.repairs += 1
                    continue
                rec.status = "failed"
                return None
            except (asyncio.CancelledError, TimeoutError):
                raise
            except Exception as exc:  # a client bug or an unexpected SDK error: fail this call, not the run
                rec.status, rec.error_kind = "failed", "client_error"
                rec.error = f"{type(exc).__name__}: {exc}"
                return None
            rec.replies.append({"text": completion.text})
            rec.tokens_in += completion.tokens_in
            rec.tokens_out += completion.tokens_out
            rec.estimated_tokens = rec.estimated_tokens or completion.estimated
            self.budget.spent_in += completion.tokens_in
            self.budget.spent_out += completion.tokens_out
            try:
                parsed = parse_reply(completion.text, reply_model)
            except ReplyError as exc:
                rec.error_kind, rec.error = exc.kind, str(exc)
                if rec.repairs < policy.max_repairs and not self.budget.exhausted():
                    rec.repairs += 1
                    convo = list(messages) + [
                        {"role": "assistant", "content": completion.text or "(empty)"},
                        {"role": "user", "content": REPAIR_PROMPT.format(reason=exc)},
                    ]
                    continue
                text = (completion.text or "").strip()
                if prose_field and exc.kind == "unparseable" and text and not text.startswith("<"):
                    # Small models often answer in plain prose: for an answer-bearing phase, that prose *is*
                    # the answer. Kept, and marked so the footer can say the format was ignored.
                    rec.status, rec.error_kind = "ok", "prose"
                    rec.error = "the reply ignored the JSON format; its text was used as it is"
                    return reply_model.model_validate({prose_field: text})  # type: ignore[return-value]
                rec.status = "failed"
                return None
            rec.status, rec.error_kind, rec.error = "ok", None, None
            return parsed  # type: ignore[return-value]
