"""Sharded checkpoints with ``torch.distributed.checkpoint`` (DCP): each rank writes only its own shards.

A sharded checkpoint is a directory holding DCP's files (``__0_0.distcp`` ... and ``.metadata``), the model's
``config.json`` and a ``train_state.json`` (step and whatever the caller adds). Tensors are stored by their
fully-qualified names with their global shapes, so a checkpoint written by N ranks loads on M ranks (DCP
reshards on load), or in one process with no process group at all, which is what :func:`to_single_file` uses
to turn a small model's sharded checkpoint into the ordinary ``model.safetensors`` + ``config.json`` form.

Nothing here gathers the full state on one rank: that is what made the old checkpoints impossible at 10B+.
Writes are atomic: DCP writes into a temporary sibling directory that rank 0 renames into place once every
rank has finished.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

STATE_NAME = "train_state.json"
CONFIG_NAME = "config.json"
TRAIN_CONFIG_NAME = "train_config.json"


def _barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_sharded_checkpoint(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / ".metadata").is_file()


def save_sharded(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    config: dict[str, Any],
    train_state: dict[str, Any] | None = None,
    train_config_json: str | None = None,
) -> Path:
    """Every rank calls this; each writes its own shards of the model (and optimizer) state.

    ``train_config_json`` (the run's settings) is kept beside the shards so a resume can be checked against
    what wrote them, as a gathered checkpoint's ``train_config.json`` is."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict

    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    if _rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    if optimizer is not None:
        model_state, optim_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optim": optim_state}
    else:
        state = {"model": get_model_state_dict(model)}
    dcp.save(state, checkpoint_id=str(tmp))
    if _rank() == 0:
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        meta = {"world_size": dist.get_world_size() if dist.is_initialized() else 1, **(train_state or {})}
        (tmp / STATE_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if train_config_json is not None:
            (tmp / TRAIN_CONFIG_NAME).write_text(train_config_json, encoding="utf-8")
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    _barrier()
    return target


def load_sharded(
    path: str | os.PathLike[str], model: nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, Any]:
    """Load a sharded checkpoint into an (already sharded) model and optimizer, whatever the world size that
    wrote it; returns the saved train state."""
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_state_dict,
        set_model_state_dict,
        set_state_dict,
    )

    source = Path(path)
    if not is_sharded_checkpoint(source):
        raise FileNotFoundError(
            f"{source} is not a sharded checkpoint (no .metadata from torch.distributed.checkpoint)"
        )
    if optimizer is not None:
        model_state, optim_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optim": optim_state}
        # partial: parameters that never got a gradient (the ACT head with ACT off) were saved without
        # optimizer state; they keep the fresh (empty) state they have here
        _load_or_explain(state, source, DefaultLoadPlanner(allow_partial_load=True))
        # strict=False: parameters that never got a gradient have no optimizer state to restore
        set_state_dict(
            model,
            optimizer,
            model_state_dict=state["model"],
            optim_state_dict=state["optim"],
            options=StateDictOptions(strict=False),
        )
    else:
        state = {"model": get_model_state_dict(model)}
        _load_or_explain(state, source)
        set_model_state_dict(model, state["model"])
    return json.loads((source / STATE_NAME).read_text(encoding="utf-8"))


def _load_or_explain(state: dict[str, Any], source: Path, planner: Any = None) -> None:
    """``dcp.load``, with a checkpoint that does not fit the model (shapes, names) as a one-line ValueError:
    DCP raises ``CheckpointException``, a BaseException that would escape every caller as a traceback."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException

    try:
        dcp.load(state, checkpoint_id=str(source), planner=planner)
    except (CheckpointException, RuntimeError) as exc:
        failures = getattr(exc, "failures", None)  # rank -> (exception, stack): the rank's own reason
        cause = next(iter(failures.values()))[0] if failures else exc
        text = str(cause) or type(cause).__name__
        first = next((line.strip() for line in text.splitlines() if line.strip()), type(cause).__name__)
        raise ValueError(f"sharded checkpoint {source} does not fit this model: {first[:300]}") from None


def to_single_file(src: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Convert a sharded checkpoint to ``model.safetensors`` + ``config.json`` in one process (small models:
    the whole model is materialised in this process's memory)."""
    import torch.distributed.checkpoint as dcp

    from mythos.model import Mythos
    from mythos.model.checkpoint import read_config, save_checkpoint

    source = Path(src)
    if not is_sharded_checkpoint(source):
        raise FileNotFoundError(
            f"{source} is not a sharded checkpoint (no .metadata from torch.distributed.checkpoint)"
        )
    model = Mythos(read_config(source))
    state = {"model": model.state_dict()}
    with warnings.catch_warnings():  # "no process group: assuming a single process" is exactly the intent
        warnings.filterwarnings("ignore", message=".*assuming the intent is to load in a single process")
        dcp.load(state, checkpoint_id=str(source))
    model.load_state_dict(state["model"])
    model.head.weight = model.embed.weight
    return save_checkpoint(model, out)


SHARDED_DIR = "sharded"


def step_name(step: int) -> str:
    return f"step_{step:08d}"


def list_sharded(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Complete sharded checkpoints of a run (``RUN/sharded/step_N``), oldest first; temp folders ignored."""
    folder = Path(run_dir) / SHARDED_DIR
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.name.startswith("step_") and is_sharded_checkpoint(p)]
    return sorted(found, key=lambda p: p.name)


def latest_sharded(run_dir: str | os.PathLike[str]) -> Path | None:
    found = list_sharded(run_dir)
    return found[-1] if found else None


def save_step(
    run_dir: str | os.PathLike[str],
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: dict[str, Any],
    train_state: dict[str, Any],
    keep: int,
    train_config_json: str | None = None,
) -> Path:
    """Write ``RUN/sharded/step_N`` (every rank its shards) and keep only the newest ``keep`` of them."""
    path = save_sharded(
        Path(run_dir) / SHARDED_DIR / step_name(step),
        model,
        optimizer,
        config,
        {"step": step, **train_state},
        train_config_json,
    )
    if _rank() == 0:
        for old in list_sharded(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return path
