"""Static (preallocated) KV cache for the decode engine, with policies for the recurrent loop's depths.

Every attention *site* (each prelude layer, each recurrent depth, each coda layer) owns one buffer of shape
``(slots, max_len + 1, width)`` written in place; the extra last row is a trash slot where padded tokens
write, so a padded batch never needs a data-dependent branch. Policies decide how recurrent depths map to
buffers:

- ``per-loop``: one buffer per depth, as the reference keeps (exact).
- ``shared``: one buffer for every depth; a token's entry holds its latest computed depth, so later tokens
  attend to past tokens' deepest entry. Recurrent memory is 1/n_loops of ``per-loop``.
- ``last-K`` (e.g. ``last-2``): the last K depths each get their own buffer, all earlier depths share one.
  Memory is (K+1)/n_loops of ``per-loop``; deep loops, which shape the output most, stay exact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor

from mythos.infer.attention import decode_attention
from mythos.infer.weights import DecodeView


def parse_policy(policy: str, n_loops: int) -> list[int]:
    """Map each recurrent depth to a buffer index for ``policy``; raises ValueError naming the value."""
    if policy == "per-loop":
        return list(range(n_loops))
    if policy == "shared":
        return [0] * n_loops
    match = re.fullmatch(r"last-(\d+)", policy)
    if match:
        k = int(match.group(1))
        if k < 1:
            raise ValueError(f"cache_policy={policy!r}: K must be >= 1 (e.g. 'last-2')")
        k = min(k, n_loops - 1)
        shared = n_loops - k
        return [0 if t < shared else t - shared + 1 for t in range(n_loops)]
    raise ValueError(
        f"cache_policy={policy!r} is not valid; use 'per-loop', 'shared' or 'last-<K>' with K a positive integer, e.g. 'last-2'"
    )


def entry_width(view: DecodeView) -> int:
    """Numbers cached per token per site: MLA latent + one shared rope key, or GQA keys and values."""
    return decode_attention(view.attn_type).entry_width(view.recurrent.attn)


@dataclass
class StaticKVCache:
    """Preallocated buffers plus per-slot positions (device tensor, and a host mirror to avoid syncs)."""

    buffers: list[Tensor]
    prelude_sites: list[int]
    loop_sites: list[int]  # recurrent depth -> buffer index
    coda_sites: list[int]
    positions: Tensor  # (slots,) long: tokens already cached per slot
    host_positions: list[int]
    max_len: int
    policy: str

    @classmethod
    def allocate(
        cls,
        view: DecodeView,
        slots: int,
        max_len: int,
        n_loops: int,
        policy: str = "per-loop",
        dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
    ) -> StaticKVCache:
        if max_len > view.max_seq_len:
            raise ValueError(
                f"max_len={max_len} exceeds the model's max_seq_len={view.max_seq_len}; lower max_len"
            )
        loop_map = parse_policy(policy, n_loops)
        n_rec = max(loop_map) + 1
        n_pre, n_coda = len(view.prelude), len(view.coda)
        width = entry_width(view)
        dtype = dtype or view.dtype
        buffers = [
            torch.zeros(slots, max_len + 1, width, dtype=dtype, device=device)
            for _ in range(n_pre + n_rec + n_coda)
        ]
        return cls(
            buffers=buffers,
            prelude_sites=list(range(n_pre)),
            loop_sites=[n_pre + i for i in loop_map],
            coda_sites=[n_pre + n_rec + i for i in range(n_coda)],
            positions=torch.zeros(slots, dtype=torch.long, device=device),
            host_positions=[0] * slots,
            max_len=max_len,
            policy=policy,
        )

    @property
    def n_loops(self) -> int:
        return len(self.loop_sites)

    @property
    def slots(self) -> int:
        return self.positions.shape[0]

    def bytes_per_token(self) -> int:
        """Bytes cached per token across all sites (what one more token of context costs)."""
        return sum(b.shape[-1] * b.element_size() for b in self.buffers)

    def reset_slot(self, slot: int) -> None:
        """Forget a slot's tokens; stale entries are masked by position, so nothing is cleared."""
        self.positions[slot] = 0
        self.host_positions[slot] = 0

    def move_slot(self, src: int, dst: int) -> None:
        """Copy one slot's cached tokens into another (compaction keeps active slots contiguous)."""
        n = self.host_positions[src]
        for buf in self.buffers:
            buf[dst, :n] = buf[src, :n]
        self.positions[dst] = self.positions[src]
        self.host_positions[dst] = n
