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
