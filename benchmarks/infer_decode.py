"""Decode speed: our engine vs the reference (open-mythos 0.5.0), same weights, one process, ratios.

The reference is built at the `small` configuration, and our model gets its weights through the model
wing's converter (`from_open_mythos`). Both prefill a random prompt, then decode greedily one token at a
time with their KV caches; only decode steps are timed. Rounds alternate ours/reference so machine load
hits both alike; medians of per-token times are reported. Also: each prompt's prefill time (ours is the eager
engine, chunks of 512 tokens) and KV-cache bytes per token per policy.

    .venv/bin/python benchmarks/infer_decode.py            # prompts 128 and 2048, 64 new tokens, 3 rounds
    .venv/bin/python benchmarks/infer_decode.py --quick    # 16 new tokens, 1 round
    .venv/bin/python benchmarks/infer_decode.py --compile  # also time the torch.compile'd decode step
    .venv/bin/python benchmarks/infer_decode.py --compile --bf16-weights  # and with weights stored in bf16

``--bf16-weights`` adds a compiled engine whose matrices are stored in bf16 (activations, cache and sums stay
fp32): batch-1 decode is bound by reading weights. ``--bf16-cache`` also stores that engine's KV cache in bf16.
Their accuracy cost is measured in infer_adaptive.py.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import asdict, fields

import torch

import bench_report  # benchmarks/bench_report.py: the results file
from mythos.model import get_preset

SMALL = get_preset("small")  # the `small` preset; the reference is built from its fields (see build)
LOOPS = 4
CLOCK = time.thread_time  # CPU time of this thread: the machine is shared, wall time measures the queue
PREFILL: dict[str, list[float]] = {}  # prefill seconds per engine, for the current prompt length


def build(max_seq_len: int, attn_type: str = "mla"):
    from open_mythos.main import MythosConfig, OpenMythos

    from mythos.model.reference import from_open_mythos

    torch.manual_seed(0)
    shared = {f.name for f in fields(MythosConfig)} - {"max_output_tokens"}  # the reference's defaults there
    args = {k: v for k, v in asdict(SMALL).items() if k in shared}
    ref = OpenMythos(MythosConfig(**{**args, "attn_type": attn_type, "max_seq_len": max_seq_len})).eval()
    return ref, from_open_mythos(ref).eval()


@torch.inference_mode()
def time_reference(ref, prompt: torch.Tensor, new: int) -> tuple[list[float], dict]:
    """Per-token decode times; the prompt's prefill time is appended to PREFILL["reference"]."""
    cache: dict = {}
    t = CLOCK()
    logits = ref(prompt, n_loops=LOOPS, kv_cache=cache)
    PREFILL.setdefault("reference", []).append(CLOCK() - t)
    tok = logits[:, -1].argmax(-1, keepdim=True)
    times = []
    for i in range(new):
        t = CLOCK()
        logits = ref(tok, n_loops=LOOPS, kv_cache=cache, start_pos=prompt.shape[1] + i)
        tok = logits[:, -1].argmax(-1, keepdim=True)
        times.append(CLOCK() - t)
    return times, cache


@torch.inference_mode()
def time_ours(engine, prompt: torch.Tensor, new: int, label: str = "") -> list[float]:
    """Per-token decode times; with a ``label``, the prefill time is appended to PREFILL[label]."""
    engine.reset()
    t = CLOCK()
    tok = engine.prefill(0, prompt.tolist()).argmax(-1)
    if label:
        PREFILL.setdefault(label, []).append(CLOCK() - t)
    times = []
    for _ in range(new):
        t = CLOCK()
        tok = engine.decode(0, tok).argmax(-1)
        times.append(CLOCK() - t)
    return times


