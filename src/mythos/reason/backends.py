"""LLM backends behind one small async protocol: OpenAI-compatible servers, Anthropic, and a scripted fake.

A backend makes exactly one attempt per ``complete`` call and classifies every failure into a
``BackendError`` kind; retries, repair and deadlines live in the engine (``calls.py``) so they can be counted
and recorded. SDK retries are switched off (``max_retries=0``) for the same reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

Message = dict[str, str]

RETRYABLE = frozenset({"timeout", "connection", "http_429", "http_5xx"})
JSON_MODES = ("off", "object", "schema")


class BackendError(Exception):
    """One failed attempt. ``kind`` is one of: timeout, connection, http_429, http_5xx, http_4xx, garbage."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


@dataclass(frozen=True)
class Completion:
    text: str
    tokens_in: int
    tokens_out: int
    estimated: bool = False
    finish_reason: str | None = None
    model: str = ""


class LLMBackend(Protocol):
    name: str
    model: str

    async def complete(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float,
        timeout: float,
        tag: str,
        schema: dict | None = None,
    ) -> Completion: ...

    async def aclose(self) -> None: ...


def estimate_tokens(text: str) -> int:
    """chars/4, used only when a server reports no usage (the record marks such counts ``estimated``)."""
    return max(1, (len(text) + 3) // 4) if text else 0


def _status_kind(status: int) -> str:
    if status == 429:
        return "http_429"
    if status >= 500 or status in (408, 409):
        return "http_5xx"
    return "http_4xx"


class OpenAIBackend:
    """Any OpenAI-compatible chat-completions server (OpenAI, vLLM, Ollama, llama.cpp, LM Studio …)."""

    name = "openai"

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        json_mode: str | bool = "off",
    ):
        import openai

        self._openai = openai
        self.model = model
        mode = (
            {True: "object", False: "off"}.get(json_mode, json_mode)
            if isinstance(json_mode, bool)
            else json_mode
        )
        if mode not in JSON_MODES:
            raise ValueError(f"json_mode={json_mode!r} is invalid: use one of {', '.join(JSON_MODES)}")
        self.json_mode = mode
        # a placeholder key keeps local servers (which ignore it) from failing on a missing key
        self.client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "not-needed", max_retries=0)

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
        openai = self._openai
        extra: dict = {}
        if self.json_mode == "object":
            extra["response_format"] = {"type": "json_object"}
        elif self.json_mode == "schema" and schema:
            # constrained decoding where the server supports it (OpenAI, vLLM, llama.cpp): small models then
            # emit valid JSON for every phase
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema.get("title", "reply"), "schema": schema},
            }
        try:
            response = await self.client.chat.completions.create(
                model=self.model,
                messages=messages,
                max_tokens=max_tokens,
                temperature=temperature,
                timeout=timeout,
                **extra,
            )
        except openai.APITimeoutError as exc:
            raise BackendError("timeout", f"no response within {timeout:.1f}s") from exc
        except openai.APIConnectionError as exc:
            raise BackendError("connection", f"cannot reach the server: {exc}") from exc
        except openai.APIStatusError as exc:
            raise BackendError(
                _status_kind(exc.status_code), f"HTTP {exc.status_code}: {str(exc)[:200]}"
            ) from exc
        except openai.APIResponseValidationError as exc:
            raise BackendError("garbage", f"the response body is not a chat completion: {exc}") from exc
        # An HTTP 200 with an HTML/plain body comes back as a str, not a completion object.
        choices = getattr(response, "choices", None)
        if not choices:
            raise BackendError("garbage", f"the response is not a chat completion ({str(response)[:80]!r})")
        message = getattr(choices[0], "message", None)
        text = (getattr(message, "content", None) or "") if message is not None else ""
        usage = getattr(response, "usage", None)
        if usage is not None and getattr(usage, "prompt_tokens", None) is not None:
            tokens_in, tokens_out, estimated = usage.prompt_tokens, usage.completion_tokens or 0, False
        else:
            tokens_in = sum(estimate_tokens(m["content"]) for m in messages)
            tokens_out, estimated = estimate_tokens(text), True
        return Completion(
            text=text,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            estimated=estimated,
            finish_reason=getattr(choices[0], "finish_reason", None),
            model=getattr(response, "model", "") or self.model,
        )

    async def aclose(self) -> None:
        await self.client.close()


