"""The tiny training run the train tests share: one model, one task, as flags and as a TrainConfig."""

import json
import socket
import sys
from pathlib import Path

from mythos.train.config import TrainConfig

TINY = [
    "--model",
    "tiny",
    "--set",
    "dim=32",
    "--set",
    "act=false",
    "--task",
    "binding",
    "--task-option",
    "n_statements=6",
    "--task-option",
    "n_names=12",
    "--train-hops",
    "3",
    "--batch-size",
    "4",
    "--loops",
    "1:3",
    "--seed",
    "3",
    "--no-progress",
]


def tiny_config(out: Path, **changes) -> TrainConfig:
    """The run ``TINY`` describes, 6 steps with a checkpoint every 3; ``changes`` override fields."""
    base = dict(
        out=str(out),
        model="tiny",
        model_overrides={"dim": 32, "act": False},
        task="binding",
        task_options={"n_statements": 6, "n_names": 12},
        train_hops=3,
        batch_size=4,
        loops="1:3",
        steps=6,
        warmup=2,
        lr=3e-3,
        ckpt_every=3,
        seed=3,
        progress=False,
    )
    base.update(changes)
    return TrainConfig(**base)


# The same run for torchrun tests: 4 steps, the batch size is the caller's (global batch = ranks x batch).
_BATCH = TINY.index("--batch-size")
DISTRIBUTED = [*TINY[:_BATCH], *TINY[_BATCH + 2 :], "--steps", "4", "--warmup", "1", "--lr", "3e-3"]


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for torchrun's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(module: str, *args: str, nproc: int = 2) -> list[str]:
    """The command that runs ``python -m module args`` on ``nproc`` local ranks (a fresh rendezvous port)."""
    head = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
    return [*head, "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", module, *args]


def one_process_losses(out: Path, env: dict | None = None) -> list[float]:
    """The reference the distributed tests match: ``DISTRIBUTED`` in one process at the global batch (8)."""
    import os
    import subprocess

    cmd = [sys.executable, "-m", "mythos", "train", "--out", str(out), *DISTRIBUTED, "--batch-size", "8"]
    env = env if env is not None else {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, capture_output=True, timeout=300, env=env)
    return losses(out)


def losses(run: Path) -> list[float]:
    """The per-step losses a run logged."""
    return [json.loads(line)["loss"] for line in (run / "telemetry.jsonl").read_text().splitlines()]
