"""Adaptive depth and KV-cache policies on a trained model: compute saved vs. loss/accuracy lost.

Trains (once, cached) a small looped model on the multi-hop variable-binding task (`mythos.train.tasks`),
with a ponder cost so ACT learns to halt easy tokens early. Then it decodes held-out programs token by
token, teacher-forced (prefill the first token, decode the rest), under each engine setting and reports
next-token loss and answer accuracy, the fraction of recurrent token-loops actually run, CPU time, and
KV bytes per token. Fixed depth with the per-loop cache is exact (equal to the model's own forward); the
"bf16" rows are the cost of storing the engine's matrices (``Engine(weight_dtype=...)``) or its KV cache
(``cache_dtype=...``) in bf16; all arithmetic stays fp32.

    .venv/bin/python benchmarks/infer_adaptive.py            # 400 training steps, 64 eval programs
    .venv/bin/python benchmarks/infer_adaptive.py --quick    # one model, 100 steps, 16 programs
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import bench_report  # benchmarks/bench_report.py: the results file
from mythos.infer.engine import Engine
from mythos.model import Mythos, MythosConfig
from mythos.model.checkpoint import load_checkpoint, save_checkpoint
from mythos.train.tasks import IGNORE, VariableBinding

TASK = VariableBinding(n_statements=12, n_values=10, n_names=16)
MAX_HOPS = 4


def config(ponder: float) -> MythosConfig:
    return MythosConfig(
        vocab_size=TASK.vocab_size,
        dim=96,
        n_heads=4,
        n_kv_heads=2,
        max_seq_len=64,
        max_loop_iters=6,
        prelude_layers=1,
        coda_layers=1,
        attn_type="mla",
        kv_lora_rank=32,
        q_lora_rank=48,
        qk_rope_head_dim=8,
        qk_nope_head_dim=16,
        v_head_dim=16,
        n_experts=4,
        n_shared_experts=1,
        n_experts_per_tok=2,
        expert_dim=48,
        lora_rank=4,
        act_threshold=0.9,
        ponder_weight=ponder,
        rope_theta=10000.0,
    )


def train(steps: int, ponder: float, seed: int = 0, act: bool = True, min_loops: int | None = None) -> Mythos:
    """Train on the binding task; ``act=False`` turns ACT off, ``min_loops`` samples the depth per step
    uniformly from ``min_loops..max_loop_iters`` (else every step runs the full depth)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cfg = config(ponder).replace(act=act)
    model = Mythos(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    for step in range(steps):
        batch = TASK.sample(32, rng, MAX_HOPS)
        loops = int(rng.integers(min_loops, cfg.max_loop_iters + 1)) if min_loops else None
        out = model(torch.from_numpy(batch.inputs), n_loops=loops, return_aux=True)
        loss = F.cross_entropy(
            out.logits.flatten(0, 1), torch.from_numpy(batch.targets).flatten(), ignore_index=IGNORE
        )
        (loss + cfg.ponder_weight * out.aux.ponder_cost).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        model.update_router_bias(out.aux.expert_load)
        if step % 50 == 0 or step == steps - 1:
            print(
                f"  train step {step:4d}  loss {loss.item():.3f}  mean depth {out.aux.mean_depth:.2f}",
                flush=True,
            )
    return model.eval()


def load_or_train(steps: int, ponder: float, cache_dir: Path) -> Mythos:
    path = cache_dir / f"binding-{steps}-ponder{ponder:g}"
    if (path / "config.json").is_file():
        return load_checkpoint(path).eval()
    print(f"training a {steps}-step model, ponder weight {ponder:g} (cached in {path})")
    model = train(steps, ponder)
    save_checkpoint(model, path)
    return model


@torch.inference_mode()
def evaluate(model: Mythos, programs: np.ndarray, targets: np.ndarray, **engine_kw) -> dict:
    """Teacher-forced token-by-token decode of every program as one batch; loss/accuracy on answers."""
    B, T = programs.shape
    engine = Engine.from_model(model, slots=B, max_len=T, **engine_kw)
    t0 = time.thread_time()
    logits = [engine.prefill(0, programs[:, :1].tolist())]
    for j in range(1, T):
        logits.append(engine.decode(0, torch.from_numpy(programs[:, j])))
    cpu = time.thread_time() - t0
    logits_t = torch.stack(logits, dim=1)  # (B, T, V)
    tgt = torch.from_numpy(targets)
    mask = tgt != IGNORE
    loss = F.cross_entropy(logits_t[mask], tgt[mask]).item()
    acc = (logits_t.argmax(-1)[mask] == tgt[mask]).float().mean().item()
    st = engine.stats
    run = st.token_loops_run / st.token_loops_full if st.token_loops_full else 1.0
    return dict(loss=loss, acc=acc, loops_run=run, cpu=cpu, bytes=engine.cache.bytes_per_token())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--programs", type=int, default=None)
    ap.add_argument(
        "--ponder",
        default=None,
        help="comma-separated ponder weights, one model each (default 0.003,0; quick 0.003)",
    )
    ap.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "mythos-infer-bench"))
    bench_report.add_results_flag(ap, "infer_adaptive")
    args = ap.parse_args()
    bench_report.start(args)
    torch.set_num_threads(1)
    steps = args.steps or (100 if args.quick else 400)
    ponders = args.ponder or ("0.003" if args.quick else "0.003,0")
    n = args.programs or (16 if args.quick else 64)
    for ponder in (float(p) for p in ponders.split(",")):
        report(load_or_train(steps, ponder, Path(args.cache_dir)), n, steps, ponder)