class AnthropicBackend:
    """Anthropic's Messages API: the system prompt is a top-level field and max_tokens is required."""

    name = "anthropic"

    def __init__(self, *, model: str, api_key: str | None = None, base_url: str | None = None):
        import anthropic

        self._anthropic = anthropic
        self.model = model
        self.client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0)

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
        anthropic = self._anthropic
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        turns = [m for m in messages if m["role"] != "system"]
        try:
            # this SDK generation takes no temperature argument; the server default applies
            response = await self.client.messages.create(
                model=self.model, system=system, messages=turns, max_tokens=max_tokens, timeout=timeout
            )
        except anthropic.APITimeoutError as exc:
            raise BackendError("timeout", f"no response within {timeout:.1f}s") from exc
        except anthropic.APIConnectionError as exc:
            raise BackendError("connection", f"cannot reach the server: {exc}") from exc
        except anthropic.APIStatusError as exc:
            raise BackendError(
                _status_kind(exc.status_code), f"HTTP {exc.status_code}: {str(exc)[:200]}"
            ) from exc
        except anthropic.APIResponseValidationError as exc:
            raise BackendError("garbage", f"the response body is not a message: {exc}") from exc
        blocks = getattr(response, "content", None)
        if not isinstance(blocks, list):
            raise BackendError("garbage", f"the response is not a message ({str(response)[:80]!r})")
        text = "".join(getattr(b, "text", "") or "" for b in blocks)
        usage = getattr(response, "usage", None)
        if usage is not None and getattr(usage, "input_tokens", None) is not None:
            tokens_in, tokens_out, estimated = usage.input_tokens, usage.output_tokens or 0, False
        else:
            tokens_in = sum(estimate_tokens(m["content"]) for m in messages)
            tokens_out, estimated = estimate_tokens(text), True
        return Completion(
            text=text,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            estimated=estimated,
            finish_reason=getattr(response, "stop_reason", None),
            model=self.model,
        )

    async def aclose(self) -> None:
        await self.client.close()


# ------------------------------------------------------------------------------------------------- scripted


@dataclass(frozen=True)
class Fault:
    """A scripted failure: ``hang`` sleeps until cancelled; the others raise or return what the kind says."""

    kind: str  # hang | timeout | connection | http_429 | http_5xx | http_4xx | garbage | empty | text
    text: str = ""


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
            from mythos.reason.canned import canned_responder

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
        if isinstance(reply, Fault):
            if reply.kind == "hang":
                await asyncio.sleep(timeout)
                raise BackendError("timeout", f"no response within {timeout:.1f}s")
            if reply.kind == "empty":
                reply = ""
            elif reply.kind == "text":
                reply = reply.text
            else:
                raise BackendError(reply.kind, reply.text or f"scripted {reply.kind}")
        prompt_words = sum(len(m["content"].split()) for m in messages)
        return Completion(
            text=reply,
            tokens_in=prompt_words,
            tokens_out=len(reply.split()),
            finish_reason="stop",
            model=self.model,
        )

    async def aclose(self) -> None:
        return None


class ReplayBackend:
    """Re-runs a recorded run offline: each tag gets back exactly what its attempts got the first time.

    The engine is deterministic given its replies, so a replay reproduces the route, rounds, halting and
    rendered text of the original run (timings aside) — the run record is a test fixture.
    """

    name = "replay"

    def __init__(self, record: dict):
        self.model = str(record.get("backend", {}).get("model", "replay"))
        self.replies: dict[str, list[dict[str, str]]] = {}
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
            raise BackendError(reply["error"], f"recorded {reply['error']}")
        text = reply.get("text", "")
        return Completion(
            text=text,
            tokens_in=sum(len(m["content"].split()) for m in messages),
            tokens_out=len(text.split()),
            estimated=True,
            model=self.model,
        )

    async def aclose(self) -> None:
        return None
