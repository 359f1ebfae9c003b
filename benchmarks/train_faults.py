"""kill -9 `mythos train` at random points and inside checkpoint writes; resume each time; compare with a run
that was never interrupted.

Per kill it records the steps the killed process had logged, the step the next start resumed from (steps lost
must be <= --ckpt-every), and temp folders left behind (the next start must remove them). Once, after a kill,
the latest checkpoint's model.safetensors is truncated: the next start must fall back to the previous intact
checkpoint. At the end the resumed run's per-step losses must equal the uninterrupted run's exactly.
Writes benchmarks/results/train_faults.{md,json}.

    python benchmarks/train_faults.py [--steps 160] [--ckpt-every 8] [--kills 10] [--write-kills 10]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
MODEL = ["--model", "tiny", "--set", "dim=48", "--set", "act=false", "--task", "binding"]
MODEL += ["--task-option", "n_statements=6", "--task-option", "n_names=12", "--train-hops", "3"]
MODEL += ["--batch-size", "4", "--loops", "1:3", "--seed", "3", "--warmup", "4", "--no-progress"]


def command(out: Path, steps: int, ckpt_every: int) -> list[str]:
    return [sys.executable, "-m", "mythos", "train", "--out", str(out), *MODEL, "--steps", str(steps),
            "--ckpt-every", str(ckpt_every)]  # fmt: skip


def telemetry_steps(run: Path) -> dict[int, float]:
    path = run / "telemetry.jsonl"
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # the killed process's last line may be cut
            continue
        if "step" in record and "loss" in record:
            out[record["step"]] = record["loss"]
    return out


def telemetry_mtime(run: Path) -> float:
    path = run / "telemetry.jsonl"
    return path.stat().st_mtime_ns if path.exists() else 0


def temps(run: Path) -> list[str]:
    root = run / "checkpoints"
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".")) if root.is_dir() else []


def kill_once(cmd: list[str], run: Path, in_write: bool, rng: random.Random, timeout: float = 120) -> dict:
    """Start the run, kill -9 it (at a random moment, or as soon as a checkpoint temp folder exists)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    started = time.time()
    delay = rng.uniform(0.0, 3.0)  # after this start's first training step (start-up takes seconds)
    first_step_at = None
    seen_temp = False
    leftovers = set(temps(run))  # the previous kill's; this start removes them first
    logged_before = telemetry_mtime(run)
    while proc.poll() is None and time.time() - started < timeout:
        if in_write:
            if set(temps(run)) - leftovers:
                seen_temp = True
                break
            time.sleep(0.0005)
        else:
            if first_step_at is None and telemetry_mtime(run) != logged_before:
                first_step_at = time.time()
            if first_step_at is not None and time.time() - first_step_at >= delay:
                break
            time.sleep(0.01)
    finished = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    output = proc.communicate()[0]
    resumed = re.search(r"at step (\d+)", output)
    return {
        "kind": "in checkpoint write" if in_write else "random",
        "finished_before_kill": finished,
        "temp_seen_at_kill": seen_temp,
        "resumed_at": int(resumed.group(1)) if resumed else 0,
        "logged_steps": max(telemetry_steps(run), default=-1) + 1,
        "temps_left": temps(run),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=160)
    p.add_argument("--ckpt-every", type=int, default=8)
    p.add_argument("--kills", type=int, default=10, help="kills at random moments")
    p.add_argument("--write-kills", type=int, default=10, help="kills inside a checkpoint write")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = random.Random(args.seed)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        reference, faulted = Path(tmp) / "reference", Path(tmp) / "faulted"
        done = subprocess.run(command(reference, args.steps, args.ckpt_every), capture_output=True, env=ENV)
        assert done.returncode == 0, done.stderr[-2000:]
        cmd = command(faulted, args.steps, args.ckpt_every)
        kinds = [True] * args.write_kills + [False] * args.kills
        rng.shuffle(kinds)
        corrupt_after = len(kinds) // 2
        prev = None
        for i, in_write in enumerate(kinds):
            row = kill_once(cmd, faulted, in_write, rng)
            if prev is not None:  # this start resumed from what the previous kill left
                prev["resumed_next"] = row["resumed_at"]
                prev["steps_lost"] = prev["logged_steps"] - row["resumed_at"]
            rows.append(row)
            prev = row
            done_ckpts = sorted((faulted / "checkpoints").glob("step_*"))
            if (
                i >= corrupt_after
                and len(done_ckpts) >= 2
                and not any(r.get("corrupted_latest") for r in rows)
            ):
                latest = (faulted / "checkpoints" / "latest").read_text().strip()
                weights = faulted / "checkpoints" / latest / "model.safetensors"
                weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
                row["corrupted_latest"] = latest
            if row["finished_before_kill"]:
                break
        final = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
        assert final.returncode == 0, final.stderr[-2000:]
        if prev is not None:
            resumed = re.search(r"at step (\d+)", final.stdout + final.stderr)
            prev["resumed_next"] = int(resumed.group(1)) if resumed else 0
            prev["steps_lost"] = prev["logged_steps"] - prev["resumed_next"]
        ref_losses, got = telemetry_steps(reference), telemetry_steps(faulted)
        identical = ref_losses == got
        temps_final = temps(faulted)
    corrupted = next((r for r in rows if r.get("corrupted_latest")), None)
    summary = {
        "kills": len(rows),
        "in_write_kills_with_temp_folder": sum(r["temp_seen_at_kill"] for r in rows),
        # the deliberately corrupted checkpoint costs one more interval: counted apart
        "max_steps_lost": max(
            (r.get("steps_lost", 0) for r in rows if not r.get("corrupted_latest")), default=0
        ),
        "steps_lost_after_corruption": corrupted and corrupted.get("steps_lost"),
        "ckpt_every": args.ckpt_every,
        "temp_folders_left_at_end": temps_final,
        "losses_identical_to_uninterrupted": identical,
        "steps": args.steps,
        "corrupted_latest": corrupted and corrupted["corrupted_latest"],
        "resumed_after_corruption": corrupted and corrupted.get("resumed_next"),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_faults.json").write_text(
        json.dumps({"summary": summary, "kills": rows}, indent=2) + "\n"
    )
    lines = [
        "# kill -9 during training and checkpoint writes",
        "",
        f"`python benchmarks/train_faults.py --steps {args.steps} --ckpt-every {args.ckpt_every} --kills "
        f"{args.kills} --write-kills {args.write_kills}` (tiny model, binding task, CPU).",
        "",
        "| # | kill | temp folder at kill | steps logged | resumed at | steps lost | temps left (removed on next start) |",
        "|---:|---|---|---:|---:|---:|---|",
    ]
    for i, r in enumerate(rows, 1):
        note = (
            f" (then truncated {r['corrupted_latest']}/model.safetensors)"
            if r.get("corrupted_latest")
            else ""
        )
        lines.append(
            f"| {i} | {r['kind']}{note} | {'yes' if r['temp_seen_at_kill'] else 'no'} | {r['logged_steps']} | "
            f"{r.get('resumed_next', '–')} | {r.get('steps_lost', '–')} | {', '.join(r['temps_left']) or '–'} |"
        )
    lines += [
        "",
        f"max steps lost {summary['max_steps_lost']} (checkpoint interval {args.ckpt_every}; after the truncated "
        f"latest: {summary['steps_lost_after_corruption']}, it resumed from the previous checkpoint at step "
        f"{summary['resumed_after_corruption']}); temp folders left at "
        f"the end: {len(temps_final)}; per-step losses identical to an uninterrupted run: {identical}.",
    ]
    (RESULTS / "train_faults.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    ok = summary["max_steps_lost"] <= args.ckpt_every and not temps_final and identical
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
