"""FSDP2 at the right grain for a looped MoE model, applied from outside the model (as torchtitan does).

Units: every prelude and coda block, the looped block (``model.recurrent``: attention, routed experts, shared
experts, router, LoRA, injection, ACT head), and the root (embedding, tied head, final norm). Each unit is
all-gathered only while it computes. Parameters are sharded on dim 0, so the stacked expert weights
(``n_experts, ...``) are split into contiguous expert groups: rank r stores experts r*E/N..(r+1)*E/N-1.

The looped block runs its inner block ``n_loops`` times per step, but the unit is the whole loop
(``RecurrentBlock.forward`` is called once per step), so FSDP2 gathers it once per forward, whatever the depth,
and with ``reshard_after_forward=False`` keeps it gathered into the backward instead of gathering it again:
one all-gather per step. Finer units inside the loop (attention / experts / shared experts as their own FSDP2
units) would be called once per loop, and FSDP2 then reduce-scatters a unit's gradient after its first
backward use only: measured on 2 gloo ranks, the step-0 gradient norm came out 1.8603 instead of the
single-process 1.8649 (tests/train/test_distributed_fsdp.py guards the gradient, not just the loss).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def mp_policy(mixed_precision: str, root: bool = True) -> Any:
    """The FSDP2 ``MixedPrecisionPolicy``: bf16 parameters and compute with fp32 gradient reduction.

    Only the root casts its inputs: inner units receive bf16 activations anyway, and casting their inputs
    would also turn the fp32 RoPE tables (passed as arguments) into bf16, which complex rotation rejects.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if mixed_precision == "bf16":
        return MixedPrecisionPolicy(
            param_dtype=torch.bfloat16, reduce_dtype=torch.float32, cast_forward_inputs=root
        )
    return MixedPrecisionPolicy()


def shard_model(
    model: nn.Module,
    mixed_precision: str = "none",
    mesh: Any = None,
    reshard_looped: bool = False,
    expert_parallel: int = 1,
) -> nn.Module:
    """Shard ``model`` in place with FSDP2: one unit per prelude/coda block, one for the looped block, the root.

    ``reshard_looped=True`` is FSDP2's default for the looped block (free it after the forward, gather it
    again for the backward); it exists to measure the all-gather that keeping it saves. ``expert_parallel``
    > 1 splits the experts over groups of that many ranks (``parallel_ep``); FSDP2 shards the rest.
    """
    from torch.distributed.fsdp import fully_shard

    ignored = None
    if expert_parallel > 1:
        from .parallel_ep import apply_expert_parallel

        device = next(model.parameters()).device.type
        if device == "meta":  # built on meta, materialised later where FSDP2's default mesh lives
            device = "cuda" if torch.cuda.is_available() else "cpu"
        compute = torch.bfloat16 if mixed_precision == "bf16" else None
        ignored = set(apply_expert_parallel(model, expert_parallel, compute, device))
    policy = mp_policy(mixed_precision, root=False)
    for block in [*model.prelude, *model.coda]:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(
        model.recurrent,
        mesh=mesh,
        mp_policy=policy,
        reshard_after_forward=reshard_looped,
        ignored_params=ignored,
    )
    fully_shard(
        model,
        mesh=mesh,
        mp_policy=mp_policy(mixed_precision),
        reshard_after_forward=False,
        ignored_params=ignored,
    )
    return model


def count_collectives(fn: Callable[[], Any]) -> tuple[Any, Counter]:
    """Run ``fn`` under the profiler: (its result, FSDP2's all-gathers and reduce-scatters counted per kind)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        result = fn()
    counts: Counter = Counter()
    for event in prof.events():
        name = event.name
        if name.startswith("FSDP::all_gather") and "copy_out" not in name:
            counts["all_gather"] += 1
        elif name.startswith("FSDP::post_backward_reduce"):
            counts["reduce_scatter"] += 1
    return result, counts
