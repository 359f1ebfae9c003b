"""``mythos demo``: train a small looped model on variable-binding chains, then show that more loops at test
time solve longer chains — including chains longer than any seen in training.

Design choices that make depth extrapolate (measured in docs/train.md):
- a task that forces one step per loop: ``b=a`` can only be resolved after ``a`` is, one attention hop each;
- dense supervision: every statement's value is a target, so one program teaches all depths at once;
- the input re-injected every loop (the RDT's LTI injection) and no loop-index embedding (``loop_dim=0``), so
  loop 20 looks exactly like loop 5 to the block and extra loops are in distribution;
- loop counts sampled per step over a range above the training depth, so the block learns that a resolved
  value must stay put under further loops (a fixed point) instead of drifting ("overthinking");
- no ACT halting: the demo asks what a given number of loops can do.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from .config import TrainConfig

DEMO_MODEL = dict(
    dim=64, n_heads=4, n_kv_heads=4, attn_type="gqa", prelude_layers=1, coda_layers=1, n_experts=4,
    n_shared_experts=1, n_experts_per_tok=2, expert_dim=64, lora_rank=4, act=False, loop_dim=0,
    rope_theta=10000.0, max_seq_len=64,
)


def demo_config(out: str, quick: bool, seed: int, steps: int | None) -> TrainConfig:
    return TrainConfig(
        out=out, model="tiny", model_overrides=dict(DEMO_MODEL), task="binding",
        task_options={"n_statements": 8 if quick else 20, "n_names": 16 if quick else 40, "n_values": 10},
        train_hops=3 if quick else 5, batch_size=8 if quick else 48, steps=steps or (4 if quick else 500), lr=3e-3, warmup=5 if quick else 50,
        min_lr_ratio=0.1, weight_decay=0.01, beta2=0.98, grad_clip=1.0, loops="2:8", seed=seed,
        ckpt_every=10_000, keep_checkpoints=1, progress=True, device="cpu", precision="fp32",
    )


def demo_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mythos demo", description="Train a small Recurrent-Depth Transformer on "
                                "variable-binding chains (a=3; b=a; c=b; …) and print/plot accuracy against "
                                "chain length and test-time loop count.")
    p.add_argument("--out", default="runs/demo", help="run folder (replaced if it holds an earlier demo)")
    p.add_argument("--quick", action="store_true", help="a few steps and a small grid (seconds; for tests)")
    p.add_argument("--steps", type=int, help="training steps (default 500; --quick: 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, help="test programs per chain length (default 256; --quick: 16)")
    args = p.parse_args(argv)

    import torch

    from .evaluate import Grid, accuracy_grid
    from .plot import plot_grid, plot_run
    from .tasks import make_task
    from .trainer import train

    t0 = time.perf_counter()
    cfg = demo_config(args.out, args.quick, args.seed, args.steps)
    out = Path(cfg.out)
    for stale in ("checkpoints", "telemetry.jsonl", "plots"):  # a demo always starts fresh
        target = out / stale
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    task = make_task(cfg.task, **cfg.task_options)
    lo, hi = cfg.loop_range
    print(f"mythos demo: variable-binding chains ({task.n_statements} statements per program, training chains "
          f"of at most {cfg.train_hops} hops), loops sampled in {lo}..{hi}, {cfg.steps} steps, seed {cfg.seed}")
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    result = train(cfg, log=print)
    t_train = time.perf_counter() - t0

    from mythos.model.checkpoint import load_checkpoint

    model = load_checkpoint(result.last_checkpoint)
    print(f"model: {model.num_parameters():,} parameters; trained in {t_train:.0f}s; evaluating…")
    if args.quick:
        lengths, loops, samples = [1, 2, 4], [1, 2, 4], args.samples or 16
    else:
        lengths, loops, samples = list(range(1, 13)), [1, 2, 3, 4, 6, 8, 10, 12, 16], args.samples or 256
    acc = accuracy_grid(model, task, lengths, loops, samples=samples, seed=cfg.seed + 1000, distractor_hops=2)
    grid = Grid(lengths, loops, acc, cfg.train_hops, (lo, hi), cfg.task)
    (out / "grid.json").write_text(json.dumps(grid.to_dict(), indent=2, sort_keys=True), encoding="utf-8")
    grid_png = plot_grid(grid, out / "grid.png")
    plots = plot_run(out)
    print()
    print(grid.format())
    print()
    print(summary(grid))
    print(f"wrote {grid_png}, {', '.join(str(p) for p in plots)}, {out / 'grid.json'}")
    print(f"wall time {time.perf_counter() - t0:.0f}s")
    return 0


def summary(grid) -> str:
    """Plain-language reading of the grid: what one loop does, what the most loops do, beyond training depth."""
    acc = grid.accuracy
    lines = []
    unseen = [i for i, n in enumerate(grid.lengths) if n > grid.train_hops]
    seen = [i for i, n in enumerate(grid.lengths) if n <= grid.train_hops]
    first, last = grid.loops[0], grid.loops[-1]
    if seen:
        i = seen[-1]
        lines.append(f"chain length {grid.lengths[i]} (seen in training): {acc[i, 0] * 100:.0f}% with {first} loop(s), "
                     f"{acc[i].max() * 100:.0f}% at best ({grid.loops[int(acc[i].argmax())]} loops)")
    for i in unseen:
        best_j = int(acc[i].argmax())
        within = [j for j, n in enumerate(grid.loops) if n <= grid.train_loops[1]]
        best_within = max(acc[i, j] for j in within) if within else float("nan")
        lines.append(f"chain length {grid.lengths[i]} (unseen): {best_within * 100:.0f}% at best within the trained "
                     f"loop range, {acc[i, best_j] * 100:.0f}% with {grid.loops[best_j]} loops, "
                     f"{acc[i, -1] * 100:.0f}% with {last}")
    return "\n".join(lines)
