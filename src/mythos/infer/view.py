"""A decode-time view of a looped model: the weights the engine needs, arranged for fast decoding.

The engine never owns weights. A *view* borrows them from a ``mythos.model.Mythos`` (a reference
``open_mythos`` model gets there through ``mythos.model.from_open_mythos``) as plain tensors, so the
engine's kernels (``kernels.py``) can choose per call how to multiply them — a fused multiply-and-sum in a
compiled batch-1 step, a matmul otherwise. Only what decoding wants in another shape is re-arranged: MLA's
key/value up-projection is split per head for weight absorption (queries land in the latent space; values
leave it after attention), and expert weights are laid out so a few decode tokens read only their
experts. The model's MoE module still runs prompts, and the engine's tests hold its outputs to the model's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class Norm:
    """An RMSNorm borrowed from the model (weight and epsilon); applied by :func:`rms_norm`."""

    weight: Tensor
    eps: float


def rms_norm(x: Tensor, norm: Norm) -> Tensor:
    """RMSNorm as the model computes it: the reduction in fp32, then the weight in the model's dtype."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, norm.weight.shape, norm.weight, norm.eps)
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + norm.eps)).to(x.dtype) * norm.weight


@dataclass
class SwiGLUWeights:
    """A dense SwiGLU borrowed from the model: ``w_down(silu(gate) * up)`` with [gate | up] = ``w_gate_up(x)``."""

    w_gate_up: Tensor  # (2 * hidden, D): gate rows, then up rows
    w_down: Tensor  # (D, hidden)


@dataclass
class MLAWeights:
    """Multi-latent attention with weight absorption.

    Queries are mapped into the latent space per head (``w_uk``: q_latent_h = W_uk_hᵀ q_nope_h), and the
    attention-weighted latent is mapped back per head (``w_uv``) before ``w_o``. The up-projections are
    kept apart rather than pre-multiplied into ``w_q``/``w_o``: the factored form reads 0.59 M numbers per
    token where the product reads 0.85 M (small config), and batch-1 decode is bound by reading weights.
    The cache holds, per token, the normalized latent (r) and ONE rotated rope key shared by all heads.
    """

    w_down: Tensor  # (q_lora + r + rope, D): [query latent | kv latent | shared rope key]
    q_norm: Norm
    w_q: Tensor  # (H*(nope+rope), q_lora): [every head's nope | every head's rope] (the model's q_up)
    w_uk: Tensor  # (H, nope, r): key up-projection, applied to queries
    w_uv: Tensor  # (H, r, v): value up-projection, applied to the attention-weighted latent
    kv_norm: Norm
    q_lora: int
    w_o: Tensor  # (D, H*v)
    n_heads: int
    nope_dim: int
    kv_rank: int
    rope_dim: int
    scale: float


@dataclass
class GQAWeights:
    """Grouped-query attention with Q, K and V fused into one projection."""

    w_qkv: Tensor  # ((H + 2*Hkv) * hd, D)
    w_o: Tensor  # (D, H*hd)
    n_heads: int
    n_kv_heads: int
    head_dim: int
    scale: float


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
    attn: MLAWeights | GQAWeights
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


# --------------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------------


def rope_table(rope_dim: int, max_len: int, theta: float) -> Tensor:
    """Complex rotations per (position, frequency pair), built from fp32 angles as the model does.

    Kept by the engine (not the model), in complex64 whatever the model dtype, so angles never round.
    """
    freqs = 1.0 / (theta ** (torch.arange(0, rope_dim, 2, dtype=torch.float32) / rope_dim))
    angles = torch.outer(torch.arange(max_len, dtype=torch.float32), freqs)
    return torch.polar(torch.ones_like(angles), angles)


def split_kv_up(w_kv_up: Tensor, n_heads: int, nope: int, v_dim: int, rank: int) -> tuple[Tensor, Tensor]:
    """MLA's latent up-projection as the per-head matrices weight absorption applies.

    score_h = q_nope_h · (W_uk_h c) = (W_uk_hᵀ q_nope_h) · c, so queries are mapped into the latent once per
    token and the cached latent is never expanded back to per-head keys; values likewise leave the latent
    only after attention. Returns ``w_uk`` (H, nope, r) and ``w_uv`` (H, r, v).
    """
    up = w_kv_up.view(n_heads, nope + v_dim, rank)
    return up[:, :nope].contiguous(), up[:, nope:].transpose(1, 2).contiguous()


# --------------------------------------------------------------------------------------------------
# our model (mythos.model.Mythos)
# --------------------------------------------------------------------------------------------------


def _norm(m: nn.Module) -> Norm:
    return Norm(m.weight.detach(), float(m.eps))


def _attention(attn: nn.Module, cfg) -> MLAWeights | GQAWeights:
    if cfg.attn_type == "mla":
        H, nope, rd = cfg.n_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim
        w_uk, w_uv = split_kv_up(attn.kv_up.weight.detach(), H, nope, cfg.v_head_dim, cfg.kv_lora_rank)
        return MLAWeights(
            w_down=attn.w_down.weight.detach(),
            q_norm=_norm(attn.q_norm),
            w_q=attn.q_up.weight.detach(),
            w_uk=w_uk,
            w_uv=w_uv,
            kv_norm=_norm(attn.kv_norm),
            q_lora=cfg.q_lora_rank,
            w_o=attn.wo.weight.detach(),
            n_heads=H,
            nope_dim=nope,
            kv_rank=cfg.kv_lora_rank,
            rope_dim=rd,
            scale=(nope + rd) ** -0.5,
        )
    hd = cfg.head_dim
    return GQAWeights(
        attn.wqkv.weight.detach(), attn.wo.weight.detach(), cfg.n_heads, cfg.n_kv_heads, hd, hd**-0.5
    )


