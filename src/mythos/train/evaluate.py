"""The accuracy grid: chain length × test-time loop count, for any checkpoint trained on a synthetic task.

One seeded batch with a planted chain of the longest requested length covers every shorter depth (a chain of L
steps passes through depths 1..L); a length with too few positions there gets a batch of its own. A cell is the
accuracy at the positions of depth L, so it depends on the longest length asked for, which fixes the batch. Rows are
lengths, columns loop counts. Held-out programs use the training seed + ``HELD_OUT_SEED_OFFSET``, as the demo does.
"""

from __future__ import annotations

import argparse
import json
import sys
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


def _parse_list(text: str) -> list[int]:
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


def _is_text_run(path: str) -> bool:
    """True when the run (or checkpoint) was trained on text (its train_config.json has no task)."""
    from .checkpoint import resolve_checkpoint

    try:
        cfg_path = resolve_checkpoint(path) / "train_config.json"
        return cfg_path.exists() and not json.loads(cfg_path.read_text()).get("task")
    except (FileNotFoundError, ValueError, OSError):
        return False


def eval_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="mythos eval",
        description="Evaluate a checkpoint at several test-time depths: held-out bits per byte for a run "
        "trained on text, the accuracy grid (chain length x loop count) for one trained on a synthetic task.",
    )
    p.add_argument("checkpoint", help="checkpoint folder, or a run folder (uses its latest checkpoint)")
    p.add_argument("--lengths", help="(task runs) chain lengths, e.g. 1:12 or 1,2,4,8")
    p.add_argument("--loops", help="loop counts, e.g. 1:16 or 1,2,4,8,16")
    p.add_argument("--samples", type=int, default=256, help="(task runs) programs per length")
    p.add_argument(
        "--seed", type=int, help="seed of the held-out programs (default: the run's seed + 1000, as the demo)"
    )
    p.add_argument(
        "--exit",
        action="append",
        default=[],
        metavar="CRITERION:THRESHOLD",
        help="(text runs) add an adaptive row with per-token exits, e.g. kl:0.01, delta:0.05, argmax:2",
    )
    p.add_argument("--max-tokens", type=int, default=32768, help="(text runs) held-out tokens to score")
    p.add_argument("--png", help="(text runs) plot path (default: RUN/eval_bpb.png)")
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        help="print JSON to stdout (text runs), or write the task grid/text result to this file",
    )
    args = p.parse_args(argv)
    if _is_text_run(args.checkpoint):
        return _text_eval_main(args)
    try:
        grid = grid_for_checkpoint(
            args.checkpoint,
            _parse_list(args.lengths) if args.lengths else None,
            _parse_list(args.loops) if args.loops else None,
            args.samples,
            args.seed,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"mythos eval: {exc}", file=sys.stderr)
        return 2
    if args.json == "-":
        print(json.dumps(grid.to_dict(), sort_keys=True))
        return 0
    print(grid.format())
    if args.json:
        Path(args.json).write_text(json.dumps(grid.to_dict(), indent=2, sort_keys=True))
    return 0


def _text_eval_main(args: argparse.Namespace) -> int:
    from mythos.model.exits import ExitCriterion

    from .checkpoint import resolve_checkpoint
    from .text_eval import evaluate_run, plot_text_eval

    try:
        loops = _parse_list(args.loops) if args.loops else None
        if loops is not None and (not loops or min(loops) < 1):
            raise ValueError(f"--loops {args.loops!r}: loop counts must be integers >= 1, e.g. 1,2,4,8,16")
        exits = [ExitCriterion.parse(text) for text in args.exit]
        if args.max_tokens < 1:
            raise ValueError(f"--max-tokens {args.max_tokens}: must be >= 1")
        result = evaluate_run(args.checkpoint, loops, exits, args.max_tokens)
    except (FileNotFoundError, ValueError) as exc:
        print(f"mythos eval: {exc}", file=sys.stderr)
        return 2
    ckpt = resolve_checkpoint(args.checkpoint)
    run_dir = ckpt.parent.parent  # RUN/checkpoints/step_N
    png = Path(args.png) if args.png else run_dir / "eval_bpb.png"
    plot_text_eval({run_dir.name: result}, png)
    payload = {**result.to_dict(), "png": str(png)}
    if args.json == "-":
        print(json.dumps(payload, sort_keys=True))
        return 0
    print(result.format())
    print(f"plot: {png}")
    if args.json:
        Path(args.json).write_text(json.dumps(payload, indent=2, sort_keys=True))
    return 0
