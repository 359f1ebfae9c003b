"""Per-token exits without an ACT head: loops saved vs. how much the output changes, on a trained model.

Trains (once, cached) the small looped model of ``infer_adaptive.py`` on the multi-hop variable-binding task,
with ACT off and the depth sampled per step (uniform 2..6, the recipe exits are meant for: every loop's latent
is a usable answer). Then it decodes held-out programs token by token, teacher-forced, at fixed depth and
under each exit criterion (``kl``, ``delta``, ``argmax`` at several thresholds) and reports, against fixed
depth: the share of recurrent token-loops run, the mean and largest KL(fixed || exit) of the next-token
distributions, the next-token loss on answers and answer accuracy. Writes benchmarks/results/infer_exits.md
and .json.

    .venv/bin/python benchmarks/infer_exits.py            # 300 training steps, 64 eval programs
    .venv/bin/python benchmarks/infer_exits.py --quick    # 100 steps, 16 programs
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from infer_adaptive import MAX_HOPS, TASK, train
from mythos.infer.engine import Engine
from mythos.model import Mythos
from mythos.model.checkpoint import load_checkpoint, save_checkpoint
from mythos.model.exits import ExitCriterion, kl_divergence
from mythos.train.tasks import IGNORE

RESULTS = Path(__file__).parent / "results"
CRITERIA = ["kl:0.001", "kl:0.01", "kl:0.05", "delta:0.01", "delta:0.05", "delta:0.1", "argmax:1", "argmax:2"]


def load_or_train(steps: int, cache_dir: Path) -> Mythos:
    path = cache_dir / f"binding-{steps}-act-off-random-depth"
    if (path / "config.json").is_file():
        return load_checkpoint(path).eval()
    print(f"training a {steps}-step model, ACT off, depth 2..6 per step (cached in {path})")
    model = train(steps, ponder=0.0, act=False, min_loops=2)
    save_checkpoint(model, path)
    return model


@torch.inference_mode()
def decode(model: Mythos, programs: np.ndarray, exit: ExitCriterion | None) -> tuple[torch.Tensor, dict]:
    """Teacher-forced token-by-token decode of every program as one batch: logits (B, T, V) and counts."""
    B, T = programs.shape
    engine = Engine.from_model(model, slots=B, max_len=T, exit=exit)
    t0 = time.thread_time()
    logits = [engine.prefill(0, programs[:, :1].tolist())]
    for j in range(1, T):
        logits.append(engine.decode(0, torch.from_numpy(programs[:, j])))
    cpu = time.thread_time() - t0
    st = engine.stats
    run = st.token_loops_run / st.token_loops_full if st.token_loops_full else 1.0
    return torch.stack(logits, dim=1), dict(loops_run=run, cpu=cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--programs", type=int, default=None)
    ap.add_argument("--criteria", default=",".join(CRITERIA), help="comma-separated CRITERION:THRESHOLD")
    ap.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "mythos-infer-bench"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    steps = args.steps or (100 if args.quick else 300)
    n = args.programs or (16 if args.quick else 64)
    model = load_or_train(steps, Path(args.cache_dir))
    batch = TASK.sample(n, np.random.default_rng(12345), MAX_HOPS)
    tgt = torch.from_numpy(batch.targets)
    mask = tgt != IGNORE
    fixed, fixed_run = decode(model, batch.inputs, None)
    rows = []
    for name in ["fixed depth", *args.criteria.split(",")]:
        crit = None if name == "fixed depth" else ExitCriterion.parse(name)
        logits, run = (fixed, fixed_run) if crit is None else decode(model, batch.inputs, crit)
        kl = kl_divergence(logits, fixed)  # KL(fixed || exit) per token: what leaving early changed
        rows.append(
            dict(
                setting=name,
                loops_run=run["loops_run"],
                kl_mean=kl.mean().item(),
                kl_max=kl.max().item(),
                loss=F.cross_entropy(logits[mask], tgt[mask]).item(),
                acc=(logits.argmax(-1)[mask] == tgt[mask]).float().mean().item(),
                cpu_s=run["cpu"],
            )
        )
        r = rows[-1]
        print(
            f"{name:<12} loops run {100 * r['loops_run']:5.1f}%  KL mean {r['kl_mean']:.2e} max {r['kl_max']:.2e}  "
            f"loss {r['loss']:.4f}  acc {r['acc']:.3f}  CPU {r['cpu_s']:.2f} s",
            flush=True,
        )
    meta = dict(
        task=f"variable binding, {TASK.n_statements} statements, <= {MAX_HOPS} hops",
        training_steps=steps,
        programs=n,
        loops=model.cfg.max_loop_iters,
        command="benchmarks/infer_exits.py" + (" --quick" if args.quick else ""),
    )
    write_results(meta, rows)


def write_results(meta: dict, rows: list[dict]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Per-token exits: loops saved vs. output change (`benchmarks/infer_exits.py`)",
        "",
        f"Model: trained {meta['training_steps']} steps on {meta['task']}, ACT off, depth 2..6 per step; "
        f"{meta['programs']} held-out programs decoded token by token (teacher-forced), {meta['loops']} loops. "
        f"Command: `{meta['command']}`. KL is KL(fixed depth || with exits) of the next-token distributions, "
        "in nats; CPU is thread time (the machine is shared).",
        "",
        "| setting | loops run | KL mean | KL max | loss | answer acc | CPU s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {100 * r['loops_run']:.1f}% | {r['kl_mean']:.2e} | {r['kl_max']:.2e} | "
            f"{r['loss']:.4f} | {r['acc']:.3f} | {r['cpu_s']:.2f} |"
        )
    for suffix, text in (
        (".md", "\n".join(lines) + "\n"),
        (".json", json.dumps(dict(meta=meta, rows=rows), indent=1) + "\n"),
    ):
        path = RESULTS / f"infer_exits{suffix}"
        tmp = path.with_suffix(suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    print(f"wrote {RESULTS / 'infer_exits.md'} and .json")


if __name__ == "__main__":
    main()
