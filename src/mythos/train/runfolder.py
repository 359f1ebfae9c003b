"""A run folder is one run: checks made before anything in it is written, and a clean way to stop a run.

Re-running ``mythos train --out RUN`` resumes RUN. That is only honest when the command describes the run that
is already there: a different model or data would silently continue the old model on the old shards, so it is
refused (:class:`RunMismatch`, exit 2). Optimisation settings may change on resume only when asked
(``allow_changes``) and are then announced; ``train_config.json`` is written only after these checks, so it
always says what runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

from mythos.fsutil import atomic_write

from .config import TrainConfig, TrainConfigError

# What the run *is*: the checkpoint's architecture and the shards it was trained on. Never changed on resume.
IDENTITY_FIELDS = (
    "model",
    "model_overrides",
    "data",
    "shards",
    "tokenizer",
    "vocab_size",
    "text_field",
    "max_documents",
    "task",
    "task_options",
)
# How it is optimised and sampled: changing one mid-run changes what the rest of the run means.
SCHEDULE_FIELDS = (
    "seq_len",
    "batch_size",
    "grad_accum",
    "lr",
    "min_lr_ratio",
    "warmup",
    "weight_decay",
    "beta1",
    "beta2",
    "grad_clip",
    "loops",
    "grad_loops",
    "checkpoint_loops",
    "ponder_weight",
    "balance_router",
    "train_hops",
    "seed",
    "precision",
)
# Everything else (out, steps, device, parallel, compile, ckpt_every, keep_checkpoints, max_bad_steps, progress,
# tensorboard) may differ freely: extending --steps or checkpointing more often is an ordinary resume.


class RunMismatch(TrainConfigError):
    """The command line describes a different run than the one in the run folder."""

    def __init__(self, message: str) -> None:
        ValueError.__init__(self, message)
        self.field = "out"


PATH_FIELDS = ("data", "shards", "tokenizer")


def _same(name: str, a: Any, b: Any) -> bool:
    """Equal settings; paths compare by where they point (``corpus/`` and ``./corpus`` are the same data)."""
    if a == b:
        return True
    if name in PATH_FIELDS and isinstance(a, str) and isinstance(b, str) and not a.startswith("hf:"):
        return os.path.realpath(a) == os.path.realpath(b)
    return False


def _differences(old: dict[str, Any], new: dict[str, Any], names: tuple[str, ...]) -> list[str]:
    return [
        f"{n}: {old.get(n)!r} -> {new.get(n)!r}"
        for n in names
        if n in old and not _same(n, old[n], new.get(n))
    ]


def previous_config(run_dir: Path, checkpoint: Path | None) -> dict[str, Any] | None:
    """What ran: the newest checkpoint's train_config.json, else the run folder's (a run that never checkpointed)."""
    for path in ([checkpoint / "train_config.json"] if checkpoint is not None else []) + [
        run_dir / "train_config.json"
    ]:
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(data, dict):
                return data
    return None


def _saved_world(checkpoint: Path | None) -> int | None:
    """The world size that wrote a sharded checkpoint (its ``train_state.json``); None for other checkpoints."""
    try:
        return int(json.loads((checkpoint / "train_state.json").read_text(encoding="utf-8"))["world_size"])
    except (TypeError, OSError, ValueError, KeyError):
        return None


def check_resume(
    cfg: TrainConfig, checkpoint: Path | None, allow_changes: bool = False, world: int = 1
) -> list[str]:
    """Compare the command with the run already in ``cfg.out``; returns announcements, raises RunMismatch.

    With a checkpoint, every identity field must match and schedule fields may change only with
    ``allow_changes``. Without one, only data fields matter, and only when the run's own shard folder was
    already built from the old data (otherwise nothing of the old run would be reused). A sharded checkpoint
    records how many ranks wrote it: a per-rank ``batch_size`` that keeps the global batch on ``world`` ranks
    is the same schedule.
    """
    run_dir = Path(cfg.out)
    old = previous_config(run_dir, checkpoint)
    if old is None:
        return []
    new = cfg.to_dict()
    saved_world = _saved_world(checkpoint)
    regrid = []
    old_batch = old.get("batch_size")
    if (
        saved_world
        and old_batch != cfg.batch_size
        and (old_batch or 0) * saved_world == cfg.batch_size * world
    ):
        regrid = [
            f"batch_size {old_batch} x {saved_world} ranks -> {cfg.batch_size} x {world}: the same global batch"
        ]
        old = {**old, "batch_size": cfg.batch_size}
    fix = f"start a new run folder (--out), or delete {run_dir} to start over"
    if checkpoint is None:
        shards = run_dir / "shards"
        built = cfg.shards is None and any((shards / n).is_file() for n in ("index.json", "tokenizer.json"))
        if not built:
            return []
        data_diff = _differences(
            old, new, ("data", "tokenizer", "vocab_size", "text_field", "max_documents", "task")
        )
        if data_diff:
            raise RunMismatch(
                f"{run_dir} already holds a tokenizer or shards built from different data ({'; '.join(data_diff)}); "
                f"they would be reused as they are: {fix}"
            )
        return []
    identity = _differences(old, new, IDENTITY_FIELDS)
    if identity:
        raise RunMismatch(
            f"{run_dir} holds a run of a different model or data ({'; '.join(identity)}); resuming would "
            f"continue the old model on the old data from {checkpoint.name}: {fix}"
        )
    schedule = _differences(old, new, tuple(n for n in SCHEDULE_FIELDS if not (cfg.task and n == "seq_len")))
    if schedule and not allow_changes:
        raise RunMismatch(
            f"resuming {run_dir} from {checkpoint.name} with changed settings ({'; '.join(schedule)}): pass "
            f"--allow-changes to apply them from here on, or repeat the original values"
        )
    try:
        max_seq_len = int(json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))["max_seq_len"])
    except (OSError, ValueError, KeyError, TypeError):
        max_seq_len = None
    if cfg.task is None and max_seq_len is not None and cfg.seq_len > max_seq_len:
        raise RunMismatch(
            f"--seq-len {cfg.seq_len} exceeds the model's max_seq_len {max_seq_len} in {checkpoint.name}: "
            f"the architecture of a run cannot change on resume; {fix}"
        )
    notes = regrid + [f"changed on resume from {checkpoint.name}: {d}" for d in schedule]
    steps = _differences(old, new, ("steps",))
    notes += [
        f"steps changed on resume ({d}): the learning-rate schedule follows the new total" for d in steps
    ]
    return notes


def write_run_config(run_dir: Path, cfg: TrainConfig) -> None:
    """Write ``train_config.json`` atomically (temp + rename): a kill never leaves half a config."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / "train_config.json", cfg.to_json())


