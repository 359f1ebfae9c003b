"""The ASGI application behind `mythos serve`: OpenAI-shaped routes over the continuous-batching scheduler.

Everything a request says is checked here, before it joins the batch, so a malformed request (a seed past
2^64, a top_k past 2^31, a lone surrogate, a 100,000-deep JSON body) fails only itself with a 400 naming the
field: the scheduler's batch never sees it. Admission is bounded: once the slots and the waiting queue are
full, a request is answered 429 with ``Retry-After`` at once, never left to time out or reset.

Routes: ``POST /v1/completions``, ``POST /v1/chat/completions`` (``"stream": true`` for server-sent
events), ``GET /v1/models``, ``GET /health``, ``GET /metrics`` (Prometheus text), ``GET /openapi.json``.
Errors always use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
import queue
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mythos.infer.sampling import SamplingParams
from mythos.infer.scheduler import Request, Scheduler
from mythos.infer.tokenizer import StreamDecoder, Tokenizer
from mythos.model.exits import ExitCriterion

MAX_BODY = 4 * 1024 * 1024
INLINE_BODY = 64 * 1024  # bodies up to this are parsed and tokenized on the event loop, larger on the pool
STREAM_WAKE_INTERVAL = 0.01  # a streamed token reaches its client at most ~10 ms plus one token late
MAX_INT31 = 2**31 - 1
MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes [0, 2^64 - 1]


class RequestError(Exception):
    """A client mistake (or a refusal): becomes a 4xx with OpenAI's error shape."""

    def __init__(
        self,
        message: str,
        param: str | None = None,
        status: int = 400,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.param, self.status, self.code, self.headers = param, status, code, headers or {}


ERROR_KINDS = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    413: "too_large",
    429: "queue_full",
}


def error_payload(message: str, status: int, param: str | None = None, code: str | None = None) -> dict:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(err: RequestError) -> JSONResponse:
    return JSONResponse(
        error_payload(str(err), err.status, err.param, err.code), status_code=err.status, headers=err.headers
    )


# ---------------------------------------------------------------------------------------------- validation
def render_chat(messages: list[dict[str, str]]) -> str:
    """A plain role-tagged transcript ending with the assistant's turn (models here have no chat template)."""
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nassistant:"


