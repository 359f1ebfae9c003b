"""KV-cache bytes per token (and cached decode speed), ours vs the open-mythos reference, in one process.

Bytes are measured from the caches the models actually hold after a prefill — our preallocated
``KVCache`` and the reference's dict of tensors — and checked against ``mythos.model.params``' formula.
MLA: we cache the latent plus ONE rope key per token shared by all heads; the reference stores the rope key
once per head. Decode speed: greedy token-by-token decode with the cache, steps alternating between models.

    .venv/bin/python benchmarks/model_kv_cache.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import bench_report  # benchmarks/bench_report.py: the results file
from mythos.model.params import kv_cache_bytes_per_token

SMALL = dict(
    vocab_size=4096, dim=256, n_heads=8, n_kv_heads=2, max_seq_len=1024, max_loop_iters=4, prelude_layers=1,
    coda_layers=1, kv_lora_rank=64, q_lora_rank=128, qk_rope_head_dim=16, qk_nope_head_dim=32, v_head_dim=32,
    n_experts=8, n_shared_experts=1, n_experts_per_tok=2, expert_dim=128, lora_rank=8,
)  # fmt: skip


def build_pair(attn_type: str, seed: int = 0):
    from open_mythos.main import MythosConfig as RefConfig
    from open_mythos.main import OpenMythos

    from mythos.model import Mythos, MythosConfig

    torch.manual_seed(seed)
    ours = Mythos(MythosConfig(**SMALL, attn_type=attn_type)).eval()
    torch.manual_seed(seed)
    reference = OpenMythos(RefConfig(**SMALL, attn_type=attn_type)).eval()
    return ours, reference


def measured_bytes(attn_type: str, prompt: int, loops: int) -> dict[str, float]:
    """Bytes per token of the caches each model holds after prefilling ``prompt`` tokens (batch 1)."""
    ours, reference = build_pair(attn_type)
    ids = torch.randint(0, SMALL["vocab_size"], (1, prompt), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cache = ours.new_cache(batch_size=1, max_len=prompt, n_loops=loops)
        ours(ids, cache=cache)
        ref_cache: dict = {}
        reference(ids, n_loops=loops, kv_cache=ref_cache)
    ref_bytes = sum(t.numel() * t.element_size() for entry in ref_cache.values() for t in entry.values())
    bf16_cache = ours.new_cache(batch_size=1, max_len=prompt, n_loops=loops, dtype=torch.bfloat16)
    result = {
        "ours_fp32": cache.nbytes / prompt,
        "ours_bf16": bf16_cache.nbytes / prompt,
        "reference_fp32": ref_bytes / prompt,
    }
    formula = kv_cache_bytes_per_token(ours.cfg, "float32", loops)
    formula_ref = kv_cache_bytes_per_token(ours.cfg, "float32", loops, reference_layout=True)
    assert result["ours_fp32"] == formula, (result, formula)
    assert result["reference_fp32"] == formula_ref, (result, formula_ref)
    return result


def decode_speed(attn_type: str, prompt: int, new_tokens: int, loops: int) -> dict[str, float]:
    """Median seconds per cached decode step (batch 1), interleaving the two models step by step."""
    ours, reference = build_pair(attn_type)
    ids = torch.randint(0, SMALL["vocab_size"], (1, prompt), generator=torch.Generator().manual_seed(1))
    times: dict[str, list[float]] = {"ours": [], "reference": []}
    with torch.no_grad():
        cache = ours.new_cache(batch_size=1, max_len=prompt + new_tokens, n_loops=loops)
        ours_next = ours(ids, cache=cache)[:, -1:].argmax(-1)
        ref_cache: dict = {}
        ref_next = reference(ids, n_loops=loops, kv_cache=ref_cache)[:, -1:].argmax(-1)
        for step in range(new_tokens):
            pos = prompt + step
            start = time.perf_counter()
            ours_next = ours(ours_next, cache=cache)[:, -1:].argmax(-1)
            times["ours"].append(time.perf_counter() - start)
            start = time.perf_counter()
            ref_next = reference(ref_next, n_loops=loops, kv_cache=ref_cache, start_pos=pos)[:, -1:].argmax(
                -1
            )
            times["reference"].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short prompt, few decode steps")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared CPU, idle OpenMP threads spin against other jobs and the "
        "timings swing 5x; use 0 for torch's default on a dedicated machine)",
    )
    bench_report.add_results_flag(parser, "model_kv_cache")
    args = parser.parse_args()
    bench_report.start(args)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    loops = SMALL["max_loop_iters"]
    prompt, new_tokens = (32, 8) if args.quick else (256, 64)
    print(
        f"small config, {loops} loops, batch 1, prompt {prompt} tokens; bytes measured from the caches held"
    )
    print(f"{'attn':<5}{'ours fp32 B/tok':>17}{'ours bf16 B/tok':>17}{'ref fp32 B/tok':>16}{'ours/ref':>10}")
    for attn_type in ("mla", "gqa"):
        r = measured_bytes(attn_type, prompt, loops)
        ratio = r["ours_fp32"] / r["reference_fp32"]
        print(
            f"{attn_type:<5}{r['ours_fp32']:>17,.0f}{r['ours_bf16']:>17,.0f}{r['reference_fp32']:>16,.0f}"
            f"{ratio:>9.3f} (1/{1 / ratio:.2f})"
        )
    print("target: MLA ours/ref <= 1/2.4")
    print(f"\ncached greedy decode, {new_tokens} steps after a {prompt}-token prompt (median s/step)")
    print(f"{'attn':<5}{'ours s/tok':>12}{'ref s/tok':>12}{'speedup':>9}")
    for attn_type in ("mla", "gqa"):
        d = decode_speed(attn_type, prompt, new_tokens, loops)
        print(f"{attn_type:<5}{d['ours']:>12.4f}{d['reference']:>12.4f}{d['reference'] / d['ours']:>8.2f}x")


if __name__ == "__main__":
    main()
    bench_report.finish()
