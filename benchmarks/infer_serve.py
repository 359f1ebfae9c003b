"""`mythos serve` throughput with 1, 4 and 16 concurrent clients (real server process, real HTTP).

Starts `mythos serve PRESET --port 0` in a subprocess, then runs N client threads that each send
requests back to back (`/v1/completions`, greedy, fixed max_tokens). Reports completion tokens per second
of wall time, mean request latency and the mean decode batch the scheduler ran (tokens / steps), which
shows continuous batching at work. Wall clock: this measures the server as a client sees it.

    .venv/bin/python benchmarks/infer_serve.py            # small preset, 32 new tokens, 4 rounds per client
    .venv/bin/python benchmarks/infer_serve.py --quick    # tiny preset, 16 new tokens, 2 rounds
    .venv/bin/python benchmarks/infer_serve.py --compile  # `serve --compile`, warmed up at every client count
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--preset", default=None)
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--new", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the server")
    ap.add_argument("--compile", action="store_true", help="serve --compile (one graph per decode width)")
    args = ap.parse_args()
    preset = args.preset or ("tiny" if args.quick else "small")
    new = args.new or (16 if args.quick else 32)
    rounds = args.rounds or (2 if args.quick else 4)
    counts = [int(c) for c in args.clients.split(",")]
    proc, base = start_server(preset, max(counts), args.threads, ["--compile"] if args.compile else [])
    prompt = "The quick brown fox jumps over the lazy dog while"  # ~50 byte tokens
    try:
        # warm-up; compiled: one graph per power-of-two decode width, so warm every width the runs can reach
        widths = [1 << i for i in range(max(counts).bit_length())] if args.compile else [1]
        for n in widths:
            run_clients(base, n, 1, 4, prompt)
        print(
            f"mythos serve {'--compile ' if args.compile else ''}{preset} ({max(counts)} slots, {args.threads} "
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