def check_text(text: str, param: str) -> str:
    """Text that will be tokenized must be encodable: a lone surrogate (``"\\ud800"``) is not."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RequestError(
            f"'{param}' contains a lone surrogate {text[exc.start]!r} at character {exc.start}: "
            "send valid Unicode (a surrogate must be half of a pair)",
            param=param,
        ) from None
    return text


def parse_messages(messages: Any) -> list[dict[str, str]]:
    """Chat messages with string content; content given as OpenAI text parts is joined."""
    bad = RequestError(
        "'messages' must be a non-empty list of {role, content} objects whose content is a "
        "string or a list of {type: text, text} parts",
        param="messages",
    )
    if not isinstance(messages, list) or not messages:
        raise bad
    out = []
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise bad
        content = m.get("content")
        if isinstance(content, list) and all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
            for p in content
        ):
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise bad
        out.append({"role": check_text(m["role"], "messages"), "content": check_text(content, "messages")})
    return out


def _field(body: dict, name: str, kind: type | tuple, default: Any = None, check=None, hint: str = "") -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        raise RequestError(f"'{name}' must be {hint}, got {_short(value)}", param=name)
    if check is not None and not check(value):
        raise RequestError(f"'{name}' must be {hint}, got {_short(value)}", param=name)
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_common(body: dict, state: ServeState) -> dict[str, Any]:
    """Validate the fields shared by both endpoints; every error names the field and what is valid."""
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestError(f"'model' must be a string, got {_short(model)}", param="model")
    if model is not None and model != state.model_name:
        raise RequestError(
            f"model {_short(model)} does not exist; this server serves {state.model_name!r}",
            param="model",
            status=404,
            code="model_not_found",
        )
    count = (lambda v: 1 <= v <= MAX_INT31), f"an integer in [1, {MAX_INT31}]"
    max_tokens = _field(body, "max_tokens", int, state.default_max_tokens, *count)
    if "max_completion_tokens" in body:
        max_tokens = _field(body, "max_completion_tokens", int, max_tokens, *count)
    temperature = _field(
        body, "temperature", (int, float), 1.0, lambda v: 0 <= v <= 100, "a number in [0, 100]"
    )
    top_p = _field(body, "top_p", (int, float), None, lambda v: 0 < v <= 1, "a number in (0, 1]")
    top_k = _field(body, "top_k", int, None, *count)
    seed = _field(body, "seed", int, None, lambda v: 0 <= v <= MAX_SEED, "an integer in [0, 2^64 - 1]")
    depth = state.scheduler.engine.max_loops
    n_loops = _field(body, "n_loops", int, None, lambda v: 1 <= v <= depth, f"an integer in [1, {depth}]")
    _field(body, "n", int, 1, lambda v: v == 1, "1 (one choice per request is supported)")
    stream = _field(body, "stream", bool, False, None, "true or false")
    stream_options = _field(body, "stream_options", dict, {}, None, "an object")
    include_usage = _field(stream_options, "include_usage", bool, False, None, "true or false")
    exit_text = _field(body, "exit", str, None, None, 'a string such as "kl:0.01"')
    exit_rule = None
    if exit_text is not None:
        try:
            exit_rule = ExitCriterion.parse(exit_text)
        except ValueError as exc:
            raise RequestError(f"'exit': {exc}", param="exit") from None
    stop = body.get("stop")
    if stop is None:
        stops: list[str] = []
    elif isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= 4:
        stops = list(stop)
    else:
        raise RequestError(
            f"'stop' must be a string or a list of up to 4 strings, got {_short(stop)}", param="stop"
        )
    for s in stops:
        check_text(s, "stop")
    sampling = SamplingParams(
        temperature=float(temperature),
        top_k=top_k,  # past the vocabulary it filters nothing
        top_p=None if top_p is None else float(top_p),
        seed=seed,
    )
    sampling.generator()  # whatever the scheduler will do with the seed is done here first
    return dict(
        max_tokens=max_tokens,
        stream=stream,
        stops=[s for s in stops if s],
        sampling=sampling,
        n_loops=n_loops,
        exit=exit_rule,
        include_usage=bool(stream and include_usage),
    )


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON (numbers must be finite)")


def parse_json(raw: bytes) -> dict:
    """The body as a JSON object; NaN/Infinity, invalid UTF-8 and absurd nesting are 400s, not crashes."""
    try:
        body = json.loads(raw or b"null", parse_constant=_reject_constant)
    except RecursionError:
        raise RequestError(
            "request body is nested too deeply to be a request: send a flat JSON object"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise RequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    return body


# ---------------------------------------------------------------------------------------------- state
@dataclass
class Metrics:
    """Counters for /metrics; written only on the event loop thread, so plain ints suffice."""

    requests: Counter = field(default_factory=Counter)  # (route, status) -> n
    errors: Counter = field(default_factory=Counter)  # kind -> n
    completion_tokens: int = 0
    token_loops: float = 0.0  # loops run for completion tokens whose depth is known
    token_loops_tokens: int = 0
    rate_samples: deque = field(default_factory=lambda: deque(maxlen=11))  # (time, scheduler.tokens_out)

    def tokens_per_second(self) -> float:
        if len(self.rate_samples) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self.rate_samples[0], self.rate_samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0


@dataclass
class ServeState:
    scheduler: Scheduler
    tokenizer: Tokenizer
    model_name: str
    default_max_tokens: int = 16
    api_key: str | None = None
    max_queue: int | None = None  # requests allowed to wait for a slot (default: the scheduler's)
    read_timeout: float = 10.0  # seconds a client may take between body chunks
    retry_after: int = 1
    metrics: Metrics = field(default_factory=Metrics)
    in_flight: int = 0  # admitted requests (decoding or waiting for a slot)

    @property
    def capacity(self) -> int:
        queue_len = self.scheduler.max_waiting if self.max_queue is None else self.max_queue
        return self.scheduler.slots + queue_len


class NotifyingQueue(queue.Queue):
    """The request's event queue: the scheduler thread puts, and the request's coroutine is woken.

    Each wake of the event loop costs the scheduler thread a GIL hand-over mid-step, so tokens wake the loop
    at most every ``token_interval`` seconds (``None``: never, for a blocking answer without stop strings,
    which needs only the end); ``done`` and ``error`` always wake it.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, wake: asyncio.Event, token_interval: float | None = 0.0
    ) -> None:
        super().__init__()
        self.loop, self.wake, self.token_interval = loop, wake, token_interval
        self.last_wake = 0.0

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        if item[0] == "token":
            if self.token_interval is None:
                return
            now = time.monotonic()
            if now - self.last_wake < self.token_interval:
                return
            self.last_wake = now
        with contextlib.suppress(RuntimeError):  # the loop is closed (server gone): nobody is listening
            self.loop.call_soon_threadsafe(self.wake.set)


