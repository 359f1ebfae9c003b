"""Training-step throughput, ours vs the open-mythos reference, side by side in one process.

One step = forward + cross-entropy + backward + AdamW update on a (batch x seq) batch of random tokens, at the
issue's small configuration (MLA and GQA). Steps alternate between the two models so machine noise hits both
alike; we report median seconds per step, tokens/s and the ratio ours / reference. By default both halting
units are pushed to p~0 so both models run every loop (the same work); ``--act`` lets each exit once all its
positions have halted, which at initialisation depends on its random halting unit, not on its speed.

    .venv/bin/python benchmarks/model_train_step.py [--quick] [--steps N] [--threads N] [--act] [--bf16] [--profile]

``--compile`` measures something else: our eager step against the same step with the model forward through
``torch.compile`` (inductor; the backward through AOTAutograd), as ``mythos train --compile`` runs it; the
compile time is printed apart, and the results go to ``results/model_train_step_compile.md``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F

import bench_report  # benchmarks/bench_report.py: the results file

SMALL = dict(
    vocab_size=4096, dim=256, n_heads=8, n_kv_heads=2, max_seq_len=1024, max_loop_iters=4, prelude_layers=1,
    coda_layers=1, kv_lora_rank=64, q_lora_rank=128, qk_rope_head_dim=16, qk_nope_head_dim=32, v_head_dim=32,
    n_experts=8, n_shared_experts=1, n_experts_per_tok=2, expert_dim=128, lora_rank=8,
)  # fmt: skip


def never_halt(model: torch.nn.Module) -> None:
    """Push the ACT halting probability to ~0 so every loop runs (same attribute path in both models)."""
    with torch.no_grad():
        model.recurrent.act.halt.bias.fill_(-30.0)


def build_pair(
    attn_type: str, seed: int = 0, fixed_depth: bool = True
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(ours with default semantics, reference) at the same config, same init seed.

    ``fixed_depth``: both run all ``max_loop_iters`` loops. Otherwise each exits once all its positions have
    halted, which at initialisation depends on each model's random halting unit, not on its speed.
    """
    from open_mythos.main import MythosConfig as RefConfig
    from open_mythos.main import OpenMythos

    from mythos.model import Mythos, MythosConfig

    torch.manual_seed(seed)
    ours = Mythos(MythosConfig(**SMALL, attn_type=attn_type))
    torch.manual_seed(seed)
    reference = OpenMythos(RefConfig(**SMALL, attn_type=attn_type))
    if fixed_depth:
        never_halt(ours)
        never_halt(reference)
    return ours, reference


