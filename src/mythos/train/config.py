"""`TrainConfig`: everything a training run needs, validated up front and stored in every checkpoint."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PARALLEL = ("auto", "none", "ddp", "fsdp")
# The depth recipe on text (docs/train.md, "Depth on text"): random depth drawn per step, ACT off, full
# backprop: no overthinking past the training depth, unlike a fixed depth. Tasks keep a fixed depth.
TEXT_LOOPS = "1:6"
TASK_LOOPS = "4"


class TrainConfigError(ValueError):
    """An invalid training option; the message names the field, the value and what would be valid."""

    def __init__(self, name: str, value: Any, valid: str) -> None:
        super().__init__(f"TrainConfig.{name}={value!r} is invalid: {valid}")
        self.field = name


def parse_loops(text: str | int) -> tuple[int, int]:
    """``"8"`` -> (8, 8) fixed; ``"2:8"`` -> (2, 8) uniform; ``"plognormal:6:16"`` -> (1, 16) (see sampler)."""
    from .sampler import DepthSampler, DepthSpecError

    try:
        sampler = DepthSampler.parse(text)
    except DepthSpecError as exc:
        raise TrainConfigError("loops", text, str(exc)) from None
    return sampler.low, sampler.high


@dataclass
class TrainConfig:
    """One training run. Either ``task`` (synthetic reasoning) or ``data``/``shards`` (text) supplies batches."""

    out: str = "runs/train"
    # --- model ---
    model: str = "tiny"  # preset name
    model_overrides: dict[str, Any] = field(default_factory=dict)
    # --- data: text ---
    data: str | None = None  # file, folder, .jsonl, .parquet, or hf:NAME[:CONFIG[:SPLIT]]
    shards: str | None = None  # token shard folder (built from `data` if missing)
    tokenizer: str | None = None  # tokenizer.json to use; trained from `data` when absent
    vocab_size: int = 4096  # for a freshly trained tokenizer
    text_field: str = "text"
    max_documents: int | None = None
    heldout: float = 0.05  # fraction of whole documents/files set aside at data preparation (mythos eval)
    seq_len: int = 128
    # --- data: synthetic task ---
    task: str | None = None  # binding | graph | carry
    task_options: dict[str, Any] = field(default_factory=dict)
    train_hops: int = 6  # deepest chain seen in training
    # --- optimisation ---
    batch_size: int = 8  # per process, per micro-step
    grad_accum: int = 1
    steps: int = 200
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup: int = 20
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    # --- recurrence ---
    loops: str | None = None  # N, MIN:MAX or plognormal:MEAN[:MAX]; None: TEXT_LOOPS on text, else TASK_LOOPS
    depth_per: str | None = None  # "sequence" or "step"; None: per step (measured best, docs/train.md)
    grad_loops: int | None = None  # backprop through only the last k loops
    checkpoint_loops: bool = False
    ponder_weight: float | None = None  # weight of aux.ponder_cost; None: the model config's ponder_weight
    balance_router: bool = True
    # --- systems ---
    precision: str = "auto"
    parallel: str = "auto"
    mixed_precision: str = "none"  # FSDP2 MixedPrecisionPolicy: "bf16" = bf16 params/compute, fp32 reduce
    sharded_checkpoints: bool = False  # FSDP2: each rank writes its shards (torch.distributed.checkpoint)
    expert_parallel: int = 1  # >1: experts split over groups of that many ranks (all-to-all); divides world
    compile: bool = False  # torch.compile the training forward (train/compile.py): one graph per loop count
    device: str = "auto"
    seed: int = 0
    ckpt_every: int = 100
    keep_checkpoints: int = 2
    max_bad_steps: int = 3  # consecutive NaN/Inf steps tolerated (skipped) before the run stops
    progress: bool = True
    tensorboard: bool = False

    def __post_init__(self) -> None:
        if self.loops is None:
            self.loops = TASK_LOOPS if self.task is not None else TEXT_LOOPS
        self.validate()

    def validate(self) -> None:
        positive = [
            "seq_len",
            "batch_size",
            "grad_accum",
            "steps",
            "ckpt_every",
            "keep_checkpoints",
            "vocab_size",
        ]
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TrainConfigError(name, value, "must be an integer >= 1")
        for name in ("warmup", "max_bad_steps", "train_hops"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise TrainConfigError(name, value, "must be an integer >= 0")
        for name in ("lr", "weight_decay", "grad_clip", "ponder_weight", "min_lr_ratio"):
            value = getattr(self, name)
            if name == "ponder_weight" and value is None:
                continue
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise TrainConfigError(name, value, "must be a finite number >= 0")
        if self.min_lr_ratio > 1:
            raise TrainConfigError("min_lr_ratio", self.min_lr_ratio, "must be in [0, 1]")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise TrainConfigError(name, getattr(self, name), "must be in [0, 1)")
        parse_loops(self.loops)
        if self.depth_per not in (None, "sequence", "step"):
            raise TrainConfigError("depth_per", self.depth_per, "must be 'sequence' or 'step'")
        if not isinstance(self.heldout, int | float) or not 0 <= self.heldout < 1:
            raise TrainConfigError("heldout", self.heldout, "must be a fraction in [0, 1), e.g. 0.05")
        if self.grad_loops is not None and self.grad_loops < 1:
            raise TrainConfigError("grad_loops", self.grad_loops, "must be >= 1 or None (full backprop)")
        if self.precision not in PRECISIONS:
            raise TrainConfigError("precision", self.precision, f"must be one of {PRECISIONS}")
        if self.parallel not in PARALLEL:
            raise TrainConfigError("parallel", self.parallel, f"must be one of {PARALLEL}")
        if self.mixed_precision not in ("none", "bf16"):
            raise TrainConfigError("mixed_precision", self.mixed_precision, "must be 'none' or 'bf16'")
        if isinstance(self.expert_parallel, bool) or not isinstance(self.expert_parallel, int):
            raise TrainConfigError("expert_parallel", self.expert_parallel, "must be an integer >= 1")
        if self.expert_parallel < 1 or (self.expert_parallel > 1 and self.parallel != "fsdp"):
            raise TrainConfigError(
                "expert_parallel", self.expert_parallel, "must be >= 1, and > 1 only with --parallel fsdp"
            )
        if not isinstance(self.compile, bool):
            raise TrainConfigError("compile", self.compile, "must be true or false")
        if self.compile and self.expert_parallel > 1:
            raise TrainConfigError(
                "compile",
                True,
                "not with --expert-parallel: its all-to-all dispatch reads split sizes on the host, a graph "
                "break inside every loop (untested compiled); use one or the other",
            )
        if self.sharded_checkpoints and self.parallel != "fsdp":
            raise TrainConfigError(
                "sharded_checkpoints",
                True,
                "needs --parallel fsdp under torchrun (one process: plain checkpoints)",
            )
        if self.mixed_precision != "none" and self.parallel != "fsdp":
            raise TrainConfigError(
                "mixed_precision",
                self.mixed_precision,
                "needs --parallel fsdp (for one process use --precision)",
            )
        if self.task is None and self.data is None and self.shards is None:
            raise TrainConfigError(
                "data", None, "give a text source (--data), a shard folder (--shards) or --task"
            )
        if self.task is not None:
            from .tasks import TASKS

            if self.task not in TASKS:
                raise TrainConfigError("task", self.task, f"must be one of {sorted(TASKS)}")
        if self.task is not None and (self.data is not None or self.shards is not None):
            raise TrainConfigError("task", self.task, "use either --task or --data/--shards, not both")

    @property
    def loop_range(self) -> tuple[int, int]:
        return parse_loops(self.loops)

    @property
    def depth_mode(self) -> str:
        """Where depth is drawn. Default per step: on text it matched or beat per sequence at fewer FLOPs
        (benchmarks/results/depth_recipe.md: a per-sequence batch runs to its deepest row)."""
        return self.depth_per if self.depth_per is not None else "step"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise TrainConfigError(
                unknown[0], data[unknown[0]], f"is not a TrainConfig field; valid: {sorted(names)}"
            )
        return cls(**data)
