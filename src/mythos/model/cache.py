"""A preallocated static KV cache: one slot per (layer, loop) — prelude layers, every loop, coda layers.

Shapes never change after allocation (gpt-fast style), so decode does no reallocation. ``pos`` is the number
of positions already written; a forward call with a cache writes positions ``pos .. pos+T-1`` in every slot
and then advances ``pos`` — a multi-token call on a non-empty cache is chunked prefill. The looped block
writes one slot per loop index, which is why a cache is tied to one loop count (``n_loops``).
"""

from __future__ import annotations

import torch

from .attention import attention_type
from .config import MythosConfig


class CacheFullError(ValueError):
    """Writing past the cache's ``max_len`` (or the model's ``max_seq_len``)."""


class CacheSlot:
    """Preallocated tensors of one attention layer at one depth, time on dim ``time_dim``."""

    def __init__(self, tensors: list[torch.Tensor], time_dim: int) -> None:
        self.tensors = tensors
        self.time_dim = time_dim

    def update(self, start: int, *new: torch.Tensor) -> list[torch.Tensor]:
        """Write ``new`` at [start, start+T) and return each tensor's prefix [0, start+T).

        While autograd records (chunked prefill in training) the result is built with ``cat`` so gradients
        reach the current chunk; otherwise it is a view of the preallocated storage (no copies in decode).
        """
        out = []
        for buf, x in zip(self.tensors, new, strict=True):
            length = x.shape[self.time_dim]
            end = start + length
            buf.narrow(self.time_dim, start, length).copy_(x.detach())
            if torch.is_grad_enabled() and x.requires_grad:
                out.append(torch.cat([buf.narrow(self.time_dim, 0, start), x], dim=self.time_dim))
            else:
                out.append(buf.narrow(self.time_dim, 0, end))
        return out


class KVCache:
    """Static cache for one model: ``slots[i]`` belongs to prelude layer i, loop t, or coda layer i."""

    def __init__(
        self,
        cfg: MythosConfig,
        batch_size: int,
        max_len: int,
        n_loops: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"KVCache batch_size={batch_size} is invalid: must be >= 1")
        if not 1 <= max_len <= cfg.max_seq_len:
            raise ValueError(
                f"KVCache max_len={max_len} is invalid: must be in [1, cfg.max_seq_len={cfg.max_seq_len}]"
            )
        if n_loops < 1:
            raise ValueError(f"KVCache n_loops={n_loops} is invalid: must be >= 1")
        self.cfg = cfg
        self.batch_size = batch_size
        self.max_len = max_len
        self.n_loops = n_loops
        self.dtype = dtype
        self.pos = 0
        n_slots = cfg.prelude_layers + n_loops + cfg.coda_layers
        self.slots = [self._new_slot(device) for _ in range(n_slots)]

    def _new_slot(self, device: torch.device | str | None) -> CacheSlot:
        cfg, b, s = self.cfg, self.batch_size, self.max_len
        shapes, time_dim = attention_type(cfg.attn_type).cache_layout(cfg, b, s)
        return CacheSlot([torch.zeros(shape, device=device, dtype=self.dtype) for shape in shapes], time_dim)

    # slot lookup --------------------------------------------------------------
    def prelude_slot(self, i: int) -> CacheSlot:
        return self.slots[i]

    def loop_slot(self, t: int) -> CacheSlot:
        return self.slots[self.cfg.prelude_layers + t]

    def coda_slot(self, i: int) -> CacheSlot:
        return self.slots[self.cfg.prelude_layers + self.n_loops + i]

    # bookkeeping --------------------------------------------------------------
    def check_room(self, new_tokens: int) -> None:
        """Raise CacheFullError if ``new_tokens`` more positions do not fit."""
        end = self.pos + new_tokens
        if end > self.max_len:
            raise CacheFullError(
                f"KV cache overflow: pos={self.pos} + {new_tokens} new tokens = {end} > max_len={self.max_len}; "
                "allocate a larger cache with model.new_cache(batch_size, max_len=...) or start a new one"
            )

    def reset(self) -> None:
        """Forget everything written (the storage is reused, not zeroed: positions >= pos are never read)."""
        self.pos = 0

    @property
    def bytes_per_token(self) -> int:
        """Bytes one token of one batch row occupies across all slots (prelude, every loop, coda)."""
        per_slot = sum(t[0].numel() // self.max_len * t.element_size() for t in self.slots[0].tensors)
        return per_slot * len(self.slots)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for slot in self.slots for t in slot.tensors)
