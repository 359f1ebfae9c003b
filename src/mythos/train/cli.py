"""Command-line entry points of the training wing: ``mythos train``, ``demo``, ``eval`` and ``plot``."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from mythos.fsutil import atomic_write

from .config import TrainConfig, TrainConfigError
from .tasks import tasks_help


def _key_values(pairs: list[str], flag: str) -> dict[str, Any]:
    """``["dim=64", "act=false"]`` -> {"dim": 64, "act": False}; values are JSON where they parse as JSON."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise TrainConfigError(flag, pair, "must look like KEY=VALUE, e.g. dim=64")
        try:
            out[key] = json.loads(raw.lower() if raw.lower() in ("true", "false", "null") else raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def train_parser() -> argparse.ArgumentParser:
    d = TrainConfig.__dataclass_fields__
    p = argparse.ArgumentParser(
        prog="mythos train",
        description="Train a Recurrent-Depth Transformer. Under "
        "torchrun it runs data-parallel (DDP) or sharded (FSDP2). Re-running the same "
        "command resumes from the run folder's latest intact checkpoint; a different model or data is "
        "refused. Ctrl-C checkpoints and exits 130. Exit codes: 0 done, 1 the run failed (non-finite "
        "losses, out of memory), 2 bad input.",
    )
    p.add_argument("--out", default=d["out"].default, help="run folder (checkpoints, telemetry.jsonl)")
    p.add_argument("--model", default=d["model"].default, help="model preset (tiny, small, 1b, …)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a model field")
    src = p.add_argument_group("data")
    src.add_argument("--data", help="text file, folder, .jsonl, .parquet, or hf:NAME[:CONFIG[:SPLIT]]")
    src.add_argument("--shards", help="token shard folder (built from --data when it has no index.json)")
    src.add_argument("--tokenizer", help="tokenizer.json to use (default: train a BPE tokenizer on --data)")
    src.add_argument("--vocab-size", type=int, default=d["vocab_size"].default)
    src.add_argument("--text-field", default=d["text_field"].default)
    src.add_argument("--max-documents", type=int)
    src.add_argument(
        "--heldout",
        type=float,
        default=d["heldout"].default,
        help="fraction of whole documents/files held out at data preparation (for mythos eval)",
    )
    src.add_argument("--seq-len", type=int, default=d["seq_len"].default)
    src.add_argument("--task", help=f"synthetic task instead of text — {tasks_help()}")
    src.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE")
    src.add_argument("--train-hops", type=int, default=d["train_hops"].default)
    opt = p.add_argument_group("optimisation")
    for name in ("batch_size", "grad_accum", "steps", "warmup"):
        opt.add_argument("--" + name.replace("_", "-"), type=int, default=d[name].default)
    for name in ("lr", "min_lr_ratio", "weight_decay", "beta1", "beta2", "grad_clip"):
        opt.add_argument("--" + name.replace("_", "-"), type=float, default=d[name].default)
    opt.add_argument(
        "--ponder-weight", type=float, help="weight of ACT's ponder cost (default: the model config's)"
    )
    rec = p.add_argument_group("recurrence")
    rec.add_argument(
        "--loops",
        default=d["loops"].default,
        help="training depth: N, MIN:MAX (uniform) or plognormal:MEAN[:MAX] (heavy-tailed, Huginn's); "
        "default 1:6 on text (the depth recipe of docs/train.md, with ACT off unless --set act=true) and 4 on --task",
    )
    rec.add_argument(
        "--depth-per",
        choices=["sequence", "step"],
        help="draw the depth per step (default: measured best on text) or per sequence (rows of a batch differ)",
    )
    rec.add_argument("--grad-loops", type=int, help="backprop through only the last K loops")
    rec.add_argument("--checkpoint-loops", action="store_true", help="activation checkpointing per loop")
    rec.add_argument("--no-router-balance", action="store_true")
    sysg = p.add_argument_group("systems")
    sysg.add_argument("--precision", default=d["precision"].default, choices=["auto", "fp32", "bf16", "fp16"])
    sysg.add_argument("--parallel", default=d["parallel"].default, choices=["auto", "none", "ddp", "fsdp"])
    sysg.add_argument(
        "--mixed-precision",
        default=d["mixed_precision"].default,
        choices=["none", "bf16"],
        help="FSDP2 MixedPrecisionPolicy (with --parallel fsdp): bf16 params/compute, fp32 gradient reduce",
    )
    sysg.add_argument(
        "--sharded-checkpoints",
        action="store_true",
        help="with --parallel fsdp: each rank writes its own shards (RUN/sharded/step_N, torch.distributed."
        "checkpoint); resumable on another world size; `mythos model unshard` makes a single file of one",
    )
    sysg.add_argument(
        "--expert-parallel",
        type=int,
        default=d["expert_parallel"].default,
        help="with --parallel fsdp: split the experts over groups of N ranks (N divides the world size; "
        "the groups are data-parallel replicas)",
    )
    sysg.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the training forward (its backward too): the first step at each loop count "
        "compiles (seconds to minutes), later ones run the compiled graph",
    )
    sysg.add_argument("--device", default=d["device"].default)
    sysg.add_argument("--seed", type=int, default=d["seed"].default)
    sysg.add_argument("--ckpt-every", type=int, default=d["ckpt_every"].default)
    sysg.add_argument("--keep-checkpoints", type=int, default=d["keep_checkpoints"].default)
    sysg.add_argument("--max-bad-steps", type=int, default=d["max_bad_steps"].default)
    sysg.add_argument("--stop-after", type=int, help="end this invocation after N steps (resume later)")
    sysg.add_argument(
        "--allow-changes",
        action="store_true",
        help="on resume, apply changed optimisation settings (--lr, --seq-len, --batch-size, …) from the "
        "checkpoint on instead of refusing; the model and data can never change within a run folder",
    )
    sysg.add_argument("--no-progress", action="store_true")
    sysg.add_argument("--tensorboard", action="store_true")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        out=args.out,
        model=args.model,
        model_overrides=_key_values(args.set, "--set"),
        data=args.data,
        shards=args.shards,
        tokenizer=args.tokenizer,
        vocab_size=args.vocab_size,
        text_field=args.text_field,
        max_documents=args.max_documents,
        heldout=args.heldout,
        seq_len=args.seq_len,
        task=args.task,
        task_options=_key_values(args.task_option, "--task-option"),
        train_hops=args.train_hops,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        steps=args.steps,
        lr=args.lr,
        min_lr_ratio=args.min_lr_ratio,
        warmup=args.warmup,
        weight_decay=args.weight_decay,
        beta1=args.beta1,
        beta2=args.beta2,
        grad_clip=args.grad_clip,
        loops=args.loops,
        depth_per=args.depth_per,
        grad_loops=args.grad_loops,
        checkpoint_loops=args.checkpoint_loops,
        ponder_weight=args.ponder_weight,
        balance_router=not args.no_router_balance,
        precision=args.precision,
        parallel=args.parallel,
        mixed_precision=args.mixed_precision,
        sharded_checkpoints=args.sharded_checkpoints,
        expert_parallel=args.expert_parallel,
        compile=args.compile,
        device=args.device,
        seed=args.seed,
        ckpt_every=args.ckpt_every,
        keep_checkpoints=args.keep_checkpoints,
        max_bad_steps=args.max_bad_steps,
        progress=not args.no_progress,
        tensorboard=args.tensorboard,
    )


