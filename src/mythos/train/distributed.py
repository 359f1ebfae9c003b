"""Scale-out applied from outside the model: process groups, DDP or FSDP2 wrapping, state gathering.

The model stays a plain ``nn.Module``; this module decides how it is replicated or sharded. Loop counts are
never data-dependent in training (the sampler is a pure function of seed and step), so every rank runs the
same number of collective-bearing loop iterations and FSDP cannot deadlock on a rank that halted early.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

MIXED_PRECISION = ("none", "bf16")


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup(device_pref: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (WORLD_SIZE > 1), else run as a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_pref == "auto":
        device_pref = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(f"cuda:{local_rank}" if device_pref == "cuda" else device_pref)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank, device)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(
    model: nn.Module, mode: str, info: DistInfo, mixed_precision: str = "none", expert_parallel: int = 1
) -> nn.Module:
    """Return the module to train: the model itself, a DDP wrapper, or the model sharded in place by FSDP2.

    ``mixed_precision="bf16"`` (FSDP2 only): bf16 parameters and compute, fp32 gradient reduction.
    """
    if mode == "auto":
        mode = "ddp" if info.enabled else "none"
    if mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, got {mixed_precision!r}")
    if mixed_precision != "none" and (mode != "fsdp" or not info.enabled):
        raise ValueError(
            f"--mixed-precision {mixed_precision} needs --parallel fsdp under torchrun (got --parallel {mode}, "
            f"{info.world} process(es)); for one process use --precision"
        )
    if expert_parallel > 1 and (mode != "fsdp" or info.world % expert_parallel):
        raise ValueError(
            f"--expert-parallel {expert_parallel} needs --parallel fsdp and must divide the number of ranks "
            f"({info.world}): the ranks form a (data-parallel, expert-parallel) grid"
        )
    if mode == "none" or not info.enabled:
        return model
    # ACT's early exit is data-dependent: ranks would run different loop counts and FSDP/DDP collectives would
    # deadlock. With several ranks every rank runs all the loops it was asked for (outputs are unchanged).
    # Only the loop's own copy changes: the model's config (saved into every checkpoint) keeps the user's choice.
    cfg = getattr(model, "cfg", None)
    loop = getattr(model, "recurrent", None)
    if loop is not None and getattr(loop.cfg, "act_early_exit", False):
        loop.cfg = loop.cfg.replace(act_early_exit=False)
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [info.device.index] if info.device.type == "cuda" else None
        # With ACT off the halting head gets no gradient, so DDP must look for unused parameters (else it hangs).
        find_unused = cfg is None or not getattr(cfg, "act", True)
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)
    if mode == "fsdp":
        from .parallel import shard_model

        shard_model(model, mixed_precision=mixed_precision, expert_parallel=expert_parallel)
        return model
    raise ValueError(f"parallel must be none, ddp or fsdp, got {mode!r}")


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def all_reduce_mean(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= info.world
    return tensor


def clip_grad_norm(parameters, max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` for gradients that may be DTensors on different meshes (FSDP2's
    world mesh and expert parallelism's (dp, ep) mesh): torch stacks per-tensor norms, which needs one mesh,
    so each mesh's norm is reduced to a plain tensor first. Returns the global norm, as torch does."""
    from torch.distributed.tensor import DTensor

    params = [p for p in parameters if p.grad is not None]
    by_mesh: dict = {}
    for p in params:
        by_mesh.setdefault(p.grad.device_mesh if isinstance(p.grad, DTensor) else None, []).append(p.grad)
    if len(by_mesh) <= 1:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    norms = []
    for grads in by_mesh.values():
        norm = torch.nn.utils.get_total_norm(grads)
        norms.append(norm.full_tensor() if isinstance(norm, DTensor) else norm)
    total = torch.linalg.vector_norm(torch.stack(norms))
    coef = max_norm / (float(total) + 1e-6)
    if coef < 1.0:  # (a non-finite norm is the caller's business: the trainer skips that step)
        for grads in by_mesh.values():
            for grad in grads:
                grad.mul_(coef)
    return total


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True if the flag is set on any rank: a NaN on one rank must make every rank skip the step together."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer, info: DistInfo):
    """(model state, optimizer state) as full, unsharded CPU tensors, whatever the wrapping."""
    if not info.enabled:
        return model.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_state_dict(model, optimizer, options=opts)


def load_optimizer_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, optim_state, info: DistInfo
) -> None:
    """Restore optimizer state saved by :func:`full_state` (model weights are loaded before wrapping)."""
    if not info.enabled:
        optimizer.load_state_dict(optim_state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    # strict=False: parameters that never got a gradient (the ACT head with ACT off) have no Adam state to load.
    set_optimizer_state_dict(
        model, optimizer, optim_state, options=StateDictOptions(full_state_dict=True, strict=False)
    )
