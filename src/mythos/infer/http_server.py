"""Runs the serve app on uvicorn: our own listening socket, slowloris guard, JSON protocol errors, drain.

Why uvicorn + starlette: uvicorn is the ASGI server most Python model servers deploy (vLLM's and
text-generation-inference's Python front ends, FastAPI apps), asyncio-based, so a thousand idle or slow
connections cost a coroutine each instead of a thread each; it speaks HTTP/1.1 with keep-alive and drains
in-flight requests on SIGTERM. Starlette is the small routing layer under FastAPI, without pydantic.

What we add around them: the socket is bound here (a clear error for a port in use, a listen backlog we
choose); a connection must deliver its request headers within ``read_timeout`` seconds or it gets a 408
and is closed (uvicorn itself has only a keep-alive idle timeout, so a client dribbling headers would hold
a connection forever); and malformed HTTP (a ``Content-Length: -1``, garbage request lines) is answered
400 in OpenAI's JSON error shape instead of uvicorn's plain text.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from mythos.infer.http_app import Metrics, ServeState, build_app, error_payload

BACKLOG = 4096  # the kernel caps it at net.core.somaxconn


def raw_error(status: int, reason: str, message: str) -> bytes:
    """A complete HTTP/1.1 error response that closes the connection (written below h11's state machine)."""
    body = json.dumps(
        error_payload(message, status, code="bad_http" if status == 400 else "timeout")
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers and JSON protocol errors."""

    read_timeout = 10.0  # replaced per server by HttpServer
    metrics: Metrics | None = None  # likewise: protocol-level refusals are counted too

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.header_timer = None
        self.arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self.header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self.arm_header_timer()  # the first bytes of a next request on a kept-alive connection
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        super().connection_lost(exc)

    def arm_header_timer(self) -> None:
        self.header_timer = self.loop.call_later(self.read_timeout, self.headers_late, self.cycle)

    def headers_late(self, cycle: Any) -> None:
        """No new request began since the timer was armed: the headers are late, so hang up with a 408."""
        self.header_timer = None
        if self.cycle is not cycle or self.transport.is_closing():
            return
        message = f"request headers not received within {self.read_timeout:g} s"
        self.count(408, "timeout")
        self.transport.write(raw_error(408, "Request Timeout", message))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        detail = (
            "a request line, header or Content-Length (a non-negative integer) that HTTP/1.1 does not allow"
        )
        self.count(400, "bad_http")
        self.transport.write(raw_error(400, "Bad Request", f"malformed HTTP request: {detail}"))
        self.transport.close()

    def count(self, status: int, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.requests[("other", status)] += 1
            self.metrics.errors[kind] += 1


def bind_socket(host: str, port: int, backlog: int = BACKLOG) -> socket.socket:
    """A listening TCP socket; raises OSError (port in use, bad address) for the caller to report."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and without it
    # Nagle holds a response's body until the client's delayed ACK of its headers (~40 ms per request)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class HttpServer:
    """One uvicorn server on a socket bound at construction; ``serve_forever`` blocks, ``shutdown`` drains."""

    def __init__(
        self, state: ServeState, sock: socket.socket, verbose: bool = False, drain_timeout: float = 30.0
    ):
        self.state, self.socket = state, sock
        protocol = type(
            "Protocol", (GuardedH11Protocol,), {"read_timeout": state.read_timeout, "metrics": state.metrics}
        )
        config = uvicorn.Config(
            build_app(state),
            http=protocol,
            ws="none",
            lifespan="on",
            log_level="info" if verbose else "warning",
            access_log=verbose,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=drain_timeout,
            h11_max_incomplete_event_size=64 * 1024,
            server_header=False,
        )
        self.server = uvicorn.Server(config)
        self.thread: threading.Thread | None = None

    @property
    def server_address(self) -> tuple[str, int]:
        return self.socket.getsockname()[:2]

    def serve_forever(self) -> None:
        """Serve until SIGTERM/SIGINT (when on the main thread) or :meth:`shutdown`; in-flight requests finish."""
        self.server.run(sockets=[self.socket])

    def shutdown(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=60)

    def server_close(self) -> None:
        self.socket.close()


def make_server(
    state: ServeState,
    host: str = "127.0.0.1",
    port: int = 8000,
    verbose: bool = False,
    backlog: int = BACKLOG,
    drain_timeout: float = 30.0,
) -> HttpServer:
    """A ready-to-run server (call ``serve_forever``); port 0 picks a free one (see ``server_address``)."""
    return HttpServer(state, bind_socket(host, port, backlog), verbose=verbose, drain_timeout=drain_timeout)


def serve_in_thread(
    state: ServeState, host: str = "127.0.0.1", port: int = 0, **kwargs: Any
) -> tuple[HttpServer, threading.Thread]:
    """Start the server on a background thread (tests, benchmarks, embedding); returns once it accepts."""
    server = make_server(state, host, port, **kwargs)
    thread = threading.Thread(target=server.serve_forever, name="mythos-http", daemon=True)
    server.thread = thread
    thread.start()
    while not server.server.started and thread.is_alive():
        threading.Event().wait(0.01)
    return server, thread
