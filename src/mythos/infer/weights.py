"""The decode engine's weights as plain tensors: what a :class:`DecodeView` holds, and nothing that builds it.

Kept apart from the builders (``view.py``) and the kernels (``kernels.py``) so both can import these types;
the attention variants' own weight types live with their kernels in ``attention.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mythos.model import functional as fn


@dataclass
class Norm:
    """An RMSNorm borrowed from the model (weight and epsilon); applied by :func:`rms_norm`."""

    weight: Tensor
    eps: float


def borrowed_norm(module) -> Norm:
    """The weight (borrowed, not copied) and epsilon of a model's ``RMSNorm``."""
    return Norm(module.weight.detach(), float(module.eps))


def rms_norm(x: Tensor, norm: Norm) -> Tensor:
    """RMSNorm as the model computes it: the reduction in fp32, then the weight in the model's dtype."""
    return fn.rms_norm(x, norm.weight, norm.eps)


@dataclass
class SwiGLUWeights:
    """A dense SwiGLU borrowed from the model: ``w_down(silu(gate) * up)`` with [gate | up] = ``w_gate_up(x)``."""

    w_gate_up: Tensor  # (2 * hidden, D): gate rows, then up rows
    w_down: Tensor  # (D, hidden)


@dataclass
class MoEWeights:
    """Routed experts laid out for one-matmul decode, plus the model's own MoE module for many tokens.

    ``w_gate_up`` stacks every expert's [gate | up] rows so a few decode tokens run all experts in one
    matmul; ``w_down`` concatenates every expert's down projection along its input so the gate-weighted
    hidden states of all experts reduce to the output in one matmul.
    """

    router: Tensor  # (E, D)
    router_bias: Tensor  # (E,) selection-only bias
    w_gate_up: Tensor  # (E * 2 * Ed, D): expert e's rows are [gate (Ed) | up (Ed)]
    w_down: Tensor  # (D, E * Ed)
    stacked_gate_up: Tensor  # (E, D, 2 * Ed), the model's own grouped-matmul layout
    stacked_down: Tensor  # (E, Ed, D)
    rows_gate_up: Tensor  # (E, 2 * Ed, D): each expert's [gate | up] as output rows (a view of w_gate_up)
    rows_down: Tensor  # (E, D, Ed): each expert's down projection as output rows
    n_experts: int
    expert_dim: int
    top_k: int
    shared: SwiGLUWeights | None
    module: Callable[[Tensor], Tensor]  # the model's grouped-dispatch MoE, used for prompts


@dataclass
class LoRAWeights:
    """The recurrent block's depth-wise LoRA: ``(down(x) * scale[t]) @ B``, loops past the table reuse its last row."""

    down: Tensor  # (rank, D)
    B: Tensor  # (rank, D)
    scale: Tensor  # (table loops, rank)


@dataclass
class HaltWeights:
    """ACT's halting unit: p = sigmoid(w · h + b)."""

    weight: Tensor  # (1, D)
    bias: Tensor  # (1,)


@dataclass
class BlockWeights:
    attn_norm: Norm
    attn: Any  # the attention type's decode weights (see attention.py)
    ffn_norm: Norm
    ffn: SwiGLUWeights | None  # dense blocks
    moe: MoEWeights | None = None  # recurrent block


@dataclass
class ACTSemantics:
    """How halting weights are assigned; differs between the reference and our default model."""

    threshold: float
    remainder_at_final: bool  # ours: the last loop takes all remaining mass so outputs never shrink
    enabled: bool = True


@dataclass
class DecodeView:
    """Everything the engine needs from a model, borrowed (not copied) where possible."""

    embed: Tensor  # (V, D); the head is tied to it
    head: Tensor  # (V, D)
    final_norm: Norm
    prelude: list[BlockWeights]
    recurrent: BlockWeights
    coda: list[BlockWeights]
    recurrent_norm: Norm | None  # norm applied to (h + e) before the block, when the model has one
    loop_bias: Callable[[int], Tensor]  # loop index -> additive (D,) loop embedding
    lora: LoRAWeights
    inject_A: Tensor  # (D,) diagonal of the injection's A (from the model's get_A())
    inject_B: Tensor  # (D,)
    halt: HaltWeights
    act: ACTSemantics
    rope_freqs: Tensor  # (max_len, rope_dim // 2) complex64: rotation of each interleaved pair per position
    max_seq_len: int
    max_loop_iters: int
    attn_type: str
    vocab_size: int
    dim: int
    dtype: torch.dtype
