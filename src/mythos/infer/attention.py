"""Attention types for decoding, as a registry: name -> decode weights, cache layout and kernel.

Each entry says, for one ``MythosConfig.attn_type``, how to take the model's attention module apart into
plain tensors (``weights``), how many numbers one token caches per attention site (``entry_width``), how to
store its matrices in another dtype (``cast``), and the kernel that attends over the static cache
(``kernel``). The model side of the same name (its ``nn.Module`` and KV-cache layout) is registered in
``mythos.model.attention.ATTENTION``; a test holds the two registries to the same names. An unknown name
raises ``ValueError`` naming the known ones (:func:`decode_attention`), never falls back to another type.

- ``mla``: multi-latent attention with weight absorption over the cached latent (native kernel on CPU).
- ``gqa``: grouped-query attention over cached rotated keys and values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mythos.infer import native
from mythos.infer.kernels import GEMV_ROWS, SHORT_QUERY, StepContext, linear, rotate
from mythos.infer.weights import Norm, borrowed_norm, rms_norm
from mythos.model import functional as fn
from mythos.model.attention import registered


@dataclass
class MLAWeights:
    """Multi-latent attention with weight absorption.

    Queries are mapped into the latent space per head (``w_uk``: q_latent_h = W_uk_hᵀ q_nope_h), and the
    attention-weighted latent is mapped back per head (``w_uv``) before ``w_o``. The up-projections are
    kept apart rather than pre-multiplied into ``w_q``/``w_o``: the factored form reads 0.59 M numbers per
    token where the product reads 0.85 M (small config), and batch-1 decode is bound by reading weights.
    The cache holds, per token, the normalized latent (r) and ONE rotated rope key shared by all heads.
    """

    w_down: Tensor  # (q_lora + r + rope, D): [query latent | kv latent | shared rope key]
    q_norm: Norm
    w_q: Tensor  # (H*(nope+rope), q_lora): [every head's nope | every head's rope] (the model's q_up)
    w_uk: Tensor  # (H, nope, r): key up-projection, applied to queries
    w_uv: Tensor  # (H, r, v): value up-projection, applied to the attention-weighted latent
    kv_norm: Norm
    q_lora: int
    w_o: Tensor  # (D, H*v)
    n_heads: int
    nope_dim: int
    kv_rank: int
    rope_dim: int
    scale: float


@dataclass
class GQAWeights:
    """Grouped-query attention with Q, K and V fused into one projection."""

    w_qkv: Tensor  # ((H + 2*Hkv) * hd, D)
    w_o: Tensor  # (D, H*hd)
    n_heads: int
    n_kv_heads: int
    head_dim: int
    scale: float


def softmax_fp32(scores: Tensor) -> Tensor:
    if scores.dtype == torch.float32:
        return torch.softmax(scores, dim=-1)
    return torch.softmax(scores.float(), dim=-1).to(scores.dtype)


def fold_heads_attention(q: Tensor, k: Tensor, v: Tensor, ctx: StepContext, scale: float) -> Tensor:
    """GQA attention where ``q`` (B, G, T, R, d) shares each key head across R queries per token.

    Folding the R query heads into the query-length axis turns shared keys into one matmul with no
    expansion of the cache (MQA/GQA without ``repeat_interleave``).
    """
    B, G, T, R, d = q.shape
    q = q.reshape(B, G, T * R, d)
    mask = ctx.folded_mask(R, q.dtype)
    if T <= SHORT_QUERY:
        scores = torch.matmul(q, k.transpose(-1, -2)) * scale + mask
        out = torch.matmul(softmax_fp32(scores), v)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    return out.view(B, G, T, R, -1)


def per_head(x: Tensor, w: Tensor) -> Tensor:
    """``x`` (..., H, c) times ``w`` (H, c, n) head by head -> (..., H, n); fused like :func:`linear`."""
    if torch.compiler.is_compiling() and x.numel() <= GEMV_ROWS * x.shape[-1] * x.shape[-2]:
        return (x.unsqueeze(-1) * w.to(x.dtype)).sum(-2)
    return torch.einsum("...hc,hcn->...hn", x, w.to(x.dtype))


def use_native(query: Tensor, keys: Tensor) -> bool:
    """Whether decode attention runs in the native kernel: CPU, fp32 queries, fp32 or bf16 keys, library built."""
    return (
        keys.device.type == "cpu"
        and query.dtype == torch.float32
        and keys.dtype in native.KEY_BITS
        and native.available()
    )


def mla_attend(x: Tensor, w: MLAWeights, cache: Tensor, ctx: StepContext) -> Tensor:
    """Multi-latent attention with weight absorption over the cached latent.

    Cost per decoded token is O(S·H·(r+rope)) with no per-step reconstruction of keys/values.
    """
    B, T, _ = x.shape
    H, r, rd, ql, nope = w.n_heads, w.kv_rank, w.rope_dim, w.q_lora, w.nope_dim
    down = linear(x, w.w_down)
    q = linear(rms_norm(down[..., :ql], w.q_norm), w.w_q)
    q_latent = per_head(q[..., : H * nope].view(B, T, H, nope), w.w_uk)  # (B, T, H, r)
    q_rope = rotate(q[..., H * nope :].view(B, T, H, rd), ctx, heads=True)
    entry = torch.cat(
        (rms_norm(down[..., ql : ql + r], w.kv_norm), rotate(down[..., ql + r :], ctx, heads=False)),
        dim=-1,
    )
    cache.index_put_(
        (ctx.rows, ctx.write_pos), entry if entry.dtype == cache.dtype else entry.to(cache.dtype)
    )
    keys = cache[:, : ctx.kv_len]  # (B, S, r+rope): one latent "head" shared by every query head
    query = torch.cat((q_latent, q_rope), dim=-1)  # (B, T, H, r + rope)
    if use_native(query, keys):  # one fused pass over the keys per query (native/): decode, and prompts too
        out = torch.ops.mythos.latent_attention(query, keys, ctx.key_counts(), w.scale, r)
        return linear(per_head(out, w.w_uv).flatten(2), w.w_o)
    if keys.dtype != x.dtype:
        keys = keys.to(x.dtype)
    query = query.view(B, T * H, r + rd)
    mask = ctx.folded_mask(H, x.dtype).squeeze(1)
    if T <= SHORT_QUERY:  # decode: batched 3-D matmuls with scale and mask fused into the first
        scores = torch.baddbmm(mask, query, keys.transpose(1, 2), alpha=w.scale)
        out = torch.bmm(softmax_fp32(scores), keys[..., :r])
    else:
        out = F.scaled_dot_product_attention(query, keys, keys[..., :r], attn_mask=mask, scale=w.scale)
    values = per_head(out.view(B, T, H, r), w.w_uv)  # (B, T, H, v)
    return linear(values.flatten(2), w.w_o)


def gqa_attend(x: Tensor, w: GQAWeights, cache: Tensor, ctx: StepContext) -> Tensor:
    """Grouped-query attention over a static cache of rotated keys and values."""
    B, T, _ = x.shape
    H, G, hd = w.n_heads, w.n_kv_heads, w.head_dim
    qkv = linear(x, w.w_qkv)
    q = rotate(qkv[..., : H * hd].view(B, T, H, hd), ctx, heads=True)
    k = rotate(qkv[..., H * hd : (H + G) * hd].view(B, T, G, hd), ctx, heads=True)
    v = qkv[..., (H + G) * hd :].view(B, T, G, hd)
    entry = torch.cat((k, v), dim=2).flatten(2)
    cache.index_put_(
        (ctx.rows, ctx.write_pos), entry if entry.dtype == cache.dtype else entry.to(cache.dtype)
    )
    kv = cache[:, : ctx.kv_len]
    if kv.dtype != x.dtype:
        kv = kv.to(x.dtype)
    kv = kv.view(B, ctx.kv_len, 2, G, hd)
    keys, values = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)  # (B, G, S, hd)
    query = q.view(B, T, G, H // G, hd).permute(0, 2, 1, 3, 4)  # (B, G, T, R, hd)
    out = fold_heads_attention(query, keys, values, ctx, w.scale)  # (B, G, T, R, hd)
    return linear(out.permute(0, 2, 1, 3, 4).reshape(B, T, H * hd), w.w_o)


# ------------------------------------------------------------------------------------ the registry


def mla_weights(attn: nn.Module, cfg) -> MLAWeights:
    """Decode weights of a ``mythos.model.attention.MLAttention`` (absorbed up-projections are copies)."""
    H, nope, rd = cfg.n_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim
    w_uk, w_uv = fn.split_kv_up(attn.kv_up.weight.detach(), H, nope, cfg.v_head_dim, cfg.kv_lora_rank)
    return MLAWeights(
        w_down=attn.w_down.weight.detach(),
        q_norm=borrowed_norm(attn.q_norm),
        w_q=attn.q_up.weight.detach(),
        w_uk=w_uk.contiguous(),
        w_uv=w_uv.transpose(1, 2).contiguous(),
        kv_norm=borrowed_norm(attn.kv_norm),
        q_lora=cfg.q_lora_rank,
        w_o=attn.wo.weight.detach(),
        n_heads=H,
        nope_dim=nope,
        kv_rank=cfg.kv_lora_rank,
        rope_dim=rd,
        scale=(nope + rd) ** -0.5,
    )


def gqa_weights(attn: nn.Module, cfg) -> GQAWeights:
    """Decode weights of a ``mythos.model.attention.GQAttention`` (all borrowed)."""
    hd = cfg.head_dim
    return GQAWeights(
        attn.wqkv.weight.detach(), attn.wo.weight.detach(), cfg.n_heads, cfg.n_kv_heads, hd, hd**-0.5
    )


@dataclass(frozen=True)
class DecodeAttention:
    """How the decode engine runs one attention type."""

    weights: Callable[[nn.Module, Any], Any]  # (the model's attention module, its config) -> decode weights
    kernel: Callable[[Tensor, Any, Tensor, StepContext], Tensor]  # (x, weights, cache block, ctx) -> output
    entry_width: Callable[[Any], int]  # numbers one token caches per attention site
    cast: Callable[[Any, Callable[[Tensor], Tensor]], Any]  # the weights with every matrix mapped
    copied: Callable[
        [nn.Module], list[Tensor]
    ]  # the module's parameters that ``weights`` copies (re-laid out)


DECODE_ATTENTION: dict[str, DecodeAttention] = {
    "mla": DecodeAttention(
        weights=mla_weights,
        kernel=mla_attend,
        entry_width=lambda w: w.kv_rank + w.rope_dim,  # the latent + ONE rope key shared by all heads
        cast=lambda w, c: replace(
            w, w_down=c(w.w_down), w_q=c(w.w_q), w_uk=c(w.w_uk), w_uv=c(w.w_uv), w_o=c(w.w_o)
        ),
        copied=lambda m: [m.kv_up.weight],  # split per head for absorption
    ),
    "gqa": DecodeAttention(
        weights=gqa_weights,
        kernel=gqa_attend,
        entry_width=lambda w: 2 * w.n_kv_heads * w.head_dim,  # rotated keys, then values
        cast=lambda w, c: replace(w, w_qkv=c(w.w_qkv), w_o=c(w.w_o)),
        copied=lambda m: [],  # every weight borrowed
    ),
}


def decode_attention(name: str) -> DecodeAttention:
    """The registered decode attention ``name``; a ValueError naming the known types otherwise."""
    return registered(DECODE_ATTENTION, name, "mythos.infer.attention.DECODE_ATTENTION")
