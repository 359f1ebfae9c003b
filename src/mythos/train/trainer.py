"""The training loop, top to bottom: build, (resume), then for each step sample a loop count, accumulate
gradients, guard against NaN/Inf, clip, step, balance the router, log, and checkpoint.

Works single-process on CPU/GPU and under ``torchrun`` (DDP or FSDP2). Everything random is a function of the
seed and the step, so a resumed run reproduces the uninterrupted run's losses exactly.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import dcp as DCP
from . import distributed as D
from .checkpoint import load_latest, rng_state, set_rng_state, write_checkpoint
from .config import TrainConfig
from .runfolder import (
    RunMismatch,
    StopRequest,
    TrainingInterrupted,
    check_environment,
    check_resume,
    clean_stale_temps,
    write_run_config,
)
from .sampler import DepthSampler, depth_histogram
from .sources import IGNORE, make_source
from .telemetry import Telemetry

# The playbook's symptom -> cause map, narrowed to what a non-finite training step usually means for an RDT.
NAN_CAUSES = (
    "likely causes, most probable first: (1) spectral radius drift: max(A) of the LTI injection at or near 1.0 "
    "lets the recurrent state grow every loop (ρ(A) < 1 must hold; someone may have changed LTIInjection); "
    "(2) gradient explosion through many loops: lower --lr, lengthen --warmup, or backprop fewer loops "
    "(--grad-loops); (3) fp16 overflow: use --precision bf16 or fp32; (4) a causal mask whose dtype does not "
    "match the activations (-inf in half precision); (5) a bad batch (check the data at this step)."
)


class NonFiniteLoss(RuntimeError):
    """Raised when too many consecutive steps are non-finite; no checkpoint is written for them."""


@dataclass
class TrainResult:
    steps_done: int
    losses: list[float] = field(default_factory=list)  # one per step run in this call (NaN for skipped steps)
    last_checkpoint: Path | None = None
    skipped_steps: list[int] = field(default_factory=list)
    wall_s: float = 0.0


def loop_count(cfg: TrainConfig, step: int) -> int:
    """Loops the whole step runs (its deepest row) — a pure function of (seed, step), identical on all ranks."""
    return int(step_depths(cfg, step, 1 if cfg.depth_mode == "step" else _global_rows(cfg, 1)).max())


def _global_rows(cfg: TrainConfig, world: int) -> int:
    return cfg.batch_size * cfg.grad_accum * world


def step_depths(cfg: TrainConfig, step: int, rows: int) -> np.ndarray:
    """Depth of every row of the step's global batch (micro-steps x ranks x batch, the sources' order)."""
    return DepthSampler.parse(cfg.loops).step_depths(cfg.seed, step, rows, cfg.depth_mode)


def lr_lambda(cfg: TrainConfig):
    """Linear warm-up, then cosine decay to ``min_lr_ratio`` of the peak at the last step."""

    def factor(step: int) -> float:
        if cfg.warmup and step < cfg.warmup:
            return (step + 1) / cfg.warmup
        span = max(1, cfg.steps - cfg.warmup)
        progress = min(1.0, (step - cfg.warmup) / span)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def build_model_config(cfg: TrainConfig, vocab_size: int, seq_len: int):
    import dataclasses

    from mythos.model import MythosConfig, get_preset

    from .config import TrainConfigError

    fields = sorted(f.name for f in dataclasses.fields(MythosConfig))
    for key in cfg.model_overrides:
        if key not in fields:
            raise TrainConfigError(
                "model_overrides", key, f"--set names a MythosConfig field; valid: {fields}"
            )
    overrides = dict(cfg.model_overrides)
    overrides.setdefault("vocab_size", vocab_size)
    base = get_preset(cfg.model)
    overrides.setdefault("max_seq_len", max(base.max_seq_len, seq_len))
    overrides.setdefault("max_loop_iters", cfg.loop_range[1])
    if cfg.task is None:  # the text recipe: depth chosen at test time or by exit criteria, not by ACT
        overrides.setdefault("act", False)
    return base.replace(**overrides)


def _param_groups(model: torch.nn.Module, weight_decay: float):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and "embed" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _precision(cfg: TrainConfig, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None for fp32, whether a GradScaler is needed)."""
    choice = cfg.precision
    if choice == "auto":
        if device.type != "cuda":
            return None, False
        choice = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if choice == "fp32":
        return None, False
    if device.type != "cuda":
        raise ValueError(f"precision={choice} needs a GPU; on CPU use fp32 (or auto)")
    return (torch.bfloat16, False) if choice == "bf16" else (torch.float16, True)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _max_A(model: torch.nn.Module) -> float:
    try:
        with torch.no_grad():
            return float(model.recurrent.injection.get_A().float().max())
    except Exception:  # noqa: BLE001 - telemetry must never kill a run (FSDP shards, missing attribute)
        return float("nan")


