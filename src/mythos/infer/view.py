"""A decode-time view of a looped model: the weights the engine needs, arranged for fast decoding.

The engine never owns weights. A *view* borrows them from a ``mythos.model.Mythos`` (a reference
``open_mythos`` model gets there through ``mythos.model.from_open_mythos``) and re-arranges only what
decoding wants in another shape: MLA projections are pre-multiplied for weight absorption (queries land in
the latent space; the output projection reads the latent directly), and expert weights are laid out so a
few decode tokens run every expert in one matmul. Everything else — FFNs, LoRA, injection, halting — is called through the model's own
modules, so the engine follows the model's semantics rather than restating them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
class MLAWeights:
    """Multi-latent attention with absorbed weights.

    ``w_q``: c_q -> [q_latent (H*r) | q_rope (H*rope)] where q_latent = q_nope @ W_uk (absorption);
    ``w_o``: attention-weighted latent (H*r) -> model dim, i.e. wo ∘ W_uv.
    The cache holds, per token, the normalized latent (r) and ONE rotated rope key shared by all heads.
    """

    w_down: Tensor  # (q_lora + r + rope, D): [query latent | kv latent | shared rope key]
    q_norm: Norm
    w_q: Tensor  # (H*(r+rope), q_lora)
    kv_norm: Norm
    q_lora: int
    w_o: Tensor  # (D, H*r)
    n_heads: int
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
    n_experts: int
    expert_dim: int
    top_k: int
    shared: Callable[[Tensor], Tensor] | None
    module: Callable[[Tensor], Tensor]  # the model's grouped-dispatch MoE, used for prompts


@dataclass
class BlockWeights:
    attn_norm: Norm
    attn: MLAWeights | GQAWeights
    ffn_norm: Norm
    ffn: Callable[[Tensor], Tensor] | None  # dense blocks: the model's own SwiGLU module
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
    lora: Callable[[Tensor, int], Tensor]  # (block output, loop index) -> delta
    inject_A: Tensor  # (D,) diagonal of the injection's A (from the model's get_A())
    inject_B: Tensor  # (D,)
    halt_prob: Callable[[Tensor], Tensor]  # h (N, D) -> p (N,)
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


def absorb_mla(
    w_q_nope: Tensor, w_q_rope: Tensor, w_kv_up: Tensor, w_o: Tensor, n_heads: int, nope: int, v_dim: int, rank: int
) -> tuple[Tensor, Tensor]:
    """Pre-multiply MLA's up-projections into the query and output projections (weight absorption).

    score_h = q_nope_h · (W_uk_h c) = (W_uk_hᵀ q_nope_h) · c, so queries are mapped into the latent once per
    token and the cached latent is never expanded back to per-head keys. Likewise the output reads the
    attention-weighted latent through wo ∘ W_uv.
    """
    q_in = w_q_nope.shape[1]
    up = w_kv_up.float().view(n_heads, nope + v_dim, rank)
    w_uk, w_uv = up[:, :nope], up[:, nope:]  # (H, nope, r), (H, v, r)
    q_nope = w_q_nope.float().view(n_heads, nope, q_in)
    q_lat = torch.einsum("hnr,hni->hri", w_uk, q_nope).reshape(n_heads * rank, q_in)
    w_q = torch.cat([q_lat, w_q_rope.float()], dim=0)
    wo = w_o.float().view(w_o.shape[0], n_heads, v_dim)
    w_out = torch.einsum("dhv,hvr->dhr", wo, w_uv).reshape(w_o.shape[0], n_heads * rank)
    return w_q.to(w_q_nope.dtype), w_out.to(w_o.dtype)


# --------------------------------------------------------------------------------------------------
# our model (mythos.model.Mythos)
# --------------------------------------------------------------------------------------------------


def _norm(m: nn.Module) -> Norm:
    return Norm(m.weight.detach(), float(m.eps))


def _attention(attn: nn.Module, cfg) -> MLAWeights | GQAWeights:
    if cfg.attn_type == "mla":
        H, nope, rd = cfg.n_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim
        q_up = attn.q_up.weight.detach()
        w_q, w_o = absorb_mla(
            q_up[: H * nope], q_up[H * nope :], attn.kv_up.weight.detach(), attn.wo.weight.detach(),
            H, nope, cfg.v_head_dim, cfg.kv_lora_rank,
        )
        return MLAWeights(
            w_down=attn.w_down.weight.detach(), q_norm=_norm(attn.q_norm), w_q=w_q, kv_norm=_norm(attn.kv_norm),
            q_lora=cfg.q_lora_rank, w_o=w_o, n_heads=H, kv_rank=cfg.kv_lora_rank, rope_dim=rd,
            scale=(nope + rd) ** -0.5,
        )
    hd = cfg.head_dim
    return GQAWeights(attn.wqkv.weight.detach(), attn.wo.weight.detach(), cfg.n_heads, cfg.n_kv_heads, hd, hd**-0.5)


def _moe(ffn: nn.Module) -> MoEWeights:
    experts = ffn.experts
    E, D, two_h = experts.w_gate_up.shape
    return MoEWeights(
        router=ffn.router.weight.detach(),
        router_bias=ffn.router.bias,
        w_gate_up=experts.w_gate_up.detach().permute(0, 2, 1).reshape(E * two_h, D).contiguous(),
        w_down=experts.w_down.detach().permute(2, 0, 1).reshape(D, E * (two_h // 2)).contiguous(),
        stacked_gate_up=experts.w_gate_up.detach(),
        stacked_down=experts.w_down.detach(),
        n_experts=E,
        expert_dim=two_h // 2,
        top_k=ffn.top_k,
        shared=ffn.shared,
        module=ffn,
    )


def _block(block: nn.Module, cfg, moe: bool) -> BlockWeights:
    return BlockWeights(
        attn_norm=_norm(block.attn_norm),
        attn=_attention(block.attn, cfg),
        ffn_norm=_norm(block.ffn_norm),
        ffn=None if moe else block.ffn,
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
        lora=rec.lora,
        inject_A=A,
        inject_B=B,
        halt_prob=rec.act,
        act=ACTSemantics(
            threshold=float(cfg.act_threshold), remainder_at_final=not cfg.reference_compat, enabled=bool(cfg.act)
        ),
        rope_freqs=rope_table(cfg.rope_dim, cfg.max_seq_len, cfg.rope_theta),
        max_seq_len=cfg.max_seq_len,
        max_loop_iters=cfg.max_loop_iters,
        attn_type=cfg.attn_type,
        vocab_size=cfg.vocab_size,
        dim=cfg.dim,
        dtype=dtype,
    )
