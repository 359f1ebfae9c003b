"""Training checkpoints: model files the model wing can load, plus everything needed to resume exactly.

A checkpoint is a folder ``checkpoints/step_XXXXXXXX`` holding ``model.safetensors`` + ``config.json`` (written
by ``mythos.model.save_checkpoint``, so ``load_checkpoint`` and ``mythos eval`` read it directly),
``train_config.json`` and ``train_state.pt`` (optimizer, scheduler, grad scaler, RNG states, step = data
position). It is built in a temporary folder and renamed into place, then ``checkpoints/latest`` is replaced
atomically, so a run killed at any instant leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mythos.model.locate import LATEST_POINTER, checkpoint_problem, find_checkpoint

STATE_FILE = "train_state.pt"
LATEST = LATEST_POINTER
FORMAT_VERSION = 1


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())


def _write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def write_checkpoint(
    run_dir: str | Path,
    step: int,
    model_cpu: torch.nn.Module,
    train_state: dict[str, Any],
    train_config_json: str,
    keep: int = 2,
    tokenizer_path: str | Path | None = None,
) -> Path:
    """Write checkpoint ``step`` (the number of completed steps) atomically; prune all but the newest ``keep``.

    A text model's ``tokenizer.json`` is copied in, so the checkpoint alone is enough to generate or serve.
    """
    from mythos.model.checkpoint import save_checkpoint

    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp-{final.name}-"))
    try:
        save_checkpoint(model_cpu, tmp)
        torch.save({"format": FORMAT_VERSION, "step": step, **train_state}, tmp / STATE_FILE)
        (tmp / "train_config.json").write_text(train_config_json, encoding="utf-8")
        if tokenizer_path is not None:
            shutil.copyfile(tokenizer_path, tmp / "tokenizer.json")
        _fsync_tree(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_text_atomic(root / LATEST, final.name + "\n")
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (half-written temp folders are ignored)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step_*") if (p / STATE_FILE).exists())


def _candidates(run_dir: str | Path) -> list[Path]:
    """Checkpoints to resume from, best first: what ``latest`` names, then the others newest first."""
    found = list_checkpoints(run_dir)
    pointer = Path(run_dir) / "checkpoints" / LATEST
    if pointer.exists():
        named = pointer.parent / pointer.read_text().strip()
        if named in found:
            found.remove(named)
            found.append(named)
    return found[::-1]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint named by ``latest``, else the newest complete one, else None (no integrity check)."""
    found = _candidates(run_dir)
    return found[0] if found else None


def load_latest(run_dir: str | Path, log=print) -> tuple[Path | None, dict[str, Any] | None]:
    """(checkpoint, its train state) to resume from: the newest *intact* checkpoint.

    A damaged one (truncated weights, an unreadable train_state.pt: a disk filled up, a copy cut short) is
    skipped with a warning through ``log`` and the previous one is used, so a run never dies on, or silently
    starts over because of, one bad file.
    """
    for ckpt in _candidates(run_dir):
        problem = checkpoint_problem(ckpt)
        if problem is None:
            try:
                return ckpt, read_train_state(ckpt)
            except Exception as exc:  # noqa: BLE001 - torch.load raises many types for a cut-short file
                problem = f"{STATE_FILE} cannot be read ({type(exc).__name__}: {str(exc)[:120]})"
        log(f"warning: skipping damaged checkpoint {ckpt}: {problem}; falling back to an earlier one")
    return None, None


def resolve_checkpoint(path: str | Path) -> Path:
    """Accept a checkpoint folder, a run folder (-> its latest checkpoint) or a bare model folder."""
    return find_checkpoint(path)


def read_train_state(ckpt: str | Path) -> dict[str, Any]:
    # Our own file, written by write_checkpoint: it holds numpy/python RNG states, which need full unpickling.
    return torch.load(Path(ckpt) / STATE_FILE, map_location="cpu", weights_only=False)
