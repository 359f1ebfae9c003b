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

from mythos.infer.weights import HaltWeights, LoRAWeights, MoEWeights, SwiGLUWeights
from mythos.model import functional as fn
from mythos.model.functional import grouped_mm_available

__all__ = ["grouped_mm_available"]  # re-exported: the probe is the model's


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
    into one vectorized reduction loop (fused with whatever feeds ``x``) that streams a weight matrix faster
    than MKL's matrix-vector call on CPUs where MKL takes its AVX2 path (docs/infer.md). Eager mode keeps ``F.linear``: there the product would materialise.
    """
    if torch.compiler.is_compiling() and x.numel() <= GEMV_ROWS * x.shape[-1]:
        return (x.unsqueeze(-2) * w.to(x.dtype)).sum(-1)  # a low-precision weight widens as it is read
    return F.linear(x, w.to(x.dtype))


def swiglu(x: Tensor, w: SwiGLUWeights) -> Tensor:
    """The model's dense SwiGLU (gate and up fused into one projection) through :func:`linear`."""
    return fn.swiglu(x, w.w_gate_up, w.w_down, project=linear)


def lora_delta(x: Tensor, w: LoRAWeights, t: int) -> Tensor:
    """The depth-wise LoRA delta of loop ``t``, as the model computes it."""
    return fn.lora_delta(x, w.down, w.B, fn.lora_scale(w.scale, t), project=linear)


def halt_prob(h: Tensor, w: HaltWeights) -> Tensor:
    """ACT halting probability per position: h (..., D) -> (...,)."""
    return fn.halt_prob(h, w.weight, w.bias, project=linear)


def rotate(x: Tensor, ctx: StepContext, heads: bool) -> Tensor:
    """Rotary embedding of interleaved pairs of the last dim of ``x`` (the model's and the reference's
    convention). ``heads``: x is (B, T, H, d) rather than (B, T, d)."""
    xf = x if x.dtype == torch.float32 else x.float()
    if ctx.freqs is not None:  # eager: one complex multiply
        out = fn.rotate_complex(xf, ctx.freqs.unsqueeze(2) if heads else ctx.freqs)
    else:
        cos, sin = (t.unsqueeze(2) for t in ctx.cos_sin) if heads else ctx.cos_sin
        out = fn.rotate_real(xf, cos, sin)
    return out if x.dtype == torch.float32 else out.to(x.dtype)


def route(x: Tensor, m: MoEWeights) -> tuple[Tensor, Tensor]:
    """Top-k expert ids and gate weights as the model routes (softmax in fp32; the bias steers selection only)."""
    return fn.route(linear(x, m.router), m.router_bias, m.top_k, x.dtype)


def moe_dense(x: Tensor, m: MoEWeights) -> Tensor:
    """Every expert on every token, combined with zero weight for unselected ones: three matmuls in all.

    For a handful of decode tokens this is cheaper than dispatch and has no data-dependent shapes.
    """
    n = x.shape[0]
    E, Ed = m.n_experts, m.expert_dim
    idx, gates = route(x, m)
    combine = torch.zeros(n, E, dtype=x.dtype, device=x.device).scatter(1, idx, gates)
    hidden = fn.swiglu_hidden(linear(x, m.w_gate_up).view(n, E, 2 * Ed))  # expert e: [gate | up] rows
    hidden = (hidden * combine.unsqueeze(-1)).reshape(n, E * Ed)
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
    hidden = fn.swiglu_hidden(
        torch._grouped_mm(x.index_select(0, token_of), m.stacked_gate_up.to(x.dtype), offs=offsets)
    )
    routed = torch._grouped_mm(hidden, m.stacked_down.to(x.dtype), offs=offsets)
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
    hidden = fn.swiglu_hidden((x.view(n, 1, 1, d) * m.rows_gate_up[idx].to(x.dtype)).sum(-1))  # (n, k, Ed)
    hidden = hidden * gates.unsqueeze(-1)
    routed = (hidden.unsqueeze(-2) * m.rows_down[idx].to(x.dtype)).sum(-1)  # (n, k, D)
    out = routed.sum(1)
    return out if m.shared is None else out + swiglu(x, m.shared)


GATHERED_EXPERT_READS = 4
"""Compiled decode reads only the selected experts while tokens x top_k is at most this many times the expert
count. At the small config (8 experts, top-2), compiled decode steps of 4, 8 and 16 rows were faster with
gathered experts than with every expert run densely (the dense path reads each expert once per row in a fused
reduction, or goes through a small-M GEMM); benchmarks/infer_decode.py and infer_serve.py measure it."""


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
