"""Meta-device initialisation: build the model without storage, shard it, then give each rank only its shards.

``--meta-init`` (with ``--parallel fsdp``): every rank builds ``Mythos`` on the meta device, expert parallelism
and FSDP2 shard it, ``to_empty`` allocates the local shards, and ``Mythos.init_weights`` (the one
implementation of the initial values, which the constructor also calls) fills them. No rank ever holds the
whole model.

A sharded parameter's random initialiser (``normal_``, ``uniform_``) is run by :class:`ShardedInit`:

- up to ``EXACT_LIMIT`` elements, on a full-size CPU tensor drawn from the (seeded, identical on every rank)
  generator in the single-process order; the rank keeps its shard. The values are exactly one process's, on
  any mesh, at the cost of that one parameter held whole, briefly.
- above it, on the local shard only, from a generator seeded by one draw of the global generator and the
  shard's coordinates on the mesh dimensions the parameter is split over (replicas draw alike). Same
  distribution, other values than one process's, and they depend on the mesh (as torchtitan's do). In this
  model one tensor, the stacked experts, holds ~60% of the parameters (10b preset: 5.9 of 10.0 B), so drawing
  it whole would cost a rank more than the model's share it was meant to spare.

DTensor's own random ops are not used: on a CPU mesh every shard draws the same numbers (measured: the two
halves of an FSDP2-sharded weight came out equal).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

EXACT_LIMIT = 1 << 24
"""Largest parameter (elements) initialised whole then cut, so exactly as one process does: 64 MB in fp32."""

RANDOM_INITS = frozenset({"normal_", "uniform_"})  # nn.init's and Tensor's; they overwrite without reading
_MIX = 0x9E3779B97F4A7C15  # odd 64-bit constant: spreads the shard index over the seed's bits


class ShardedInit(TorchFunctionMode):
    """Runs each random initialiser of a DTensor so that shards draw different numbers and replicas the same
    (see the module docstring); deterministic ones (``fill_``, ``zero_``, ``constant_``) DTensor runs itself."""

    def __init__(self, exact_limit: int = EXACT_LIMIT) -> None:
        super().__init__()
        self.exact_limit = exact_limit

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        from torch.distributed.tensor import DTensor, distribute_tensor

        kwargs = kwargs or {}
        target = args[0] if args else kwargs.get("tensor")  # nn.init passes its tensor by keyword
        if not isinstance(target, DTensor) or getattr(func, "__name__", "") not in RANDOM_INITS:
            return func(*args, **kwargs)
        # the mode is off inside its own handler: these are plain CPU draws
        if target.numel() <= self.exact_limit:
            full = _run_on(func, args, kwargs, torch.empty(target.shape, dtype=target.dtype))
            # src_data_rank=None: every rank cuts its shard from its own (identical) copy, no communication
            shard = distribute_tensor(full, target.device_mesh, target.placements, src_data_rank=None)
            target.to_local().copy_(shard.to_local())
            return target
        seed = int(torch.randint(0, 1 << 62, (1,)))  # the same draw on every rank: all make the same calls
        coords = target.device_mesh.get_coordinate() or []
        index = 0
        for coord, size, placement in zip(coords, target.device_mesh.shape, target.placements, strict=True):
            index = index * size + (coord if placement.is_shard() else 0)
        generator = torch.Generator().manual_seed((seed ^ (index * _MIX)) % (1 << 63))
        local = target.to_local()
        drawn = _run_on(func, args, {**kwargs, "generator": generator}, torch.empty_like(local, device="cpu"))
        local.copy_(drawn)
        return target


def _run_on(func: Any, args: tuple, kwargs: dict, tensor: torch.Tensor) -> torch.Tensor:
    """``func`` called with ``tensor`` in place of the tensor it was given (first argument or ``tensor=``)."""
    if args:
        func(tensor, *args[1:], **kwargs)
    else:
        func(**{**kwargs, "tensor": tensor})
    return tensor


def build_on_meta(cfg: Any) -> nn.Module:
    """``Mythos(cfg)`` with no storage (and no random draws): shard it, then :func:`materialize` it."""
    from mythos.model import Mythos

    with torch.device("meta"):
        return Mythos(cfg)


def materialize(model: nn.Module, device: torch.device, exact_limit: int = EXACT_LIMIT) -> nn.Module:
    """Allocate ``model``'s (local shards of) parameters and buffers on ``device`` and initialise them in place
    (call after sharding, with every rank's generator seeded alike): one process's values for parameters up to
    ``exact_limit`` elements, the same distribution for larger ones (see :class:`ShardedInit`)."""
    model.to_empty(device=device)
    model.tie_weights()  # a no-op where FSDP2 kept the tied pair one parameter; needed for an unsharded model
    with ShardedInit(exact_limit):
        model.init_weights()
    return model
