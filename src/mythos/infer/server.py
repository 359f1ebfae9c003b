"""An OpenAI-compatible HTTP endpoint over the continuous-batching scheduler (standard library only).

Routes: ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions`` (both with
``"stream": true`` server-sent events), and ``GET /health``. Extra body fields: ``n_loops`` (recurrent
depth for this request), ``top_k``. Errors use OpenAI's shape ``{"error": {"message", "type", "param",
"code"}}`` with a 4xx status. Each HTTP connection has its own thread that waits on its request's event
queue; a client that goes away (a failed write while streaming, or a closed socket while waiting) cancels
its request, which frees the slot before the next decode step.
"""

from __future__ import annotations

import json
import queue
import select
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mythos.infer.sampling import SamplingParams
from mythos.infer.scheduler import Request, Scheduler
from mythos.infer.tokenizer import StreamDecoder, Tokenizer

MAX_BODY = 4 * 1024 * 1024


class RequestError(Exception):
    """A client mistake: becomes a 4xx with OpenAI's error shape."""

    def __init__(
        self, message: str, param: str | None = None, status: int = 400, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.param, self.status, self.code = param, status, code


class ClientGone(Exception):
    """The client closed its connection."""


def render_chat(messages: list[dict[str, str]]) -> str:
    """A plain role-tagged transcript ending with the assistant's turn (models here have no chat template)."""
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nassistant:"


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
        out.append({"role": m["role"], "content": content})
    return out


@dataclass
class ServeState:
    scheduler: Scheduler
    tokenizer: Tokenizer
    model_name: str
    default_max_tokens: int = 16


def _field(body: dict, name: str, kind: type | tuple, default: Any = None, check=None, hint: str = "") -> Any:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise RequestError(f"'{name}' must be {hint or kind}, got {value!r}", param=name)
    if not isinstance(value, kind) or (check is not None and not check(value)):
        raise RequestError(f"'{name}' must be {hint or kind}, got {value!r}", param=name)
    return value


def parse_common(body: dict, state: ServeState) -> dict[str, Any]:
    """Validate the fields shared by both endpoints; every error names the field and what is valid."""
    model = body.get("model")
    if model is not None and model != state.model_name:
        raise RequestError(
            f"model {model!r} does not exist; this server serves {state.model_name!r}",
            param="model",
            status=404,
            code="model_not_found",
        )
    max_tokens = _field(
        body, "max_tokens", int, state.default_max_tokens, lambda v: v >= 1, "an integer >= 1"
    )
    if "max_completion_tokens" in body:
        max_tokens = _field(
            body, "max_completion_tokens", int, max_tokens, lambda v: v >= 1, "an integer >= 1"
        )
    temperature = _field(
        body, "temperature", (int, float), 1.0, lambda v: 0 <= v <= 100, "a number in [0, 100]"
    )
    top_p = _field(body, "top_p", (int, float), None, lambda v: 0 < v <= 1, "a number in (0, 1]")
    top_k = _field(body, "top_k", int, None, lambda v: v >= 1, "an integer >= 1")
    seed = _field(body, "seed", int, None, None, "an integer")
    n_loops = _field(body, "n_loops", int, None, lambda v: v >= 1, "an integer >= 1")
    n = _field(body, "n", int, 1, lambda v: v == 1, "1 (one choice per request is supported)")
    stream = _field(body, "stream", bool, False, None, "true or false")
    stream_options = _field(body, "stream_options", dict, {}, None, "an object")
    include_usage = bool(stream and stream_options.get("include_usage"))
    stop = body.get("stop")
    if stop is None:
        stops: list[str] = []
    elif isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= 4:
        stops = list(stop)
    else:
        raise RequestError(
            f"'stop' must be a string or a list of up to 4 strings, got {stop!r}", param="stop"
        )
    return dict(
        max_tokens=max_tokens,
        stream=stream,
        stops=[s for s in stops if s],
        n=n,
        sampling=SamplingParams(
            temperature=float(temperature),
            top_k=top_k,
            top_p=None if top_p is None else float(top_p),
            seed=seed,
        ),
        n_loops=n_loops,
        include_usage=include_usage,
    )


class Handler(BaseHTTPRequestHandler):
    server_version = "mythos-serve"
    protocol_version = "HTTP/1.0"  # one request per connection: streams end by closing
    state: ServeState  # set on the subclass built by make_server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by default
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    # ------------------------------------------------------------------ plumbing
    def _send_json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, err: RequestError) -> None:
        kind = "invalid_request_error" if err.status < 500 else "server_error"
        self._send_json(
            err.status, {"error": {"message": str(err), "type": kind, "param": err.param, "code": err.code}}
        )

    def _read_body(self) -> dict:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise RequestError("Content-Length must be an integer") from None
        if length > MAX_BODY:
            raise RequestError(f"request body of {length} bytes exceeds {MAX_BODY}", status=413)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise RequestError("request body must be a JSON object")
        return body

    def _client_gone(self) -> bool:
        """True when the peer has closed its end (readable with nothing to read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    # ------------------------------------------------------------------ routes
    def do_GET(self) -> None:  # noqa: N802
        st = self.state
        if self.path.rstrip("/") == "/v1/models":
            self._send_json(
                200,
                {
                    "object": "list",
                    "data": [{"id": st.model_name, "object": "model", "created": 0, "owned_by": "mythos"}],
                },
            )
        elif self.path.rstrip("/") == "/health":
            s = st.scheduler
            self._send_json(
                200,
                {
                    "status": "ok",
                    "active": s.active,
                    "waiting": s.waiting,
                    "slots": s.slots,
                    "steps": s.steps,
                    "tokens_out": s.tokens_out,
                },
            )
        else:
            self._send_error(RequestError(f"no route GET {self.path}", status=404, code="not_found"))

    def do_POST(self) -> None:  # noqa: N802
        route = self.path.rstrip("/")
        try:
            if route not in ("/v1/completions", "/v1/chat/completions"):
                raise RequestError(f"no route POST {self.path}", status=404, code="not_found")
            body = self._read_body()
            self._complete(body, chat=route.endswith("chat/completions"))
        except RequestError as err:
            self._send_error(err)
        except (BrokenPipeError, ConnectionResetError, ClientGone):
            pass

    def _complete(self, body: dict, chat: bool) -> None:
        st = self.state
        opts = parse_common(body, st)
        if chat:
            text = render_chat(parse_messages(body.get("messages")))
        else:
            prompt = body.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
                prompt = prompt[0]
            if not isinstance(prompt, str):
                raise RequestError("'prompt' must be a string (or a list holding one string)", param="prompt")
            text = prompt
        ids = st.tokenizer.encode(text)
        stop_ids = frozenset([st.tokenizer.eos_id]) if st.tokenizer.eos_id is not None else frozenset()
        req = Request(
            prompt=ids,
            max_new_tokens=opts["max_tokens"],
            sampling=opts["sampling"],
            n_loops=opts["n_loops"],
            stop_ids=stop_ids,
        )
        try:
            st.scheduler.submit(req)
        except ValueError as exc:
            raise RequestError(str(exc), param="n_loops" if "n_loops" in str(exc) else "prompt") from None
        except OverflowError as exc:
            raise RequestError(str(exc), status=429, code="rate_limit_exceeded") from None
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        try:
            if opts["stream"]:
                self._stream(req, rid, chat, opts["stops"], len(ids) if opts["include_usage"] else None)
            else:
                self._blocking(req, rid, chat, opts["stops"], len(ids))
        finally:
            req.cancel()  # no-op if finished; frees the slot if the client went away

    def _events(self, req: Request, decoder: StreamDecoder, stops: list[str], check_client: bool):
        """Yield (text delta, finish reason or None) until the request ends; applies stop strings."""
        text = ""
        last_check = time.monotonic()
        while True:
            if check_client and time.monotonic() - last_check > 0.1:
                last_check = time.monotonic()
                if self._client_gone():
                    raise ClientGone
            try:
                kind, value = req.events.get(timeout=0.05)
            except queue.Empty:
                continue
            if kind == "error":
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

    def _blocking(self, req: Request, rid: str, chat: bool, stops: list[str], n_prompt: int) -> None:
        st = self.state
        parts, reason = [], "length"
        for delta, finish in self._events(req, StreamDecoder(st.tokenizer), stops, check_client=True):
            parts.append(delta)
            reason = finish or reason
        text = "".join(parts)
        usage = {
            "prompt_tokens": n_prompt,
            "completion_tokens": len(req.generated),
            "total_tokens": n_prompt + len(req.generated),
        }
        choice: dict[str, Any] = {"index": 0, "finish_reason": reason, "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        self._send_json(
            200,
            {
                "id": rid,
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": st.model_name,
                "choices": [choice],
                "usage": usage,
            },
        )

    def _stream(self, req: Request, rid: str, chat: bool, stops: list[str], usage_prompt: int | None) -> None:
        st = self.state
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        created = int(time.time())
        kind = "chat.completion.chunk" if chat else "text_completion"

        def chunk(delta: str | None, finish: str | None, first: bool = False) -> None:
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
                "model": st.model_name,
                "choices": [choice],
            }
            self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
            self.wfile.flush()

        if chat:
            chunk(None, None, first=True)
        try:
            for delta, finish in self._events(req, StreamDecoder(st.tokenizer), stops, check_client=True):
                if delta:
                    chunk(delta, None)
                if finish:
                    chunk(None, finish)
        except RequestError as err:  # headers are sent: report the failure in-band
            self.wfile.write(
                b"data: "
                + json.dumps(
                    {"error": {"message": str(err), "type": "server_error", "param": None, "code": None}}
                ).encode()
                + b"\n\n"
            )
        if usage_prompt is not None:  # stream_options.include_usage: a last chunk with usage and no choices
            n = len(req.generated)
            payload = {
                "id": rid,
                "object": kind,
                "created": created,
                "model": st.model_name,
                "choices": [],
                "usage": {
                    "prompt_tokens": usage_prompt,
                    "completion_tokens": n,
                    "total_tokens": usage_prompt + n,
                },
            }
            self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


def make_server(
    state: ServeState, host: str = "127.0.0.1", port: int = 8000, verbose: bool = False
) -> ThreadingHTTPServer:
    """A ready-to-run HTTP server (call ``serve_forever``); port 0 picks a free one (see ``server_address``)."""
    handler = type("BoundHandler", (Handler,), {"state": state})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.verbose = verbose  # type: ignore[attr-defined]
    return server


def serve_in_thread(
    state: ServeState, host: str = "127.0.0.1", port: int = 0
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Start the server on a background thread (tests, benchmarks, embedding)."""
    server = make_server(state, host, port)
    thread = threading.Thread(target=server.serve_forever, name="mythos-http", daemon=True)
    thread.start()
    return server, thread
