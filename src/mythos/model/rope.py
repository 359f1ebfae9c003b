"""Rotary position embedding with real cos/sin tables computed in fp32 on the fly.

There are no complex (or any) buffers: ``model.to(torch.bfloat16)`` casts floating buffers, which would
silently quantise the angles; here the tables are rebuilt in fp32 from ``theta`` for the positions a call
needs. Pairs are *interleaved* (channels 2i and 2i+1 rotate together), matching the reference's
``view_as_complex`` convention so converted weights give the same numbers.
"""

from __future__ import annotations

import torch

from .functional import rope_tables, rotate_complex, rotate_real

__all__ = ["apply_rope", "rope_tables", "rotate_complex", "rotate_real"]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of the last dim of x (B, T, H, D) by per-position angles; result in x.dtype.

    Eager mode multiplies complex numbers (one fused kernel instead of the four strided real products, which remain the path under ``torch.compile`` because inductor has no complex codegen).
    """
    c, s = cos[:, None, :], sin[:, None, :]
    if torch.compiler.is_compiling():
        return rotate_real(x.float(), c, s).to(x.dtype)
    return rotate_complex(x.float(), torch.complex(c, s)).to(x.dtype)
