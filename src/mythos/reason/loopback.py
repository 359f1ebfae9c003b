"""A real OpenAI- and Anthropic-compatible HTTP server on 127.0.0.1, for tests and benchmarks.

It answers ``POST /v1/chat/completions`` and ``POST /v1/messages`` with the canned, phase-aware replies of
``canned.py``, and misbehaves on request: the *model name* picks the behaviour, so one server serves every
fault at once.

  ok (any other name)   a well-formed reply
  delay/S               reply after S seconds
  gather/N/PREFIX       a request whose call tag starts with PREFIX waits until N such requests are in flight
                        at once, then all reply (HTTP 504 if they never are): proves concurrency without timing
  hang                  never reply (until the server stops)
  empty                 HTTP 200, empty message content
  garbage               HTTP 200, an HTML body
  prose                 HTTP 200, a reply with no JSON and no labels (unparseable)
  http500 / http429     that status, every time
  retryafter/S/K        HTTP 429 with ``Retry-After: S`` for the first K requests of each call tag
  ctx400                HTTP 400 with llama.cpp's context-size error (the real cause must reach the user)
  truncate              HTTP 200, the reply cut in half with ``finish_reason: length``
  template              HTTP 200, the prompt's reply shape copied verbatim (placeholders as content)
  streamonly            server-sent events whether or not the request asked to stream
  flaky/K               HTTP 503 for the first K requests of each call tag, then well-formed
  faulty/P/SEED         each request fails with probability P (500, 429, empty, garbage or prose — by a
                        seeded RNG), otherwise well-formed

``slots`` bounds how many requests are processed at once (like a server with N parallel slots; it is then
reported at ``GET /props`` as llama.cpp does) and ``latency_s`` adds a fixed service time to each, which is
what the parallel-speedup benchmark needs. A request with ``"stream": true`` gets server-sent events.
"""

from __future__ import annotations

import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mythos.reason.canned import canned_reply, tag_of, template_reply

FAULTS = ("http500", "http429", "empty", "garbage", "prose")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LoopbackHTTPServer

    def log_message(self, format: str, *args) -> None:  # keep test output clean
        return

    def _send(
        self, status: int, body: bytes, content_type: str = "application/json", headers: dict | None = None
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): nothing to do

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/props" and self.server.slot_count:
            self._send(200, json.dumps({"total_slots": self.server.slot_count}).encode())
        elif self.path.rstrip("/").endswith("/models"):
            self._send(
                200, json.dumps({"object": "list", "data": [{"id": "ok", "object": "model"}]}).encode()
            )
        else:
            self._send(404, b'{"error": {"message": "not found"}}')

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            payload = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self._send(400, b'{"error": {"message": "bad json"}}')
            return
        anthropic = self.path.rstrip("/").endswith("/messages")
        if not anthropic and not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, b'{"error": {"message": "not found"}}')
            return
        messages = list(payload.get("messages") or [])
        if anthropic and payload.get("system"):
            messages = [{"role": "system", "content": payload["system"]}] + messages
        messages = [{"role": m.get("role", "user"), "content": _text(m.get("content"))} for m in messages]
        model = str(payload.get("model") or "ok")
        srv = self.server
        with srv.slots:
            t_start = time.monotonic()
            status, body, ctype, headers = srv.respond(
                model, messages, anthropic, int(payload.get("max_tokens") or 256), bool(payload.get("stream"))
            )
            if srv.latency_s:
                time.sleep(srv.latency_s)
            t_end = time.monotonic()
        with srv.lock:
            srv.log.append(
                {
                    "t_start": t_start,
                    "t_end": t_end,
                    "model": model,
                    "tag": tag_of(messages),
                    "status": status,
                    "response_format": payload.get("response_format"),
                    "stream": bool(payload.get("stream")),
                    "temperature": payload.get("temperature"),
                    "messages": messages,
                }
            )
        self._send(status, body, ctype, headers)


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


class LoopbackHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, latency_s: float, slots: int | None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.latency_s = latency_s
        self.slots = threading.BoundedSemaphore(slots) if slots else _NoLimit()
        self.slot_count = slots
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.log: list[dict] = []
        self.counts: dict[tuple[str, str], int] = {}
        self.rngs: dict[str, random.Random] = {}
        self.barriers: dict[str, threading.Barrier] = {}

    def respond(
        self, model: str, messages: list[dict[str, str]], anthropic: bool, max_tokens: int, stream: bool
    ) -> tuple[int, bytes, str, dict]:
        """(status, body, content type, headers) for one request. A subclass that overrides ``behave`` (a
        real model behind the same plumbing) gets streaming for free: its JSON completion becomes events."""
        if type(self).behave is LoopbackHTTPServer.behave:
            status, body, ctype, headers = self._behave(model, messages, anthropic, max_tokens)
        else:
            (status, body, ctype), headers = self.behave(model, messages, anthropic, max_tokens), {}
        wants_events = stream or model.split("/")[0] == "streamonly"
        if status == 200 and not anthropic and wants_events and ctype == "application/json":
            data = json.loads(body)
            choice = data["choices"][0]
            body = _events(data, choice["message"]["content"], choice["finish_reason"])
            ctype = "text/event-stream"
        return status, body, ctype, headers

    def behave(
        self, model: str, messages: list[dict[str, str]], anthropic: bool, max_tokens: int
    ) -> tuple[int, bytes, str]:
        """(status, body, content type) for one request; subclasses override this to put a model behind it."""
        return self._behave(model, messages, anthropic, max_tokens)[:3]

    def _behave(
        self, model: str, messages: list[dict[str, str]], anthropic: bool, max_tokens: int
    ) -> tuple[int, bytes, str, dict]:
        tag = tag_of(messages)
        kind = model.split("/")[0]
        with self.lock:
            self.counts[(model, tag)] = self.counts.get((model, tag), 0) + 1
            seen = self.counts[(model, tag)]
        if kind == "delay":
            time.sleep(float(model.split("/")[1]))
        elif kind == "gather" and tag.startswith(model.split("/", 2)[2]):
            with self.lock:
                barrier = self.barriers.setdefault(model, threading.Barrier(int(model.split("/")[1])))
            try:
                barrier.wait(timeout=60)
            except threading.BrokenBarrierError:
                return 504, b'{"error": {"message": "never gathered"}}', "application/json", {}
        elif kind == "hang":
            self.stopping.wait(120)
            return 503, b'{"error": {"message": "server stopping"}}', "application/json", {}
        elif kind == "flaky" and seen <= int(model.split("/")[1]):
            return 503, b'{"error": {"message": "temporarily overloaded"}}', "application/json", {}
        elif kind == "retryafter" and seen <= int(model.split("/")[2]):
            body = b'{"error": {"message": "rate limited", "type": "rate_limit"}}'
            return 429, body, "application/json", {"Retry-After": model.split("/")[1]}
        elif kind == "ctx400":
            message = "the request exceeds the available context size (4127 tokens > 2048), try increasing it"
            body = json.dumps(
                {"error": {"code": 400, "message": message, "type": "exceed_context_size_error"}}
            )
            return 400, body.encode(), "application/json", {}
        elif kind == "faulty":
            _, p, seed = model.split("/")
            with self.lock:
                rng = self.rngs.setdefault(model, random.Random(int(seed)))
                draw, fault = rng.random(), rng.choice(FAULTS)
            if draw < float(p):
                kind = fault
        if kind == "http500":
            return (
                500,
                b'{"error": {"message": "internal error", "type": "server_error"}}',
                "application/json",
                {},
            )
        if kind == "http429":
            return (
                429,
                b'{"error": {"message": "rate limited", "type": "rate_limit"}}',
                "application/json",
                {},
            )
        if kind == "garbage":
            return 200, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html", {}
        text = "" if kind == "empty" else canned_reply(tag, messages)
        finish = "stop"
        if kind == "prose":
            text = "I think this is a really interesting question with many sides to it."
        elif kind == "template":
            text = template_reply(tag)
        elif kind == "truncate":
            text, finish = text[: len(text) // 2], "length"
        words = text.split()
        if len(words) > max_tokens:
            text, finish = " ".join(words[:max_tokens]), "length"
        tokens_in = sum(len(m["content"].split()) for m in messages)
        tokens_out = len(text.split())
        if anthropic:
            body = {
                "id": "msg_loopback",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "max_tokens" if finish == "length" else "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out},
            }
        else:
            body = {
                "id": "chatcmpl-loopback",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": text}}
                ],
                "usage": {
                    "prompt_tokens": tokens_in,
                    "completion_tokens": tokens_out,
                    "total_tokens": tokens_in + tokens_out,
                },
            }
        return 200, json.dumps(body).encode(), "application/json", {}


def _events(body: dict, text: str, finish: str) -> bytes:
    """The completion as server-sent events: a few content chunks, then finish, then usage, then [DONE]."""
    base = {
        "id": body["id"],
        "object": "chat.completion.chunk",
        "created": body["created"],
        "model": body["model"],
    }
    pieces = [text[i : i + 40] for i in range(0, len(text), 40)] or [""]
    chunks = [
        dict(
            base,
            choices=[{"index": 0, "delta": {"role": "assistant", "content": piece}, "finish_reason": None}],
        )
        for piece in pieces
    ]
    chunks.append(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": finish}]))
    chunks.append(dict(base, choices=[], usage=body["usage"]))
    lines = [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]
    return "".join(lines).encode()


class _NoLimit:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


class LoopbackServer:
    """``with LoopbackServer(latency_s=0.2, slots=4) as srv: OpenAIBackend(base_url=srv.base_url, …)``."""

    def __init__(self, latency_s: float = 0.0, slots: int | None = None):
        self._server = LoopbackHTTPServer(latency_s, slots)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="mythos-loopback", daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def anthropic_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def log(self) -> list[dict]:
        with self._server.lock:
            return list(self._server.log)

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
