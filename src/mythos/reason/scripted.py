"""Offline backends: a scripted fake (a responder maps each call to a reply or a fault) and a replay of a
recorded run. Both measure the engine's *structure*; neither says anything about answer quality.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mythos.reason.backends import BackendError, Completion, Message
from mythos.reason.canned import canned_responder


@dataclass(frozen=True)
class Fault:
    """A scripted failure: ``hang`` sleeps until cancelled; ``truncated`` returns ``text`` cut off at the
    token limit (finish_reason length); the others raise or return what the kind says."""

    kind: str  # hang | timeout | connection | http_429 | http_5xx | http_4xx | garbage | empty | text | truncated
    text: str = ""
    retry_after: float | None = None  # for http_429/http_5xx: the server's Retry-After


@dataclass(frozen=True)
class ScriptedRequest:
    tag: str
    messages: list[Message]
    attempt: int  # 1-based count of requests with this tag so far


Responder = Callable[[ScriptedRequest], "str | Fault | Awaitable[str | Fault]"]


class ScriptedBackend:
    """Deterministic in-process backend: a responder maps each request (by tag) to a reply or a Fault.

    Token counts are whitespace word counts of the prompt and the reply — the scripted backend's own exact
    accounting, so tests can assert sums. ``latency`` (seconds per call, or a function of the tag) lets
    tests and benchmarks exercise real concurrency without a network.
    """

    name = "scripted"

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        model: str = "scripted",
        latency: float | Callable[[str], float] = 0.0,
    ):
        if responder is None:
            responder = canned_responder()
        self.responder = responder
        self.model = model
        self.latency = latency
        self.requests: list[ScriptedRequest] = []
        self._attempts: dict[str, int] = {}

    async def complete(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float,
        timeout: float,
        tag: str,
        schema: dict | None = None,
    ) -> Completion:
        self._attempts[tag] = self._attempts.get(tag, 0) + 1
        request = ScriptedRequest(tag=tag, messages=list(messages), attempt=self._attempts[tag])
        self.requests.append(request)
        delay = self.latency(tag) if callable(self.latency) else self.latency
        if delay > timeout:
            await asyncio.sleep(timeout)
            raise BackendError("timeout", f"no response within {timeout:.1f}s")
        if delay:
            await asyncio.sleep(delay)
        reply = self.responder(request)
        if asyncio.iscoroutine(reply) or isinstance(reply, Awaitable):
            reply = await reply
        finish = "stop"
        if isinstance(reply, Fault):
            if reply.kind == "hang":
                await asyncio.sleep(timeout)
                raise BackendError("timeout", f"no response within {timeout:.1f}s")
            if reply.kind == "empty":
                reply = ""
            elif reply.kind == "text":
                reply = reply.text
            elif reply.kind == "truncated":
                reply, finish = reply.text, "length"
            else:
                raise BackendError(reply.kind, reply.text or f"scripted {reply.kind}", reply.retry_after)
        words = reply.split()
        if len(words) > max_tokens:  # like a real server: the reply stops at the limit
            reply, finish = " ".join(words[:max_tokens]), "length"
        prompt_words = sum(len(m["content"].split()) for m in messages)
        return Completion(
            text=reply,
            tokens_in=prompt_words,
            tokens_out=min(len(words), max_tokens),
            finish_reason=finish,
            model=self.model,
        )

    async def aclose(self) -> None:
        return None


class ReplayBackend:
    """Re-runs a recorded run offline: each tag gets back exactly what its attempts got the first time.

    The engine is deterministic given its replies, so a replay reproduces the route, rounds, halting and
    rendered text of the original run (timings aside) — the run record is a test fixture. Token counts and
    finish reasons come from the record (budget decisions repeat), and where a deadline ended a call the
    replay ends it the same way (``deadline``, ``run_deadline``, ``cancelled`` entries).
    """

    name = "replay"

    def __init__(self, record: dict):
        self.model = str(record.get("backend", {}).get("model", "replay"))
        self.replies: dict[str, list[dict]] = {}
        for call in record.get("calls", []):
            self.replies.setdefault(call["tag"], []).extend(call.get("replies", []))
        self._next: dict[str, int] = {}

    async def complete(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float,
        timeout: float,
        tag: str,
        schema: dict | None = None,
    ) -> Completion:
        index = self._next.get(tag, 0)
        self._next[tag] = index + 1
        recorded = self.replies.get(tag, [])
        if index >= len(recorded):
            raise BackendError("http_4xx", f"the recording has no reply #{index + 1} for {tag!r}")
        reply = recorded[index]
        if "error" in reply:
            message = reply.get("message") or f"recorded {reply['error']}"
            raise BackendError(reply["error"], message, reply.get("retry_after"))
        text = reply.get("text", "")
        recorded_counts = "tokens_in" in reply
        return Completion(
            text=text,
            tokens_in=int(reply.get("tokens_in", sum(len(m["content"].split()) for m in messages))),
            tokens_out=int(reply.get("tokens_out", len(text.split()))),
            estimated=not recorded_counts,
            finish_reason=reply.get("finish_reason"),
            model=self.model,
        )

    async def aclose(self) -> None:
        return None
