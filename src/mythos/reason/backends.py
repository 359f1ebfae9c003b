"""LLM backends behind one small async protocol: OpenAI-compatible servers and Anthropic (the scripted and
replay backends live in ``scripted.py``).

A backend makes exactly one attempt per ``complete`` call and classifies every failure into a
``BackendError`` kind; retries, repair and deadlines live in the engine (``calls.py``) so they can be counted
and recorded. SDK retries are switched off (``max_retries=0``) for the same reason.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Protocol

Message = dict[str, str]

RETRYABLE = frozenset({"timeout", "connection", "http_429", "http_5xx"})
JSON_MODES = ("off", "object", "schema")


class BackendError(Exception):
    """One failed attempt. ``kind`` is one of: timeout, connection, http_429, http_5xx, http_4xx, garbage
    (replays add deadline, run_deadline, cancelled). ``retry_after``: seconds the server asked us to wait."""

    def __init__(self, kind: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after

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


def retry_after_s(headers) -> float | None:
    """Seconds from a ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms`` header; None if absent."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def status_error(status: int, message: str, headers=None) -> BackendError:
    """A BackendError for an HTTP error status, with the server's own words (the real cause) kept."""
    return BackendError(_status_kind(status), f"HTTP {status}: {message[:300]}", retry_after_s(headers))


def _error_message(exc) -> str:
    """The server's own error text (``{"error": {"message": …}}`` or the body), not the SDK's wrapper."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return str(getattr(exc, "message", "") or exc)


def _from_events(text: str, messages: list[Message], model: str) -> Completion:
    """Parse a server-sent-events body (``data: {chunk}`` lines) into one completion."""
    parts: list[str] = []
    finish = None
    usage = None
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        try:
            chunk = json.loads(data)
        except ValueError:
            raise BackendError("garbage", f"an event is not JSON ({data[:80]!r})") from None
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            content = (choice.get("delta") or choice.get("message") or {}).get("content")
            if content:
                parts.append(content)
            finish = choice.get("finish_reason") or finish
    joined = "".join(parts)
    if usage and usage.get("prompt_tokens") is not None:
        return Completion(
            joined, usage["prompt_tokens"], usage.get("completion_tokens") or 0, False, finish, model
        )
    tokens_in = sum(estimate_tokens(m["content"]) for m in messages)
    return Completion(joined, tokens_in, estimate_tokens(joined), True, finish, model)


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
        stream: bool = False,
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
        self.stream = stream  # also switched on when the server turns out to stream only
        self.on_text = None  # called with each streamed piece of text (``mythos think --stream``)
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
        request = dict(
            model=self.model,
            messages=messages,
            max_tokens=max_tokens,
            temperature=temperature,
            timeout=timeout,
            **extra,
        )
        try:
            if self.stream:
                return await self._streamed(request, messages)
            response = await self.client.chat.completions.create(**request)
        except openai.APITimeoutError as exc:
            raise BackendError("timeout", f"no response within {timeout:.1f}s") from exc
        except openai.APIConnectionError as exc:
            raise BackendError("connection", f"cannot reach the server: {exc}") from exc
        except openai.APIStatusError as exc:
            message = _error_message(exc)
            if not self.stream and exc.status_code == 400 and "stream" in message.lower():
                self.stream = True  # a server that only streams says so in a 400: switch and try again
                return await self.complete(
                    messages,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    timeout=timeout,
                    tag=tag,
                    schema=schema,
                )
            raise status_error(exc.status_code, message, getattr(exc.response, "headers", None)) from exc
        except openai.APIResponseValidationError as exc:
            raise BackendError("garbage", f"the response body is not a chat completion: {exc}") from exc
        if isinstance(response, str) and response.lstrip().startswith("data:"):
            # a streaming-only server answered a plain request with server-sent events: read them, and
            # stream from now on
            self.stream = True
            return _from_events(response, messages, self.model)
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

    async def _streamed(self, request: dict, messages: list[Message]) -> Completion:
        """The same request with ``stream=True``; chunks are joined, usage read from the last one if sent."""
        stream = await self.client.chat.completions.create(
            **request, stream=True, stream_options={"include_usage": True}
        )
        parts: list[str] = []
        finish = None
        usage = None
        model = self.model
        async for chunk in stream:
            model = getattr(chunk, "model", None) or model
            if getattr(chunk, "usage", None) is not None:
                usage = chunk.usage
            for choice in getattr(chunk, "choices", None) or []:
                delta = getattr(choice, "delta", None)
                if delta is not None and getattr(delta, "content", None):
                    parts.append(delta.content)
                    if self.on_text is not None:
                        self.on_text(delta.content)
                finish = getattr(choice, "finish_reason", None) or finish
        text = "".join(parts)
        if usage is not None and getattr(usage, "prompt_tokens", None) is not None:
            tokens_in, tokens_out, estimated = usage.prompt_tokens, usage.completion_tokens or 0, False
        else:
            tokens_in = sum(estimate_tokens(m["content"]) for m in messages)
            tokens_out, estimated = estimate_tokens(text), True
        return Completion(text, tokens_in, tokens_out, estimated, finish, model)

    async def server_slots(self, timeout: float = 2.0) -> int | None:
        """How many requests the server decodes at once, where it says (llama.cpp's ``/props``
        ``total_slots`` or the length of ``/slots``); None for servers that do not report it."""
        import httpx

        root = str(self.client.base_url).rstrip("/")
        root = root[: -len("/v1")] if root.endswith("/v1") else root
        try:
            async with httpx.AsyncClient(timeout=timeout) as client:
                for path in ("/props", "/slots"):
                    try:
                        response = await client.get(root + path)
                    except httpx.HTTPError:
                        return None
                    if response.status_code != 200:
                        continue
                    data = response.json()
                    if isinstance(data, dict) and isinstance(data.get("total_slots"), int):
                        return data["total_slots"] if data["total_slots"] > 0 else None
                    if isinstance(data, list) and data:
                        return len(data)
        except (ValueError, httpx.HTTPError):
            return None
        return None

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
            raise status_error(
                exc.status_code, _error_message(exc), getattr(exc.response, "headers", None)
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
