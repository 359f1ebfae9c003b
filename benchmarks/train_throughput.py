"""Training throughput (tokens/s) ours vs the reference at the same configuration, and peak memory against
loop count with and without truncated backprop and activation checkpointing.

Throughput: both models are built from one config, their ACT heads biased so that neither halts early (the
reference stops looping once every position halted, which at initialisation is after ~2 loops, so an honest
comparison must make both run all loops), and trained with AdamW on the same batches, alternating rounds in
one process; medians are reported. Memory: the exact bytes of the tensors autograd keeps from forward to
backward (unique storages, parameters excluded). Peak RSS was tried and dropped: on CPU the process's
start-up high-water mark hides the activations of models this small.

    .venv/bin/python benchmarks/train_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import bench_report  # benchmarks/bench_report.py: the results file

CONFIG = dict(
    vocab_size=512,
    dim=128,
    n_heads=4,
    n_kv_heads=2,
    max_seq_len=256,
    max_loop_iters=4,
    prelude_layers=1,
    coda_layers=1,
    attn_type="gqa",
    n_experts=8,
    n_shared_experts=1,
    n_experts_per_tok=2,
    expert_dim=64,
    lora_rank=8,
    act_threshold=0.99,
    rope_theta=10000.0,
)


def _models():
    from open_mythos.main import MythosConfig as RefConfig
    from open_mythos.main import OpenMythos

    from mythos.model import Mythos
    from mythos.model.reference import from_open_mythos

    torch.manual_seed(0)
    ref = OpenMythos(RefConfig(**CONFIG))
    with torch.no_grad():
        ref.recurrent.act.halt.bias.fill_(-30.0)  # p(halt) ~ 0: run every loop
    ours = from_open_mythos(ref)
    ours.cfg.act = False  # our ACT-off path: the output is the last loop's state, every loop runs
    assert isinstance(ours, Mythos)
    return ref, ours


def _step(model, opt, x, y, n_loops):
    logits = model(x, n_loops=n_loops)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def throughput(batch: int, seq: int, loops: int, rounds: int, steps: int) -> dict:
    ref, ours = _models()
    opt_ref = torch.optim.AdamW(ref.parameters(), lr=1e-4)
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, CONFIG["vocab_size"], (batch, seq), generator=g)
    y = torch.randint(0, CONFIG["vocab_size"], (batch, seq), generator=g)
    for model, opt in ((ref, opt_ref), (ours, opt_ours)):
        _step(model, opt, x, y, loops)  # warm-up
    times = {"reference": [], "ours": []}
    for _ in range(rounds):
        for name, model, opt in (("reference", ref, opt_ref), ("ours", ours, opt_ours)):
            t0 = time.perf_counter()
            for _ in range(steps):
                _step(model, opt, x, y, loops)
            times[name].append((time.perf_counter() - t0) / steps)
    tokens = batch * seq
    return {name: tokens / statistics.median(ts) for name, ts in times.items()}


def saved_for_backward(loops: int, mode: str, batch: int, seq: int) -> float:
    """MB of tensors autograd keeps between forward and backward (unique storages): the activation memory that
    truncated backprop and checkpointing are meant to cut. Exact and deterministic, unlike RSS."""
    from mythos.model import Mythos, MythosConfig

    torch.manual_seed(0)
    model = Mythos(
        MythosConfig(**{**CONFIG, "max_loop_iters": max(CONFIG["max_loop_iters"], loops)}, act=False)
    )
    x = torch.randint(0, CONFIG["vocab_size"], (batch, seq))
    kw = (
        {"grad_loops": 2}
        if mode == "truncated"
        else {"checkpoint_loops": True}
        if mode == "checkpointed"
        else {}
    )
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(x, n_loops=loops, **kw)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x.reshape(-1))
    loss.backward()
    return sum(storages.values()) / 2**20


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    bench_report.add_results_flag(p, "train_throughput")
    args = p.parse_args()
    bench_report.start(args)
    torch.set_num_threads(1)
    batch, seq = (4, 64) if args.quick else (8, 128)
    loops = 4
    rounds, steps = (3, 2) if args.quick else (5, 3)
    print(
        f"training throughput: dim={CONFIG['dim']} gqa, {CONFIG['n_experts']} experts top-"
        f"{CONFIG['n_experts_per_tok']}, batch {batch} x {seq} tokens, {loops} loops, AdamW, fp32, 1 thread"
    )
    tps = throughput(batch, seq, loops, rounds, steps)
    print(f"{'model':<12}{'tokens/s':>12}")
    for name, value in tps.items():
        print(f"{name:<12}{value:>12.0f}")
    print(f"ratio ours/reference: {tps['ours'] / tps['reference']:.2f}x  (median of {rounds} rounds)")
    print()
    depths = [2, 4, 8] if args.quick else [2, 4, 8, 16]
    mb = 16 if args.quick else 32
    print(f"activation memory held for backward (MB, exact), batch {mb // 2} x {seq * 2} tokens:")
    print(f"{'loops':>6}{'full':>9}{'last-2':>9}{'ckpt':>9}{'last-2/full':>13}{'ckpt/full':>11}")
    for n in depths:
        full, trunc, ckpt = (
            saved_for_backward(n, m, mb // 2, seq * 2) for m in ("full", "truncated", "checkpointed")
        )
        print(f"{n:>6}{full:>9.1f}{trunc:>9.1f}{ckpt:>9.1f}{trunc / full:>13.2f}{ckpt / full:>11.2f}")
    print(
        "(checkpointing keeps only each loop's inputs; backward recomputes one loop at a time on top of that)"
    )


if __name__ == "__main__":
    main()
    bench_report.finish()
