"""Shared by the serve benchmarks: start today's server or the stdlib baseline, raw HTTP clients, /proc probes.

The baseline is the stdlib ``ThreadingHTTPServer`` front end that `mythos serve` had before issue 17, taken
from git (``BASELINE_REV``) into a temp file and run over the same scheduler, engine and model, so the two
differ only in their HTTP layer.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE_REV = "c20bfc1"  # the last commit with the stdlib HTTP server (http.server, HTTP/1.0, backlog 5)

CHILD = """
import importlib.util, sys, torch
from mythos.infer.cli import load_model
from mythos.infer.engine import Engine
from mythos.infer.scheduler import Scheduler
from mythos.infer.tokenizer import load_tokenizer
path, preset, slots, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
max_len = int(sys.argv[5]) or None
torch.set_num_threads(threads)
spec = importlib.util.spec_from_file_location("baseline_server", path)
mod = importlib.util.module_from_spec(spec); sys.modules["baseline_server"] = mod; spec.loader.exec_module(mod)
model, ckpt = load_model(preset, max_seq_len=max_len)
engine = Engine.from_model(model, slots=slots, max_len=max_len)
scheduler = Scheduler(engine).start()
state = mod.ServeState(scheduler, load_tokenizer(ckpt, model.cfg.vocab_size), preset)
server = mod.make_server(state, "127.0.0.1", 0)
print(f"baseline on http://127.0.0.1:{server.server_address[1]}/v1", flush=True)
server.serve_forever()
"""


def start(
    kind: str, preset: str, slots: int, threads: int = 1, extra: list[str] | None = None, max_len: int = 0
):
    """(process, base URL) for ``kind`` "baseline" (stdlib server from git) or "uvicorn" (`mythos serve`)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    if kind == "baseline":
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{BASELINE_REV}:src/mythos/infer/server.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        path = Path(tempfile.mkdtemp(prefix="mythos-baseline-")) / "baseline_server.py"
        path.write_text(source)
        cmd = [sys.executable, "-c", CHILD, str(path), preset, str(slots), str(threads), str(max_len)]
    else:
        cmd = [sys.executable, "-m", "mythos", "serve", preset, "--port", "0", "--slots", str(slots)]
        cmd += ["--threads", str(threads), *(["--max-len", str(max_len)] if max_len else []), *(extra or [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        raise SystemExit(f"{kind} server did not start: {line!r}")
    url = line.split("on ")[1].split()[0].removesuffix("/v1")
    return proc, url


class ProcProbe:
    """Samples a process's thread count and RSS from /proc every 20 ms (peak RSS is also read from VmHWM)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_threads, self.peak_rss_kb = pid, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def read(self) -> dict[str, int]:
        out = {}
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("Threads", "VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0])
        except (OSError, ValueError):
            pass
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            s = self.read()
            self.peak_threads = max(self.peak_threads, s.get("Threads", 0))
            self.peak_rss_kb = max(self.peak_rss_kb, s.get("VmRSS", 0), s.get("VmHWM", 0))
            time.sleep(0.02)

    def __enter__(self) -> ProcProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def listen_overflows() -> int:
    """The kernel's TcpExt ListenOverflows counter (connections dropped because a listen queue was full)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for head, values in zip(lines[::2], lines[1::2], strict=False):
        if head.startswith("TcpExt:"):
            table = dict(zip(head.split()[1:], values.split()[1:], strict=True))
            return int(table.get("ListenOverflows", 0))
    return 0


@dataclass
class Result:
    status: int | None = None  # None: no HTTP response at all
    error: str | None = None  # reset, refused, eof, timeout
    latency: float = 0.0
    tokens: int = 0
    retry_after: str | None = None
    stream_error: bool = False
    finish: str | None = None
    headers: dict = field(default_factory=dict)


def build_request(path: str, body: bytes, extra_headers: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra_headers}\r\n"
    ).encode() + body


def parse_response(raw: bytes, res: Result) -> None:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    res.status = int(lines[0].split()[1])
    res.headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    res.retry_after = res.headers.get("retry-after")
    if res.headers.get("transfer-encoding", "").lower() == "chunked":
        body = dechunk(body)
    if res.status != 200:
        return
    if res.headers.get("content-type", "").startswith("text/event-stream"):
        for line in body.split(b"\n"):
            if line.startswith(b"data: {"):
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    res.stream_error = True
                    continue
                if chunk.get("usage"):
                    res.tokens = chunk["usage"]["completion_tokens"]
                for c in chunk.get("choices", []):
                    res.finish = c.get("finish_reason") or res.finish
    else:
        payload = json.loads(body)
        res.tokens = payload["usage"]["completion_tokens"]
        res.finish = payload["choices"][0]["finish_reason"]


def dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


async def http_call(host: str, port: int, data: bytes, timeout: float = 300.0) -> Result:
    """One request on a fresh connection; the response is read until the server closes it."""
    res = Result()
    t0 = time.perf_counter()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer.write(data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(-1), timeout)
        writer.close()
        if not raw:
            res.error = "eof"
        else:
            parse_response(raw, res)
    except ConnectionRefusedError:
        res.error = "refused"
    except (ConnectionResetError, BrokenPipeError):
        res.error = "reset"
    except TimeoutError:
        res.error = "timeout"
    except (OSError, ValueError, IndexError) as exc:
        res.error = type(exc).__name__
    res.latency = time.perf_counter() - t0
    return res
