"""Which depth recipe to train a looped model on text with? Side by side, one process, same data and tokens.

Variants of the looped model of `mythos study depth`, at its default size and budget and at the learning rate
its sweep picked for the looped model (8e-3), one seed each (two for the recipe and fixed 4, to show the seed
spread): the recipe (ACT off, random depth 1..6 drawn per step, full backprop), the previous recipe (backprop
through the last 3 loops), depth drawn per sequence, fixed depths 4 and 6 (full or truncated backprop), and ACT
on (halting counted in the gradient window, halting bias at logit(1/N)). Writes benchmarks/results/depth_recipe.{json,md}.

    python benchmarks/depth_recipe.py [--quick] [--out runs/depth-recipe]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from mythos.train.study import StudyConfig, run_study

VARIANTS = {
    "act-off, 1:6 per step, full backprop (recipe)": dict(),
    "act-off, 1:6 per step, full backprop, seed 1": dict(seeds=(1,)),
    "act-off, 1:6 per step, last 3 loops (the previous recipe)": dict(grad_loops=3),
    "act-off, 1:6 per sequence, full backprop": dict(depth_per="sequence"),
    "act-off, fixed 4, full backprop": dict(loops="4"),
    "act-off, fixed 4, full backprop, seed 1": dict(loops="4", seeds=(1,)),
    "act-off, fixed 4, last 2 loops": dict(loops="4", grad_loops=2),
    "act-off, fixed 6, full backprop": dict(loops="6"),
    "act-on, fixed 4, full backprop": dict(loops="4", act=True),
}


def write(rows: dict, cfg: StudyConfig, quick: bool) -> str:
    """The table so far (written after every variant, so a cut-short run still leaves its measurements)."""
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    loops = cfg.eval_loops
    lines = [
        f"# Depth recipe on text ({cfg.steps} steps x {cfg.batch_size} x {cfg.seq_len} tokens, dim {cfg.dim}, "
        f"lr {cfg.lrs[0]:g}, stdlib sources, held-out bits per byte)",
        "",
        "| variant | " + " | ".join(f"L={n}" for n in loops) + " | train GFLOPs | adaptive (bpb @ loops) |",
        "|---|" + "---|" * (len(loops) + 2),
    ]
    for name, r in rows.items():
        ad = "; ".join(
            f"{a['exit']}: {a['bits_per_byte']:.4f} @ {a['mean_loops']:.2f}" for a in r["adaptive"]
        )
        cells = " | ".join(f"{b:.4f}" for b in r["bits_per_byte"])
        lines.append(f"| {name} | {cells} | {r['train_flops'] / 1e9:.1f} | {ad} |")
    lines += ["", "Command: `python benchmarks/depth_recipe.py" + (" --quick" if quick else "") + "`"]
    if not quick:
        (results / "depth_recipe.json").write_text(json.dumps(rows, indent=2, sort_keys=True))
        (results / "depth_recipe.md").write_text("\n".join(lines) + "\n")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="runs/depth-recipe")
    p.add_argument("--steps", type=int, default=StudyConfig.steps)
    args = p.parse_args()
    root = Path(args.out)
    base = dict(
        steps=args.steps,
        lrs=(8e-3,),
        seeds=(0,),
        eval_loops=[1, 2, 3, 4, 6, 8, 12],
        exits=["kl:0.01", "delta:0.05"],
        models=("looped",),
        progress=False,
    )
    if args.quick:
        base.update(
            max_documents=30, vocab_size=300, seq_len=32, steps=3, dim=32, eval_loops=[1, 2], eval_tokens=256
        )
    rows = {}
    shared = None
    for name, change in VARIANTS.items():
        out = root / name.split(" (")[0].replace(", ", "_").replace(" ", "")
        out.mkdir(parents=True, exist_ok=True)
        if shared is not None and not (out / "shards").exists():
            os.symlink(shared.resolve(), out / "shards")  # one tokenizer and held-out split for every variant
        cfg = StudyConfig(out=str(out), **{**base, **change})
        print(f"{name}: training {cfg.steps} steps", file=sys.stderr, flush=True)
        study = run_study(cfg)
        shared = out / "shards"
        m = study["models"]["looped"]
        rows[name] = {
            "loops": m["loops"],
            "bits_per_byte": m["bits_per_byte"],
            "adaptive": m["adaptive"],
            "train_flops": m["train_flops"],
            "targets": study["targets"],
        }
        write(rows, cfg, args.quick)
    print(write(rows, cfg, args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
