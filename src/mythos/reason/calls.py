"""One engine call = deadline + transport retries with backoff + one repair retry + budget + a CallRecord.

This is the only place that talks to a backend, so every call in every mode is bounded the same way and
leaves the same trace in the run record. What each attempt got back (reply, error, deadline) is recorded, so
``--replay`` takes the same path even where the original run hit a deadline.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TypeVar

from mythos.reason.backends import BackendError, LLMBackend, Message, estimate_tokens
from mythos.reason.record import CallRecord, RunRecord
from mythos.reason.schemas import ReplyError, ReplyModel, is_template_text, json_schema, parse_reply
from mythos.reason.vocab import CallStatus, ErrorKind

T = TypeVar("T", bound=ReplyModel)

REPAIR_PROMPT = (
    "Your previous reply could not be used ({reason}). Reply again with only the JSON object "
    "described above, filled with your own content — no prose, no code fences, no placeholder text."
)
TRUNCATED = frozenset({"length", "max_tokens"})  # finish reasons that mean the reply was cut off
MIN_OUT_TOKENS = 32  # a call that cannot be given at least this much room for its reply is not made


class BudgetExhausted(Exception):
    """The run's token or cost budget is spent (or cannot afford the next call); no further calls are made."""


class RunCancelled(Exception):
    """A replayed call was cancelled by the run deadline in the original run: the replay stops there too."""


@dataclass
class CallPolicy:
    call_deadline_s: float = 60.0  # whole call, retries included (raised to fit a measured slow backend)
    attempt_timeout_s: float = 30.0  # one HTTP attempt (raised likewise)
    max_retries: int = 2  # transport retries per call
    max_repairs: int = 1  # repair retries per call (empty / unparseable / template / truncated replies)
    backoff_base_s: float = 0.25
    backoff_max_s: float = 4.0
    max_tokens_per_call: int = 800
    temperature: float = 0.0
    max_retry_after_s: float = 60.0  # longest server-requested wait (Retry-After) the engine honours


@dataclass
class TokenBudget:
    """The run's token/cost limits. Each attempt reserves its prompt estimate plus its reply room before it
    is sent, so concurrent calls (a fan-out) cannot together overshoot; ``hold`` keeps a share back for the
    Coda until the engine releases it."""

    max_tokens: int | None = None
    max_cost: float | None = None
    price_in_per_mtok: float = 0.0
    price_out_per_mtok: float = 0.0
    spent_in: int = 0
    spent_out: int = 0
    reserved_in: int = 0
    reserved_out: int = 0
    hold_fraction: float = 0.0  # share of each limit kept back for the Coda (0 once released)

    @property
    def cost(self) -> float:
        return self._cost(self.spent_in, self.spent_out)

    def _cost(self, tokens_in: float, tokens_out: float) -> float:
        return (tokens_in * self.price_in_per_mtok + tokens_out * self.price_out_per_mtok) / 1e6

    def exhausted(self) -> str | None:
        if self.max_tokens is not None and self.spent_in + self.spent_out >= self.max_tokens:
            return f"token budget of {self.max_tokens} spent ({self.spent_in + self.spent_out} used)"
        if self.max_cost is not None and self.cost >= self.max_cost:
            return f"cost budget of {self.max_cost} spent ({self.cost:.4f} used)"
        return None

    def out_room(self, est_in: int) -> int | None:
        """How many reply tokens a call with an ``est_in``-token prompt may ask for now (None: unlimited)."""
        rooms: list[float] = []
        keep = 1.0 - self.hold_fraction
        if self.max_tokens is not None:
            used = self.spent_in + self.spent_out + self.reserved_in + self.reserved_out
            rooms.append(self.max_tokens * keep - used - est_in)
        if self.max_cost is not None:
            used = self._cost(self.spent_in + self.reserved_in, self.spent_out + self.reserved_out)
            left = self.max_cost * keep - used - self._cost(est_in, 0)
            if self.price_out_per_mtok > 0:
                rooms.append(left * 1e6 / self.price_out_per_mtok)
            elif left < 0:
                rooms.append(-1)
        return int(min(rooms)) if rooms else None

    def reserve(self, tokens_in: int, tokens_out: int) -> None:
        self.reserved_in += tokens_in
        self.reserved_out += tokens_out

    def release(self, tokens_in: int, tokens_out: int) -> None:
        self.reserved_in -= tokens_in
        self.reserved_out -= tokens_out