def train(
    cfg: TrainConfig, log=print, stop_after: int | None = None, allow_changes: bool = False
) -> TrainResult:
    """Run (or resume) the training run described by ``cfg`` in ``cfg.out``.

    ``stop_after`` ends this call after that many steps (checkpointing there), e.g. to time-slice a long run.
    Resuming with a different model or data raises ``RunMismatch``; changed optimisation settings need
    ``allow_changes`` (see ``runfolder.check_resume``). Ctrl-C / SIGTERM finish the current step, checkpoint
    and raise ``TrainingInterrupted``.
    """
    from mythos.model import Mythos
    from mythos.model.checkpoint import load_checkpoint, read_config

    check_environment(cfg)
    info = D.setup(cfg.device)
    run_dir = Path(cfg.out)
    quiet = log if info.is_main else (lambda *_: None)
    if info.is_main:
        for stale in clean_stale_temps(run_dir):
            log(f"removed {stale.name}, left by a checkpoint write that was killed")
    # Refuse a command that describes another run *before* writing anything: train_config.json is what runs.
    resume_from, state = load_latest(run_dir, quiet)
    sharded_from = DCP.latest_sharded(run_dir) if cfg.sharded_checkpoints else None
    if resume_from is None and sharded_from is None and DCP.latest_sharded(run_dir) is not None:
        raise RunMismatch(
            f"{run_dir} holds sharded checkpoints only (sharded_checkpoints: True -> False): resume it with "
            "--parallel fsdp --sharded-checkpoints, or start a new run folder (--out)"
        )
    for note in check_resume(cfg, sharded_from or resume_from, allow_changes, info.world):
        quiet(note)
    if info.is_main:
        write_run_config(run_dir, cfg)
    _seed_everything(cfg.seed)
    # Only rank 0 may tokenize into the shard folder; the others wait for it, then open the finished shards.
    if info.enabled and not info.is_main:
        torch.distributed.barrier()
    source = make_source(cfg, log if info.is_main else (lambda *_: None))
    if info.enabled and info.is_main:
        torch.distributed.barrier()
    if sharded_from is not None:  # built fresh here, its weights loaded shard by shard once wrapped
        model_cfg = read_config(sharded_from)
        model = Mythos(model_cfg).to(info.device)
    elif resume_from is not None:  # the checkpoint's own architecture (check_resume made sure it is the same)
        model = load_checkpoint(resume_from).to(info.device)
        model_cfg = model.cfg
    else:
        model_cfg = build_model_config(cfg, source.vocab_size, source.seq_len)
        model = Mythos(model_cfg).to(info.device)
    raw_model = model
    ponder_weight = model_cfg.ponder_weight if cfg.ponder_weight is None else cfg.ponder_weight
    model = D.wrap(
        model, cfg.parallel, info, mixed_precision=cfg.mixed_precision, expert_parallel=cfg.expert_parallel
    )
    forward = model
    if cfg.compile:  # after wrapping; ``model`` stays the module that is optimised and checkpointed
        from .compile import compile_forward

        forward = compile_forward(model, cfg.loop_range[1])

    optimizer = torch.optim.AdamW(
        _param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=False
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    amp_dtype, use_scaler = _precision(cfg, info.device)
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    start_step = 0
    if sharded_from is not None:
        sharded_state = DCP.load_sharded(sharded_from, model, optimizer)
        scheduler.load_state_dict(sharded_state["scheduler"])
        start_step = int(sharded_state["step"])
        resume_from = sharded_from
        if info.is_main:
            log(f"resumed from {sharded_from} at step {start_step}")
    elif state is not None:
        optim_format = "dcp" if info.enabled else "plain"
        if state.get("optim_format") != optim_format:
            raise ValueError(
                f"checkpoint {resume_from} holds {state.get('optim_format')!r} optimizer state but this run is "
                f"{optim_format!r}: resume with the same parallel mode (single process vs torchrun)"
            )
        D.load_optimizer_state(model, optimizer, state["optimizer"], info)
        scheduler.load_state_dict(state["scheduler"])
        if allow_changes:  # the saved optimizer/scheduler state carries the old hyper-parameters: use today's
            scheduler.base_lrs = [cfg.lr for _ in optimizer.param_groups]
            for group, wd in zip(optimizer.param_groups, (cfg.weight_decay, 0.0), strict=False):
                group.update(betas=(cfg.beta1, cfg.beta2), weight_decay=wd)
                group["lr"] = cfg.lr * lr_lambda(cfg)(scheduler.last_epoch)
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        start_step = int(state["step"])
        if info.is_main:
            log(f"resumed from {resume_from} at step {start_step}")

    telemetry = Telemetry(
        run_dir,
        enabled=info.is_main,
        progress_total=cfg.steps,
        progress=cfg.progress,
        tensorboard=cfg.tensorboard,
        initial_step=start_step,
    )
    result = TrainResult(steps_done=start_step)
    last_ckpt = resume_from
    bad_in_a_row = 0
    tokens_per_step = cfg.batch_size * cfg.grad_accum * info.world * source.tokens_per_sample
    t_start = time.perf_counter()

    def save(step_done: int) -> Path | None:
        if cfg.sharded_checkpoints:  # every rank writes its own shards; nothing is gathered
            sched = scheduler.state_dict()
            return DCP.save_step(
                run_dir,
                step_done,
                model,
                optimizer,
                model_cfg.to_dict(),
                {"scheduler": sched},
                cfg.keep_checkpoints,
                train_config_json=cfg.to_json(),
            )
        model_state, optim_state = D.full_state(model, optimizer, info)
        if not info.is_main:
            return None
        if not all(torch.isfinite(v).all() for v in model_state.values() if torch.is_floating_point(v)):
            telemetry.write(f"step {step_done}: weights are not finite; checkpoint NOT written")
            return None
        cpu_model = Mythos(model_cfg)
        cpu_model.load_state_dict({k: v.detach().cpu() for k, v in model_state.items()})
        train_state = {
            "optimizer": optim_state,
            "optim_format": "dcp" if info.enabled else "plain",
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_state(),
        }
        return write_checkpoint(
            run_dir,
            step_done,
            cpu_model,
            train_state,
            cfg.to_json(),
            cfg.keep_checkpoints,
            tokenizer_path=getattr(source, "tokenizer_path", None),
        )

    end_step = cfg.steps if stop_after is None else min(cfg.steps, start_step + stop_after)
    stop = StopRequest()
    try:
        stop.__enter__()
        for step in range(start_step, end_step):
            t0 = time.perf_counter()
            step_lr = optimizer.param_groups[0]["lr"]
            depths = step_depths(cfg, step, _global_rows(cfg, info.world))
            n_loops = int(depths.max())  # every rank runs to the global batch's deepest row
            per_row = cfg.depth_mode == "sequence" and int(depths.min()) != n_loops
            grad_loops = min(cfg.grad_loops, n_loops) if cfg.grad_loops else None
            model.train()
            optimizer.zero_grad(set_to_none=True)
            loss_sum = torch.zeros((), device=info.device)  # summed on device: one host sync per step
            aux = None
            load_sum = None
            for micro in range(cfg.grad_accum):
                batch = source.batch(step, micro, info.rank, info.world, cfg.batch_size)
                inputs = batch.inputs.to(info.device)
                targets = batch.targets.to(info.device)
                sync = contextlib.nullcontext()
                if hasattr(model, "no_sync") and micro < cfg.grad_accum - 1:
                    sync = model.no_sync()
                autocast = (
                    torch.autocast(info.device.type, dtype=amp_dtype)
                    if amp_dtype is not None
                    else contextlib.nullcontext()
                )
                first = (micro * info.world + info.rank) * cfg.batch_size
                rows = torch.from_numpy(depths[first : first + inputs.shape[0]]) if per_row else None
                with sync, autocast:
                    out = forward(
                        inputs,
                        n_loops=n_loops,
                        row_loops=rows,
                        grad_loops=grad_loops,
                        checkpoint_loops=cfg.checkpoint_loops,
                        return_aux=True,
                    )
                    logits = out.logits.float()
                    loss = F.cross_entropy(
                        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE
                    )
                    total = loss + ponder_weight * out.aux.ponder_cost if ponder_weight else loss
                    scaled = total / cfg.grad_accum
                    (scaler.scale(scaled) if scaler is not None else scaled).backward()
                loss_sum += loss.detach()
                aux = out.aux
                load = aux.expert_load.detach().float()
                load_sum = load if load_sum is None else load_sum + load
            step_loss = float(D.all_reduce_mean(loss_sum / cfg.grad_accum, info))

            if scaler is not None:
                scaler.unscale_(optimizer)
            grad_norm = float(D.clip_grad_norm(model.parameters(), cfg.grad_clip or float("inf")))
            # With fp16 an infinite gradient is the grad scaler's business (it skips and lowers the scale);
            # a non-finite loss, or any non-finite gradient without a scaler, is a real fault.
            bad_grad = not math.isfinite(grad_norm) and scaler is None
            bad = D.any_rank(not math.isfinite(step_loss) or bad_grad, info)
            if bad:
                if scaler is not None:
                    scaler.update()  # close this iteration's unscale_ so the next step starts clean
                bad_in_a_row += 1
                result.skipped_steps.append(step)
                optimizer.zero_grad(set_to_none=True)
                telemetry.write(
                    f"step {step}: non-finite {'loss' if not math.isfinite(step_loss) else 'gradient'} "
                    f"(loss={step_loss}, grad_norm={grad_norm}, max(A)={_max_A(raw_model):.4f}, "
                    f"lr={scheduler.get_last_lr()[0]:.3g}, loops={n_loops}); step skipped, not checkpointed. "
                    + NAN_CAUSES
                )
                if bad_in_a_row > cfg.max_bad_steps:
                    raise NonFiniteLoss(
                        f"{bad_in_a_row} non-finite steps in a row (last at step {step}); stopping without "
                        f"checkpointing them. Last good checkpoint: {last_ckpt}. " + NAN_CAUSES
                    )
                with warnings.catch_warnings():  # the schedule advances over a skipped step on purpose
                    warnings.simplefilter("ignore", UserWarning)
                    scheduler.step()
                result.losses.append(float("nan"))
                result.steps_done = step + 1
                continue
            bad_in_a_row = 0
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            if cfg.balance_router and load_sum is not None:
                mean_load = D.all_reduce_mean(
                    load_sum / cfg.grad_accum, info
                )  # same bias update on every rank
                raw_model.update_router_bias(mean_load)

            dt = time.perf_counter() - t0
            result.losses.append(step_loss)
            result.steps_done = step + 1
            telemetry.log(
                {
                    "step": step,
                    "loss": step_loss,
                    "lr": step_lr,
                    "grad_norm": grad_norm,
                    "n_loops": n_loops,
                    **depth_histogram(depths),
                    "max_A": _max_A(raw_model),
                    "hidden_norms": [float(x) for x in aux.hidden_norms.detach().float().cpu()]
                    if aux is not None
                    else [],
                    "mean_depth": float(aux.mean_depth) if aux is not None else float("nan"),
                    "expert_load": [float(x) for x in (load_sum / cfg.grad_accum).cpu()]
                    if load_sum is not None
                    else [],
                    "tokens_per_s": tokens_per_step / dt if dt > 0 else 0.0,
                    "step_s": dt,
                }
            )
            stopping = D.any_rank(stop.requested, info)
            if (step + 1) % cfg.ckpt_every == 0 or step + 1 == end_step or stopping:
                path = save(step + 1)
                if path is not None:
                    last_ckpt = path
            if stopping:
                telemetry.write(f"step {step + 1}: stopped by signal {stop.signal}; checkpoint {last_ckpt}")
                raise TrainingInterrupted(stop.signal or 2, step + 1, last_ckpt)
    finally:
        stop.__exit__()
        telemetry.close()
    if info.enabled:  # leave together: rank 0 may still be writing the last checkpoint when the others finish
        torch.distributed.barrier()
    result.last_checkpoint = last_ckpt
    result.wall_s = time.perf_counter() - t_start
    return result
