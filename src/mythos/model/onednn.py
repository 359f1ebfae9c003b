"""fp32 linear layers through oneDNN on CPU.

Why: PyTorch sends an fp32 CPU matmul to MKL, and MKL takes its AVX2 code path on non-Intel CPUs, while
oneDNN, which ships inside PyTorch (it runs the bf16 matmuls), JIT-compiles AVX-512 kernels for the same
product — on an AVX-512 AMD CPU about twice the throughput (docs/model.md, "Speed"). Same IEEE fp32
arithmetic with a different blocking, so results agree with ``F.linear`` to float rounding (~1e-6 relative).
Training steps are two thirds matmul at the small configuration; see benchmarks/model_train_step.py.

Used only where it applies — fp32 tensors on CPU, eager mode (``torch.compile`` picks its own kernels), no
CPU autocast (which must see ``F.linear`` to run it in bf16) — and off with ``MYTHOS_ONEDNN=0``; everywhere
else :func:`linear` is ``F.linear``.
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@functools.cache
def enabled() -> bool:
    """oneDNN is built into this torch, exposes its linear op, and is not turned off by MYTHOS_ONEDNN=0."""
    return (
        os.environ.get("MYTHOS_ONEDNN", "1") != "0"
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


def _mm_t(a: Tensor, b: Tensor) -> Tensor:
    """a @ b.T for 2-D fp32 CPU tensors, by oneDNN."""
    return torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")


class _OneDNNLinear(torch.autograd.Function):
    """x @ w.T with its two backward products also on oneDNN (operands transposed into its layout)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        return _mm_t(x, weight)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = _mm_t(grad, weight.t().contiguous()) if ctx.needs_input_grad[0] else None
        grad_w = _mm_t(grad.t().contiguous(), x.t().contiguous()) if ctx.needs_input_grad[1] else None
        return grad_x, grad_w


def applies(x: Tensor, weight: Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and weight.dim() == 2
        and x.numel() > 0
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
        and enabled()
    )


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)``, computed by oneDNN for fp32 CPU tensors in eager mode."""
    if not applies(x, weight):
        return F.linear(x, weight, bias)
    out = _OneDNNLinear.apply(x.reshape(-1, x.shape[-1]), weight).view(*x.shape[:-1], weight.shape[0])
    return out if bias is None else out + bias


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state-dict keys) whose product goes through :func:`linear`."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)
