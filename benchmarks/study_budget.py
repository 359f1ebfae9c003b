"""Does the looped model catch up with the dense one as training grows? `mythos study depth` at several budgets.

Runs (or resumes: each study is a resumable run folder) `mythos study depth --steps N --models looped,dense-unique
--lr 4e-3,8e-3 --seeds 0` for every N (one seed: a longer run costs minutes per model; the two rates the default study's sweep picked: 4e-3 for the dense model, 8e-3 for
the looped one; each model is reported at its better one), then tabulates held-out bits per byte: the looped model at 1 loop, at its best test-time depth and at
its training depth, against the dense model with the same unique parameters, plus the best adaptive exit.
Writes benchmarks/results/study_budget.{md,json}. Everything else is the study's default (stdlib sources, dim 64).

    python benchmarks/study_budget.py [--steps 600,1200,2400] [--lr 4e-3,8e-3] [--seeds 0] [--out runs/study-budget]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from mythos.fsutil import atomic_write

RESULTS = Path(__file__).resolve().parent / "results"


def run_study(steps: int, lr: str, seeds: str, out: Path) -> dict:
    folder = out / f"study-{steps}"
    cmd = [
        sys.executable,
        "-m",
        "mythos",
        "study",
        "depth",
        "--steps",
        str(steps),
        "--lr",
        lr,
        "--seeds",
        seeds,
    ]
    cmd += ["--models", "looped,dense-unique", "--out", str(folder), "--no-progress"]
    subprocess.run(cmd, check=True)
    return json.loads((folder / "study.json").read_text())


def row(steps: int, study: dict) -> dict:
    looped, dense = study["models"]["looped"], study["models"]["dense-unique"]
    bpb = dict(zip(looped["loops"], looped["bits_per_byte"], strict=True))
    best_loops = min(bpb, key=bpb.get)
    train_depth = study["train_depth"]
    dense_bpb = dense["bits_per_byte"][0]
    exits = sorted(looped["adaptive"], key=lambda a: a["bits_per_byte"])
    return {
        "steps": steps,
        "train_tokens": looped["train_tokens"],
        "looped_1_loop": bpb[1],
        "looped_best": bpb[best_loops],
        "looped_seed_range": looped["best_per_seed_range"],
        "dense_seed_range": dense["best_per_seed_range"],
        "looped_best_loops": best_loops,
        "looped_train_depth": bpb.get(train_depth),
        "dense_unique": dense_bpb,
        "looped_lr": looped["lr"],
        "dense_lr": dense["lr"],
        "best_vs_dense_pct": 100 * (bpb[best_loops] / dense_bpb - 1),
        "depth_gain_pct": 100 * (1 - bpb[best_loops] / bpb[1]),
        "flops_ratio": looped["train_flops"] / dense["train_flops"],
        "best_exit": exits[0] if exits else None,
    }


def markdown(rows: list[dict], lr: str, seeds: str) -> str:
    lines = [
        "# Looped vs dense (same unique parameters) as training grows (`benchmarks/study_budget.py`)",
        "",
        f"`mythos study depth --steps N --models looped,dense-unique --lr {lr} --seeds {seeds}` (stdlib, dim 64,",
        "8 x 128 tokens per step, 8192 held-out tokens; looped: ACT off, depth 1..6 per step, full backprop; each",
        "model at its better learning rate; the mean over the seeds, with the seeds' best as a range). Held-out",
        "bits per byte, lower is better; `vs dense` compares the looped model at its best test-time depth.",
        "",
        "| steps | train tokens | looped, 1 loop | looped, best (loops) | looped, train depth | dense, same params"
        " | seeds' best: looped / dense | lr looped / dense | looped best vs dense | gain from depth | looped/dense train FLOPs | best exit (bpb, loops/token) |",
        "|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        (lo, hi), (dlo, dhi) = r["looped_seed_range"], r["dense_seed_range"]
        ex = r["best_exit"]
        exit_text = f"{ex['exit']}: {ex['bits_per_byte']:.4f}, {ex['mean_loops']:.2f}" if ex else "-"
        lines.append(
            f"| {r['steps']} | {r['train_tokens']:,} | {r['looped_1_loop']:.4f} | {r['looped_best']:.4f} "
            f"({r['looped_best_loops']}) | {r['looped_train_depth']:.4f} | {r['dense_unique']:.4f} | "
            f"{lo:.4f}-{hi:.4f} / {dlo:.4f}-{dhi:.4f} | {r['looped_lr']:g} / {r['dense_lr']:g} | {r['best_vs_dense_pct']:+.2f} % | {r['depth_gain_pct']:.2f} % | {r['flops_ratio']:.2f}x | {exit_text} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", default="600,1200,2400", help="comma-separated training steps")
    p.add_argument("--lr", default="4e-3,8e-3", help="learning rates every model trains at (best reported)")
    p.add_argument("--seeds", default="0", help="seeds per model (the study's mean is tabulated)")
    p.add_argument("--out", default="runs/study-budget", help="folder for the study runs (resumable)")
    p.add_argument("--results", default=str(RESULTS / "study_budget"), help="results path without suffix")
    args = p.parse_args()
    rows = [
        row(n, run_study(n, args.lr, args.seeds, Path(args.out)))
        for n in (int(s) for s in args.steps.split(","))
    ]
    text = markdown(rows, args.lr, args.seeds)
    print(text)
    atomic_write(args.results + ".md", text)
    atomic_write(args.results + ".json", json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
