"""RMSNorm, computed in fp32 so bf16/fp16 models normalise as accurately as fp32 ones."""

from __future__ import annotations

import torch
from torch import nn

from .functional import rms_norm


class RMSNorm(nn.Module):
    """Scale by the reciprocal root-mean-square of the last dimension, then by a learned weight (no bias)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and torch.is_grad_enabled() and not torch.compiler.is_compiling():
            return _RMSNormFn.apply(x, self.weight, self.eps)  # the same forward, a faster backward
        return rms_norm(x, self.weight, self.eps)


class _RMSNormFn(torch.autograd.Function):
    """fp32 RMSNorm with a hand-written backward: the same forward ops, but about half the kernels of
    autograd's chain-rule backward through pow/mean/rsqrt/mul, which is what a CPU training step pays for."""

    @staticmethod
    def forward(ctx, x, weight, eps):  # type: ignore[no-untyped-def]
        r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        normed = x * r
        ctx.save_for_backward(normed, weight, r)
        return normed * weight

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        normed, weight, r = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            g = grad * weight
            # d/dx [x r]: r (g - normed * mean(g * normed))
            dot = torch.linalg.vecdot(g, normed).unsqueeze(-1).div_(normed.shape[-1])
            grad_x = torch.addcmul(g, normed, dot, value=-1).mul_(r)
        if ctx.needs_input_grad[1]:
            grad_w = (grad * normed).flatten(0, -2).sum(0)
        return grad_x, grad_w, None
