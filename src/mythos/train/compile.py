"""`mythos train --compile`: the training forward through ``torch.compile``, one graph per loop count.

The whole model forward is one graph: the loop is unrolled, and the model has no graph break (the grouped
expert matmul is an op the compiler sees through, routing has static shapes, per-row depths are checked
inside the graph; ``tests/model/test_compile.py`` counts the breaks). AOTAutograd compiles its backward.

The depth changes from step to step, and the graph specialises on it (``dynamic=False``): one graph per
distinct loop count, twice when per-row depths make some steps pass ``row_loops`` and others not. They are
compiled once each, so the recompile limit is raised to that count for calls made through this wrapper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

BACKEND = "inductor"
"""The ``torch.compile`` backend (tests may use a faster one that still traces through dynamo + AOTAutograd)."""


def graphs_needed(max_loops: int) -> int:
    """Graphs a run can compile: one per loop count 1..max_loops, with and without per-row depths."""
    return 2 * max_loops


def compile_forward(model: torch.nn.Module, max_loops: int) -> Callable[..., Any]:
    """``model``'s forward compiled; call it as the model. ``model`` itself stays the module to optimise,
    checkpoint and wrap (a compiled module's state-dict keys gain an ``_orig_mod.`` prefix).

    Compiled after DDP/FSDP2 wrapping. DDP: dynamo splits the graph at DDP's gradient buckets. FSDP2: its
    hooks cannot be traced, so the top-level forward runs eagerly and each unit's forward (every prelude/coda
    block, the looped block as a whole) is compiled as its own graph; the loop body stays one graph (checked
    with ``TORCH_LOGS=graph_breaks`` on 2 gloo ranks: the only break is at FSDP2's first hook).
    """
    compiled = torch.compile(model, backend=BACKEND, dynamic=False)
    limit = max(torch._dynamo.config.recompile_limit, graphs_needed(max_loops))

    def forward(*args: Any, **kwargs: Any) -> Any:
        with torch._dynamo.config.patch(recompile_limit=limit):
            return compiled(*args, **kwargs)

    return forward
