"""`mythos serve`'s HTTP layer: an OpenAI-compatible API over the continuous-batching scheduler.

The app (routes, validation, admission, metrics, auth) is :mod:`mythos.infer.http_app`; running it on
uvicorn (socket, read timeouts, drain) is :mod:`mythos.infer.http_server`. This module keeps the names
callers import.
"""

from __future__ import annotations

from mythos.infer.http_app import (
    MAX_BODY,
    RequestError,
    ServeState,
    build_app,
    parse_common,
    parse_messages,
    render_chat,
)
from mythos.infer.http_server import HttpServer, bind_socket, make_server, serve_in_thread

__all__ = [
    "MAX_BODY",
    "HttpServer",
    "RequestError",
    "ServeState",
    "bind_socket",
    "build_app",
    "make_server",
    "parse_common",
    "parse_messages",
    "render_chat",
    "serve_in_thread",
]
