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
        self,
        x: torch.Tensor,
        rope: Rope,
        cache: CacheSlot | None = None,
        start: int = 0,
        return_load: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The block's output; with ``return_load`` (MoE blocks) also the MoE's expert load of this call."""
        x = x + self.dropout(self.attn(self.attn_norm(x), rope, cache, start))
        if return_load:
            out, load = self.ffn(self.ffn_norm(x), return_load=True)
            return x + self.dropout(out), load
        return x + self.dropout(self.ffn(self.ffn_norm(x)))
