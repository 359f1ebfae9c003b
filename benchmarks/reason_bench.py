"""Accuracy of the reasoning engine's modes against the baselines a user would try first, on a real model.

    .venv/bin/python benchmarks/reason_bench.py [--limit 12] [--budget 4000] [--time-limit 2700] [--resume]

Starts the bundled SmolLM2-135M-Instruct on llama.cpp (``mythos bench --local-model``) and runs every strategy
on the same questions (generated 2–3-step arithmetic and 2–3-hop lookups, interleaved) at one token budget.
The run directory is ``benchmarks/results/reason_bench/`` (``results.jsonl`` holds every reply, so the
numbers can be re-checked); its summary is copied to ``benchmarks/results/reason_bench.{md,json,png}``.
Resumable: ``--resume`` keeps the results already there (same settings), otherwise the run starts afresh.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
from pathlib import Path

from mythos.reason.bench_cli import bench_main

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=12, help="questions (12: 6 arithmetic + 6 lookup)")
    parser.add_argument("--budget", type=int, default=4000, help="tokens per question and strategy (4000)")
    parser.add_argument("--time-limit", type=float, default=2700.0, help="seconds before no new item starts")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads (1)")
    parser.add_argument("--resume", action="store_true", help="keep the results already in the run directory")
    parser.add_argument(
        "--json-mode", choices=("off", "schema"), default="off", help="engine calls schema-constrained (off)"
    )
    args = parser.parse_args()
    name = "reason_bench" if args.json_mode == "off" else f"reason_bench_{args.json_mode}"
    run_dir = RESULTS / name
    if run_dir.exists() and not args.resume:
        shutil.rmtree(run_dir)
    argv = [
        "--local-model", "--local-threads", str(args.threads), "--set", "arithmetic,lookup",
        "--per-set", str(max(1, args.limit)), "--limit", str(args.limit), "--budget", str(args.budget),
        "--time-limit", str(args.time_limit), "--out", os.path.relpath(run_dir), "--json-mode", args.json_mode,
    ]  # fmt: skip
    status = bench_main(argv)
    if status != 0 or not (run_dir / "summary.md").exists():
        return status or 1
    note = (
        f"\nMachine: {platform.machine()}, {platform.python_version()}, 2 shared cores under load from other "
        "processes; wall times are noisy, tokens and calls are exact. Every reply is in "
        f"[{name}/results.jsonl]({name}/results.jsonl).\n"
    )
    (RESULTS / f"{name}.md").write_text((run_dir / "summary.md").read_text() + note)
    shutil.copyfile(run_dir / "summary.json", RESULTS / f"{name}.json")
    if (run_dir / "summary.png").exists():
        shutil.copyfile(run_dir / "summary.png", RESULTS / f"{name}.png")
    print(f"written: {RESULTS / name}.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
