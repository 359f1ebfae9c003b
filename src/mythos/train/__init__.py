"""Training at any scale, and the synthetic multi-hop tasks behind ``mythos demo``.

Library API (mirrors the CLI)::

    from mythos.train import TrainConfig, train, make_task, accuracy_grid
    result = train(TrainConfig(task="carry", steps=600, loops="2:8", grad_loops=3, out="runs/carry"))

Heavy modules (torch) load on first use, so importing the package stays cheap.
"""

from __future__ import annotations

from typing import Any

from .config import TrainConfig, TrainConfigError
from .tasks import TASKS, CarryChain, GraphWalk, VariableBinding, make_task

_LAZY = {
    "train": ("trainer", "train"),
    "TrainResult": ("trainer", "TrainResult"),
    "NonFiniteLoss": ("trainer", "NonFiniteLoss"),
    "accuracy_grid": ("evaluate", "accuracy_grid"),
    "grid_for_checkpoint": ("evaluate", "grid_for_checkpoint"),
    "plot_run": ("plot", "plot_run"),
}

__all__ = [
    "TASKS",
    "CarryChain",
    "GraphWalk",
    "TrainConfig",
    "TrainConfigError",
    "VariableBinding",
    "make_task",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'mythos.train' has no attribute {name!r}")