def report(model: Mythos, n: int, steps: int, ponder: float) -> None:
    batch = TASK.sample(n, np.random.default_rng(12345), MAX_HOPS)
    with torch.no_grad():
        out = model(torch.from_numpy(batch.inputs), return_aux=True)
    mask = torch.from_numpy(batch.targets) != IGNORE
    ref_loss = F.cross_entropy(out.logits[mask], torch.from_numpy(batch.targets)[mask]).item()
    print(
        f"\nbinding task ({TASK.n_statements} statements, <= {MAX_HOPS} hops), {steps} training steps, ponder weight "
        f"{ponder:g}, {n} held-out programs, {model.cfg.max_loop_iters} loops, act_threshold "
        f"{model.cfg.act_threshold}; model forward: loss {ref_loss:.4f}, ACT mean depth {out.aux.mean_depth:.2f}"
    )
    settings = [
        ("fixed depth, per-loop cache (exact)", dict()),
        ("fixed depth, last-2 cache", dict(cache_policy="last-2")),
        ("fixed depth, shared cache", dict(cache_policy="shared")),
        ("fixed depth, bf16 weights", dict(weight_dtype=torch.bfloat16)),
        ("fixed depth, bf16 cache", dict(cache_dtype=torch.bfloat16)),
        ("fixed depth, bf16 weights + cache", dict(weight_dtype=torch.bfloat16, cache_dtype=torch.bfloat16)),
        ("adaptive depth, per-loop cache", dict(adaptive=True)),
        ("adaptive depth, shared cache", dict(adaptive=True, cache_policy="shared")),
    ]
    # a stricter threshold at inference spreads halting over more loops, so more tokens attend to halted
    # tokens' copied entries: fixed vs adaptive at the same threshold isolates the cost of that policy
    for thr in (0.99, 0.999):
        settings += [
            (f"fixed depth, threshold {thr}", dict(act_threshold=thr)),
            (f"adaptive depth, threshold {thr}", dict(adaptive=True, act_threshold=thr)),
        ]
    print(
        f"{'setting':<38} | {'loss':>7} | {'answer acc':>10} | {'loops run':>9} | {'CPU s':>6} | {'KV B/token':>10}"
    )
    for name, kw in settings:
        r = evaluate(model, batch.inputs, batch.targets, **kw)
        print(
            f"{name:<38} | {r['loss']:>7.4f} | {r['acc']:>10.3f} | {100 * r['loops_run']:>8.1f}% | "
            f"{r['cpu']:>6.2f} | {r['bytes']:>10}"
        )


if __name__ == "__main__":
    main()
    bench_report.finish()
