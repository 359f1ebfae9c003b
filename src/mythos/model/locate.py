"""Where a model's files are: a checkpoint directory, or a training run folder's newest checkpoint.

Torch-free on purpose, so `mythos model info` can find a config without loading torch. The run layout is the one
`mythos train` writes (``RUN/checkpoints/step_XXXXXXXX/`` plus a ``latest`` pointer); the train wing imports these
names from here rather than the other way round (``train`` depends on ``model``).
"""

from __future__ import annotations

import os
from pathlib import Path

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
RUN_CHECKPOINTS = "checkpoints"
LATEST_POINTER = "latest"
STEP_PREFIX = "step_"


def is_model_dir(path: Path) -> bool:
    return (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file()


def find_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint directory as is; a run folder -> the checkpoint ``latest`` names, else its newest complete one."""
    path = Path(path)
    if is_model_dir(path):
        return path
    root = path / RUN_CHECKPOINTS
    pointer = root / LATEST_POINTER
    if pointer.is_file():
        named = root / pointer.read_text().strip()
        if is_model_dir(named):
            return named
    found = sorted(p for p in root.glob(f"{STEP_PREFIX}*") if is_model_dir(p)) if root.is_dir() else []
    if not found:
        raise FileNotFoundError(
            f"{path} is neither a checkpoint ({CONFIG_NAME} + {WEIGHTS_NAME}) nor a training run with one "
            f"under {RUN_CHECKPOINTS}/"
        )
    return found[-1]
