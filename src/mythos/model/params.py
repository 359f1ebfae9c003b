"""Exact parameter and KV-cache arithmetic from a config alone, so a 1T preset is sized without allocating it.

Three counts answer three different questions:

- ``total``: every trainable parameter (the tied LM head is the embedding, counted once).
- ``active``: parameters one token's forward multiplies with at depth 1 — everything except the routed
  experts it is not sent to and the other loops' LoRA scale rows (top-k routed + shared experts + attention +
  dense blocks + head). ``active == touched(1) == applied(1)``.
- ``touched(T)``: distinct parameters a single token's forward at depth ``T`` can read. Each loop may route
  to different experts, so up to ``min(n_experts, T * top_k)`` routed experts are touched; the per-loop LoRA
  scale table contributes ``min(T, max_loop_iters)`` rows.
- ``applied(T)``: parameter *applications* per token at depth T (the recurrent block counts T times); about
  half the forward FLOPs per token, the number that predicts compute.

The formulas mirror the module layout of :mod:`mythos.model`; ``tests/model/test_params.py`` checks them
against ``sum(p.numel())`` of real small models, component by component.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BYTES_PER_DTYPE = {"float32": 4, "fp32": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2}


def _field(cfg: Any, name: str, default: Any = None) -> Any:
    return getattr(cfg, name, default)


def rmsnorm_params(dim: int) -> int:
    return dim


def swiglu_params(dim: int, hidden: int) -> int:
    """gate + up (dim -> hidden) and down (hidden -> dim), no biases."""
    return 3 * dim * hidden


def dense_ffn_hidden(cfg: Any) -> int:
    """Hidden width of the dense SwiGLU in prelude/coda blocks (the reference's dim * 4 // 3)."""
    return _field(cfg, "dense_hidden", None) or cfg.dim * 4 // 3


def head_dim(cfg: Any) -> int:
    return cfg.dim // cfg.n_heads


def attention_params(cfg: Any) -> int:
    """One attention layer (GQA or MLA), including MLA's internal RMSNorms."""
    dim, heads = cfg.dim, cfg.n_heads
    if cfg.attn_type == "gqa":
        hd = head_dim(cfg)
        q = dim * heads * hd
        kv = 2 * dim * cfg.n_kv_heads * hd
        out = heads * hd * dim
        return q + kv + out
    if cfg.attn_type == "mla":
        rope, nope, v = cfg.qk_rope_head_dim, cfg.qk_nope_head_dim, cfg.v_head_dim
        q_lora, kv_lora = cfg.q_lora_rank, cfg.kv_lora_rank
        q = dim * q_lora + rmsnorm_params(q_lora) + q_lora * heads * (nope + rope)
        kv = dim * (kv_lora + rope) + rmsnorm_params(kv_lora) + kv_lora * heads * (nope + v)
        out = heads * v * dim
        return q + kv + out
    raise ValueError(f"attn_type={cfg.attn_type!r} is not one of 'gqa', 'mla'")


def shared_expert_hidden(cfg: Any) -> int:
    """Each shared expert is as wide as the top-k routed experts together (the reference's sizing)."""
    return cfg.expert_dim * cfg.n_experts_per_tok


def routed_expert_params(cfg: Any) -> int:
    """One routed expert."""
    return swiglu_params(cfg.dim, cfg.expert_dim)


def shared_experts_params(cfg: Any) -> int:
    return cfg.n_shared_experts * swiglu_params(cfg.dim, shared_expert_hidden(cfg))


def router_params(cfg: Any) -> int:
    """The router's weight; its balancing bias is a buffer, not a parameter."""
    return cfg.dim * cfg.n_experts


def dense_block_params(cfg: Any) -> int:
    return 2 * rmsnorm_params(cfg.dim) + attention_params(cfg) + swiglu_params(cfg.dim, dense_ffn_hidden(cfg))


def recurrent_extras(cfg: Any) -> dict[str, int]:
    """The loop's own small parts, keyed by their module name under ``model.recurrent``."""
    dim, rank = cfg.dim, cfg.lora_rank
    return {
        "injection": 2 * dim + 1,  # log_A (dim), log_dt (1), B (dim)
        "act": dim + 1,  # halting Linear(dim, 1) with bias
        "lora": dim * rank + rank * dim + cfg.max_loop_iters * rank,  # down, B, per-loop scale table
        "norm": rmsnorm_params(dim),
        "loop_embedding": 0,  # sinusoidal: no parameters
    }


def component_params(cfg: Any) -> dict[str, int]:
    """Parameter count per component, keyed by module path; values sum to the total."""
    parts: dict[str, int] = {
        "embed (tied head)": cfg.vocab_size * cfg.dim,
        "prelude": cfg.prelude_layers * dense_block_params(cfg),
        "recurrent.block.attn": attention_params(cfg),
        "recurrent.block.norms": 2 * rmsnorm_params(cfg.dim),
        "recurrent.block.ffn.router": router_params(cfg),
        "recurrent.block.ffn.experts": cfg.n_experts * routed_expert_params(cfg),
        "recurrent.block.ffn.shared": shared_experts_params(cfg),
    }
    for name, count in recurrent_extras(cfg).items():
        parts[f"recurrent.{name}"] = count
    parts["coda"] = cfg.coda_layers * dense_block_params(cfg)
    parts["norm"] = rmsnorm_params(cfg.dim)
    return parts


@dataclass(frozen=True)
class ParamCounts:
    """The counts for one config; ``touched``/``applied`` depend on the loop depth asked for."""

    components: dict[str, int]
    total: int
    active: int
    touched: int
    applied: int
    n_loops: int


def count_params(cfg: Any, n_loops: int | None = None) -> ParamCounts:
    """All counts for ``cfg`` at depth ``n_loops`` (default: ``cfg.max_loop_iters``), without allocating."""
    loops = cfg.max_loop_iters if n_loops is None else int(n_loops)
    if loops < 1:
        raise ValueError(f"n_loops={loops} must be >= 1")
    parts = component_params(cfg)
    total = sum(parts.values())
    per_expert = routed_expert_params(cfg)
    inactive_experts = cfg.n_experts - cfg.n_experts_per_tok
    unused_scale_rows = (cfg.max_loop_iters - 1) * cfg.lora_rank  # one loop reads one LoRA scale row
    active = total - inactive_experts * per_expert - unused_scale_rows

    recurrent_total = sum(v for k, v in parts.items() if k.startswith("recurrent."))
    recurrent_active_one_loop = recurrent_total - inactive_experts * per_expert - unused_scale_rows
    outside_loop = active - recurrent_active_one_loop

    touched_experts = min(cfg.n_experts, loops * cfg.n_experts_per_tok)
    touched_scale_rows = min(loops, cfg.max_loop_iters)
    touched = (
        total
        - (cfg.n_experts - touched_experts) * per_expert
        - (cfg.max_loop_iters - touched_scale_rows) * cfg.lora_rank
    )
    applied = outside_loop + loops * recurrent_active_one_loop
    return ParamCounts(
        components=parts, total=total, active=active, touched=touched, applied=applied, n_loops=loops
    )


def buffer_elements(cfg: Any) -> int:
    """Non-parameter tensors a checkpoint stores: the router's balancing bias (RoPE is recomputed)."""
    return cfg.n_experts


def kv_cache_elements_per_layer(cfg: Any, *, reference_layout: bool = False) -> int:
    """Cached elements per token for one attention layer.

    GQA caches K and V for each KV head. MLA caches the compressed latent plus the rope key; ours keeps one
    rope key per token shared by all heads, the reference stores a copy per head (``reference_layout``).
    """
    if cfg.attn_type == "gqa":
        return 2 * cfg.n_kv_heads * head_dim(cfg)
    if cfg.attn_type == "mla":
        rope_copies = cfg.n_heads if reference_layout else 1
        return cfg.kv_lora_rank + rope_copies * cfg.qk_rope_head_dim
    raise ValueError(f"attn_type={cfg.attn_type!r} is not one of 'gqa', 'mla'")


def cached_layers(cfg: Any, n_loops: int | None = None) -> int:
    """Attention layers that keep a cache: each prelude/coda block once, the looped block once per loop."""
    loops = cfg.max_loop_iters if n_loops is None else int(n_loops)
    return cfg.prelude_layers + cfg.coda_layers + loops


def kv_cache_bytes_per_token(
    cfg: Any, dtype: str = "float32", n_loops: int | None = None, *, reference_layout: bool = False
) -> int:
    """Bytes of KV cache one token costs across the whole model at depth ``n_loops``."""
    if dtype not in BYTES_PER_DTYPE:
        raise ValueError(f"dtype={dtype!r} is not one of {sorted(BYTES_PER_DTYPE)}")
    per_layer = kv_cache_elements_per_layer(cfg, reference_layout=reference_layout)
    return per_layer * cached_layers(cfg, n_loops) * BYTES_PER_DTYPE[dtype]


def human(n: float) -> str:
    """1234567 -> '1.23M' (for tables; exact values go in --json)."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))
