"""The pre-norm transformer block used by the prelude, the coda (dense SwiGLU) and the loop (MoE)."""

from __future__ import annotations

import torch
from torch import nn

from .attention import Rope, make_attention
from .cache import CacheSlot
from .config import MythosConfig
from .moe import MoE, SwiGLU
from .norm import RMSNorm


class TransformerBlock(nn.Module):
    """x + attn(norm(x)), then + ffn(norm(x)); ``ffn`` is a MoE only inside the recurrent block."""

    def __init__(self, cfg: MythosConfig, use_moe: bool = False) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = make_attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn: nn.Module = MoE(cfg) if use_moe else SwiGLU(cfg.dim, cfg.dense_hidden)
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()

    def forward(
        self, x: torch.Tensor, rope: Rope, cache: CacheSlot | None = None, start: int = 0
    ) -> torch.Tensor:
        x = self.attend(x, rope, cache, start)
        return x + self.dropout(self.ffn(self.ffn_norm(x)))

    def forward_with_load(
        self, x: torch.Tensor, rope: Rope, cache: CacheSlot | None = None, start: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` of the MoE block, with the MoE's expert load of this call (``MoE.forward_with_load``)."""
        x = self.attend(x, rope, cache, start)
        out, load = self.ffn.forward_with_load(self.ffn_norm(x))
        return x + self.dropout(out), load

    def attend(self, x: torch.Tensor, rope: Rope, cache: CacheSlot | None, start: int) -> torch.Tensor:
        """The attention half: ``x + attn(norm(x))``."""
        return x + self.dropout(self.attn(self.attn_norm(x), rope, cache, start))
