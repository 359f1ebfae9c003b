"""Where a model comes from: the one checkpoint-or-preset resolver every command uses.

A target is a checkpoint directory (``config.json`` + ``model.safetensors``), a training run folder (its
``latest`` checkpoint, or the newest intact one when that is damaged), or a preset name. ``model info``,
``doctor``, ``eval``, ``generate``, ``serve`` and ``convert`` all go through :func:`resolve`, so they say the
same thing for the same mistake: :class:`NotAModel` (bad input, exit 2) or :class:`CheckpointError` (a checkpoint
that exists but cannot be read, also exit 2).

Torch-free on purpose, so `mythos model info` can describe a model without loading torch. The run layout is the
one `mythos train` writes (``RUN/checkpoints/step_XXXXXXXX/`` plus a ``latest`` pointer); the train wing imports
these names from here rather than the other way round (``train`` depends on ``model``).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
RUN_CHECKPOINTS = "checkpoints"
LATEST_POINTER = "latest"
STEP_PREFIX = "step_"
# Fields every checkpoint's config.json must spell out: without them the model's size is invented from defaults.
REQUIRED_CONFIG_FIELDS = ("vocab_size", "dim", "n_heads", "prelude_layers", "coda_layers", "max_loop_iters")


class NotAModel(FileNotFoundError, ValueError):
    """The target is neither a checkpoint (or run folder holding one) nor a preset: bad input."""


class CheckpointError(ValueError):
    """A checkpoint that exists but cannot be used (truncated weights, a broken or incomplete config)."""


class CheckpointFallback(UserWarning):
    """A run folder's newest checkpoint is damaged, so an older intact one is used instead."""


def is_model_dir(path: Path) -> bool:
    return (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file()


def safetensors_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a safetensors file cannot be loaded (truncated, bad header), or None; reads only its header."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"{path.name} is {size} bytes: truncated before its header"
            header_len = int.from_bytes(head, "little")
            if header_len > size - 8:
                return f"{path.name} is truncated: its header claims {header_len} bytes, the file has {size}"
            header = json.loads(fh.read(header_len))
    except OSError as exc:
        return f"{path.name} cannot be read: {exc}"
    except (json.JSONDecodeError, UnicodeDecodeError):
        return f"{path.name} has a corrupt header (not JSON)"
    if not isinstance(header, dict):
        return f"{path.name} has a corrupt header"
    end = max(
        (int(meta["data_offsets"][1]) for k, meta in header.items() if k != "__metadata__"),
        default=0,
    )
    if 8 + header_len + end > size:
        return f"{path.name} is truncated: {size} bytes on disk, its header needs {8 + header_len + end}"
    return None


def checkpoint_problem(path: Path) -> str | None:
    """Why a checkpoint directory is not usable, or None; cheap (config and safetensors header only)."""
    if not is_model_dir(path):
        return f"it lacks {CONFIG_NAME} or {WEIGHTS_NAME}"
    try:
        json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"{CONFIG_NAME} is not valid JSON ({exc})"
    return safetensors_problem(path / WEIGHTS_NAME)


def locate_checkpoint(path: str | os.PathLike[str]) -> tuple[Path, list[str]]:
    """(checkpoint directory, notes): a checkpoint as is; a run folder -> what ``latest`` names, falling back to
    the newest intact checkpoint when that one is damaged (each skipped checkpoint gets a note saying why)."""
    path = Path(path)
    if is_model_dir(path):
        return path, []
    root = path / RUN_CHECKPOINTS
    candidates = sorted(p for p in root.glob(f"{STEP_PREFIX}*") if p.is_dir()) if root.is_dir() else []
    pointer = root / LATEST_POINTER
    if pointer.is_file():
        named = root / pointer.read_text().strip()
        if named in candidates:  # try what `latest` names first, then the others newest first
            candidates.remove(named)
            candidates.append(named)
    notes: list[str] = []
    for candidate in reversed(candidates):
        problem = checkpoint_problem(candidate)
        if problem is None:
            if notes:
                notes.append(f"using {candidate.name} instead")
            return candidate, notes
        if is_model_dir(candidate):  # an empty half-written folder is not worth a note
            notes.append(f"skipping damaged checkpoint {candidate}: {problem}")
    raise NotAModel(
        f"{path} is neither a checkpoint ({CONFIG_NAME} + {WEIGHTS_NAME}) nor a training run with an intact one "
        f"under {RUN_CHECKPOINTS}/" + (f" ({'; '.join(notes)})" if notes else "")
    )


def find_checkpoint(path: str | os.PathLike[str]) -> Path:
    """Like :func:`locate_checkpoint`, with a :class:`CheckpointFallback` warning when it had to fall back."""
    found, notes = locate_checkpoint(path)
    if notes:
        warnings.warn("; ".join(notes), CheckpointFallback, stacklevel=2)
    return found


@dataclass(frozen=True)
class ModelRef:
    """What a command-line target names: a checkpoint directory or a preset (exactly one is set)."""

    target: str
    checkpoint: Path | None = None
    preset: str | None = None
    notes: list[str] = field(default_factory=list)  # e.g. "skipping damaged checkpoint …"

    @property
    def label(self) -> str:
        return str(self.checkpoint) if self.checkpoint is not None else f"preset {self.preset}"


def resolve(target: str | os.PathLike[str]) -> ModelRef:
    """The one checkpoint-or-preset resolver: an existing path must hold a model, anything else is a preset name."""
    from .presets import PRESETS

    text = str(target)
    path = Path(text)
    if path.exists():
        if (
            path.is_file() and path.name == CONFIG_NAME
        ):  # a checkpoint's config.json stands for the checkpoint
            path = path.parent
        if path.is_dir():
            found, notes = locate_checkpoint(path)
            return ModelRef(text, checkpoint=found, notes=notes)
    key = text.lower().removeprefix("mythos-").removeprefix("mythos_")
    if key in PRESETS:
        return ModelRef(text, preset=key)
    what = "an existing path that holds no model" if path.exists() else "no existing path"
    raise NotAModel(
        f"{text!r} is neither a checkpoint (a folder with {CONFIG_NAME} + {WEIGHTS_NAME}, or a training run "
        f"folder) nor a preset ({what}); presets: {', '.join(PRESETS)}"
    )


def read_model_config(checkpoint: str | os.PathLike[str]) -> Any:
    """A checkpoint's validated ``MythosConfig``; a broken, partial or invalid config.json is a CheckpointError."""
    from .config import MythosConfig

    config_path = Path(checkpoint) / CONFIG_NAME
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotAModel(
            f"{config_path} not found: a mythos checkpoint is a directory with {CONFIG_NAME}"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{config_path} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("config"), dict):
        data = data["config"]  # tolerate a wrapped {"config": {...}} layout
    if not isinstance(data, dict):
        raise CheckpointError(f"{config_path} must hold a JSON object of MythosConfig fields")
    missing = [name for name in REQUIRED_CONFIG_FIELDS if name not in data]
    if missing:
        raise CheckpointError(
            f"{config_path} lacks {', '.join(missing)}: a checkpoint's config must spell out the model's shape "
            f"({', '.join(REQUIRED_CONFIG_FIELDS)}); re-save it with mythos.model.save_checkpoint"
        )
    try:
        return MythosConfig.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{config_path}: {exc}") from None


def model_config(ref: ModelRef) -> Any:
    """The config a resolved target describes (read from the checkpoint, or the preset's)."""
    if ref.checkpoint is not None:
        return read_model_config(ref.checkpoint)
    from .presets import get_preset

    return get_preset(ref.preset or "")