def reference_cache_bytes(cache: dict) -> int:
    """Bytes per token of the reference's cache dict (every tensor's last-but-one dims summed)."""
    total = 0
    for entry in cache.values():
        for t in entry.values():
            total += t[0, 0].numel() * t.element_size()
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="16 new tokens, 1 round")
    ap.add_argument("--prompts", default="128,2048", help="comma-separated prompt lengths")
    ap.add_argument("--new", type=int, default=None, help="new tokens per round (default 64, quick 16)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--compile", action="store_true", help="also measure the torch.compile'd step")
    ap.add_argument(
        "--bf16-weights", action="store_true", help="also a compiled engine with bf16 weight storage"
    )
    ap.add_argument(
        "--bf16-cache", action="store_true", help="that extra engine also keeps its KV cache in bf16"
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared; default 1)")
    ap.add_argument("--wall", action="store_true", help="time with the wall clock instead of thread CPU time")
    ap.add_argument("--attn", default="mla", help="mla, gqa or mla,gqa (the small-gqa variant: 2 KV heads)")
    bench_report.add_results_flag(ap, "infer_decode")
    args = ap.parse_args()
    bench_report.start(args)
    global CLOCK
    if args.wall:
        CLOCK = time.perf_counter
    torch.set_num_threads(args.threads)
    new = args.new or (16 if args.quick else 64)
    rounds = args.rounds or (1 if args.quick else 3)
    lengths = [int(x) for x in args.prompts.split(",")]

    for attn in args.attn.split(","):
        ref, model = build(max(lengths) + new + 64, attn)
        print(
            f"\nsmall config ({attn.upper()}), {LOOPS} loops, batch 1, {new} new tokens, {rounds} round(s), "
            f"{args.threads} thread(s), fp32; median per-token decode time "
            f"({'wall clock' if args.wall else 'thread CPU time'})"
        )
        low = dict(weight_dtype=torch.bfloat16) if args.bf16_weights else None
        if low is not None and args.bf16_cache:
            low["cache_dtype"] = torch.bfloat16
        rows, ref_cache = measure(ref, model, lengths, new, rounds, args.compile, low)
        print(
            f"\n{'prompt':>6} | {'reference tok/s':>15} | {'ours tok/s':>10} | {'ratio':>6}"
            + (f" | {'compiled tok/s':>14} | {'ratio':>6}" if args.compile else "")
            + (
                f" | {('bf16 w+cache' if args.bf16_cache else 'bf16-weights') + ' tok/s':>18} | {'ratio':>6}"
                if args.bf16_weights
                else ""
            )
        )
        for P, r, o, c, b in rows:
            line = f"{P:>6} | {1 / r:>15.1f} | {1 / o:>10.1f} | {r / o:>5.1f}x"
            if c is not None:
                line += f" | {1 / c:>14.1f} | {r / c:>5.1f}x"
            if b is not None:
                line += f" | {1 / b:>18.1f} | {r / b:>5.1f}x"
            print(line)
        print_cache_bytes(ref_cache, model, attn)


def measure(
    ref, model, lengths: list[int], new: int, rounds: int, compile_too: bool, low_kw: dict | None = None
):
    from mythos.infer.engine import Engine

    rows = []
    ref_cache = None
    for P in lengths:
        prompt = torch.randint(0, SMALL.vocab_size, (1, P), generator=torch.Generator().manual_seed(P))
        engine = Engine.from_model(model, max_len=P + new + 1)
        compiled = None
        if compile_too:
            compiled = Engine.from_model(model, max_len=P + new + 1)
            compiled.compile()
            t = time.perf_counter()
            time_ours(compiled, prompt, 2)
            print(f"  (compile for prompt {P}: {time.perf_counter() - t:.1f} s wall)")
        low = None
        if low_kw is not None:
            low = Engine.from_model(model, max_len=P + new + 1, **low_kw)
            low.compile()
            time_ours(low, prompt, 2)
        ours_t, ref_t, comp_t, low_t = [], [], [], []
        time_ours(engine, prompt, 2)  # warm-up
        PREFILL.clear()
        for _ in range(rounds):
            ours_t += time_ours(engine, prompt, new, "ours")
            times, ref_cache = time_reference(ref, prompt, new)
            ref_t += times
            if compiled is not None:
                comp_t += time_ours(compiled, prompt, new)
            if low is not None:
                low_t += time_ours(low, prompt, new)
        print(
            f"  prefill of the {P}-token prompt, median s: "
            + ", ".join(f"{k} {statistics.median(v):.3f}" for k, v in PREFILL.items())
            + f" ({statistics.median(PREFILL['reference']) / statistics.median(PREFILL['ours']):.1f}x)"
        )
        rows.append(
            (
                P,
                statistics.median(ref_t),
                statistics.median(ours_t),
                statistics.median(comp_t) if comp_t else None,
                statistics.median(low_t) if low_t else None,
            )
        )
    return rows, ref_cache


def print_cache_bytes(ref_cache: dict, model, attn: str) -> None:
    from mythos.infer.engine import Engine

    print(f"\nKV cache bytes per token ({attn.upper()}, fp32, all sites: 1 prelude + 4 loops + 1 coda)")
    ref_bytes = reference_cache_bytes(ref_cache)
    what = "c_kv + per-head k_rope" if attn == "mla" else "k + v"
    print(f"  {'reference (' + what + ')':<40} {ref_bytes:>7}   1.00x")
    for policy in ("per-loop", "last-1", "shared"):
        b = Engine.from_model(model, max_len=8, cache_policy=policy).cache.bytes_per_token()
        print(f"  {'ours ' + policy:<40} {b:>7}   {b / ref_bytes:.2f}x")


if __name__ == "__main__":
    main()
    bench_report.finish()
