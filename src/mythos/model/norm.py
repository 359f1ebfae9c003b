"""RMSNorm, computed in fp32 so bf16/fp16 models normalise as accurately as fp32 ones."""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """Scale by the reciprocal root-mean-square of the last dimension, then by a learned weight (no bias)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.to(x.dtype) * self.weight
