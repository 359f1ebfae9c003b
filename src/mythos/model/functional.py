"""The model's math, written once: plain functions on tensors called by the nn.Modules and the decode engine.

The modules in ``mythos.model`` own parameters and call these; the decode engine (``mythos.infer``) holds the
same weights as plain tensors and calls the same functions, so an architecture change is made here once and
both paths follow. Where the engine multiplies differently (a fused multiply-and-sum in a compiled batch-1
step), a function takes the projection as an argument (``project``, default ``F.linear``) instead of being
written again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

Project = Callable[[Tensor, Tensor], Tensor]
"""``project(x, w)`` computes ``x @ w.T`` (``F.linear`` without bias, or the engine's fused variant)."""

# ---------------------------------------------------------------------------------------------- norms


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """RMSNorm: the reduction in fp32 whatever ``x``'s dtype, then the weight in ``x``'s dtype."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, weight.shape, weight, eps)
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * weight


# --------------------------------------------------------------------------------------------- rotary


def rope_angles(head_dim: int, start: int, length: int, theta: float, device=None) -> Tensor:
    """fp32 angles (length, head_dim // 2) for positions start .. start+length-1 (interleaved pairs)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))
    positions = torch.arange(start, start + length, dtype=torch.float32, device=device)
    return torch.outer(positions, inv_freq)


def rope_tables(head_dim: int, start: int, length: int, theta: float, device=None) -> tuple[Tensor, Tensor]:
    """cos and sin of :func:`rope_angles`, in fp32."""
    angles = rope_angles(head_dim, start, length, theta, device)
    return angles.cos(), angles.sin()


def rotate_real(xf: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate interleaved pairs of the last dim of fp32 ``xf``; ``cos``/``sin`` broadcast over its pairs.

    Four real products: the form ``torch.compile`` can lower (inductor has no complex codegen).
    """
    pairs = xf.unflatten(-1, (-1, 2))
    x_even, x_odd = pairs[..., 0], pairs[..., 1]
    return torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1).flatten(-2)


def rotate_complex(xf: Tensor, freqs: Tensor) -> Tensor:
    """The same rotation as one complex multiply (``freqs`` = cos + i sin, broadcast over the pairs).

    One fused kernel in eager mode instead of :func:`rotate_real`'s four strided products (much faster on CPU).
    """
    if xf.stride(-1) != 1 or xf.storage_offset() % 2 or any(st % 2 for st in xf.stride()[:-1]):
        xf = xf.contiguous()  # view_as_complex needs (real, imag) pairs adjacent and aligned
    return torch.view_as_real(torch.view_as_complex(xf.unflatten(-1, (-1, 2))) * freqs).flatten(-2)


# ----------------------------------------------------------------------------------- feed-forward


def swiglu_hidden(gate_up: Tensor) -> Tensor:
    """``silu(gate) * up`` from a fused [gate | up] projection (gate rows first)."""
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


def swiglu(x: Tensor, w_gate_up: Tensor, w_down: Tensor, project: Project = F.linear) -> Tensor:
    """The dense SwiGLU feed-forward: ``down(silu(gate(x)) * up(x))``."""
    return project(swiglu_hidden(project(x, w_gate_up)), w_down)


def route(logits: Tensor, bias: Tensor, top_k: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """(expert ids, gate weights), each (N, top_k), from router logits.

    Aux-loss-free balancing (DeepSeek-V3): the selection-only ``bias`` shifts which experts are chosen, the
    gate weights come from the unbiased softmax (fp32), renormalised over the chosen experts.
    """
    logits = logits.float()
    scores = F.softmax(logits, dim=-1)
    selected = (logits + bias.float()).topk(top_k, dim=-1).indices
    gates = scores.gather(-1, selected)
    return selected, (gates / gates.sum(dim=-1, keepdim=True)).to(dtype)


def grouped_mm_available(device: torch.device, dtype: torch.dtype, _memo: dict = {}) -> bool:  # noqa: B006
    """Whether ``torch._grouped_mm`` runs for this device and dtype (probed once; CUDA wants bf16 on sm90+)."""
    key = (device.type, dtype)
    if key not in _memo:
        try:
            x = torch.zeros(16, 16, device=device, dtype=dtype)
            w = torch.zeros(2, 16, 16, device=device, dtype=dtype)
            torch._grouped_mm(x, w, offs=torch.tensor([8, 16], device=device, dtype=torch.int32))
            _memo[key] = True
        except (AttributeError, RuntimeError, NotImplementedError):
            _memo[key] = False
    return _memo[key]


# ------------------------------------------------------------------------------------- attention


def split_kv_up(w_kv_up: Tensor, n_heads: int, nope: int, v_dim: int, rank: int) -> tuple[Tensor, Tensor]:
    """MLA's latent up-projection as per-head key and value parts, views ``(H, nope, r)`` and ``(H, v, r)``.

    Weight absorption applies them on the query side (``W_uk^T q_nope``) and after attention (``W_uv``),
    so the cached latent is never expanded back to per-head keys and values.
    """
    up = w_kv_up.view(n_heads, nope + v_dim, rank)
    return up[:, :nope], up[:, nope:]


# ---------------------------------------------------------------------------------- the loop

A_MAX = 1.0 - 2.0**-8
"""Largest A: the largest bfloat16 below 1 (exactly representable in fp16 and fp32 too), so A < 1 in every dtype."""
LOG_RATE_MIN = math.log(-math.log(A_MAX))
"""log(dt * rate) at which A reaches A_MAX; the reference's floor of -20 lets A round to exactly 1.0."""
LOG_RATE_MAX = 20.0


def lti_A(log_A: Tensor, log_dt: Tensor) -> Tensor:
    """Diagonal A = exp(-exp(log_dt + log_A)) of the LTI injection, computed in fp32, every entry in (0, A_MAX]."""
    log_rate = (log_dt.float() + log_A.float()).clamp(LOG_RATE_MIN, LOG_RATE_MAX)
    return torch.exp(-torch.exp(log_rate)).clamp(max=A_MAX).to(log_A.dtype)


def lti_update(h: Tensor, A: Tensor, B: Tensor, e: Tensor, out: Tensor) -> Tensor:
    """``h' = A*h + B*e + out`` (stable: rho(A) < 1), as two fused multiply-adds."""
    return torch.addcmul(torch.addcmul(out, B, e), A, h)


def lora_scale(table: Tensor, t: int) -> Tensor:
    """Loop ``t``'s row of the depth-LoRA scale table; loops past the table reuse its last row."""
    return table[min(t, table.shape[0] - 1)]


def lora_delta(x: Tensor, down: Tensor, B: Tensor, scale: Tensor, project: Project = F.linear) -> Tensor:
    """The depth-wise LoRA delta ``(down(x) * scale) @ B`` (``down`` (rank, D), ``B`` (rank, D))."""
    return project(project(x, down) * scale, B.t())


def lora_add(x: Tensor, down: Tensor, B: Tensor, scale: Tensor) -> Tensor:
    """``x + lora_delta(x, ...)`` with the addition inside the matmul (one pass over x fewer)."""
    low = (F.linear(x, down) * scale).reshape(-1, B.shape[0])
    return torch.addmm(x.reshape(-1, x.shape[-1]), low, B).view(x.shape)


def halt_prob(h: Tensor, weight: Tensor, bias: Tensor, project: Project = F.linear) -> Tensor:
    """ACT halting probability sigmoid(w . h + b) per position: h (..., D) -> (...,)."""
    return torch.sigmoid(project(h, weight) + bias).squeeze(-1)


class ACTStep(NamedTuple):
    weight: Tensor  # this loop's output weight per position
    cumulative: Tensor  # the new cumulative halting mass
    crossing: Tensor  # positions that paid their remainder at this loop


def act_step(
    p: Tensor, cumulative: Tensor, running: Tensor, threshold: float, final: Tensor | bool = False
) -> ACTStep:
    """One ACT step (Graves, 2016): a running position is weighted ``p``, or its remainder ``1 - cumulative``
    when its mass crosses ``threshold`` or when ``final`` (its last loop; our default pays the remainder
    there so outputs never shrink). ``running`` (float 0/1) zeroes positions that already halted."""
    crossing = cumulative + p >= threshold
    if final is True:
        crossing = torch.ones_like(crossing)
    elif final is not False:
        crossing = crossing | final
    weight = torch.where(crossing, (1.0 - cumulative).clamp(min=0), p) * running
    return ACTStep(weight, cumulative + p * running, crossing)
