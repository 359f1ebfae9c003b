"""Named configurations: the reference's seven variants (1b ... 1t) and small CPU presets.

The reference variants copy open-mythos 0.5.0 ``variants.py`` value for value; the CPU presets are ours.
``small`` is the issue's benchmark configuration, ``small-gqa`` the same with grouped-query attention.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .config import ConfigError, MythosConfig

_MLA_SHARED: dict[str, Any] = dict(attn_type="mla", act_threshold=0.99)


def _variant(**fields: Any) -> Callable[[], MythosConfig]:
    return lambda: MythosConfig(**{**_MLA_SHARED, **fields})


_REFERENCE_VARIANTS: dict[str, Callable[[], MythosConfig]] = {
    "1b": _variant(
        vocab_size=32000,
        dim=2048,
        n_heads=16,
        n_kv_heads=4,
        max_seq_len=4096,
        max_loop_iters=16,
        prelude_layers=2,
        coda_layers=2,
        kv_lora_rank=256,
        q_lora_rank=512,
        qk_rope_head_dim=32,
        qk_nope_head_dim=64,
        v_head_dim=64,
        n_experts=64,
        n_shared_experts=2,
        n_experts_per_tok=4,
        expert_dim=2048,
        rope_theta=500000.0,
        lora_rank=8,
    ),
    "3b": _variant(
        vocab_size=32000,
        dim=3072,
        n_heads=24,
        n_kv_heads=6,
        max_seq_len=4096,
        max_loop_iters=16,
        prelude_layers=2,
        coda_layers=2,
        kv_lora_rank=384,
        q_lora_rank=768,
        qk_rope_head_dim=32,
        qk_nope_head_dim=96,
        v_head_dim=96,
        n_experts=64,
        n_shared_experts=2,
        n_experts_per_tok=4,
        expert_dim=4096,
        rope_theta=500000.0,
        lora_rank=8,
    ),
    "10b": _variant(
        vocab_size=32000,
        dim=4096,
        n_heads=32,
        n_kv_heads=8,
        max_seq_len=8192,
        max_loop_iters=24,
        prelude_layers=2,
        coda_layers=2,
        kv_lora_rank=512,
        q_lora_rank=1024,
        qk_rope_head_dim=64,
        qk_nope_head_dim=128,
        v_head_dim=128,
        n_experts=128,
        n_shared_experts=2,
        n_experts_per_tok=4,
        expert_dim=5632,
        rope_theta=500000.0,
        lora_rank=16,
    ),
    "50b": _variant(
        vocab_size=32000,
        dim=6144,
        n_heads=48,
        n_kv_heads=8,
        max_seq_len=8192,
        max_loop_iters=32,
        prelude_layers=3,
        coda_layers=3,
        kv_lora_rank=512,
        q_lora_rank=1536,
        qk_rope_head_dim=64,
        qk_nope_head_dim=128,
        v_head_dim=128,
        n_experts=256,
        n_shared_experts=4,
        n_experts_per_tok=4,
        expert_dim=9728,
        rope_theta=500000.0,
        lora_rank=32,
    ),
    "100b": _variant(
        vocab_size=32000,
        dim=8192,
        n_heads=64,
        n_kv_heads=8,
        max_seq_len=1000000,
        max_loop_iters=32,
        prelude_layers=4,
        coda_layers=4,
        kv_lora_rank=512,
        q_lora_rank=2048,
        qk_rope_head_dim=64,
        qk_nope_head_dim=128,
        v_head_dim=128,
        n_experts=256,
        n_shared_experts=4,
        n_experts_per_tok=8,
        expert_dim=13568,
        rope_theta=1000000.0,
        lora_rank=64,
        max_output_tokens=131072,
    ),
    "500b": _variant(
        vocab_size=100000,
        dim=12288,
        n_heads=96,
        n_kv_heads=16,
        max_seq_len=1000000,
        max_loop_iters=48,
        prelude_layers=4,
        coda_layers=4,
        kv_lora_rank=1024,
        q_lora_rank=3072,
        qk_rope_head_dim=64,
        qk_nope_head_dim=128,
        v_head_dim=128,
        n_experts=512,
        n_shared_experts=8,
        n_experts_per_tok=8,
        expert_dim=23040,
        rope_theta=1000000.0,
        lora_rank=128,
        max_output_tokens=131072,
    ),
    "1t": _variant(
        vocab_size=100000,
        dim=16384,
        n_heads=128,
        n_kv_heads=16,
        max_seq_len=1000000,
        max_loop_iters=64,
        prelude_layers=6,
        coda_layers=6,
        kv_lora_rank=1024,
        q_lora_rank=4096,
        qk_rope_head_dim=64,
        qk_nope_head_dim=128,
        v_head_dim=128,
        n_experts=512,
        n_shared_experts=8,
        n_experts_per_tok=8,
        expert_dim=34560,
        rope_theta=2000000.0,
        lora_rank=256,
        max_output_tokens=131072,
    ),
}

_SMALL: dict[str, Any] = dict(
    vocab_size=4096,
    dim=256,
    n_heads=8,
    n_kv_heads=2,
    max_seq_len=1024,
    max_loop_iters=4,
    prelude_layers=1,
    coda_layers=1,
    attn_type="mla",
    kv_lora_rank=64,
    q_lora_rank=128,
    qk_rope_head_dim=16,
    qk_nope_head_dim=32,
    v_head_dim=32,
    n_experts=8,
    n_shared_experts=1,
    n_experts_per_tok=2,
    expert_dim=128,
    lora_rank=8,
    act_threshold=0.99,
    rope_theta=500000.0,
    max_output_tokens=1024,
)

_TINY: dict[str, Any] = dict(
    vocab_size=256,
    dim=64,
    n_heads=4,
    n_kv_heads=2,
    max_seq_len=128,
    max_loop_iters=3,
    prelude_layers=1,
    coda_layers=1,
    attn_type="mla",
    kv_lora_rank=16,
    q_lora_rank=32,
    qk_rope_head_dim=8,
    qk_nope_head_dim=8,
    v_head_dim=16,
    n_experts=4,
    n_shared_experts=1,
    n_experts_per_tok=2,
    expert_dim=32,
    lora_rank=4,
    act_threshold=0.99,
    rope_theta=10000.0,
    max_output_tokens=128,
)

PRESETS: dict[str, Callable[[], MythosConfig]] = {
    **_REFERENCE_VARIANTS,
    "tiny": lambda: MythosConfig(**_TINY),
    "tiny-gqa": lambda: MythosConfig(**{**_TINY, "attn_type": "gqa"}),
    "small": lambda: MythosConfig(**_SMALL),
    "small-gqa": lambda: MythosConfig(**{**_SMALL, "attn_type": "gqa"}),
}
"""Preset name -> factory returning a fresh, validated MythosConfig."""

REFERENCE_PRESETS = tuple(_REFERENCE_VARIANTS)


class UnknownPreset(ConfigError):
    """A preset name that does not exist (a preset is not a MythosConfig field, so the message says "preset")."""

    def __init__(self, name: str) -> None:
        ValueError.__init__(self, f"preset {name!r} is unknown: must be one of {sorted(PRESETS)}")
        self.field, self.value, self.valid = "preset", name, f"one of {sorted(PRESETS)}"


def get_preset(name: str, **overrides: Any) -> MythosConfig:
    """A fresh config for a named preset, optionally with fields overridden (validated again)."""
    key = name.lower().removeprefix("mythos-").removeprefix("mythos_")
    if key not in PRESETS:
        raise UnknownPreset(name)
    cfg = PRESETS[key]()
    return cfg.replace(**overrides) if overrides else cfg
