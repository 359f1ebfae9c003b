"""Per-step telemetry: one JSON line per step, a live tqdm bar, and TensorBoard when asked for."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mythos.fsutil import atomic_write

TELEMETRY_FILE = "telemetry.jsonl"


def _clean(value: Any) -> Any:
    """JSON has no NaN/Inf: write them as strings so a bad step is still recorded, not crashed on."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


class Telemetry:
    """Appends records to ``run/telemetry.jsonl`` (flushed every line so a killed run keeps its history)."""

    def __init__(
        self,
        run_dir: str | Path,
        enabled: bool = True,
        progress_total: int | None = None,
        progress: bool = True,
        tensorboard: bool = False,
        initial_step: int = 0,
    ) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / TELEMETRY_FILE
        self._fh = None
        self._bar = None
        self._tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():  # a fresh run (step 0) or a resume: keep only steps the checkpoint contains
            self._truncate_after(initial_step)
        self._fh = self.path.open("a", encoding="utf-8")
        if progress and progress_total:
            from tqdm import tqdm

            self._bar = tqdm(
                total=progress_total, initial=initial_step, desc="train", unit="step", dynamic_ncols=True
            )
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise RuntimeError(
                    "--tensorboard needs the `tensorboard` package: .venv/bin/pip install tensorboard"
                ) from exc
            self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def _truncate_after(self, step: int) -> None:
        """On resume, drop records of steps the checkpoint does not contain, so the history has no duplicates."""
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if record.get("step", 0) < step:
                kept.append(line)
        atomic_write(self.path, "".join(k + "\n" for k in kept))

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        assert self._fh is not None
        self._fh.write(json.dumps({k: _clean(v) for k, v in record.items()}, sort_keys=True) + "\n")
        self._fh.flush()
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(
                loss=f"{record['loss']:.4f}",
                loops=record.get("n_loops"),
                tok_s=f"{record.get('tokens_per_s', 0):.0f}",
                refresh=False,
            )
        if self._tb is not None:
            step = record["step"]
            for key, value in record.items():
                if isinstance(value, int | float) and key != "step" and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)

    def write(self, message: str) -> None:
        """Print a message without breaking the progress bar."""
        if self._bar is not None:
            self._bar.write(message)
        elif self.enabled:
            print(message, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._fh is not None:
            self._fh.close()
        if self._tb is not None:
            self._tb.close()


def read_telemetry(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir)
    if path.is_dir():
        path = path / TELEMETRY_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is this a training run folder?")
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