async def next_event(req: Request, wake: asyncio.Event) -> tuple[str, Any]:
    while True:
        try:
            return req.events.get_nowait()
        except queue.Empty:
            wake.clear()
            if req.events.empty():
                await wake.wait()


# ---------------------------------------------------------------------------------------------- the app
def build_app(state: ServeState) -> Starlette:
    """The Starlette app for ``state``; run it with uvicorn (see :mod:`mythos.infer.http_server`)."""
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mythos-parse")  # JSON + tokenizing
    metrics = state.metrics

    async def read_body(request: HttpRequest) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            raise RequestError(
                f"request body of {length} bytes is over the {MAX_BODY}-byte limit: send a shorter prompt",
                status=413,
                headers={"Connection": "close"},
            )
        chunks, size = [], 0
        stream = request.stream().__aiter__()
        while True:
            try:
                chunk = await asyncio.wait_for(stream.__anext__(), state.read_timeout)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise RequestError(
                    f"request body not received within {state.read_timeout:g} s",
                    status=408,
                    headers={"Connection": "close"},
                ) from None
            size += len(chunk)
            if size > MAX_BODY:
                raise RequestError(
                    f"request body is over the {MAX_BODY}-byte limit: send a shorter prompt",
                    status=413,
                    headers={"Connection": "close"},
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def prepare(raw: bytes, chat: bool) -> tuple[dict, list[int]]:
        """Parse, validate and tokenize (on the worker pool: a 4 MB body must not stall the event loop)."""
        body = parse_json(raw)
        opts = parse_common(body, state)
        if chat:
            text = render_chat(parse_messages(body.get("messages")))
        else:
            prompt = body.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
                prompt = prompt[0]
            if not isinstance(prompt, str):
                raise RequestError("'prompt' must be a string (or a list holding one string)", param="prompt")
            text = check_text(prompt, "prompt")
        if len(text) > 64 * state.scheduler.engine.max_len:  # no tokenizer packs 64 characters a token
            raise RequestError(
                f"prompt of {len(text)} characters cannot fit the {state.scheduler.engine.max_len}-token "
                "context: shorten the prompt",
                param="messages" if chat else "prompt",
            )
        ids = state.tokenizer.encode(text)
        try:
            state.scheduler.validate(ids, opts["max_tokens"], opts["n_loops"])
        except ValueError as exc:
            param = "n_loops" if "n_loops" in str(exc) else ("messages" if chat else "prompt")
            raise RequestError(str(exc), param=param) from None
        return opts, ids

    def admit(req: Request) -> None:
        if state.in_flight >= state.capacity:
            raise RequestError(
                f"server is full ({state.scheduler.slots} slots busy and {state.capacity - state.scheduler.slots} "
                f"requests waiting): retry after {state.retry_after} s",
                status=429,
                code="rate_limit_exceeded",
                headers={"Retry-After": str(state.retry_after)},
            )
        try:
            state.scheduler.submit(req)
        except OverflowError as exc:
            raise RequestError(
                str(exc),
                status=429,
                code="rate_limit_exceeded",
                headers={"Retry-After": str(state.retry_after)},
            ) from None
        state.in_flight += 1

    def usage(req: Request, n_prompt: int) -> dict[str, Any]:
        n = len(req.generated)
        out: dict[str, Any] = {
            "prompt_tokens": n_prompt,
            "completion_tokens": n,
            "total_tokens": n_prompt + n,
        }
        loops_run = list(req.loops_run)
        if loops_run:
            out["loops_per_token"] = sum(loops_run) / len(loops_run)
        elif not state.scheduler.engine.adaptive and req.exit is None and n:
            out["loops_per_token"] = float(req.n_loops or state.scheduler.engine.max_loops)
        return out

    def finished(req: Request, use: dict[str, Any]) -> None:
        """Account for an admitted request once, however it ended (done, failed, or its client left)."""
        if req.cancelled.is_set():
            return
        req.cancel()  # no-op for the scheduler if it finished; frees the slot if the client went away
        state.in_flight -= 1
        metrics.completion_tokens += use["completion_tokens"]
        if "loops_per_token" in use:
            metrics.token_loops += use["loops_per_token"] * use["completion_tokens"]
            metrics.token_loops_tokens += use["completion_tokens"]

    async def events(req: Request, wake: asyncio.Event, stops: list[str]) -> AsyncIterator[tuple[str, Any]]:
        """(text delta, finish reason or None) until the request ends; applies stop strings."""
        decoder = StreamDecoder(state.tokenizer)
        text = ""
        while True:
            kind, value = await next_event(req, wake)
            if kind == "error":
                metrics.errors["generation_failed"] += 1
                raise RequestError(f"generation failed: {value}", status=500)
            if kind == "token":
                if value in req.stop_ids:
                    continue
                delta = decoder.push(value)
            else:
                delta = decoder.flush()
            if stops and delta:
                joined = text + delta
                hits = [joined.find(s) for s in stops if s in joined]
                if hits:
                    yield joined[len(text) : min(hits)], "stop"
                    return
            text += delta
            if kind == "done":
                yield delta, value
                return
            if delta:
                yield delta, None

    async def complete(request: HttpRequest, chat: bool) -> Response:
        raw = await read_body(request)
        loop = asyncio.get_running_loop()
        if len(raw) <= INLINE_BODY:  # microseconds: a hop to the pool would cost more than it saves
            opts, ids = prepare(raw, chat)
        else:
            opts, ids = await loop.run_in_executor(pool, prepare, raw, chat)
        wake = asyncio.Event()
        stop_ids = frozenset([state.tokenizer.eos_id]) if state.tokenizer.eos_id is not None else frozenset()
        req = Request(
            prompt=ids,
            max_new_tokens=opts["max_tokens"],
            sampling=opts["sampling"],
            n_loops=opts["n_loops"],
            stop_ids=stop_ids,
            events=NotifyingQueue(
                loop, wake, STREAM_WAKE_INTERVAL if opts["stream"] or opts["stops"] else None
            ),
            exit=opts["exit"],
        )
        admit(req)
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        if opts["stream"]:
            return AccountedStream(
                stream(req, wake, rid, created, chat, opts, len(ids)),
                lambda: finished(req, usage(req, len(ids))),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        return await blocking(request, req, wake, rid, created, chat, opts["stops"], len(ids))

    async def blocking(request, req, wake, rid, created, chat, stops, n_prompt) -> Response:
        async def client_gone() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        async def collect() -> tuple[str, str]:
            parts, reason = [], "length"
            async for delta, finish in events(req, wake, stops):
                parts.append(delta)
                reason = finish or reason
            return "".join(parts), reason

        watch = asyncio.ensure_future(client_gone())
        work = asyncio.ensure_future(collect())
        try:
            await asyncio.wait([watch, work], return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                metrics.errors["client_gone"] += 1
                work.cancel()
                return Response(status_code=499)  # nobody reads it
            text, reason = work.result()
        finally:
            watch.cancel()
            finished(req, use := usage(req, n_prompt))
        choice: dict[str, Any] = {"index": 0, "finish_reason": reason, "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return JSONResponse(
            {
                "id": rid,
                "object": "chat.completion" if chat else "text_completion",
                "created": created,
                "model": state.model_name,
                "choices": [choice],
                "usage": use,
            }
        )

    async def stream(req, wake, rid, created, chat, opts, n_prompt) -> AsyncIterator[bytes]:
        kind = "chat.completion.chunk" if chat else "text_completion"

        def chunk(delta: str | None, finish: str | None, first: bool = False) -> bytes:
            if chat:
                d: dict[str, Any] = (
                    {"role": "assistant", "content": ""}
                    if first
                    else ({} if delta is None else {"content": delta})
                )
                choice = {"index": 0, "delta": d, "finish_reason": finish, "logprobs": None}
            else:
                choice = {"index": 0, "text": delta or "", "finish_reason": finish, "logprobs": None}
            payload = {
                "id": rid,
                "object": kind,
                "created": created,
                "model": state.model_name,
                "choices": [choice],
            }
            return b"data: " + json.dumps(payload).encode() + b"\n\n"

        completed = False
        try:
            if chat:
                yield chunk(None, None, first=True)
            try:
                async for delta, finish in events(req, wake, opts["stops"]):
                    if delta:
                        yield chunk(delta, None)
                    if finish:
                        yield chunk(None, finish)
            except RequestError as err:  # headers are sent: report the failure in-band
                yield b"data: " + json.dumps(error_payload(str(err), err.status)).encode() + b"\n\n"
            if opts["include_usage"]:  # a last chunk with usage and no choices
                payload = {
                    "id": rid,
                    "object": kind,
                    "created": created,
                    "model": state.model_name,
                    "choices": [],
                    "usage": usage(req, n_prompt),
                }
                yield b"data: " + json.dumps(payload).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"
            completed = True
        finally:
            if not completed:
                metrics.errors["client_gone"] += 1
            finished(req, usage(req, n_prompt))

    async def completions(request: HttpRequest) -> Response:
        return await complete(request, chat=False)

    async def chat_completions(request: HttpRequest) -> Response:
        return await complete(request, chat=True)

    async def models(request: HttpRequest) -> Response:
        data = [{"id": state.model_name, "object": "model", "created": 0, "owned_by": "mythos"}]
        return JSONResponse({"object": "list", "data": data})

    async def health(request: HttpRequest) -> Response:
        s = state.scheduler
        return JSONResponse(
            {
                "status": "ok",
                "active": s.active,
                "waiting": s.waiting,
                "slots": s.slots,
                "steps": s.steps,
                "tokens_out": s.tokens_out,
                "in_flight": state.in_flight,
            }
        )

    async def prometheus(request: HttpRequest) -> Response:
        return Response(render_metrics(state), media_type="text/plain; version=0.0.4")

    async def openapi(request: HttpRequest) -> Response:
        return JSONResponse(openapi_document(state))

    async def sample_rate() -> None:
        while True:
            metrics.rate_samples.append((time.monotonic(), state.scheduler.tokens_out))
            await asyncio.sleep(1.0)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        task = asyncio.ensure_future(sample_rate())
        try:
            yield
        finally:
            task.cancel()
            pool.shutdown(wait=False, cancel_futures=True)

    async def on_request_error(request: HttpRequest, exc: Exception) -> Response:
        assert isinstance(exc, RequestError)
        return error_response(exc)

    async def on_http_exception(request: HttpRequest, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            message = (
                f"method {request.method} is not allowed on {request.url.path}: use {exc.headers['Allow']}"
            )
        elif exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}: see /openapi.json"
        else:
            message = exc.detail
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return error_response(RequestError(message, status=exc.status_code, code=code, headers=exc.headers))

    routes = [
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={RequestError: on_request_error, HTTPException: on_http_exception},
    )
    app.router.redirect_slashes = False
    return Guard(app, state)


class AccountedStream(StreamingResponse):
    """A streaming response that releases its request even if its body was never iterated."""

    def __init__(self, content: AsyncIterator[bytes], release: Any, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.release = release

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()


class Guard:
    """Outermost ASGI layer: the bearer-key check, request/error counting, and a 500 for anything unforeseen."""

    OPEN_PATHS = frozenset({"/health"})

    def __init__(self, app: Any, state: ServeState) -> None:
        self.app, self.state = app, state
        self.key = None if state.api_key is None else f"Bearer {state.api_key}".encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        route = path if path in KNOWN_ROUTES else "other"
        started = [False, 0]

        async def counted_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                started[0], started[1] = True, message["status"]
            await send(message)

        metrics = self.state.metrics
        try:
            if self.key is not None and path not in self.OPEN_PATHS and not self.authorized(scope):
                err = RequestError(
                    "missing or wrong API key: send 'Authorization: Bearer <key>' with the server's --api-key",
                    status=401,
                    code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await error_response(err)(scope, receive, counted_send)
            else:
                await self.app(scope, receive, counted_send)
        except Exception as exc:  # a bug of ours: fail this request only, with a message, not a traceback
            metrics.errors["internal"] += 1
            if not started[0]:
                msg = f"internal error: {type(exc).__name__}: {exc}"
                await error_response(RequestError(msg, status=500))(scope, receive, counted_send)
        finally:
            status = started[1]
            metrics.requests[(route, status)] += 1
            if status in ERROR_KINDS:
                metrics.errors[ERROR_KINDS[status]] += 1

    def authorized(self, scope: dict) -> bool:
        given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        return hmac.compare_digest(given, self.key)


KNOWN_ROUTES = frozenset(
    {"/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics", "/openapi.json"}
)


def render_metrics(state: ServeState) -> str:
    """Prometheus text exposition (format 0.0.4)."""
    m, s = state.metrics, state.scheduler
    lines = [
        "# HELP mythos_requests_total HTTP requests answered, by route and status.",
        "# TYPE mythos_requests_total counter",
    ]
    for (route, status), n in sorted(m.requests.items()):
        lines.append(f'mythos_requests_total{{route="{route}",status="{status}"}} {n}')
    lines += ["# HELP mythos_errors_total Failed requests by kind.", "# TYPE mythos_errors_total counter"]
    for kind, n in sorted(m.errors.items()):
        lines.append(f'mythos_errors_total{{kind="{kind}"}} {n}')
    loops = m.token_loops / m.token_loops_tokens if m.token_loops_tokens else math.nan
    gauges = [
        ("queue_depth", "Requests waiting for a decode slot.", s.waiting),
        ("active_slots", "Sequences in the running batch.", s.active),
        ("slots", "Decode slots (the largest batch).", s.slots),
        ("in_flight", "Admitted requests (decoding or waiting).", state.in_flight),
        ("capacity", "Admitted requests allowed before 429.", state.capacity),
        ("tokens_per_second", "Tokens generated per second over the last ~10 s.", m.tokens_per_second()),
        ("loops_per_token", "Mean recurrent loops per completion token (where the depth is known).", loops),
    ]
    for name, doc, value in gauges:
        lines += [f"# HELP mythos_{name} {doc}", f"# TYPE mythos_{name} gauge", f"mythos_{name} {value}"]
    counters = [
        ("tokens_generated_total", "Tokens sampled by the scheduler.", s.tokens_out),
        ("decode_steps_total", "Batched decode steps run.", s.steps),
        ("completion_tokens_total", "Completion tokens of finished requests.", m.completion_tokens),
        (
            "engine_token_loops_run_total",
            "Token-loops an adaptive engine ran (prefill included).",
            s.engine.stats.token_loops_run,
        ),
        (
            "engine_token_loops_full_total",
            "Token-loops fixed depth would have run (adaptive engines).",
            s.engine.stats.token_loops_full,
        ),
    ]
    for name, doc, value in counters:
        lines += [f"# HELP mythos_{name} {doc}", f"# TYPE mythos_{name} counter", f"mythos_{name} {value}"]
    return "\n".join(lines) + "\n"


def openapi_document(state: ServeState) -> dict:
    """The API as OpenAPI 3.0, for clients and for schemathesis (which checks the server against it)."""
    error = {"$ref": "#/components/schemas/Error"}
    err_resp = {"description": "error", "content": {"application/json": {"schema": error}}}
    common = {
        "model": {"type": "string", "enum": [state.model_name, None]},
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": MAX_INT31},
        "max_completion_tokens": {"type": "integer", "minimum": 1, "maximum": MAX_INT31},
        "temperature": {"type": "number", "minimum": 0, "maximum": 100},
        "top_p": {"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": 1},
        "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_INT31},
        "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED},
        "n_loops": {"type": "integer", "minimum": 1, "maximum": state.scheduler.engine.max_loops},
        "n": {"type": "integer", "enum": [1, None]},
        "stream": {"type": "boolean"},
        "stream_options": {
            "type": "object",
            "properties": {"include_usage": {"type": "boolean", "nullable": True}},
        },
        "stop": {
            "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 4}]
        },
        "exit": {
            "type": "string",
            "description": "per-token exit, e.g. kl:0.01, delta:0.05, argmax:2",
            "pattern": r"^((kl|delta):([1-9][0-9]{0,5}(\.[0-9]{1,6})?|0?\.[0-9]{0,5}[1-9])|argmax:[1-9][0-9]{0,2})$",
        },
    }
    for prop in common.values():  # OpenAI clients send null for "not given"
        prop["nullable"] = True
    completion_req = {
        "type": "object",
        "required": ["prompt"],
        "properties": {
            "prompt": {
                "oneOf": [
                    {"type": "string", "minLength": 1},
                    {
                        "type": "array",
                        "items": {"type": "string", "minLength": 1},
                        "minItems": 1,
                        "maxItems": 1,
                    },
                ]
            },
            **common,
        },
    }
    part = {
        "type": "object",
        "required": ["type", "text"],
        "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}},
    }
    message = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"type": "string"},
            "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": part}]},
        },
    }
    chat_req = {
        "type": "object",
        "required": ["messages"],
        "properties": {"messages": {"type": "array", "minItems": 1, "items": message}, **common},
    }
    object_resp = {"type": "object", "required": ["id", "object", "choices"]}
    keyed = state.api_key is not None
    security = {"security": [{"bearer": []}]} if keyed else {}
    denied = {"401": err_resp} if keyed else {}

    def post(schema: dict, summary: str) -> dict:
        return {
            "post": {
                "summary": summary,
                **security,
                "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
                "responses": {
                    "200": {
                        "description": "the completion (or server-sent events when stream is true)",
                        "content": {"application/json": {"schema": object_resp}, "text/event-stream": {}},
                    },
                    **{str(c): err_resp for c in (400, 404, 408, 413, 429, 500)},
                    **denied,
                },
            }
        }

    def get(summary: str, media: str = "application/json", open_route: bool = False) -> dict:
        responses = {"200": {"description": summary, "content": {media: {}}}}
        if open_route:
            return {"get": {"summary": summary, "security": [], "responses": responses}}
        return {"get": {"summary": summary, **security, "responses": {**responses, **denied}}}

    return {
        "openapi": "3.0.3",
        "info": {"title": "mythos serve", "version": "1"},
        "paths": {
            "/v1/completions": post(completion_req, "text completion"),
            "/v1/chat/completions": post(chat_req, "chat completion"),
            "/v1/models": get("the served model"),
            "/health": get("scheduler state", open_route=True),
            "/metrics": get("Prometheus metrics", "text/plain"),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["message", "type"],
                            "properties": {
                                "message": {"type": "string"},
                                "type": {"type": "string"},
                                "param": {"type": "string", "nullable": True},
                                "code": {"type": "string", "nullable": True},
                            },
                        }
                    },
                }
            },
        },
    }
