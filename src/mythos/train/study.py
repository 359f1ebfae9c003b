"""``mythos study depth``: does depth pay on real text? Three models, the same data, the same training tokens.

(a) ``looped``      the recipe: one recurrent block trained at random depth (``--loops``), full backprop;
(b) ``dense-unique`` the same unique parameters: the very same architecture trained and run with 1 loop;
(c) ``dense-depth`` the same applied depth: as many distinct blocks as the looped model's training depth,
                    run once (more parameters, about the same FLOPs per token).

Every model trains at each learning rate of ``lrs`` and is reported at its best one (the looped model and the
dense ones do not share an optimum: on the default run the looped model's was twice the dense model's), so no
model is compared at a rate tuned for another. The rate is chosen with the first of ``seeds`` on the same
held-out windows that are reported, for every model alike; the best rate is then rerun with the other seeds and
each model is reported as the seeds' mean (at this size one seed can move a run by several percent).

Dense blocks (prelude/coda, and the extra blocks of (c)) get an FFN as wide as the MoE's active width
(shared + top-k experts), so a dense block and a loop iteration cost about the same. Each model trains in its
own run folder with ``mythos train``'s loop, so a killed study resumes where it stopped; each evaluation is
cached beside its run. Everything is held-out bits per byte on whole files the tokenizer and training never saw.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import TrainConfig
from .data import STDLIB

MODELS = ("looped", "dense-unique", "dense-depth")


@dataclass
class StudyConfig:
    """One study. The defaults are the run of docs/train.md (benchmarks/results/study_depth.md)."""

    out: str = "runs/study-depth"
    data: str = STDLIB
    max_documents: int | None = None
    heldout: float = 0.05
    vocab_size: int = 2048
    seq_len: int = 128
    batch_size: int = 8
    steps: int = 600
    lrs: tuple[float, ...] = (2e-3, 4e-3, 8e-3)  # every model trains at each; reported at its best
    warmup: int = 40
    loops: str = "1:6"  # the looped model's training depth (the recipe, benchmarks/depth_recipe.py)
    depth_per: str = "step"  # per step beat per sequence in benchmarks/depth_recipe.py, at fewer FLOPs
    grad_loops: int | None = None  # full backprop: better than the last 3 loops (benchmarks/depth_recipe.py)
    act: bool = False
    dim: int = 64
    n_heads: int = 4
    expert_dim: int = 64
    eval_loops: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 6, 8, 12])
    exits: list[str] = field(default_factory=lambda: ["kl:0.01", "delta:0.05"])
    eval_tokens: int = 8192
    models: tuple[str, ...] = MODELS
    seeds: tuple[int, ...] = (0, 1, 2)  # the rate sweep runs the first; the best rate reruns with the rest
    progress: bool = True

    @classmethod
    def quick(cls, out: str, data: str = STDLIB) -> StudyConfig:
        """Seconds, for tests: tiny widths, a few steps, a few files. Asserts nothing about quality."""
        return cls(
            out=out,
            data=data,
            max_documents=40,
            heldout=0.2,
            vocab_size=300,
            seq_len=32,
            batch_size=4,
            steps=4,
            lrs=(1e-3, 1e-2),
            seeds=(0, 1),
            warmup=1,
            loops="1:3",
            grad_loops=2,
            dim=32,
            n_heads=2,
            expert_dim=16,
            eval_loops=[1, 2, 3],
            exits=["kl:0.01"],
            eval_tokens=512,
            progress=False,
        )

    @property
    def train_depth(self) -> int:
        return TrainConfig(out=".", data=".", loops=self.loops).loop_range[1]


def _model_overrides(cfg: StudyConfig, name: str) -> dict[str, Any]:
    top_k = 2
    base = {
        "dim": cfg.dim,
        "n_heads": cfg.n_heads,
        "n_kv_heads": cfg.n_heads,
        "kv_lora_rank": max(16, cfg.dim // 4),
        "q_lora_rank": max(16, cfg.dim // 2),
        "qk_rope_head_dim": max(8, cfg.dim // cfg.n_heads // 4 * 2),
        "qk_nope_head_dim": max(8, cfg.dim // cfg.n_heads // 2),
        "v_head_dim": cfg.dim // cfg.n_heads,
        "n_experts": 4,
        "n_shared_experts": 1,
        "n_experts_per_tok": top_k,
        "expert_dim": cfg.expert_dim,
        "dense_hidden": 2 * top_k * cfg.expert_dim,  # = the MoE's active width (shared + top-k)
        "lora_rank": 8,
        "prelude_layers": 1,
        "coda_layers": 1,
        "act": cfg.act,
        "max_seq_len": cfg.seq_len,
        "max_loop_iters": cfg.train_depth,
    }
    if name == "dense-depth":
        base["prelude_layers"] = 1 + cfg.train_depth - 1  # + the recurrent block once = train_depth blocks
        base["max_loop_iters"] = 1
    if name == "dense-unique":
        base["max_loop_iters"] = 1
    return base


def run_name(name: str, lr: float, seed: int) -> str:
    """The run folder of one model at one learning rate and seed, under OUT/."""
    return f"{name}-lr{lr:g}" + (f"-seed{seed}" if seed != 0 else "")


def train_config(cfg: StudyConfig, name: str, lr: float, seed: int) -> TrainConfig:
    """The `mythos train` configuration of one of the study's models (same data, steps, batch, seed)."""
    shards = str(Path(cfg.out) / "shards")
    return TrainConfig(
        out=str(Path(cfg.out) / run_name(name, lr, seed)),
        model="tiny",
        model_overrides=_model_overrides(cfg, name),
        data=cfg.data,
        shards=shards,
        vocab_size=cfg.vocab_size,
        max_documents=cfg.max_documents,
        heldout=cfg.heldout,
        seq_len=cfg.seq_len,
        batch_size=cfg.batch_size,
        steps=cfg.steps,
        lr=lr,
        warmup=cfg.warmup,
        loops=cfg.loops if name == "looped" else "1",
        depth_per=cfg.depth_per,
        grad_loops=cfg.grad_loops if name == "looped" else None,
        ckpt_every=max(1, min(100, cfg.steps // 4)),
        keep_checkpoints=1,
        seed=seed,
        progress=cfg.progress,
        precision="fp32",
    )


def active_parameters(model) -> dict[str, int]:
    """Parameters applied per token: outside the loop, and one loop iteration (MoE: shared + top-k experts)."""
    c = model.cfg
    loop = sum(p.numel() for p in model.recurrent.parameters())
    loop -= (c.n_experts - c.n_experts_per_tok) * 3 * c.dim * c.expert_dim
    loop -= sum(p.numel() for p in model.recurrent.lora.scale.parameters())  # a table lookup, not a matmul
    outside = sum(p.numel() for m in (*model.prelude, *model.coda, model.norm) for p in m.parameters())
    return {"outside_loop": outside + c.dim * c.vocab_size, "per_loop": loop}  # + the tied head's matmul


def training_flops(tcfg: TrainConfig, active: dict[str, int], steps: int) -> float:
    """2 FLOPs per parameter per token forward, 4 backward, over the loops each step really ran (its deepest
    row; only the last ``grad_loops`` of them backward). Attention scores are left out (short sequences)."""
    from .trainer import step_depths

    rows = tcfg.batch_size * tcfg.grad_accum
    tokens = rows * tcfg.seq_len
    total = 0.0
    for step in range(steps):
        ran = int(step_depths(tcfg, step, rows).max())
        back = min(ran, tcfg.grad_loops) if tcfg.grad_loops else ran
        fwd = active["outside_loop"] + ran * active["per_loop"]
        bwd = active["outside_loop"] + back * active["per_loop"]
        total += tokens * (2 * fwd + 4 * bwd)
    return total


def _atomic_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True)
    os.replace(tmp, path)


def _eval_key(cfg: StudyConfig, loops: list[int], exits: list[str]) -> dict:
    return {"loops": loops, "exits": exits, "eval_tokens": cfg.eval_tokens, "steps": cfg.steps}


def _train_and_evaluate(
    cfg: StudyConfig, name: str, lr: float, seed: int, exits: list, tag: str, log
) -> dict:
    """Train (or resume) one run and evaluate it on the held-out windows (cached beside the run)."""
    from mythos.model.checkpoint import load_checkpoint

    from .checkpoint import resolve_checkpoint
    from .data import TokenShards, load_tokenizer
    from .sources import HELDOUT_DIR
    from .text_eval import TextEval, evaluate_model, token_bytes
    from .trainer import train

    tcfg = train_config(cfg, name, lr, seed)
    log(f"{tag}: training {cfg.steps} steps ({tcfg.loops} loops)")
    result = train(tcfg, log=log)
    model = load_checkpoint(resolve_checkpoint(tcfg.out))
    looped = name == "looped"
    loops = cfg.eval_loops if looped else [1]
    key = _eval_key(cfg, loops, [str(e) for e in exits] if looped else [])
    cache = Path(tcfg.out) / "study_eval.json"
    cached = json.loads(cache.read_text()) if cache.exists() else None
    if cached is not None and cached.get("key") == key:
        ev = TextEval(**cached["eval"])
    else:
        log(f"{tag}: evaluating held-out bits per byte at loops {loops}")
        shards = Path(tcfg.shards)
        nbytes = token_bytes(load_tokenizer(shards / "tokenizer.json"))
        ev = evaluate_model(
            model,
            TokenShards.open(shards / HELDOUT_DIR),
            nbytes,
            cfg.seq_len,
            loops,
            exits if looped else [],
            cfg.eval_tokens,
            tcfg.loops,
        )
        _atomic_json(cache, {"key": key, "eval": ev.__dict__})
    active = active_parameters(model)
    return {
        "eval": ev,
        "parameters": model.num_parameters(),
        "active_parameters": active,
        "train_loops": tcfg.loops,
        "depth_per": tcfg.depth_mode if looped else "-",
        "grad_loops": tcfg.grad_loops,
        "train_tokens": cfg.steps * cfg.batch_size * cfg.seq_len,
        "train_flops": training_flops(tcfg, active, cfg.steps),
        "train_wall_s_this_call": round(result.wall_s, 1),
    }


def _mean_eval(evals: list):
    """The seeds' mean curve and adaptive rows (the study compares means; the spread is reported beside)."""
    from .text_eval import TextEval

    first = evals[0]
    mean = [sum(e.bits_per_byte[i] for e in evals) / len(evals) for i in range(len(first.loops))]
    adaptive = []
    for i, row in enumerate(first.adaptive):
        rows = [e.adaptive[i] for e in evals]
        avg = {k: round(sum(r[k] for r in rows) / len(rows), 5) for k in ("bits_per_byte", "mean_loops")}
        adaptive.append({**row, **avg, "compute_saved": round(1 - avg["mean_loops"] / row["max_loops"], 4)})
    return TextEval(first.loops, mean, first.tokens, first.bytes, first.train_loops, adaptive)


def run_study(cfg: StudyConfig, log: Callable[[str], None] = lambda _: None) -> dict:
    """Train (or resume) and evaluate every model; write OUT/study.json and OUT/study.png; return the result.

    Every model trains at each rate of ``lrs`` with the first seed; its best rate then trains with the other
    seeds, and the model is reported as the mean over seeds (per-seed curves and the spread alongside)."""
    from mythos.model.exits import ExitCriterion

    from .text_eval import plot_text_eval

    unknown = sorted(set(cfg.models) - set(MODELS))
    if unknown:
        raise ValueError(f"models={unknown} unknown; choose from {', '.join(MODELS)}")
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise ValueError(f"seeds={list(cfg.seeds)}: give one or more distinct seeds, e.g. 0,1,2")
    exits = [ExitCriterion.parse(text) for text in cfg.exits]
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    total = len(cfg.models) * (len(cfg.lrs) + len(cfg.seeds) - 1)
    done = 0
    results: dict[str, dict] = {}
    curves = {}
    for name in cfg.models:
        sweep, best = {}, None
        for lr in cfg.lrs:
            done += 1
            run = _train_and_evaluate(
                cfg, name, lr, cfg.seeds[0], exits, f"[{done}/{total}] {name} lr {lr:g}", log
            )
            sweep[f"{lr:g}"] = round(min(run["eval"].bits_per_byte), 5)
            if best is None or min(run["eval"].bits_per_byte) < min(best[1]["eval"].bits_per_byte):
                best = (lr, run)
        lr, run = best
        per_seed = {cfg.seeds[0]: run["eval"]}
        for seed in cfg.seeds[1:]:
            done += 1
            tag = f"[{done}/{total}] {name} lr {lr:g} seed {seed}"
            per_seed[seed] = _train_and_evaluate(cfg, name, lr, seed, exits, tag, log)["eval"]
        ev = _mean_eval(list(per_seed.values()))
        bests = [min(e.bits_per_byte) for e in per_seed.values()]
        results[name] = {
            "lr": lr,
            "lr_sweep": sweep,
            "seeds": list(per_seed),
            "bits_per_byte_per_seed": {str(k): e.bits_per_byte for k, e in per_seed.items()},
            "best_per_seed_range": [round(min(bests), 5), round(max(bests), 5)],
            **{k: v for k, v in run.items() if k != "eval"},
            **ev.to_dict(),
        }
        curves[name] = ev
    study = {
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()},
        "train_depth": cfg.train_depth,
        "models": results,
        "targets": targets(results, cfg.train_depth),
    }
    _atomic_json(Path(cfg.out) / "study.json", study)
    plot_text_eval(curves, Path(cfg.out) / "study.png", title="held-out bits per byte vs test-time loops")
    study["png"] = str(Path(cfg.out) / "study.png")
    return study


