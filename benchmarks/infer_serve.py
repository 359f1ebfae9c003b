"""`mythos serve` throughput with 1, 4 and 16 concurrent clients (real server process, real HTTP).

Starts `mythos serve PRESET --port 0` in a subprocess, then runs N client threads that each send
requests back to back (`/v1/completions`, greedy, fixed max_tokens). Reports completion tokens per second
of wall time, mean request latency and the mean decode batch the scheduler ran (tokens / steps), which
shows continuous batching at work. Wall clock: this measures the server as a client sees it.

    .venv/bin/python benchmarks/infer_serve.py            # small preset, 32 new tokens, 4 rounds per client
    .venv/bin/python benchmarks/infer_serve.py --quick    # tiny preset, 16 new tokens, 2 rounds
    .venv/bin/python benchmarks/infer_serve.py --compile  # `serve --compile`, warmed up at every client count
    .venv/bin/python benchmarks/infer_serve.py --baseline # the same against the stdlib server before issue 17
    .venv/bin/python benchmarks/infer_serve.py --load 200,1000   # issue 17: concurrent clients, both HTTP layers
    .venv/bin/python benchmarks/infer_serve.py --side-by-side 30 # batch-1 latency, both layers on one scheduler

``--load N,...`` is the load test: N clients connect at once, a third each asking for a completion, a chat
completion and a streamed completion, against today's uvicorn server and the stdlib baseline it replaced
(same scheduler, engine and model; see serve_common.py). It counts what each client got (200, 429 with
Retry-After, another status, or a connection error: a reset, refusal or no answer), and reports latency,
tokens/s, the server's peak threads and RSS, and the kernel's ListenOverflows. Results go to
benchmarks/results/infer_serve_load.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time

import httpx


def start_server(preset: str, slots: int, threads: int, extra: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mythos",
            "serve",
            preset,
            "--port",
            "0",
            "--slots",
            str(slots),
            "--threads",
            str(threads),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, line.split("on ")[1].split(" ")[0]


def run_clients(
    base: str, clients: int, rounds: int, new_tokens: int, prompt: str
) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    tokens = [0]
    lock = threading.Lock()

    def client(i: int) -> None:
        with httpx.Client(timeout=600) as http:
            for r in range(rounds):
                t = time.perf_counter()
                res = http.post(
                    base + "/completions",
                    json={"prompt": f"{prompt} {i}-{r}", "max_tokens": new_tokens, "temperature": 0},
                )
                res.raise_for_status()
                with lock:
                    latencies.append(time.perf_counter() - t)
                    tokens[0] += res.json()["usage"]["completion_tokens"]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, latencies, tokens[0]


def load_round(kind: str, clients: int, preset: str, slots: int, new_tokens: int) -> dict:
    """All ``clients`` connect at once against a fresh server of ``kind``; returns one row of the table."""
    from serve_common import ProcProbe, build_request, http_call, listen_overflows

    proc, url = start_server_kind(kind, preset, slots)
    host, port = url.removeprefix("http://").split(":")
    try:

        def body(i: int) -> tuple[str, bytes]:
            common = {"max_tokens": new_tokens, "temperature": 0}
            if i % 3 == 0:
                return "/v1/completions", json.dumps({"prompt": f"The fox {i}", **common}).encode()
            if i % 3 == 1:
                messages = [{"role": "user", "content": f"hello {i}"}]
                return "/v1/chat/completions", json.dumps({"messages": messages, **common}).encode()
            opts = {"stream": True, "stream_options": {"include_usage": True}}
            return "/v1/completions", json.dumps({"prompt": f"Stream {i}", **common, **opts}).encode()

        async def run() -> list:
            return await asyncio.gather(
                *(http_call(host, int(port), build_request(*body(i))) for i in range(clients))
            )

        asyncio.run(http_warm(host, int(port), build_request(*body(0))))
        overflows = listen_overflows()
        with ProcProbe(proc.pid) as probe:
            t0 = time.perf_counter()
            results = asyncio.run(run())
            wall = time.perf_counter() - t0
        overflows = listen_overflows() - overflows
    finally:
        proc.terminate()
        proc.wait(30)
    ok = [r for r in results if r.status == 200 and not r.stream_error]
    lat = sorted(r.latency for r in ok)
    errors: dict[str, int] = {}
    for r in results:
        if r.status is None:
            errors[r.error or "?"] = errors.get(r.error or "?", 0) + 1
    return {
        "server": kind,
        "clients": clients,
        "served": len(ok),
        "429": sum(r.status == 429 for r in results),
        "429_with_retry_after": sum(r.status == 429 and r.retry_after is not None for r in results),
        "other_status": sum(r.status not in (None, 200, 429) for r in results),
        "stream_errors": sum(r.stream_error for r in results),
        "connection_errors": sum(errors.values()),
        "errors_by_kind": errors,
        "p50_s": statistics.median(lat) if lat else None,
        "p99_s": lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else None,
        "tokens": sum(r.tokens for r in ok),
        "tokens_per_s": sum(r.tokens for r in ok) / wall,
        "wall_s": wall,
        "peak_threads": probe.peak_threads,
        "peak_rss_mb": probe.peak_rss_kb / 1024,
        "listen_overflows": overflows,
    }


async def http_warm(host: str, port: int, data: bytes) -> None:
    from serve_common import http_call

    await http_call(host, port, data)


def start_server_kind(kind: str, preset: str, slots: int):
    from serve_common import start

    return start(kind, preset, slots, threads=1, extra=["--max-queue", "256"] if kind == "uvicorn" else [])


def load_main(args) -> None:
    from pathlib import Path

    counts = [int(c) for c in args.load.split(",")]
    preset = args.preset or "tiny"
    new = args.new or 8
    rows = []
    for n in counts:
        for kind in ("baseline", "uvicorn"):
            row = load_round(kind, n, preset, 16, new)
            rows.append(row)
            print(json.dumps(row), flush=True)
    header = (
        "| clients | server | served (200) | 429 (+Retry-After) | other status | connection errors | "
        "broken streams | p50 s | p99 s | tokens/s | peak threads | peak RSS MB | ListenOverflows |"
    )
    lines = [
        f"`mythos serve {preset}` (16 slots, queue 256, 1 torch thread), {new} new tokens per request, greedy; "
        "all clients connect at once, 1/3 completions, 1/3 chat, 1/3 streamed; loopback, shared 2-core machine. "
        "`baseline` = the stdlib server before issue 17, `uvicorn` = today's. Latency over served requests.",
        "",
        header,
        "|" + "---|" * (header.count("|") - 1),
    ]
    for r in rows:
        errs = r["connection_errors"]
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["errors_by_kind"].items()))
        lines.append(
            f"| {r['clients']} | {r['server']} | {r['served']} | {r['429']} ({r['429_with_retry_after']}) | "
            f"{r['other_status']} | {errs}{f' ({kinds})' if kinds else ''} | {r['stream_errors']} | "
            f"{r['p50_s']:.2f} | {r['p99_s']:.2f} | {r['tokens_per_s']:.0f} | {r['peak_threads']} | "
            f"{r['peak_rss_mb']:.0f} | {r['listen_overflows']} |"
        )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "infer_serve_load.md").write_text("\n".join(lines) + "\n")
    (out / "infer_serve_load.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n".join(lines))


def side_by_side(args) -> None:
    """Both HTTP layers in one process over one scheduler, requests alternating: only the HTTP layer differs."""
    import importlib.util
    import tempfile
    from pathlib import Path

    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from mythos.infer import server as new
    from mythos.infer.cli import load_model
    from mythos.infer.engine import Engine
    from mythos.infer.scheduler import Scheduler
    from mythos.infer.tokenizer import ByteTokenizer
    from serve_common import BASELINE_REV, ROOT

    torch.set_num_threads(args.threads)
    src = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BASELINE_REV}:src/mythos/infer/server.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_server.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("baseline_server", path)
    old = importlib.util.module_from_spec(spec)
    sys.modules["baseline_server"] = old
    spec.loader.exec_module(old)
    preset = args.preset or "small"
    model, _ = load_model(preset)
    scheduler = Scheduler(Engine.from_model(model, slots=16)).start()
    old_srv, _ = old.serve_in_thread(old.ServeState(scheduler, ByteTokenizer(), preset))
    new_srv, _ = new.serve_in_thread(new.ServeState(scheduler, ByteTokenizer(), preset))
    urls = {
        "baseline": f"http://127.0.0.1:{old_srv.server_address[1]}",
        "uvicorn": f"http://127.0.0.1:{new_srv.server_address[1]}",
    }
    n, new_tokens = args.side_by_side, args.new or 32
    rows = []
    with httpx.Client(timeout=300) as http:
        for stream in (False, True):
            lat: dict[str, list[float]] = {k: [] for k in urls}
            for r in range(n + 1):
                for kind in ("baseline", "uvicorn") if r % 2 else ("uvicorn", "baseline"):
                    body = {"prompt": f"The quick brown fox {r}", "max_tokens": new_tokens, "temperature": 0}
                    if stream:
                        body |= {"stream": True, "stream_options": {"include_usage": True}}
                    t = time.perf_counter()
                    res = http.post(urls[kind] + "/v1/completions", json=body)
                    res.raise_for_status()
                    if r:  # the first round warms up
                        lat[kind].append(time.perf_counter() - t)
            med = {k: statistics.median(v) for k, v in lat.items()}
            rows.append({"stream": stream, **{f"{k}_median_s": v for k, v in med.items()}})
            rows[-1]["ratio"] = med["uvicorn"] / med["baseline"]
    lines = [
        f"One process, one `{preset}` scheduler (16 slots, {args.threads} torch thread), two HTTP layers on it, "
        f"{n} sequential requests each ({new_tokens} new tokens, greedy), alternating; median latency.",
        "",
        "| request | baseline (stdlib) s | uvicorn s | uvicorn / baseline |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {'streamed' if r['stream'] else 'blocking'} | {r['baseline_median_s']:.3f} | "
            f"{r['uvicorn_median_s']:.3f} | {r['ratio']:.2f} |"
        )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "infer_serve_side_by_side.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    new_srv.shutdown()
    old_srv.shutdown()
    scheduler.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--preset", default=None)
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--new", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the server")
    ap.add_argument("--compile", action="store_true", help="serve --compile (one graph per decode width)")
    ap.add_argument(
        "--baseline",
        action="store_true",
        help="run the stdlib HTTP server from before issue 17 (serve_common.py)",
    )
    ap.add_argument("--load", default=None, help="comma-separated client counts for the load test (issue 17)")
    ap.add_argument(
        "--side-by-side",
        type=int,
        default=0,
        metavar="N",
        help="N batch-1 requests per HTTP layer, one process",
    )
    args = ap.parse_args()
    if args.side_by_side:
        side_by_side(args)
        return
    if args.load:
        sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
        load_main(args)
        return
    preset = args.preset or ("tiny" if args.quick else "small")
    new = args.new or (16 if args.quick else 32)
    rounds = args.rounds or (2 if args.quick else 4)
    counts = [int(c) for c in args.clients.split(",")]
    if args.baseline:
        sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
        from serve_common import start

        proc, base = start("baseline", preset, max(counts), threads=args.threads)
        base += "/v1"
    else:
        proc, base = start_server(preset, max(counts), args.threads, ["--compile"] if args.compile else [])
    prompt = "The quick brown fox jumps over the lazy dog while"  # ~50 byte tokens
    try:
        # warm-up; compiled: one graph per power-of-two decode width, so warm every width the runs can reach
        widths = [1 << i for i in range(max(counts).bit_length())] if args.compile else [1]
        for n in widths:
            run_clients(base, n, 1, 4, prompt)
        print(
            f"{'baseline (stdlib) ' if args.baseline else ''}mythos serve {'--compile ' if args.compile else ''}{preset} ({max(counts)} slots, {args.threads} "
            f"torch thread), {new} new tokens/request, "
            f"{rounds} requests per client, greedy; wall clock on a shared 2-core machine\n"
        )
        print(
            f"{'clients':>7} | {'tokens/s':>8} | {'x vs 1':>6} | {'mean latency s':>14} | {'mean batch':>10}"
        )
        base_tps = None
        for n in counts:
            before = httpx.get(base.removesuffix("/v1") + "/health").json()
            wall, lat, toks = run_clients(base, n, rounds, new, prompt)
            after = httpx.get(base.removesuffix("/v1") + "/health").json()
            steps = after["steps"] - before["steps"]
            batch = (after["tokens_out"] - before["tokens_out"]) / max(steps, 1)
            tps = toks / wall
            base_tps = base_tps or tps
            print(
                f"{n:>7} | {tps:>8.1f} | {tps / base_tps:>5.1f}x | {statistics.mean(lat):>14.2f} | {batch:>10.1f}"
            )
    finally:
        proc.terminate()
        proc.wait(20)


if __name__ == "__main__":
    main()