def train_main(argv: list[str]) -> int:
    args = train_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
    except (TrainConfigError, ValueError) as exc:
        print(f"mythos train: {exc}", file=sys.stderr)
        return 2
    from . import distributed as D
    from .runfolder import TrainingInterrupted
    from .trainer import NonFiniteLoss, train

    try:
        result = train(cfg, stop_after=args.stop_after, allow_changes=args.allow_changes)
    except NonFiniteLoss as exc:
        print(f"mythos train: {exc}", file=sys.stderr)
        return 1  # the run failed (issue 11: one rule, 1 = the work failed)
    except TrainingInterrupted as exc:
        print(f"mythos train: {exc}", file=sys.stderr)
        return 128 + exc.signum  # 130 for Ctrl-C, 143 for SIGTERM: the shell's convention
    except (ValueError, FileNotFoundError) as exc:  # bad option, mismatched run folder, missing or bad data
        print(f"mythos train: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError:
        raise  # a missing optional package: mythos.cli names the extra to install
    except ImportError as exc:  # a package present but unusable (e.g. the hf: sources' datasets)
        print(f"mythos train: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as exc:  # the work failed (out of memory, disk full, a device error)
        print(f"mythos train: error: {type(exc).__name__}: {str(exc).strip()[:500]}", file=sys.stderr)
        return 1
    finally:
        D.teardown()
    if os.environ.get("RANK", "0") != "0":
        return 0
    if result.losses:
        finite = [x for x in result.losses if x == x]
        last = f"{finite[-1]:.4f}" if finite else "nan"
        print(
            f"done: {result.steps_done} steps, last loss {last}, {result.wall_s:.1f}s; "
            f"checkpoint {result.last_checkpoint}"
        )
    else:
        print(f"nothing to do: run already at step {result.steps_done} (checkpoint {result.last_checkpoint})")
    return 0


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

    from .demo import demo_config, summary
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
    atomic_write(out / "grid.json", json.dumps(grid.to_dict(), indent=2, sort_keys=True))
    grid_png = plot_grid(grid, out / "grid.png")
    plots = plot_run(out)
    print()
    print(grid.format())
    print()
    print(summary(grid))
    print(f"wrote {grid_png}, {', '.join(str(p) for p in plots)}, {out / 'grid.json'}")
    print(f"wall time {time.perf_counter() - t0:.0f}s")
    return 0


def eval_main(argv: list[str]) -> int:
    from .evaluate import grid_for_checkpoint, is_text_run, parse_list

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
    if is_text_run(args.checkpoint):
        return text_eval_main(args)
    try:
        grid = grid_for_checkpoint(
            args.checkpoint,
            parse_list(args.lengths) if args.lengths else None,
            parse_list(args.loops) if args.loops else None,
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
        atomic_write(args.json, json.dumps(grid.to_dict(), indent=2, sort_keys=True))
    return 0


def text_eval_main(args: argparse.Namespace) -> int:
    from mythos.model.exits import ExitCriterion

    from .checkpoint import resolve_checkpoint
    from .evaluate import parse_list
    from .text_eval import evaluate_run, plot_text_eval

    try:
        loops = parse_list(args.loops) if args.loops else None
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
        atomic_write(args.json, json.dumps(payload, indent=2, sort_keys=True))
    return 0


def plot_main(argv: list[str]) -> int:
    from .plot import plot_run

    p = argparse.ArgumentParser(
        prog="mythos plot", description="Draw PNG charts from a run's telemetry.jsonl."
    )
    p.add_argument("run", help="run folder (holds telemetry.jsonl)")
    p.add_argument("--out", help="folder for the PNGs (default RUN/plots)")
    args = p.parse_args(argv)
    try:
        paths = plot_run(args.run, args.out)
    except (FileNotFoundError, ValueError) as exc:
        print(f"mythos plot: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


def parse_floats(flag: str, text: str) -> tuple[float, ...]:
    """``"2e-3,4e-3"`` -> (0.002, 0.004): positive numbers, or a ValueError naming the flag."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) <= 0:
        raise ValueError(f"{flag} {text!r}: positive numbers, comma-separated, e.g. 2e-3,4e-3,8e-3")
    return values


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> (0, 1, 2): distinct integers >= 0, or a ValueError naming --seeds."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 0 or len(set(values)) != len(values):
        raise ValueError(f"--seeds {text!r}: distinct integers >= 0, comma-separated, e.g. 0,1,2")
    return values


def study_main(argv: list[str]) -> int:
    """``mythos study depth``: looped vs dense baselines on real text (see mythos.train.study)."""
    from .study import MODELS, StudyConfig

    d = StudyConfig()
    p = argparse.ArgumentParser(
        prog="mythos study",
        description="depth: train (a) the looped model, (b) a dense model with the same unique parameters and "
        "(c) a dense model with the same applied depth at equal training tokens on the same text; write "
        "OUT/study.json and OUT/study.png and print held-out bits per byte per test-time depth. Re-running the "
        "same command resumes a killed study.",
    )
    p.add_argument("study", choices=["depth"], help="the study to run")
    p.add_argument("--out", default=d.out)
    p.add_argument(
        "--quick", action="store_true", help="seconds-long pipeline check (tests); no quality claims"
    )
    p.add_argument(
        "--data", default=d.data, help="folder/file of text, stdlib: (default) or hf:NAME[:CONFIG[:SPLIT]]"
    )
    p.add_argument("--max-documents", type=int)
    p.add_argument("--heldout", type=float, default=d.heldout, help="fraction of whole files held out")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--seq-len", type=int, default=d.seq_len)
    p.add_argument(
        "--lr",
        default=",".join(f"{v:g}" for v in d.lrs),
        help="learning rates, comma-separated: every model trains at each and is reported at its best",
    )
    p.add_argument("--dim", type=int, default=d.dim)
    p.add_argument("--vocab-size", type=int, default=d.vocab_size)
    p.add_argument(
        "--loops", default=d.loops, help="the looped model's training depth (N, MIN:MAX, plognormal:…)"
    )
    p.add_argument("--depth-per", default=d.depth_per, choices=["sequence", "step"])
    p.add_argument("--grad-loops", type=int, default=d.grad_loops, help="0: backprop through every loop")
    p.add_argument("--act", action="store_true", help="train the looped model with ACT halting on")
    p.add_argument(
        "--eval-loops", default=",".join(map(str, d.eval_loops)), help="test-time depths, e.g. 1,2,4,8,16"
    )
    p.add_argument("--exit", action="append", metavar="CRITERION:THRESHOLD", help="adaptive-exit rows")
    p.add_argument("--eval-tokens", type=int, default=d.eval_tokens)
    p.add_argument("--models", default=",".join(MODELS), help=f"subset of {','.join(MODELS)}")
    p.add_argument(
        "--seeds",
        default=",".join(map(str, d.seeds)),
        help="seeds, comma-separated: the rate sweep runs the first, the best rate reruns with the others, "
        "and every model is reported as the seeds' mean",
    )
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    from .study import format_table, run_study

    try:
        if args.quick:
            cfg = StudyConfig.quick(args.out, args.data)
        else:
            loops = [int(v) for v in args.eval_loops.split(",") if v]
            if not loops or min(loops) < 1:
                raise ValueError(f"--eval-loops {args.eval_loops!r}: integers >= 1, e.g. 1,2,4,8,16")
            lrs = parse_floats("--lr", args.lr)
            for name in ("steps", "batch_size", "seq_len", "dim", "eval_tokens"):
                if getattr(args, name) < 1:
                    raise ValueError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be >= 1")
            cfg = StudyConfig(
                out=args.out,
                data=args.data,
                max_documents=args.max_documents,
                heldout=args.heldout,
                vocab_size=args.vocab_size,
                seq_len=args.seq_len,
                batch_size=args.batch_size,
                steps=args.steps,
                lrs=lrs,
                loops=args.loops,
                depth_per=args.depth_per,
                grad_loops=args.grad_loops or None,
                act=args.act,
                dim=args.dim,
                eval_loops=loops,
                exits=args.exit if args.exit is not None else d.exits,
                eval_tokens=args.eval_tokens,
                models=tuple(m for m in args.models.split(",") if m),
                seeds=parse_seeds(args.seeds),
                progress=not args.no_progress,
            )
        study = run_study(cfg, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    except (TrainConfigError, ValueError, FileNotFoundError) as exc:
        print(f"mythos study: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # a missing optional package, a non-finite run
        print(f"mythos study: {exc}", file=sys.stderr)
        return 1
    print(format_table(study))
    print(f"wrote {Path(cfg.out) / 'study.json'} and {study['png']}")
    return 0