def check_environment(cfg: TrainConfig) -> None:
    """Options the machine cannot honour, refused before any work (exit 2), not a traceback halfway in."""
    import torch

    try:
        device = torch.device(cfg.device if cfg.device != "auto" else "cpu")
    except RuntimeError as exc:
        raise TrainConfigError("device", cfg.device, f"must be auto, cpu, cuda or cuda:N ({exc})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainConfigError(
                "device", cfg.device, "CUDA is not available on this machine (use --device cpu or auto)"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise TrainConfigError(
                "device", cfg.device, f"this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise TrainConfigError("device", cfg.device, "MPS is not available on this machine")
    if cfg.parallel in ("ddp", "fsdp") and "WORLD_SIZE" not in os.environ:
        raise TrainConfigError(
            "parallel",
            cfg.parallel,
            f"{cfg.parallel} needs several processes: launch with `torchrun --nproc-per-node N -m mythos train "
            f"... --parallel {cfg.parallel}`, or use --parallel none for one process",
        )
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if cfg.expert_parallel > 1 and world % cfg.expert_parallel:
        raise TrainConfigError(
            "expert_parallel",
            cfg.expert_parallel,
            f"must divide the number of ranks ({world}): the ranks form a (data-parallel, expert-parallel) grid",
        )


def clean_stale_temps(run_dir: Path) -> list[Path]:
    """Remove the temp folders of checkpoint writes a killed process left behind; returns what was removed.

    Called at start-up, before this process writes any checkpoint, so no live write is touched (one run folder,
    one training job: a second job on the same folder would be a mistake anyway).
    """
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    stale = sorted(p for p in root.iterdir() if p.name.startswith("."))  # every temp name starts with "."
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return stale


class StopRequest:
    """Turns the first Ctrl-C (SIGINT) or SIGTERM into a request the training loop honours between steps.

    The loop finishes the step it is in, checkpoints, and stops: nothing is lost and no optimizer update is
    cut in half. A second Ctrl-C raises KeyboardInterrupt at once. Outside the main thread it does nothing.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


class TrainingInterrupted(Exception):
    """The run stopped on Ctrl-C / SIGTERM after checkpointing; the CLI exits 130 (143 for SIGTERM)."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None) -> None:
        name = signal.Signals(signum).name
        super().__init__(
            f"interrupted ({name}) after step {step}; checkpoint {checkpoint} (run the same command to resume)"
        )
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
