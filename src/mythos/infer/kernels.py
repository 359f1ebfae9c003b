"""Decode-time building blocks: projections, rotary embedding, absorbed MLA, GQA and MoE over a static cache.

Every function is shape-static given its inputs (no ``.item()``, no branches on tensor values), so a decode
step built from them can be captured by ``torch.compile``. Inside a compiled step with few token rows,
projections become fused multiply-and-sum reductions (:func:`linear`). MLA attention — decode and prompts —
runs in the native operator (``native/``) when it is available: every query sees a prefix of the cache, so one
pass over that prefix with an online softmax replaces SDPA, whose CPU kernels take the slow materialising
path under an explicit mask (a 2048-token prompt prefilled in 0.44 s instead of 1.84 s). Prompts use matmuls
and the model's own MoE module; GQA attention uses matmuls (decode) and SDPA (prompts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from mythos.infer import native
from mythos.infer.view import (
    GQAWeights,
    HaltWeights,
    LoRAWeights,
    MLAWeights,
    MoEWeights,
    SwiGLUWeights,
    rms_norm,
)


@dataclass
class StepContext:
    """Per-call positions and mask shared by every attention site in one forward."""

    rows: Tensor  # (B, 1) cache rows (slot indices) written by this call
    write_pos: Tensor  # (B, T) where each token's entry goes (padding -> the trash row)
    visible: Tensor  # (B, 1, T, S) bool: key s visible to query t
    freqs: Tensor | None  # (B, T, rope/2) complex e^{i * position * frequency} (eager), or
    cos_sin: (
        tuple[Tensor, Tensor] | None
    )  # the same as real cos, sin (compiled: inductor has no complex codegen)
    kv_len: int  # S: keys read from the cache
    _folded: dict = field(default_factory=dict)

    def key_counts(self) -> Tensor:
        """(B, T) keys visible to each query: the visible keys of a query are always a prefix."""
        if "counts" not in self._folded:
            self._folded["counts"] = self.visible.squeeze(1).sum(-1)
        return self._folded["counts"]

    def folded_mask(self, repeat: int, dtype: torch.dtype) -> Tensor:
        """The mask with each query repeated ``repeat`` times (heads folded into the query axis), built once
        per call and shared by all sites: additive (0 / -inf) for short queries, boolean for SDPA."""
        key = (repeat, dtype)
        if key not in self._folded:
            B, _, T, S = self.visible.shape
            mask = (
                self.visible
                if T == 1
                else self.visible.unsqueeze(-2).expand(B, 1, T, repeat, S).reshape(B, 1, T * repeat, S)
            )
            if T <= SHORT_QUERY:
                mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
                    ~mask, float("-inf")
                )
            self._folded[key] = mask
        return self._folded[key]


SHORT_QUERY = 16
"""Chunks of at most this many tokens (decode) use plain matmul attention; longer ones use SDPA."""


GEMV_ROWS = 4
"""Compiled steps with at most this many token rows compute projections as a fused multiply-and-sum."""


def linear(x: Tensor, w: Tensor) -> Tensor:
    """``x @ w.T``; in a compiled step with few rows, as a multiply-and-sum over the input dim.

    Batch-1 decode on CPU is bound by streaming weights from memory. Inductor turns the multiply-and-sum
    into one vectorized reduction loop (fused with whatever feeds ``x``) that streams a weight matrix 2-3x
    as fast as MKL's matrix-vector call on this CPU (a 4 MB fp32 matrix from memory: ~28 vs ~10 GB/s; see
    docs/infer.md). Eager mode keeps ``F.linear``: there the product would materialise.
    """
    if torch.compiler.is_compiling() and x.numel() <= GEMV_ROWS * x.shape[-1]:
        return (x.unsqueeze(-2) * w.to(x.dtype)).sum(-1)  # a low-precision weight widens as it is read
    return F.linear(x, w.to(x.dtype))


def swiglu(x: Tensor, w: SwiGLUWeights) -> Tensor:
    """The model's dense SwiGLU (gate and up fused into one projection) through :func:`linear`."""
    gate, up = linear(x, w.w_gate_up).chunk(2, dim=-1)
    return linear(F.silu(gate) * up, w.w_down)


def lora_delta(x: Tensor, w: LoRAWeights, t: int) -> Tensor:
    """The depth-wise LoRA delta of loop ``t``, as the model computes it."""
    s = w.scale[min(t, w.scale.shape[0] - 1)]
    return linear(linear(x, w.down) * s, w.B.t())


def halt_prob(h: Tensor, w: HaltWeights) -> Tensor:
    """ACT halting probability per position: h (..., D) -> (...,)."""
    return torch.sigmoid(linear(h, w.weight) + w.bias).squeeze(-1)


def rotate(x: Tensor, ctx: StepContext, heads: bool) -> Tensor:
    """Rotary embedding of interleaved pairs of the last dim of ``x`` (the model's and the reference's
    convention). ``heads``: x is (B, T, H, d) rather than (B, T, d)."""
    xf = x if x.dtype == torch.float32 else x.float()
    pairs = xf.unflatten(-1, (-1, 2))
    if ctx.freqs is not None:  # eager: one complex multiply
        freqs = ctx.freqs.unsqueeze(2) if heads else ctx.freqs
        out = torch.view_as_real(torch.view_as_complex(pairs) * freqs).flatten(-2)
    else:
        cos, sin = (t.unsqueeze(2) for t in ctx.cos_sin) if heads else ctx.cos_sin
        x0, x1 = pairs[..., 0], pairs[..., 1]
        out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)
    return out if x.dtype == torch.float32 else out.to(x.dtype)


