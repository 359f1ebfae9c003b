"""Decode-time building blocks: rotary embedding, absorbed MLA, GQA and MoE over a static cache.

Every function is shape-static given its inputs (no ``.item()``, no branches on tensor values), so a decode
step built from them can be captured by ``torch.compile``. The one exception is :func:`moe_sparse`, used
only for prompts, where the per-expert split sizes come to the host.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from mythos.infer.view import GQAWeights, MLAWeights, MoEWeights, rms_norm


@dataclass
class StepContext:
    """Per-call positions and mask shared by every attention site in one forward."""

    rows: Tensor  # (B, 1) cache rows (slot indices) written by this call
    write_pos: Tensor  # (B, T) where each token's entry goes (padding -> the trash row)
    visible: Tensor  # (B, 1, T, S) bool: key s visible to query t
    cos: Tensor  # (B, T, rope/2)
    sin: Tensor
    kv_len: int  # S: keys read from the cache
    interleaved: bool
    _folded: dict = field(default_factory=dict)

    def folded_mask(self, repeat: int, dtype: torch.dtype) -> Tensor:
        """The mask with each query repeated ``repeat`` times (heads folded into the query axis), built once
        per call and shared by all sites: additive (0 / -inf) for short queries, boolean for SDPA."""
        key = (repeat, dtype)
        if key not in self._folded:
            B, _, T, S = self.visible.shape
            mask = self.visible if T == 1 else self.visible.unsqueeze(-2).expand(B, 1, T, repeat, S).reshape(
                B, 1, T * repeat, S)
            if T <= SHORT_QUERY:
                mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))
            self._folded[key] = mask
        return self._folded[key]


SHORT_QUERY = 16
"""Chunks of at most this many tokens (decode) use plain matmul attention; longer ones use SDPA."""


def rotate(x: Tensor, cos: Tensor, sin: Tensor, interleaved: bool) -> Tensor:
    """Rotary embedding of the last dim of ``x`` with cos/sin broadcast over the middle dims."""
    dtype = x.dtype
    xf = x.float()
    if interleaved:
        pairs = xf.unflatten(-1, (-1, 2))
        x0, x1 = pairs[..., 0], pairs[..., 1]
        return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2).to(dtype)
    half = xf.shape[-1] // 2
    x0, x1 = xf[..., :half], xf[..., half:]
    return torch.cat((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).to(dtype)


def _fold_heads_attention(q: Tensor, k: Tensor, v: Tensor, ctx: StepContext, scale: float) -> Tensor:
    """Attention where ``q`` (B, G, T, R, d) shares each key head across R queries per token.

    Folding the R query heads into the query-length axis turns shared keys into one matmul with no
    expansion of the cache (MQA/GQA without ``repeat_interleave``).
    """
    B, G, T, R, d = q.shape
    q = q.reshape(B, G, T * R, d)
    mask = ctx.folded_mask(R, q.dtype)
    if T <= SHORT_QUERY:
        scores = torch.matmul(q, k.transpose(-1, -2)) * scale + mask
        out = torch.matmul(torch.softmax(scores.float(), dim=-1).to(v.dtype), v)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    return out.view(B, G, T, R, -1)


def mla_attend(x: Tensor, w: MLAWeights, cache: Tensor, ctx: StepContext) -> Tensor:
    """Multi-latent attention with weight absorption over the cached latent.

    Cost per decoded token is O(S·H·(r+rope)) with no per-step reconstruction of keys/values.
    """
    B, T, _ = x.shape
    H, r, rd = w.n_heads, w.kv_rank, w.rope_dim
    down = F.linear(x, w.w_down)
    q = F.linear(rms_norm(down[..., : w.q_lora], w.q_norm), w.w_q)
    q_lat = q[..., : H * r].view(B, T, H, r)
    q_rope = rotate(q[..., H * r :].view(B, T, H, rd), ctx.cos.unsqueeze(2), ctx.sin.unsqueeze(2), ctx.interleaved)
    latent = rms_norm(down[..., w.q_lora : w.q_lora + r], w.kv_norm)
    k_rope = rotate(down[..., w.q_lora + r :], ctx.cos, ctx.sin, ctx.interleaved)
    cache.index_put_((ctx.rows, ctx.write_pos), torch.cat((latent, k_rope), dim=-1).to(cache.dtype))
    keys = cache[:, : ctx.kv_len].unsqueeze(1).to(x.dtype)  # (B, 1, S, r+rope)
    query = torch.cat((q_lat, q_rope), dim=-1).unsqueeze(1)  # (B, 1, T, H, r+rope)
    out = _fold_heads_attention(query, keys, keys[..., :r], ctx, w.scale)  # (B, 1, T, H, r)
    return F.linear(out.reshape(B, T, H * r), w.w_o)


def gqa_attend(x: Tensor, w: GQAWeights, cache: Tensor, ctx: StepContext) -> Tensor:
    """Grouped-query attention over a static cache of rotated keys and values."""
    B, T, _ = x.shape
    H, G, hd = w.n_heads, w.n_kv_heads, w.head_dim
    qkv = F.linear(x, w.w_qkv)
    q = qkv[..., : H * hd].view(B, T, H, hd)
    k = qkv[..., H * hd : (H + G) * hd].view(B, T, G, hd)
    v = qkv[..., (H + G) * hd :].view(B, T, G, hd)
    cos, sin = ctx.cos.unsqueeze(2), ctx.sin.unsqueeze(2)
    q = rotate(q, cos, sin, ctx.interleaved)
    k = rotate(k, cos, sin, ctx.interleaved)
    cache.index_put_((ctx.rows, ctx.write_pos), torch.cat((k, v), dim=2).flatten(2).to(cache.dtype))
    kv = cache[:, : ctx.kv_len].view(B, ctx.kv_len, 2, G, hd).to(x.dtype)
    keys, values = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)  # (B, G, S, hd)
    query = q.view(B, T, G, H // G, hd).permute(0, 2, 1, 3, 4)  # (B, G, T, R, hd)
    out = _fold_heads_attention(query, keys, values, ctx, w.scale)  # (B, G, T, R, hd)
    return F.linear(out.permute(0, 2, 1, 3, 4).reshape(B, T, H * hd), w.w_o)


def route(x: Tensor, m: MoEWeights) -> tuple[Tensor, Tensor]:
    """Top-k expert ids and gate weights as the model routes (softmax in fp32; the bias steers selection only)."""
    logits = F.linear(x, m.router).float()
    scores = F.softmax(logits, dim=-1)
    idx = (logits + m.router_bias.float()).topk(m.top_k, dim=-1).indices
    gates = scores.gather(-1, idx)
    return idx, (gates / gates.sum(dim=-1, keepdim=True)).to(x.dtype)


def moe_dense(x: Tensor, m: MoEWeights) -> Tensor:
    """Every expert on every token, combined with zero weight for unselected ones: three matmuls in all.

    For a handful of decode tokens this is cheaper than dispatch and has no data-dependent shapes.
    """
    n = x.shape[0]
    E, Ed = m.n_experts, m.expert_dim
    idx, gates = route(x, m)
    combine = torch.zeros(n, E, dtype=x.dtype, device=x.device).scatter(1, idx, gates)
    gate, up = F.linear(x, m.w_gate_up).view(n, E, 2, Ed).unbind(2)
    hidden = (F.silu(gate) * up * combine.unsqueeze(-1)).reshape(n, E * Ed)
    out = F.linear(hidden, m.w_down)
    return out if m.shared is None else out + m.shared(x)


def moe_grouped(x: Tensor, m: MoEWeights) -> Tensor:
    """Only the selected experts' weights are read: assignments sorted by expert, one grouped matmul each
    for gate/up and down (``torch._grouped_mm``), no host sync. At batch 1 this reads top_k/E of the
    routed weights that :func:`moe_dense` reads — decode on CPU is bound by weight traffic."""
    n = x.shape[0]
    idx, gates = route(x, m)
    expert_of = idx.reshape(-1)
    order = torch.argsort(expert_of, stable=True)
    token_of = order // m.top_k
    offsets = torch.cumsum(torch.bincount(expert_of, minlength=m.n_experts), dim=0).to(torch.int32)
    gate, up = torch._grouped_mm(x.index_select(0, token_of), m.stacked_gate_up, offs=offsets).chunk(2, dim=-1)
    routed = torch._grouped_mm(F.silu(gate) * up, m.stacked_down, offs=offsets)
    routed = routed * gates.reshape(-1, 1).index_select(0, order)
    out = torch.zeros(n, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, token_of, routed)
    return out if m.shared is None else out + m.shared(x)


def grouped_mm_available(device: torch.device, dtype: torch.dtype, _memo: dict = {}) -> bool:  # noqa: B006
    """Whether ``torch._grouped_mm`` runs for this device and dtype (probed once)."""
    key = (device.type, dtype)
    if key not in _memo:
        try:
            x = torch.zeros(4, 8, device=device, dtype=dtype)
            torch._grouped_mm(x, torch.zeros(2, 8, 8, device=device, dtype=dtype),
                              offs=torch.tensor([2, 4], device=device, dtype=torch.int32))
            _memo[key] = True
        except (AttributeError, RuntimeError, NotImplementedError):
            _memo[key] = False
    return _memo[key]


def moe(x: Tensor, m: MoEWeights, decode_below: int = 64) -> Tensor:
    """Decode (few tokens): selected experts by grouped matmul (or all experts in three matmuls where the
    grouped kernel is missing or the step is being compiled). Prompts: the model's own grouped-dispatch MoE module.

    The choice depends only on the token count and dtype (static), so decode stays capture-friendly.
    """
    flat = x.reshape(-1, x.shape[-1])
    if flat.shape[0] > decode_below:
        return m.module(x)
    # inductor has no fp32 CPU lowering of _grouped_mm: a compiled step runs every expert instead
    if not torch.compiler.is_compiling() and grouped_mm_available(x.device, x.dtype):
        return moe_grouped(flat, m).view_as(x)
    return moe_dense(flat, m).view_as(x)
