"""The accuracy grid: chain length × test-time loop count, for any checkpoint trained on a synthetic task.

One seeded batch with a planted chain of the longest requested length covers every shorter depth (a chain of L
steps passes through depths 1..L); a length with too few positions there gets a batch of its own. A cell is the
accuracy at the positions of depth L, so it depends on the longest length asked for, which fixes the batch. Rows are
lengths, columns loop counts. Held-out programs use the training seed + ``HELD_OUT_SEED_OFFSET``, as the demo does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .tasks import make_task

HELD_OUT_SEED_OFFSET = 1000  # evaluation programs never share a seed with training batches


@dataclass
class Grid:
    lengths: list[int]
    loops: list[int]
    accuracy: np.ndarray  # (len(lengths), len(loops))
    train_hops: int
    train_loops: tuple[int, int]
    task: str
    chance: float | None = None

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "lengths": self.lengths,
            "loops": self.loops,
            "train_hops": self.train_hops,
            "train_loops": list(self.train_loops),
            "chance": self.chance,
            "accuracy": [[round(float(v), 4) for v in row] for row in self.accuracy],
        }

    def format(self) -> str:
        """A fixed-width table; lengths beyond training are marked with *."""
        head = "chain\\loops " + " ".join(f"{n:>5d}" for n in self.loops)
        lines = [head, "-" * len(head)]
        for i, length in enumerate(self.lengths):
            mark = "*" if length > self.train_hops else " "
            cells = " ".join(f"{v * 100:5.0f}" if np.isfinite(v) else "    -" for v in self.accuracy[i])
            lines.append(f"{length:>10d}{mark} {cells}")
        lines.append(
            f"(% correct; * = longer than any chain seen in training (max {self.train_hops}); "
            f"trained with {self.train_loops[0]}..{self.train_loops[1]} loops)"
        )
        return "\n".join(lines)


@torch.no_grad()
def accuracy_grid(
    model,
    task,
    lengths: list[int],
    loops: list[int],
    samples: int = 256,
    seed: int = 1234,
    distractor_hops: int = 3,
    batch_size: int = 256,
) -> np.ndarray:
    """Accuracy at the positions of depth L, for each chain length L and loop count.

    One seeded batch with a planted chain of the longest length covers every shorter depth too (a chain of L
    steps passes through depths 1..L); a length still short of ``samples // 4`` positions gets its own batch.
    """
    model.eval()
    device = next(model.parameters()).device
    batches = [
        task.sample(
            samples, np.random.default_rng([seed, max(lengths)]), distractor_hops, long_hops=max(lengths)
        )
    ]
    for length in lengths:
        if sum(int((b.depth == length).sum()) for b in batches) < samples // 4:
            batches.append(
                task.sample(
                    samples,
                    np.random.default_rng([seed, length]),
                    min(distractor_hops, length),
                    long_hops=length,
                )
            )
    grid = np.full((len(lengths), len(loops)), np.nan)
    for j, n in enumerate(loops):
        correct = {length: [0, 0] for length in lengths}
        for batch in batches:
            preds = []
            for lo in range(0, len(batch.inputs), batch_size):
                x = torch.from_numpy(batch.inputs[lo : lo + batch_size]).to(device)
                preds.append(model(x, n_loops=n).argmax(-1).cpu().numpy())
            hit = np.concatenate(preds) == batch.targets
            for length in lengths:
                mask = batch.depth == length
                correct[length][0] += int(hit[mask].sum())
                correct[length][1] += int(mask.sum())
        for i, length in enumerate(lengths):
            right, total = correct[length]
            grid[i, j] = right / total if total else np.nan
    return grid


def parse_list(text: str) -> list[int]:
    """``"1:8"`` -> 1..8; ``"1,2,4"`` -> [1, 2, 4]."""
    if ":" in text:
        lo, hi = text.split(":")
        return list(range(int(lo), int(hi) + 1))
    return [int(v) for v in text.split(",") if v]


def grid_for_checkpoint(
    path: str | Path,
    lengths: list[int] | None = None,
    loops: list[int] | None = None,
    samples: int = 256,
    seed: int | None = None,
) -> Grid:
    from mythos.model.checkpoint import load_checkpoint

    from .checkpoint import resolve_checkpoint
    from .config import TrainConfig

    ckpt = resolve_checkpoint(path)
    cfg_path = ckpt / "train_config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(
            f"{ckpt} has no train_config.json: it was not trained by `mythos train --task`"
        )
    cfg = TrainConfig.from_dict(json.loads(cfg_path.read_text()))
    if not cfg.task:
        raise ValueError(
            f"{ckpt} was trained on text, not a synthetic task: there is no accuracy grid to compute"
        )
    task = make_task(cfg.task, **cfg.task_options)
    model = load_checkpoint(ckpt)
    lengths = lengths or list(range(1, min(task.max_depth, 2 * cfg.train_hops + 2) + 1))
    loops = loops or sorted({1, 2, 4, *range(cfg.loop_range[1], 2 * cfg.loop_range[1] + 1, 2)})
    seed = cfg.seed + HELD_OUT_SEED_OFFSET if seed is None else seed
    acc = accuracy_grid(
        model, task, lengths, loops, samples=samples, seed=seed, distractor_hops=cfg.train_hops
    )
    return Grid(lengths, loops, acc, cfg.train_hops, cfg.loop_range, cfg.task)


def is_text_run(path: str) -> bool:
    """True when the run (or checkpoint) was trained on text (its train_config.json has no task)."""
    from .checkpoint import resolve_checkpoint

    try:
        cfg_path = resolve_checkpoint(path) / "train_config.json"
        return cfg_path.exists() and not json.loads(cfg_path.read_text()).get("task")
    except (FileNotFoundError, ValueError, OSError):
        return False