def _swiglu(ffn: nn.Module | None) -> SwiGLUWeights | None:
    return None if ffn is None else SwiGLUWeights(ffn.w_gate_up.weight.detach(), ffn.w_down.weight.detach())


def _moe(ffn: nn.Module) -> MoEWeights:
    experts = ffn.experts
    E, D, two_h = experts.w_gate_up.shape
    w_gate_up = experts.w_gate_up.detach().permute(0, 2, 1).reshape(E * two_h, D).contiguous()
    return MoEWeights(
        router=ffn.router.weight.detach(),
        router_bias=ffn.router.bias,
        w_gate_up=w_gate_up,
        w_down=experts.w_down.detach().permute(2, 0, 1).reshape(D, E * (two_h // 2)).contiguous(),
        stacked_gate_up=experts.w_gate_up.detach(),
        stacked_down=experts.w_down.detach(),
        rows_gate_up=w_gate_up.view(E, two_h, D),
        rows_down=experts.w_down.detach().permute(0, 2, 1).contiguous(),
        n_experts=E,
        expert_dim=two_h // 2,
        top_k=ffn.top_k,
        shared=_swiglu(ffn.shared),
        module=ffn,
    )


def _block(block: nn.Module, cfg, moe: bool) -> BlockWeights:
    return BlockWeights(
        attn_norm=_norm(block.attn_norm),
        attn=_attention(block.attn, cfg),
        ffn_norm=_norm(block.ffn_norm),
        ffn=None if moe else _swiglu(block.ffn),
        moe=_moe(block.ffn) if moe else None,
    )


def view_from_model(model: nn.Module) -> DecodeView:
    """Build a decode view of a ``mythos.model.Mythos`` (weights are borrowed; absorbed ones are new).

    Call again after the weights change (training): absorbed and stacked matrices are snapshots.
    """
    cfg = model.cfg
    rec = model.recurrent
    dtype = model.embed.weight.dtype
    device = model.embed.weight.device
    with torch.no_grad():
        A = rec.injection.get_A().detach()
        B = rec.injection.B.detach()
    return DecodeView(
        embed=model.embed.weight.detach(),
        head=model.head.weight.detach(),
        final_norm=_norm(model.norm),
        prelude=[_block(b, cfg, moe=False) for b in model.prelude],
        recurrent=_block(rec.block, cfg, moe=True),
        coda=[_block(b, cfg, moe=False) for b in model.coda],
        recurrent_norm=_norm(rec.norm),
        loop_bias=lambda t: rec.loop_embedding.vector(t, device, dtype),
        lora=LoRAWeights(rec.lora.down.weight.detach(), rec.lora.B.detach(), rec.lora.scale.weight.detach()),
        inject_A=A,
        inject_B=B,
        halt=HaltWeights(rec.act.halt.weight.detach(), rec.act.halt.bias.detach()),
        act=ACTSemantics(
            threshold=float(cfg.act_threshold),
            remainder_at_final=not cfg.reference_compat,
            enabled=bool(cfg.act),
        ),
        rope_freqs=rope_table(cfg.rope_dim, cfg.max_seq_len, cfg.rope_theta),
        max_seq_len=cfg.max_seq_len,
        max_loop_iters=cfg.max_loop_iters,
        attn_type=cfg.attn_type,
        vocab_size=cfg.vocab_size,
        dim=cfg.dim,
        dtype=dtype,
    )


def with_weight_dtype(view: DecodeView, dtype: torch.dtype) -> DecodeView:
    """A view whose matrices are stored in ``dtype`` (weight-only low precision; new tensors).

    Activations, norms, the router, the KV cache and every sum stay in the view's own dtype: the kernels
    widen each weight as they read it. Batch-1 decode is bound by reading weights, so bf16 storage reads
    half the bytes per token; what that costs in accuracy is measured in benchmarks/infer_decode.py.
    The prompt path's MoE (the model's module) keeps the model's weights.
    """

    def cast(t: Tensor) -> Tensor:
        return t.to(dtype)

    def block(bw: BlockWeights) -> BlockWeights:
        a = bw.attn
        if isinstance(a, MLAWeights):
            attn = replace(
                a,
                w_down=cast(a.w_down),
                w_q=cast(a.w_q),
                w_uk=cast(a.w_uk),
                w_uv=cast(a.w_uv),
                w_o=cast(a.w_o),
            )
        else:
            attn = replace(a, w_qkv=cast(a.w_qkv), w_o=cast(a.w_o))
        ffn = None if bw.ffn is None else SwiGLUWeights(cast(bw.ffn.w_gate_up), cast(bw.ffn.w_down))
        moe = bw.moe
        if moe is not None:
            shared = (
                None
                if moe.shared is None
                else SwiGLUWeights(cast(moe.shared.w_gate_up), cast(moe.shared.w_down))
            )
            moe = replace(
                moe,
                w_gate_up=cast(moe.w_gate_up),
                w_down=cast(moe.w_down),
                stacked_gate_up=cast(moe.stacked_gate_up),
                stacked_down=cast(moe.stacked_down),
                rows_gate_up=cast(moe.rows_gate_up),
                rows_down=cast(moe.rows_down),
                shared=shared,
            )
        return replace(bw, attn=attn, ffn=ffn, moe=moe)

    embed = cast(view.embed)
    head = embed if view.head is view.embed else cast(view.head)
    return replace(
        view,
        embed=embed,
        head=head,
        prelude=[block(b) for b in view.prelude],
        recurrent=block(view.recurrent),
        coda=[block(b) for b in view.coda],
    )
