"""`MythosConfig`: every architecture hyperparameter, validated once so modules can trust it.

Field names follow the open-mythos reference (so a reference config converts field by field); the fields
after ``dropout`` are ours. An impossible combination raises :class:`ConfigError` naming the field, the value
and what would be valid, at construction time rather than as a shape error deep inside a forward pass.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

ATTN_TYPES = ("gqa", "mla")


class ConfigError(ValueError):
    """An invalid configuration value; the message names field, value and the valid range."""

    def __init__(self, field_name: str, value: Any, valid: str) -> None:
        self.field = field_name
        self.value = value
        self.valid = valid
        super().__init__(f"MythosConfig.{field_name}={value!r} is invalid: {valid}")


@dataclass
class MythosConfig:
    """Architecture of a Recurrent-Depth Transformer: Prelude -> looped block -> Coda -> tied head."""

    # --- core (reference names) ---
    vocab_size: int = 32000
    dim: int = 2048
    n_heads: int = 16
    n_kv_heads: int = 4
    max_seq_len: int = 4096
    max_loop_iters: int = 16
    prelude_layers: int = 2
    coda_layers: int = 2
    attn_type: str = "mla"
    # --- MLA ---
    kv_lora_rank: int = 512
    q_lora_rank: int = 1536
    qk_rope_head_dim: int = 64
    qk_nope_head_dim: int = 128
    v_head_dim: int = 128
    # --- MoE (recurrent block only) ---
    n_experts: int = 64
    n_shared_experts: int = 2
    n_experts_per_tok: int = 4
    expert_dim: int = 512
    # --- ACT / RoPE / LoRA ---
    act_threshold: float = 0.99
    rope_theta: float = 500000.0
    lora_rank: int = 16
    max_output_tokens: int = 4096
    dropout: float = 0.0
    # --- ours ---
    loop_dim: int | None = None  # channels carrying the loop-index embedding; None -> dim // 8
    loop_theta: float = 10000.0  # base frequency of the loop-index sinusoid
    reference_compat: bool = False  # True: reproduce open-mythos semantics exactly (for parity)
    act: bool = True  # ACT halting on/off; off -> the output is the last loop's hidden state
    act_early_exit: bool = True  # stop looping once every position halted (never while a KV cache is live)
    ponder_weight: float = 0.0  # suggested weight of aux.ponder_cost in the training loss
    router_bias_rate: float = 1e-3  # step size of the aux-loss-free router-bias update
    dense_hidden: int | None = None  # hidden width of prelude/coda SwiGLU; None -> dim * 4 // 3
    norm_eps: float = 1e-6
    init_std: float = 0.02
    extra: dict[str, Any] = field(default_factory=dict)  # free-form metadata carried through checkpoints

    def __post_init__(self) -> None:
        if self.loop_dim is None:
            self.loop_dim = self.dim // 8
        if self.dense_hidden is None:
            self.dense_hidden = self.dim * 4 // 3
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ConfigError on the first impossible value (checked in dependency order)."""
        ints = [
            ("vocab_size", 1),
            ("dim", 2),
            ("n_heads", 1),
            ("max_seq_len", 1),
            ("max_loop_iters", 1),
            ("prelude_layers", 0),
            ("coda_layers", 0),
            ("n_experts", 1),
            ("n_shared_experts", 0),
            ("n_experts_per_tok", 1),
            ("expert_dim", 1),
            ("lora_rank", 1),
            ("max_output_tokens", 1),
            ("dense_hidden", 1),
            ("loop_dim", 0),
        ]
        for name, lo in ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ConfigError(name, value, f"must be an integer >= {lo}")
        if self.attn_type not in ATTN_TYPES:
            raise ConfigError("attn_type", self.attn_type, f"must be one of {ATTN_TYPES}")
        if self.dim % self.n_heads:
            raise ConfigError("n_heads", self.n_heads, f"must divide dim={self.dim}")
        if self.attn_type == "gqa":
            if (
                isinstance(self.n_kv_heads, bool)
                or not isinstance(self.n_kv_heads, int)
                or self.n_kv_heads < 1
            ):
                raise ConfigError("n_kv_heads", self.n_kv_heads, "must be an integer >= 1")
            if self.n_heads % self.n_kv_heads:
                raise ConfigError("n_kv_heads", self.n_kv_heads, f"must divide n_heads={self.n_heads}")
            if (self.dim // self.n_heads) % 2:
                raise ConfigError(
                    "n_heads",
                    self.n_heads,
                    f"dim // n_heads = {self.dim // self.n_heads} must be even for RoPE",
                )
        else:
            for name in ("kv_lora_rank", "q_lora_rank", "qk_nope_head_dim", "v_head_dim"):
                value = getattr(self, name)
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ConfigError(name, value, "must be an integer >= 1 for attn_type='mla'")
            rope = self.qk_rope_head_dim
            if isinstance(rope, bool) or not isinstance(rope, int) or rope < 2 or rope % 2:
                raise ConfigError(
                    "qk_rope_head_dim", rope, "must be an even integer >= 2 (RoPE rotates pairs)"
                )
        if self.n_experts_per_tok > self.n_experts:
            raise ConfigError(
                "n_experts_per_tok", self.n_experts_per_tok, f"must be <= n_experts={self.n_experts}"
            )
        if self.loop_dim % 2 or self.loop_dim > self.dim:
            raise ConfigError("loop_dim", self.loop_dim, f"must be even and <= dim={self.dim}")
        floats = [
            ("act_threshold", 0.0, 1.0, "in (0, 1]"),
            ("rope_theta", 0.0, math.inf, "> 0"),
            ("loop_theta", 0.0, math.inf, "> 0"),
            ("norm_eps", 0.0, math.inf, "> 0"),
        ]
        for name, lo, hi, text in floats:
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not (lo < value <= hi):
                raise ConfigError(name, value, f"must be a number {text}")
        for name in ("dropout",):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not (0.0 <= value < 1.0):
                raise ConfigError(name, value, "must be a number in [0, 1)")
        for name in ("ponder_weight", "router_bias_rate", "init_std"):
            value = getattr(self, name)
            if (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or value < 0
                or not math.isfinite(value)
            ):
                raise ConfigError(name, value, "must be a finite number >= 0")
        for name in ("reference_compat", "act", "act_early_exit"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, getattr(self, name), "must be True or False")
        if self.reference_compat and self.loop_dim != self.dim // 8:
            raise ConfigError(
                "loop_dim", self.loop_dim, f"must equal dim // 8 = {self.dim // 8} when reference_compat=True"
            )

    # ------------------------------------------------------------------ derived
    @property
    def head_dim(self) -> int:
        """Per-head width for GQA."""
        return self.dim // self.n_heads

    @property
    def rope_dim(self) -> int:
        """Width of the rotated part of each query/key head."""
        return self.qk_rope_head_dim if self.attn_type == "mla" else self.head_dim

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field (the form stored in a checkpoint's config.json)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MythosConfig:
        """Build from a dict; unknown keys are an error naming them (typos must not pass silently)."""
        if not isinstance(data, dict):
            raise ConfigError("<config>", type(data).__name__, "must be a dict of field -> value")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                unknown[0], data[unknown[0]], f"is not a MythosConfig field; valid: {sorted(names)}"
            )
        return cls(**data)

    def replace(self, **changes: Any) -> MythosConfig:
        """A validated copy with some fields changed; dim-derived defaults follow a new dim."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ConfigError(
                unknown[0], changes[unknown[0]], f"is not a MythosConfig field; valid: {sorted(names)}"
            )
        if "dim" in changes:
            if "loop_dim" not in changes and self.loop_dim == self.dim // 8:
                changes["loop_dim"] = None
            if "dense_hidden" not in changes and self.dense_hidden == self.dim * 4 // 3:
                changes["dense_hidden"] = None
        return dataclasses.replace(self, **changes)