def make_step(model: torch.nn.Module, vocab: int, autocast_bf16: bool = False) -> Any:
    """One training step; ``autocast_bf16``: mixed precision (bf16 matmuls, fp32 weights and optimizer)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)

    def step(tokens: torch.Tensor) -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast_bf16):
            logits = model(tokens[:, :-1])
            logits = logits.logits if hasattr(logits, "logits") else logits
        loss = F.cross_entropy(logits.float().reshape(-1, vocab), tokens[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def count_loops(model: torch.nn.Module) -> list[int]:
    counter = [0]
    model.recurrent.block.register_forward_hook(lambda *_: counter.__setitem__(0, counter[0] + 1))
    return counter


def bench(
    attn_type: str,
    batch: int,
    seq: int,
    steps: int,
    warmup: int,
    fixed_depth: bool,
    autocast_bf16: bool = False,
) -> dict[str, float]:
    ours, reference = build_pair(attn_type, fixed_depth=fixed_depth)
    vocab = SMALL["vocab_size"]
    runners = {
        "ours": make_step(ours, vocab, autocast_bf16),
        "reference": make_step(reference, vocab, autocast_bf16),
    }
    loops = {"ours": count_loops(ours), "reference": count_loops(reference)}
    gen = torch.Generator().manual_seed(1)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for i in range(warmup + steps):
        tokens = torch.randint(0, vocab, (batch, seq + 1), generator=gen)
        order = list(runners) if i % 2 == 0 else list(reversed(runners))
        for name in order:
            start = time.perf_counter()
            runners[name](tokens)
            elapsed = time.perf_counter() - start
            if i >= warmup:
                times[name].append(elapsed)
    result: dict[str, float] = {}
    for name in runners:
        med = statistics.median(times[name])
        result[f"{name}_s"] = med
        result[f"{name}_tok_s"] = batch * seq / med
        result[f"{name}_loops"] = loops[name][0] / (warmup + steps)
    result["ratio"] = result["ours_tok_s"] / result["reference_tok_s"]
    # the reference leaves the loop once every position has halted (no cache): compare per loop run, too
    result["ratio_per_loop"] = result["ratio"] * result["ours_loops"] / result["reference_loops"]
    return result


def bench_compile(
    attn_type: str, batch: int, seq: int, steps: int, warmup: int, autocast_bf16: bool = False
) -> dict[str, float]:
    """Eager vs compiled forward, the same initial weights and batches, steps alternating."""
    import copy

    from mythos.model import Mythos, MythosConfig

    torch.manual_seed(0)
    eager = Mythos(MythosConfig(**SMALL, attn_type=attn_type))
    never_halt(eager)
    twin = copy.deepcopy(eager)
    vocab = SMALL["vocab_size"]
    torch._inductor.config.force_disable_caches = True  # the first step's time is a cold compile's, every run
    compiled = torch.compile(twin, dynamic=False)
    runners = {
        "eager": make_step(eager, vocab, autocast_bf16),
        "compiled": make_step(compiled, vocab, autocast_bf16),
    }
    gen = torch.Generator().manual_seed(1)
    times: dict[str, list[float]] = {name: [] for name in runners}
    losses: dict[str, list[float]] = {name: [] for name in runners}
    first_compiled = 0.0
    for i in range(warmup + steps):
        tokens = torch.randint(0, vocab, (batch, seq + 1), generator=gen)
        order = list(runners) if i % 2 == 0 else list(reversed(runners))
        for name in order:
            start = time.perf_counter()
            losses[name].append(runners[name](tokens))
            elapsed = time.perf_counter() - start
            if i == 0 and name == "compiled":
                first_compiled = elapsed
            if i >= warmup:
                times[name].append(elapsed)
    result = {f"{name}_s": statistics.median(times[name]) for name in runners}
    result["first_compiled_s"] = first_compiled
    result["ratio"] = result["eager_s"] / result["compiled_s"]
    result["max_loss_diff"] = max(
        abs(a - b) for a, b in zip(losses["eager"], losses["compiled"], strict=True)
    )
    return result


def main_compile(args: argparse.Namespace, steps: int, warmup: int) -> None:
    print(
        f"training step (fwd+bwd+AdamW), ours eager vs ours with the forward torch.compile'd (inductor), "
        f"batch {args.batch} x {args.seq}, {steps} timed steps after {warmup} warm-up, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, every loop runs (4), "
        + ("bf16 autocast" if args.bf16 else "fp32")
    )
    print(
        f"{'attn':<5}{'eager s/step':>14}{'compiled s/step':>17}{'speed-up':>10}{'first compiled step s':>23}"
        f"{'max |loss diff|':>17}"
    )
    for attn_type in args.attn:
        r = bench_compile(attn_type, args.batch, args.seq, steps, warmup, autocast_bf16=args.bf16)
        print(
            f"{attn_type:<5}{r['eager_s']:>14.3f}{r['compiled_s']:>17.3f}{r['ratio']:>9.2f}x"
            f"{r['first_compiled_s']:>23.1f}{r['max_loss_diff']:>17.2e}"
        )
    from torch._dynamo.utils import counters

    graphs, breaks = counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())
    print(f"dynamo: {graphs} graph(s) compiled, {breaks} graph break(s)")
    print("speed-up = eager s/step / compiled s/step (medians); the first compiled step includes compiling")
    print("max |loss diff|: the two copies train in lockstep on the same batches from the same weights")


def categorize(name: str, shapes: list, vocab: int) -> str:
    """Bucket a profiler op into the part of the step it belongs to."""
    dims = {d for shape in shapes if isinstance(shape, list | tuple) for d in shape if isinstance(d, int)}
    if vocab in dims:
        return "LM head + loss (vocab-sized)"
    if "scaled_dot_product" in name or name in (
        "aten::bmm",
        "aten::_softmax",
        "aten::_softmax_backward_data",
    ):
        return "attention kernels"
    if name in ("aten::mm", "aten::addmm", "aten::_grouped_mm", "aten::matmul", "aten::linear"):
        return "other matmuls (projections, experts)"
    if name.startswith("aten::_foreach") or "adam" in name.lower():
        return "optimizer"
    return "elementwise, copies, indexing"


def profile_step(attn_type: str, batch: int, seq: int, repeats: int = 5) -> None:
    """Where each model's training step spends its time: self CPU time by part of the step."""
    from torch.profiler import profile

    vocab = SMALL["vocab_size"]
    models = dict(zip(("ours", "reference"), build_pair(attn_type), strict=True))
    tokens = torch.randint(0, vocab, (batch, seq + 1))
    steps = {name: make_step(model, vocab) for name, model in models.items()}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in models}
    for step in steps.values():
        step(tokens)  # warm-up
    for _ in range(repeats):  # interleaved, per-part median: one profiled step is too noisy on a shared CPU
        for name, step in steps.items():
            with profile(record_shapes=True) as prof:
                step(tokens)
            buckets: dict[str, float] = {}
            for event in prof.key_averages(group_by_input_shape=True):
                key = categorize(event.key, event.input_shapes, vocab)
                buckets[key] = buckets.get(key, 0.0) + event.self_cpu_time_total / 1e3
            runs[name].append(buckets)
    table = {
        name: {k: statistics.median(r.get(k, 0.0) for r in rs) for k in {k for r in rs for k in r}}
        for name, rs in runs.items()
    }
    print(
        f"\nprofile, {attn_type.upper()} training step, self CPU ms by part "
        f"(torch.profiler, median of {repeats} steps each):"
    )
    parts = sorted({k for b in table.values() for k in b}, key=lambda k: -table["ours"].get(k, 0.0))
    totals = {name: sum(b.values()) for name, b in table.items()}
    print(f"{'part':<40}{'ours ms':>10}{'ours %':>8}{'ref ms':>10}{'ref %':>8}")
    for part in parts:
        o, r = table["ours"].get(part, 0.0), table["reference"].get(part, 0.0)
        print(
            f"{part:<40}{o:>10.0f}{100 * o / totals['ours']:>7.0f}%{r:>10.0f}{100 * r / totals['reference']:>7.0f}%"
        )
    print(f"{'total':<40}{totals['ours']:>10.0f}{'':>8}{totals['reference']:>10.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few steps, finishes in well under a minute")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per model (default 10, quick 3)")
    parser.add_argument("--batch", type=int, default=None, help="default 8 (quick: 4)")
    parser.add_argument("--seq", type=int, default=None, help="default 256 (quick: 128)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared CPU, idle OpenMP threads spin against other jobs and the "
        "timings swing 5x; use 0 for torch's default on a dedicated machine)",
    )
    parser.add_argument("--profile", action="store_true", help="also print where each step spends its time")
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="both models under torch.autocast(cpu, bfloat16) (mixed precision)",
    )
    parser.add_argument(
        "--act", action="store_true", help="let ACT halting end the loop early (default: both run every loop)"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="ours eager vs ours with torch.compile (instead of ours vs the reference); "
        "results in results/model_train_step_compile.md",
    )
    parser.add_argument("--attn", default=None, help="attention types, comma-separated (default mla,gqa)")
    bench_report.add_results_flag(parser, "model_train_step")
    args = parser.parse_args()
    args.attn = (args.attn or ("mla" if args.compile else "mla,gqa")).split(",")
    if args.compile and args.results is None and not args.quick:
        args.results = str(bench_report.RESULTS / "model_train_step_compile.md")
    bench_report.start(args)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    steps = args.steps or (2 if args.quick else 6)
    warmup = 1
    args.batch = args.batch or (4 if args.quick else 8)
    args.seq = args.seq or (128 if args.quick else 256)
    if args.compile:
        main_compile(args, steps, warmup)
        return
    print(
        f"training step (fwd+bwd+AdamW), batch {args.batch} x {args.seq}, {steps} timed steps after {warmup} warm-up, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, "
        + ("ACT may exit early" if args.act else "fixed depth: every loop runs in both models")
        + (", bf16 autocast" if args.bf16 else ", fp32")
    )
    header = (
        f"{'attn':<5}{'ours s/step':>13}{'ref s/step':>12}{'ours tok/s':>12}{'ref tok/s':>11}{'loops o/r':>11}"
        f"{'ratio':>8}{'per loop':>10}"
    )
    print(header)
    for attn_type in args.attn:
        r = bench(
            attn_type, args.batch, args.seq, steps, warmup, fixed_depth=not args.act, autocast_bf16=args.bf16
        )
        print(
            f"{attn_type:<5}{r['ours_s']:>13.3f}{r['reference_s']:>12.3f}{r['ours_tok_s']:>12.0f}"
            f"{r['reference_tok_s']:>11.0f}{r['ours_loops']:>6.1f}/{r['reference_loops']:<4.1f}{r['ratio']:>8.2f}x"
            f"{r['ratio_per_loop']:>9.2f}x"
        )
    print(
        "ratio = our tokens/s / reference tokens/s (target >= 1.25x on this CPU); per loop = ratio x loops o/r"
    )
    print("loops o/r: loop iterations run per step; the reference exits once every position has halted")
    if args.profile:
        for attn_type in ("mla", "gqa"):
            profile_step(attn_type, args.batch, args.seq)


if __name__ == "__main__":
    main()
    bench_report.finish()
