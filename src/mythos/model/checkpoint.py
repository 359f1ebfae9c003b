"""Checkpoints: a directory holding ``model.safetensors`` and ``config.json``, written atomically.

The directory is assembled under a temporary sibling name (files fsync'd), then renamed into place, so a
crash leaves either the old checkpoint or the new one, never a half-written mix. The tied head is stored
once (as ``embed.weight``) and re-tied on load. Tensors keep their dtype, so a save/load round trip is
bit-exact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .config import MythosConfig
from .locate import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    CheckpointError,
    NotAModel,
    read_model_config,
    safetensors_problem,
)
from .model import Mythos

FORMAT = "mythos-checkpoint-v1"
TIED_KEYS = ("head.weight",)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(model: Mythos, path: str | os.PathLike[str]) -> Path:
    """Write ``path/model.safetensors`` + ``path/config.json`` atomically; returns the directory."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k not in TIED_KEYS}
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": FORMAT})
        config_text = json.dumps(model.cfg.to_dict(), indent=2, sort_keys=True) + "\n"
        (tmp / CONFIG_NAME).write_text(config_text, encoding="utf-8")
        for name in (WEIGHTS_NAME, CONFIG_NAME):
            _fsync_path(tmp / name)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.rmdir(old)
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
        _fsync_path(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read_config(path: str | os.PathLike[str]) -> MythosConfig:
    """The validated config of a checkpoint directory (a broken one is a ``CheckpointError`` naming the file)."""
    return read_model_config(path)


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> Mythos:
    """Rebuild the model saved by :func:`save_checkpoint` (in its saved dtype unless ``dtype`` is given).

    A damaged checkpoint (truncated weights, tensors that do not fit the config) is a ``CheckpointError`` that
    names the file and what is wrong, never a traceback from safetensors or ``load_state_dict``.
    """
    directory = Path(path)
    cfg = read_config(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise NotAModel(f"{weights} not found: a mythos checkpoint holds {WEIGHTS_NAME}")
    problem = safetensors_problem(weights)
    if problem is not None:
        raise CheckpointError(f"checkpoint {directory} is damaged: {problem}")
    try:
        state = load_file(str(weights), device=str(map_location))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types; name the file instead
        raise CheckpointError(f"checkpoint {weights} cannot be read: {type(exc).__name__}: {exc}") from None
    if "embed.weight" not in state:
        raise CheckpointError(f"checkpoint {weights} holds no embed.weight: it is not a mythos model")
    saved_dtype = state["embed.weight"].dtype
    with torch.device("meta"):
        model = Mythos(cfg)
    model = model.to_empty(device=map_location).to(saved_dtype)
    model.head.weight = model.embed.weight
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).strip().splitlines()[1:2] or [str(exc)]
        raise CheckpointError(
            f"checkpoint {weights} does not match its {CONFIG_NAME}: {first[0].strip()}"
        ) from None
    missing = [k for k in missing if k not in TIED_KEYS]
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {weights} does not match its config: missing={missing[:5]} unexpected={unexpected[:5]}"
        )
    model.head.weight = model.embed.weight
    return model.to(dtype) if dtype is not None else model