def prompt_estimate(messages: list[Message]) -> int:
    return sum(estimate_tokens(m["content"]) for m in messages) + 4 * len(messages)


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
        on_call=None,
    ):
        self.backend = backend
        self.record = record
        self.policy = policy
        self.budget = budget
        self.t0 = t0
        self.deadline_at = deadline_at  # monotonic time at which the run must stop calling
        self.semaphore = asyncio.Semaphore(max(1, max_concurrency))
        self.tokens_per_s: float | None = None  # measured generation speed of this backend
        self.on_call = on_call  # told about each finished call (progress output); never affects the run

    def now(self) -> float:
        return time.monotonic() - self.t0

    def remaining(self) -> float:
        return self.deadline_at - time.monotonic()

    def scaled(self, base: float, max_tokens: int) -> float:
        """A deadline that fits the backend's measured speed: never below the configured one, and at least
        twice the time the reply's room takes at the measured tokens/s (the prompt's share included)."""
        if not self.tokens_per_s:
            return base
        return max(base, 2.0 * max_tokens / self.tokens_per_s)

    def _measure(self, tokens_out: int, seconds: float) -> None:
        if tokens_out >= 16 and seconds > 0:
            speed = tokens_out / seconds
            self.tokens_per_s = speed if self.tokens_per_s is None else min(self.tokens_per_s, speed)

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
        temperature: float | None = None,
    ) -> tuple[T | None, CallRecord]:
        """Run one call to completion; never raises except BudgetExhausted (and RunCancelled in a replay).
        A failed call returns (None, rec)."""
        rec = CallRecord(index=len(self.record.calls), phase=phase, lens=lens, tag=tag, t_start=self.now())
        self.record.calls.append(rec)
        reason = self.budget.exhausted()
        if reason:
            rec.status, rec.error_kind, rec.error, rec.t_end = (
                CallStatus.SKIPPED,
                ErrorKind.BUDGET,
                reason,
                rec.t_start,
            )
            raise BudgetExhausted(reason)
        want = max_tokens or self.policy.max_tokens_per_call
        limit = min(self.scaled(deadline_s or self.policy.call_deadline_s, want), self.remaining())
        if limit <= 0:
            rec.status, rec.error_kind = CallStatus.FAILED, ErrorKind.RUN_DEADLINE
            rec.error = "the run deadline had passed"
            rec.replies.append({"error": ErrorKind.RUN_DEADLINE, "message": rec.error})
            rec.t_end = self.now()
            return None, rec
        rec.deadline_s = round(limit, 3)
        try:
            async with self.semaphore:
                rec.t_start = self.now()  # time spent waiting for a slot is not call time
                started = time.monotonic()
                try:
                    async with asyncio.timeout(limit):
                        parsed = await self._attempts(
                            rec, messages, reply_model, want, started + limit, prose_field, temperature
                        )
                except TimeoutError:
                    parsed = None
                    rec.status, rec.error_kind = CallStatus.FAILED, ErrorKind.TIMEOUT
                    rec.error = f"no usable reply within the call deadline of {limit:.1f}s"
                    rec.replies.append({"error": ErrorKind.DEADLINE, "message": rec.error})
        except asyncio.CancelledError:
            rec.replies.append({"error": "cancelled"})  # the run deadline stopped it: a replay stops here too
            raise
        rec.t_end = self.now()
        if self.on_call is not None:
            self.on_call(rec)
        return parsed, rec

    def _room(self, rec: CallRecord, convo: list[Message], want: int) -> tuple[int, int]:
        """Reserve this attempt's share of the budget; returns (prompt estimate, reply room)."""
        est_in = prompt_estimate(convo)
        room = self.budget.out_room(est_in)
        if room is None:
            return est_in, want
        if room < min(MIN_OUT_TOKENS, want):
            left = max(0, room + est_in)
            reason = (
                f"the budget cannot afford the {rec.phase} call (about {est_in} prompt tokens + "
                f"{min(MIN_OUT_TOKENS, want)} for the reply; about {left} left)"
            )
            rec.status, rec.error_kind, rec.error = CallStatus.SKIPPED, ErrorKind.BUDGET, reason
            raise BudgetExhausted(reason)
        out = min(want, room)
        self.budget.reserve(est_in, out)
        return est_in, out

    async def _attempts(
        self,
        rec: CallRecord,
        messages: list[Message],
        reply_model: type[T],
        want: int,
        call_deadline: float,
        prose_field: str | None = None,
        temperature: float | None = None,
    ) -> T | None:
        policy = self.policy
        convo = list(messages)
        while True:
            rec.attempts += 1
            est_in, out = self._room(rec, convo, want)
            timeout = max(
                0.05, min(self.scaled(policy.attempt_timeout_s, out), call_deadline - time.monotonic())
            )
            sent = time.monotonic()
            try:
                completion = await self.backend.complete(
                    convo,
                    max_tokens=out,
                    temperature=policy.temperature if temperature is None else temperature,
                    timeout=timeout,
                    tag=rec.tag,
                    schema=json_schema(reply_model),
                )
            except BackendError as exc:
                self.budget.release(est_in, out)
                entry: dict = {"error": exc.kind, "message": str(exc)}
                if exc.retry_after is not None:
                    entry["retry_after"] = exc.retry_after
                rec.replies.append(entry)
                rec.error_kind, rec.error = exc.kind, str(exc)
                if exc.kind == ErrorKind.DEADLINE:  # replay of a call that its deadline ended
                    rec.status, rec.error_kind = CallStatus.FAILED, ErrorKind.TIMEOUT
                    return None
                if exc.kind == ErrorKind.RUN_DEADLINE:
                    rec.status = CallStatus.FAILED
                    return None
                if exc.kind == "cancelled":
                    rec.status, rec.error_kind = CallStatus.FAILED, ErrorKind.RUN_DEADLINE
                    rec.error, rec.t_end = "cancelled by the run deadline", self.now()
                    raise RunCancelled(str(exc)) from None
                if exc.retryable and rec.retries < policy.max_retries:
                    rec.retries += 1
                    delay = min(policy.backoff_max_s, policy.backoff_base_s * 2 ** (rec.retries - 1))
                    if exc.retry_after is not None:  # the server said when to come back: honour it
                        if exc.retry_after > policy.max_retry_after_s:
                            rec.status = CallStatus.FAILED
                            rec.error = f"{exc} (the server asked to retry after {exc.retry_after:g}s, longer than max_retry_after_s={policy.max_retry_after_s:g})"
                            return None
                        delay = max(delay, exc.retry_after)
                    if time.monotonic() + delay >= call_deadline:
                        rec.status = CallStatus.FAILED
                        if exc.retry_after is not None:
                            rec.error = f"{exc} (the server asked to retry after {exc.retry_after:g}s, past the call deadline)"
                        return None
                    rec.waited_s = round(rec.waited_s + delay, 3)
                    await asyncio.sleep(delay)
                    continue
                if exc.kind == ErrorKind.GARBAGE and rec.repairs < policy.max_repairs:
                    rec.repairs += 1
                    continue
                rec.status = CallStatus.FAILED
                return None
            except (asyncio.CancelledError, TimeoutError):
                self.budget.release(est_in, out)
                raise
            except Exception as exc:  # a client bug or an unexpected SDK error: fail this call, not the run
                self.budget.release(est_in, out)
                rec.status, rec.error_kind = CallStatus.FAILED, ErrorKind.CLIENT_ERROR
                rec.error = f"{type(exc).__name__}: {exc}"
                return None
            self.budget.release(est_in, out)
            self._measure(completion.tokens_out, time.monotonic() - sent)
            rec.replies.append(
                {
                    "text": completion.text,
                    "tokens_in": completion.tokens_in,
                    "tokens_out": completion.tokens_out,
                    "finish_reason": completion.finish_reason,
                }
            )
            rec.tokens_in += completion.tokens_in
            rec.tokens_out += completion.tokens_out
            rec.estimated_tokens = rec.estimated_tokens or completion.estimated
            self.budget.spent_in += completion.tokens_in
            self.budget.spent_out += completion.tokens_out
            # some servers report "stop" for a streamed reply that the limit cut (llama.cpp here): a reply
            # that filled its whole room is treated as cut too
            filled = not completion.estimated and completion.tokens_out >= out
            if completion.finish_reason in TRUNCATED or filled:
                # a reply cut by the token limit is never an answer: retry once with twice the room
                rec.error_kind = ErrorKind.TRUNCATED
                rec.error = f"the reply was cut off at the token limit ({out} tokens)"
                if rec.repairs < policy.max_repairs and not self.budget.exhausted():
                    rec.repairs += 1
                    want = out * 2
                    continue
                rec.error += "; raise max_tokens_per_call (or the budget) to give it room"
                rec.status = CallStatus.FAILED
                return None
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
                if (
                    prose_field
                    and exc.kind == ErrorKind.UNPARSEABLE
                    and text
                    and not text.startswith("<")
                    and not is_template_text(text, reply_model)
                ):
                    # Small models often answer in plain prose: for an answer-bearing phase, that prose *is*
                    # the answer. Kept, and marked so the footer can say the format was ignored.
                    rec.status, rec.error_kind = CallStatus.OK, ErrorKind.PROSE
                    rec.error = "the reply ignored the JSON format; its text was used as it is"
                    return reply_model.model_validate({prose_field: text})  # type: ignore[return-value]
                rec.status = CallStatus.FAILED
                return None
            rec.status, rec.error_kind, rec.error = CallStatus.OK, None, None
            return parsed  # type: ignore[return-value]
