"""Issue 17's fault cases against `mythos serve`, side by side with the stdlib server it replaced.

Each case runs on a fresh server of each kind (same scheduler, engine and tiny model; see serve_common.py):
poison requests (seed 2^64, top_k 2^63) sent while six streams decode, a lone surrogate, 100,000-deep
JSON, ``Content-Length: -1`` with a 64 MB body, ten concurrent 3.9 MB prompts, 200 slowloris connections,
and other HTTP methods. It records what a client sees (status, or no response), the time, and the server's
peak RSS and threads. Results: benchmarks/results/infer_serve_faults.{md,json}.

    .venv/bin/python benchmarks/infer_serve_faults.py
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import httpx  # noqa: E402

from serve_common import ProcProbe, build_request, http_call, start  # noqa: E402

PRESET, SLOTS, MAX_LEN = "tiny", 16, 1024


def outcome(res) -> str:
    if res.status is None:
        return f"no response ({res.error})"
    kind = res.headers.get("content-type", "").split(";")[0]
    return f"{res.status} {kind}".strip()


def run(coro):
    return asyncio.run(coro)


def case_poison(host: str, port: int, url: str) -> dict:
    body = {"max_tokens": 1000, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}

    async def go():
        streams = [
            asyncio.ensure_future(
                http_call(
                    host,
                    port,
                    build_request("/v1/completions", json.dumps({"prompt": f"s{i}", **body}).encode()),
                )
            )
            for i in range(6)
        ]
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                health = (await client.get(url + "/health")).json()
                if health["active"] == 6 and health["tokens_out"] >= 12:
                    break
                await asyncio.sleep(0.02)
        poison = [
            b'{"prompt": "x", "seed": 18446744073709551616, "temperature": 1, "max_tokens": 4}',
            b'{"prompt": "x", "top_k": 9223372036854775808, "temperature": 1, "max_tokens": 4}',
        ]
        statuses = await asyncio.gather(
            *(http_call(host, port, build_request("/v1/completions", p)) for p in poison)
        )
        async with httpx.AsyncClient() as client:
            tokens_after = (await client.get(url + "/health")).json()["tokens_out"]
        return statuses, await asyncio.gather(*streams), tokens_after

    poison, streams, tokens_after = run(go())
    intact = sum(
        r.status == 200 and not r.stream_error and r.finish == "length" and r.tokens == 1000 for r in streams
    )
    cut = sum(r.stream_error for r in streams)
    return {
        "case": "seed 2^64 and top_k 2^63 sent while 6 streams of 1,000 tokens decode",
        "result": f"poison: {', '.join(outcome(p) for p in poison)}; streams intact {intact}/6, cut with "
        f"an in-band error {cut}/6 (poison answered when {tokens_after} of 6,000 tokens were out)",
    }


def case_single(host: str, port: int, name: str, body: bytes, path: str = "/v1/completions") -> dict:
    t0 = time.perf_counter()
    res = run(http_call(host, port, build_request(path, body), timeout=120))
    return {"case": name, "result": f"{outcome(res)} in {time.perf_counter() - t0:.2f} s"}


def case_raw(host: str, port: int, name: str, data: bytes, wait: float = 120) -> dict:
    """Send raw bytes (the body may be ignored by the server); report the first status line seen."""
    t0 = time.perf_counter()
    status = "no response"
    try:
        with socket.create_connection((host, port), timeout=wait) as sock:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(data)
            got = b""
            try:
                while chunk := sock.recv(65536):
                    got += chunk
            except (ConnectionResetError, TimeoutError):
                pass
            if got.startswith(b"HTTP/"):
                status = got.split(b"\r\n", 1)[0].decode().split(" ", 1)[1]
    except OSError as exc:
        status = f"no response ({type(exc).__name__})"
    return {"case": name, "result": f"{status} in {time.perf_counter() - t0:.2f} s"}


def case_big_prompts(host: str, port: int) -> dict:
    prompt = "a" * 3_900_000
    data = build_request("/v1/completions", json.dumps({"prompt": prompt, "max_tokens": 1}).encode())

    async def go():
        return await asyncio.gather(*(http_call(host, port, data, timeout=300) for _ in range(10)))

    t0 = time.perf_counter()
    results = run(go())
    statuses = sorted({outcome(r) for r in results})
    return {
        "case": "10 concurrent 3.9 MB prompts",
        "result": f"{', '.join(statuses)} in {time.perf_counter() - t0:.1f} s",
    }


def case_slowloris(host: str, port: int, url: str, hold: float) -> dict:
    socks = []
    for _ in range(200):
        s = socket.create_connection((host, port))
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
        socks.append(s)
    time.sleep(1.0)
    try:
        during = httpx.post(
            url + "/v1/completions", json={"prompt": "hi", "max_tokens": 2}, timeout=30
        ).status_code
    except httpx.HTTPError as exc:
        during = type(exc).__name__
    time.sleep(hold)
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            data = s.recv(4096)
            closed += data == b"" or data.startswith(b"HTTP/1.1 408")
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    return {
        "case": f"200 slowloris connections (partial headers), checked after {hold + 1:.0f} s",
        "result": f"closed by the server: {closed}/200; a normal request meanwhile: {during}",
    }


def run_kind(kind: str) -> list[dict]:
    rows = []

    def fresh(fn, *args):
        proc, url = start(kind, PRESET, SLOTS, threads=1, max_len=MAX_LEN)
        host, port = url.removeprefix("http://").split(":")
        try:
            with ProcProbe(proc.pid) as probe:
                base = probe.read().get("VmRSS", 0)
                row = fn(host, int(port), *args) if fn is not case_poison else fn(host, int(port), url)
            row["peak_threads"] = probe.peak_threads
            row["rss_growth_mb"] = round((probe.peak_rss_kb - base) / 1024)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except Exception:
                proc.kill()
        rows.append(row)
        print(kind, json.dumps(row), flush=True)

    def with_url(fn, *args):
        def call(host, port):
            return fn(host, port, f"http://{host}:{port}", *args)

        return call

    fresh(case_poison)
    fresh(lambda h, p: case_single(h, p, "lone surrogate in the prompt", b'{"prompt": "\\ud800"}'))
    fresh(lambda h, p: case_single(h, p, "100,000-deep JSON body", b"[" * 100_000 + b"]" * 100_000))
    fresh(lambda h, p: case_single(h, p, "seed 2^64 alone", b'{"prompt": "x", "seed": 18446744073709551616}'))
    head = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    fresh(
        lambda h, p: case_raw(
            h,
            p,
            "Content-Length: -1 and a 64 MB body",
            head + b"Content-Length: -1\r\n\r\n" + b"a" * (64 << 20),
        )
    )
    fresh(case_big_prompts)
    fresh(with_url(case_slowloris, 11.0))
    fresh(
        lambda h, p: case_raw(
            h,
            p,
            "PUT /v1/completions",
            b"PUT /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
    )
    return rows


def main() -> None:
    table = {kind: run_kind(kind) for kind in ("baseline", "uvicorn")}
    lines = [
        f"`mythos serve {PRESET} --max-len {MAX_LEN}` ({SLOTS} slots, 1 torch thread) on loopback; each case on a fresh server. "
        "`baseline` = the stdlib server before issue 17, `uvicorn` = today's (read timeout 10 s). "
        "RSS growth = peak RSS during the case minus RSS before it.",
        "",
        "| case | baseline | uvicorn | peak threads (baseline / uvicorn) | RSS growth MB (baseline / uvicorn) |",
        "|---|---|---|---|---|",
    ]
    for old, new in zip(table["baseline"], table["uvicorn"], strict=True):
        lines.append(
            f"| {old['case']} | {old['result']} | {new['result']} | {old['peak_threads']} / {new['peak_threads']} | "
            f"{old['rss_growth_mb']} / {new['rss_growth_mb']} |"
        )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "infer_serve_faults.md").write_text("\n".join(lines) + "\n")
    (out / "infer_serve_faults.json").write_text(json.dumps(table, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
