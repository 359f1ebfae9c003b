"""``mythos demo``: train a small looped model on multi-digit addition, then show that more loops at test time
solve longer carry chains — including chains far longer than any seen in training.

What made depth extrapolate in our pilots (numbers in docs/train.md):
- a task that forces one step per loop: a carry ripples through a run of digit pairs summing to 9 one pair at a
  time, and each pair's carry can only be settled after the pair below it is;
- truncated backprop through the last 3 loops only (``grad_loops=3``): the block must map *any* partially
  solved state one step closer to the answer, instead of learning a fixed unrolled program — with full
  backprop the same model solved the trained depths but not longer ones;
- loop counts sampled per step over a range (2..8), so every depth from 2 to 8 is practised and solved positions
  must stay solved under more loops (a fixed 8 loops also extrapolated, with worse few-loop accuracy);
- no loop-index embedding (``loop_dim=0``): every loop applies the same map, which gives the clean one carry
  step per loop diagonal; with the embedding on, the model extrapolated as well or better (docs/train.md);
- the input re-injected every loop (the RDT's LTI injection), dense supervision (every sum digit is a target),
  and no ACT halting: the demo asks what a given number of loops can do.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from .config import TrainConfig

DEMO_MODEL = dict(
    dim=64,
    n_heads=4,
    n_kv_heads=4,
    attn_type="gqa",
    prelude_layers=1,
    coda_layers=1,
    n_experts=4,
    n_shared_experts=1,
    n_experts_per_tok=2,
    expert_dim=64,
    lora_rank=4,
    act=False,
    loop_dim=0,
    rope_theta=10000.0,
    max_seq_len=64,
)


def demo_config(
    out: str, quick: bool, seed: int, steps: int | None, grad_loops: int | None = 3
) -> TrainConfig:
    return TrainConfig(
        out=out,
        model="tiny",
        model_overrides=dict(DEMO_MODEL),
        task="carry",
        task_options={"n_digits": 8 if quick else 20, "nine_rate": 0.4},
        train_hops=3 if quick else 6,
        batch_size=8 if quick else 32,
        steps=steps or (4 if quick else 600),
        lr=3e-3,
        warmup=5 if quick else 50,
        min_lr_ratio=0.1,
        weight_decay=0.01,
        beta2=0.98,
        grad_clip=1.0,
        loops="2:8",
        grad_loops=grad_loops or None,
        seed=seed,
        ckpt_every=10_000,
        keep_checkpoints=1,
        progress=True,
        device="cpu",
        precision="fp32",
    )


def demo_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="mythos demo",
        description="Train a small Recurrent-Depth Transformer on "
        "multi-digit addition and print/plot accuracy against carry-chain length and "
        "test-time loop count.",
    )
    p.add_argument("--out", default="runs/demo", help="run folder (replaced if it holds an earlier demo)")
    p.add_argument("--quick", action="store_true", help="a few steps and a small grid (seconds; for tests)")
    p.add_argument("--steps", type=int, help="training steps (default 600; --quick: 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--grad-loops", type=int, default=3, help="backprop through the last K loops (0: all loops)"
    )
    p.add_argument("--samples", type=int, help="test programs per chain length (default 256; --quick: 16)")
    args = p.parse_args(argv)

    import torch

    from .evaluate import HELD_OUT_SEED_OFFSET, Grid, accuracy_grid
    from .plot import plot_grid, plot_run
    from .tasks import make_task
    from .trainer import train

    t0 = time.perf_counter()
    cfg = demo_config(args.out, args.quick, args.seed, args.steps, args.grad_loops)
    out = Path(cfg.out)
    for stale in ("checkpoints", "telemetry.jsonl", "plots"):  # a demo always starts fresh
        target = out / stale
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    task = make_task(cfg.task, **cfg.task_options)
    lo, hi = cfg.loop_range
    print(
        f"mythos demo: {task.n_digits}-digit additions, training carry chains of at most {cfg.train_hops} steps, "
        f"loops sampled in {lo}..{hi}, backprop through the last {cfg.grad_loops or 'all'} loops, {cfg.steps} steps, "
        f"seed {cfg.seed}"
    )
    # One thread: this model is too small to gain from intra-op threads, oversubscribed threads on a busy machine
    # slowed it 5x in our runs, and a fixed thread count makes the result the same on every machine.
    torch.set_num_threads(1)
    result = train(cfg, log=print)
    t_train = time.perf_counter() - t0

    from mythos.model.checkpoint import load_checkpoint

    model = load_checkpoint(result.last_checkpoint)
    print(f"model: {model.num_parameters():,} parameters; trained in {t_train:.0f}s; evaluating…")
    if args.quick:
        lengths, loops, samples = [1, 2, 4], [1, 2, 4], args.samples or 16
    else:
        lengths, loops, samples = list(range(1, 15)), [1, 2, 3, 4, 6, 8, 10, 12, 16, 20], args.samples or 256
    acc = accuracy_grid(
        model,
        task,
        lengths,
        loops,
        samples=samples,
        seed=cfg.seed + HELD_OUT_SEED_OFFSET,
        distractor_hops=cfg.train_hops,
    )
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


def summary(grid, solved: float = 0.95) -> str:
    """Plain-language reading of the grid: per chain length, one loop vs the fewest loops that solve it."""
    acc = grid.accuracy
    lines = []
    trained_max = grid.train_loops[1]
    for i, length in enumerate(grid.lengths):
        enough = [n for j, n in enumerate(grid.loops) if acc[i, j] >= solved]
        within = max((acc[i, j] for j, n in enumerate(grid.loops) if n <= trained_max), default=float("nan"))
        tag = "unseen" if length > grid.train_hops else "seen in training"
        fewest = (
            f"solved (>= {solved:.0%}) from {enough[0]} loops"
            if enough
            else f"not solved within {grid.loops[-1]} loops"
        )
        lines.append(
            f"chain length {length:>2} ({tag}): {acc[i, 0]:4.0%} with {grid.loops[0]} loop, "
            f"{within:4.0%} at best within the trained {trained_max} loops, {acc[i, -1]:4.0%} with "
            f"{grid.loops[-1]}; {fewest}"
        )
    return "\n".join(lines)