def _softmax(scores: Tensor) -> Tensor:
    if scores.dtype == torch.float32:
        return torch.softmax(scores, dim=-1)
    return torch.softmax(scores.float(), dim=-1).to(scores.dtype)


def _fold_heads_attention(q: Tensor, k: Tensor, v: Tensor, ctx: StepContext, scale: float) -> Tensor:
    """GQA attention where ``q`` (B, G, T, R, d) shares each key head across R queries per token.

    Folding the R query heads into the query-length axis turns shared keys into one matmul with no
    expansion of the cache (MQA/GQA without ``repeat_interleave``).
    """
    B, G, T, R, d = q.shape
    q = q.reshape(B, G, T * R, d)
    mask = ctx.folded_mask(R, q.dtype)
    if T <= SHORT_QUERY:
        scores = torch.matmul(q, k.transpose(-1, -2)) * scale + mask
        out = torch.matmul(_softmax(scores), v)
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
        (rms_norm(down[..., ql : ql + r], w.kv_norm), rotate(down[..., ql + r :], ctx, heads=False)), dim=-1
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
        out = torch.bmm(_softmax(scores), keys[..., :r])
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
    out = _fold_heads_attention(query, keys, values, ctx, w.scale)  # (B, G, T, R, hd)
    return linear(out.permute(0, 2, 1, 3, 4).reshape(B, T, H * hd), w.w_o)


def route(x: Tensor, m: MoEWeights) -> tuple[Tensor, Tensor]:
    """Top-k expert ids and gate weights as the model routes (softmax in fp32; the bias steers selection only)."""
    logits = linear(x, m.router).float()
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
    gate, up = linear(x, m.w_gate_up).view(n, E, 2, Ed).unbind(2)
    hidden = (F.silu(gate) * up * combine.unsqueeze(-1)).reshape(n, E * Ed)
    out = linear(hidden, m.w_down)
    return out if m.shared is None else out + swiglu(x, m.shared)


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
    gate, up = torch._grouped_mm(
        x.index_select(0, token_of), m.stacked_gate_up.to(x.dtype), offs=offsets
    ).chunk(2, dim=-1)
    routed = torch._grouped_mm(F.silu(gate) * up, m.stacked_down.to(x.dtype), offs=offsets)
    routed = routed * gates.reshape(-1, 1).index_select(0, order)
    out = torch.zeros(n, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, token_of, routed)
    return out if m.shared is None else out + swiglu(x, m.shared)


def moe_gathered(x: Tensor, m: MoEWeights) -> Tensor:
    """Only the selected experts' weights are read, each as a multiply-and-sum indexed by expert id.

    The compile-friendly way to read only top_k/E of the routed weights (``_grouped_mm`` has no fp32
    lowering in inductor): the expert index is fused into the reduction's loads, so no weight is copied.
    Worth it up to tokens x top_k = :data:`GATHERED_EXPERT_READS` x experts (see :func:`moe`).
    """
    n, d = x.shape
    idx, gates = route(x, m)  # (n, k)
    gate, up = (
        (x.view(n, 1, 1, d) * m.rows_gate_up[idx].to(x.dtype)).sum(-1).chunk(2, dim=-1)
    )  # (n, k, Ed) each
    hidden = F.silu(gate) * up * gates.unsqueeze(-1)
    routed = (hidden.unsqueeze(-2) * m.rows_down[idx].to(x.dtype)).sum(-1)  # (n, k, D)
    out = routed.sum(1)
    return out if m.shared is None else out + swiglu(x, m.shared)


def grouped_mm_available(device: torch.device, dtype: torch.dtype, _memo: dict = {}) -> bool:  # noqa: B006
    """Whether ``torch._grouped_mm`` runs for this device and dtype (probed once)."""
    key = (device.type, dtype)
    if key not in _memo:
        try:
            x = torch.zeros(4, 8, device=device, dtype=dtype)
            torch._grouped_mm(
                x,
                torch.zeros(2, 8, 8, device=device, dtype=dtype),
                offs=torch.tensor([2, 4], device=device, dtype=torch.int32),
            )
            _memo[key] = True
        except (AttributeError, RuntimeError, NotImplementedError):
            _memo[key] = False
    return _memo[key]


GATHERED_EXPERT_READS = 4
"""Compiled decode reads only the selected experts while tokens x top_k is at most this many times the expert
count. Measured at the small config (8 experts, top-2), compiled decode steps of 4 / 8 / 16 rows took
1.4 / 2.4–2.8 / 2.9 ms with gathered experts against 2.5–2.9 / 4.6–5.0 / 5.0–6.5 ms with every expert run
densely (the dense path reads each expert once per row in a fused reduction, or goes through a small-M GEMM)."""


def moe(x: Tensor, m: MoEWeights, decode_below: int = 64) -> Tensor:
    """Decode (few tokens): only the selected experts' weights are read — by grouped matmul in eager mode, by
    gathered multiply-and-sums when compiled, while tokens x top_k <= GATHERED_EXPERT_READS x experts (all
    experts in three matmuls for wider batches).
    Prompts: the model's own grouped-dispatch MoE module.

    The choice depends only on the token count and dtype (static), so decode stays capture-friendly.
    """
    flat = x.reshape(-1, x.shape[-1])
    if flat.shape[0] > decode_below:
        return m.module(x)
    if torch.compiler.is_compiling():  # inductor has no fp32 CPU lowering of _grouped_mm
        few = flat.shape[0] * m.top_k <= GATHERED_EXPERT_READS * m.n_experts
        return (moe_gathered(flat, m) if few else moe_dense(flat, m)).view_as(x)
    if grouped_mm_available(x.device, x.dtype):
        return moe_grouped(flat, m).view_as(x)
    return moe_dense(flat, m).view_as(x)