def targets(results: dict[str, dict], train_depth: int) -> dict[str, Any]:
    """The issue's targets, measured (never asserted): each a value and whether it was met."""
    out: dict[str, Any] = {}
    looped = results.get("looped")
    if looped is None:
        return out
    loops, bpb = looped["loops"], looped["bits_per_byte"]
    upto = [b for n, b in zip(loops, bpb, strict=True) if n <= train_depth]
    out["non_increasing_to_train_depth"] = bool(
        all(b2 <= b1 + 1e-9 for b1, b2 in zip(upto, upto[1:], strict=False))
    )
    best = min(bpb)
    beyond = [b for n, b in zip(loops, bpb, strict=True) if train_depth <= n <= 2 * train_depth]
    worst = max(beyond) if beyond else float("nan")
    out["worst_up_to_2x_vs_best_pct"] = round(100 * (worst / best - 1), 3)
    out["within_1pct_up_to_2x"] = bool(worst <= 1.01 * best)
    at_train = dict(zip(loops, bpb, strict=True)).get(train_depth, best)
    if "dense-unique" in results:
        dense = results["dense-unique"]["bits_per_byte"][0]
        out["looped_vs_dense_unique_pct"] = round(100 * (at_train / dense - 1), 3)
        out["looped_beats_dense_unique"] = bool(at_train < dense)
    if "dense-depth" in results:
        deep = results["dense-depth"]["bits_per_byte"][0]
        out["looped_vs_dense_depth_pct"] = round(100 * (at_train / deep - 1), 3)
    rows = []
    for row in looped.get("adaptive", []):
        ref = dict(zip(loops, bpb, strict=True)).get(row["max_loops"], best)
        cost = 100 * (row["bits_per_byte"] / ref - 1)
        rows.append(
            {
                "exit": row["exit"],
                "compute_saved_pct": round(100 * row["compute_saved"], 1),
                "bpb_cost_pct": round(cost, 3),
                "met": bool(row["compute_saved"] >= 0.30 and cost <= 1.0),
            }
        )
    out["adaptive"] = rows
    return out


