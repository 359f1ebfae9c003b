"""Causal self-attention: grouped-query (GQA) and multi-latent (MLA), both on ``scaled_dot_product_attention``.

The types are a registry (:data:`ATTENTION`: ``attn_type`` name -> module and KV-cache layout); the decode
engine registers the same names in ``mythos.infer.attention.DECODE_ATTENTION``. An unknown name raises.

Causal masking is ``is_causal`` when a call starts at position 0 and a boolean mask only for chunked prefill
(queries at positions start.., keys 0..start+T-1), so no additive float mask exists whose dtype could
disagree with the activations (the reference's fp32 ``-inf`` mask breaks bf16).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .config import MythosConfig
from .functional import split_kv_up
from .norm import RMSNorm
from .onednn import Linear
from .rope import apply_rope

if TYPE_CHECKING:
    from .cache import CacheSlot

Rope = tuple[torch.Tensor, torch.Tensor]


def _attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    start: int,
    dropout: float,
    gqa: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """Attention over (B, H, T, D) queries and (B, Hkv, S, Dv) values where the queries sit at positions start..

    A whole causal sequence on CPU without dropout takes ``_causal_blocked`` (matmul + softmax), compiled or
    not (compiled, it made the training step 1.2x faster than SDPA did); everything else SDPA, with
    ``is_causal`` from position 0 and a boolean mask for chunked prefill.
    """
    t, s = q.shape[-2], k.shape[-2]
    causal_whole = start == 0 and s == t and t > 1
    if causal_whole and dropout == 0.0 and q.device.type == "cpu":
        return _causal_blocked(q, k, v, q.shape[-1] ** -0.5 if scale is None else scale)
    dv = v.shape[-1]
    v = _pad_to(v, q.shape[-1])
    opts = dict(dropout_p=dropout, enable_gqa=gqa, scale=scale)
    if t == 1:  # one new token sees every cached key
        out = F.scaled_dot_product_attention(q, k, v, **opts)
    elif causal_whole:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, **opts)
    else:
        query_pos = torch.arange(start, start + t, device=q.device)[:, None]
        key_pos = torch.arange(s, device=q.device)[None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_pos <= query_pos, **opts)
    return out[..., :dv]


def _pad_to(v: torch.Tensor, width: int) -> torch.Tensor:
    """Zero-pad the last dim to ``width``: equal q/k/v widths let SDPA use its fused kernel (the math
    fallback it takes otherwise is much slower on CPU); the extra output columns are sliced off."""
    return F.pad(v, (0, width - v.shape[-1])) if v.shape[-1] < width else v


CAUSAL_BLOCK = 64
"""Query rows per block in ``_causal_blocked``: of 32, 64 and 128, 64 was fastest at T=256 on CPU."""


def _causal_blocked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """Causal attention as matmul + softmax in blocks of query rows, each against only the keys it can see.

    On CPU this beats SDPA's flash kernel forward+backward at training lengths (benchmarks/model_train_step.py): the
    blocks skip the masked upper triangle (like flash) but run as plain batched GEMMs. The additive mask is
    built in the activations' dtype. Grouped-query heads are folded into the rows, so shared keys are not
    copied per query head. The result is a (B, H, T, Dv) view of a (B, T, H, Dv) tensor, so merging the
    heads for the output projection is free.
    """
    b, h, t, d = q.shape
    hkv, dv = k.shape[1], v.shape[-1]
    g = h // hkv
    kt = k.reshape(b * hkv, t, d).transpose(1, 2)
    v = v.reshape(b * hkv, t, dv)
    mask = torch.full((t, t), float("-inf"), dtype=q.dtype, device=q.device).triu(1)
    outs = []
    # a handful of fixed blocks of positions, not a loop over tokens; split (not slicing) keeps the
    # backward to one concatenation of the blocks' query gradients
    lo = 0
    for rows in q.reshape(b * hkv, g, t, d).split(CAUSAL_BLOCK, dim=2):
        n = rows.shape[2]
        hi = lo + n
        rows = rows.reshape(b * hkv, g * n, d)
        scores = torch.baddbmm(mask[lo:hi, :hi].repeat(g, 1), rows, kt[:, :, :hi], alpha=scale)
        out = torch.bmm(scores.softmax(-1), v[:, :hi])
        outs.append(out.view(b, hkv, g, n, dv).permute(0, 3, 1, 2, 4))
        lo = hi
    return torch.cat(outs, dim=1).view(b, t, h, dv).transpose(1, 2)


class GQAttention(nn.Module):
    """Grouped-query attention: ``n_heads`` query heads share ``n_kv_heads`` key/value heads.

    Q, K and V come from one fused projection ``wqkv`` (rows: q heads, then k heads, then v heads).
    """

    def __init__(self, cfg: MythosConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.dropout = cfg.dropout
        self.wqkv = Linear(cfg.dim, (cfg.n_heads + 2 * cfg.n_kv_heads) * cfg.head_dim, bias=False)
        self.wo = Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def forward(
        self, x: torch.Tensor, rope: Rope, cache: CacheSlot | None = None, start: int = 0
    ) -> torch.Tensor:
        b, t, _ = x.shape
        hd = self.head_dim
        q, k, v = self.wqkv(x).split([self.n_heads * hd, self.n_kv_heads * hd, self.n_kv_heads * hd], dim=-1)
        q = apply_rope(q.view(b, t, self.n_heads, hd), *rope).transpose(1, 2)
        k = apply_rope(k.view(b, t, self.n_kv_heads, hd), *rope).transpose(1, 2)
        v = v.view(b, t, self.n_kv_heads, hd).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(start, k, v)
        out = _attend(
            q, k, v, start, self.dropout if self.training else 0.0, gqa=self.n_kv_heads != self.n_heads
        )
        return self.wo(out.transpose(1, 2).reshape(b, t, -1))


class MLAttention(nn.Module):
    """Multi-latent attention (DeepSeek-V2): keys and values are rebuilt from a small cached latent.

    One fused down-projection ``w_down`` gives [q latent | kv latent | shared rope key]. The cache keeps the
    kv latent and ONE rope key per token (all heads share it), not a per-head copy as the reference does.
    ``q_up`` rows are [all heads' no-rope parts | all heads' rope parts].
    """

    def __init__(self, cfg: MythosConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.q_lora, self.kv_lora = cfg.q_lora_rank, cfg.kv_lora_rank
        self.rope_dim, self.nope_dim, self.v_dim = cfg.qk_rope_head_dim, cfg.qk_nope_head_dim, cfg.v_head_dim
        self.dropout = cfg.dropout
        h = cfg.n_heads
        self.w_down = Linear(cfg.dim, self.q_lora + self.kv_lora + self.rope_dim, bias=False)
        self.q_norm = RMSNorm(self.q_lora, cfg.norm_eps)
        self.q_up = Linear(self.q_lora, h * (self.nope_dim + self.rope_dim), bias=False)
        self.kv_norm = RMSNorm(self.kv_lora, cfg.norm_eps)
        self.kv_up = Linear(self.kv_lora, h * (self.nope_dim + self.v_dim), bias=False)
        self.wo = Linear(h * self.v_dim, cfg.dim, bias=False)

    def forward(
        self, x: torch.Tensor, rope: Rope, cache: CacheSlot | None = None, start: int = 0
    ) -> torch.Tensor:
        b, t, _ = x.shape
        h, nope, rd = self.n_heads, self.nope_dim, self.rope_dim
        c_q, c_kv, k_rope = self.w_down(x).split([self.q_lora, self.kv_lora, rd], dim=-1)
        q_nope, q_rope = self.q_up(self.q_norm(c_q)).split([h * nope, h * rd], dim=-1)
        q_rope = apply_rope(q_rope.view(b, t, h, rd), *rope)
        k_rope = apply_rope(k_rope.view(b, t, 1, rd), *rope).view(b, t, rd)
        q_nope = q_nope.view(b, t, h, nope)
        if cache is not None:
            c_kv, k_rope = cache.update(start, c_kv, k_rope)
            if 2 * t <= c_kv.shape[1]:  # decode / short chunks: attend in latent space
                return self._absorbed(q_nope, q_rope, c_kv, k_rope, start)
        s = c_kv.shape[1]
        k_nope, v = (
            self.kv_up(self.kv_norm(c_kv)).view(b, s, h, nope + self.v_dim).split([nope, self.v_dim], -1)
        )
        # concatenated straight into (B, H, T, D) order: no copy when attention flattens the heads
        q = torch.cat([q_nope.transpose(1, 2), q_rope.transpose(1, 2)], dim=-1)
        k = torch.cat([k_nope.transpose(1, 2), k_rope[:, None, :, :].expand(b, h, s, rd)], dim=-1)
        out = _attend(q, k, v.transpose(1, 2), start, self.dropout if self.training else 0.0)
        return self.wo(out.transpose(1, 2).reshape(b, t, -1))

    def _absorbed(
        self, q_nope: torch.Tensor, q_rope: torch.Tensor, c_kv: torch.Tensor, k_rope: torch.Tensor, start: int
    ) -> torch.Tensor:
        """The same attention with ``kv_up`` folded into the query and the output (DeepSeek-V2's trick).

        q_nope . (W_uk c) = (W_uk^T q_nope) . c, and softmax @ (W_uv c) = W_uv (softmax @ c): every head
        attends to the shared latent [c | k_rope] like multi-query attention, so a decode step costs
        O(S * (kv_lora + rope)) per head instead of re-expanding all S cached latents through ``kv_up``.
        """
        b, t, h, nope = q_nope.shape
        w_k, w_v = split_kv_up(self.kv_up.weight, h, nope, self.v_dim, self.kv_lora)
        latent = self.kv_norm(c_kv)  # (B, S, L)
        q = torch.cat([torch.einsum("bthn,hnl->bhtl", q_nope, w_k), q_rope.transpose(1, 2)], dim=-1)
        k = torch.cat([latent, k_rope], dim=-1).unsqueeze(1)  # (B, 1, S, L + rope): one "kv head"
        v = latent.unsqueeze(1)
        scale = (nope + self.rope_dim) ** -0.5
        out = _attend(q, k, v, start, self.dropout if self.training else 0.0, gqa=True, scale=scale)
        out = torch.einsum("bhtl,hvl->bthv", out, w_v)
        return self.wo(out.reshape(b, t, -1))


CacheLayout = tuple[list[tuple[int, ...]], int]
"""The tensors one attention site caches for a batch: their shapes and which dimension is time."""


def mla_cache_layout(cfg: MythosConfig, batch: int, max_len: int) -> CacheLayout:
    """The latent plus ONE rope key per token, shared by all heads: (B, S, kv_lora), (B, S, rope)."""
    return [(batch, max_len, cfg.kv_lora_rank), (batch, max_len, cfg.qk_rope_head_dim)], 1


def gqa_cache_layout(cfg: MythosConfig, batch: int, max_len: int) -> CacheLayout:
    """Rotated keys and values per KV head: (B, Hkv, S, head_dim) each."""
    return [(batch, cfg.n_kv_heads, max_len, cfg.head_dim)] * 2, 2


@dataclass(frozen=True)
class AttentionType:
    """One ``attn_type``: its module (built from the config) and its KV-cache layout."""

    module: Callable[[MythosConfig], nn.Module]
    cache_layout: Callable[[MythosConfig, int, int], CacheLayout]


ATTENTION: dict[str, AttentionType] = {
    "mla": AttentionType(MLAttention, mla_cache_layout),
    "gqa": AttentionType(GQAttention, gqa_cache_layout),
}


def registered(registry: dict, name: str, where: str):
    """``registry[name]``, or a ValueError naming the known attention types and where to register one."""
    if name not in registry:
        known = ", ".join(sorted(registry))
        raise ValueError(f"attn_type={name!r} is not registered in {where}; known: {known}")
    return registry[name]


def attention_type(name: str) -> AttentionType:
    """The registered attention type ``name``; a ValueError naming the known types otherwise."""
    return registered(ATTENTION, name, "mythos.model.attention.ATTENTION")


def make_attention(cfg: MythosConfig) -> nn.Module:
    return attention_type(cfg.attn_type).module(cfg)
