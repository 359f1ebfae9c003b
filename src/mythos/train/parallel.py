"""FSDP2 at the right grain for a looped MoE model, applied from outside the model (as torchtitan does).

Units: every prelude and coda block; inside the looped block its attention, its routed experts, its shared
experts and the rest (router, norms, LoRA, injection, ACT head); and the root (embedding, tied head, final
norm). Each unit is all-gathered only while it computes, so no rank ever holds the 8.86 B expert parameters of
the ``10b`` preset at once together with everything else.

The looped block is used ``n_loops`` times per step. With the default ``reshard_after_forward=True`` FSDP2
would free its gathered weights after every call and gather them again for the next loop, and again for every
loop's backward: 2 x n_loops all-gathers per unit per step. Its units are therefore sharded with
``reshard_after_forward=False``: gathered once in the step's first loop, kept through the forward and the
backward, and resharded after the backward (``count_collectives`` measures it; see
tests/train/test_distributed_fsdp.py).
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


def looped_units(model: nn.Module) -> list[nn.Module]:
    """The looped block's FSDP units, innermost first (FSDP2 wants children sharded before parents)."""
    block = model.recurrent.block
    units = [block.attn, block.ffn.experts]
    if getattr(block.ffn, "shared", None) is not None:
        units.append(block.ffn.shared)
    return [*units, model.recurrent]


def shard_model(
    model: nn.Module, mixed_precision: str = "none", mesh: Any = None, reshard_looped: bool = False
) -> nn.Module:
    """Shard ``model`` in place with FSDP2, one unit per block and per expert group of the looped block.

    ``reshard_looped=True`` restores FSDP2's default for the looped block (re-gather every loop); it exists to
    measure what keeping the block gathered saves.
    """
    from torch.distributed.fsdp import fully_shard

    policy = mp_policy(mixed_precision, root=False)
    for block in [*model.prelude, *model.coda]:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    units = looped_units(model)
    for unit in units:
        fully_shard(unit, mesh=mesh, mp_policy=policy, reshard_after_forward=reshard_looped)
        if not reshard_looped:
            # the earlier loops' backward still needs the weights after the last loop's backward has run
            unit.set_reshard_after_backward(False)
    fully_shard(model, mesh=mesh, mp_policy=mp_policy(mixed_precision), reshard_after_forward=False)
    if not reshard_looped:
        # Kept gathered through the backward, the looped units must be resharded before the next forward:
        # the optimizer updated the shards, and the next forward's all-gather must bring the new weights.
        def reshard_before_forward(module: nn.Module, args: Any) -> None:
            for unit in units:
                unit.reshard()

        model.register_forward_pre_hook(reshard_before_forward)
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