def format_table(study: dict) -> str:
    """The study as a fixed-width table (one row per model; bits per byte per test-time depth)."""
    depths = sorted({n for m in study["models"].values() for n in m["loops"]})
    head = f"{'model':<13} {'params':>8} {'train GFLOPs':>12} {'lr':>7} " + " ".join(
        f"{f'L={n}':>7}" for n in depths
    )
    lines = [head, "-" * len(head)]
    for name, m in study["models"].items():
        by = dict(zip(m["loops"], m["bits_per_byte"], strict=True))
        cells = " ".join(f"{by[n]:7.4f}" if n in by else f"{'-':>7}" for n in depths)
        lines.append(
            f"{name:<13} {m['parameters']:>8,} {m['train_flops'] / 1e9:>12.1f} {m['lr']:>7g} {cells}"
        )
    for name, m in study["models"].items():
        sweep = ", ".join(f"{lr}: {bpb:.4f}" for lr, bpb in m["lr_sweep"].items())
        low, high = m["best_per_seed_range"]
        lines.append(
            f"{name}: best bits/byte per learning rate (seed {m['seeds'][0]}): {sweep}; at lr {m['lr']:g}, "
            f"{len(m['seeds'])} seeds' best {low:.4f}-{high:.4f} (rows above: the seeds' mean)"
        )
    for name, m in study["models"].items():
        for row in m.get("adaptive", []):
            lines.append(
                f"{name} exit {row['exit']} (cap {row['max_loops']}): {row['bits_per_byte']:.4f} bits/byte at "
                f"{row['mean_loops']:.2f} loops/token ({row['compute_saved']:.0%} loop compute saved)"
            )
    lines.append(
        f"(held-out bits per byte, lower is better; looped model trained at depth {study['train_depth']})"
    )
    t = study.get("targets", {})
    if t:
        lines.append(
            "targets: " + json.dumps({k: v for k, v in t.items() if k != "adaptive"}, sort_keys=True)
        )
        for row in t.get("adaptive", []):
            lines.append(f"  exit {row['exit']}: {row}")
    return "\n".join(lines)
