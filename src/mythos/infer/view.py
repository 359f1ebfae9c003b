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

from dataclasses import replace

import torch
from torch import Tensor, nn

from mythos.infer.attention import decode_attention
from mythos.infer.weights import (
    ACTSemantics,
    BlockWeights,
    DecodeView,
    HaltWeights,
    LoRAWeights,
    MoEWeights,
    SwiGLUWeights,
    borrowed_norm,
)
from mythos.model import functional as fn

# --------------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------------


def rope_table(rope_dim: int, max_len: int, theta: float) -> Tensor:
    """Complex rotations per (position, frequency pair), built from fp32 angles as the model does.

    Kept by the engine (not the model), in complex64 whatever the model dtype, so angles never round.
    """
    angles = fn.rope_angles(rope_dim, 0, max_len, theta)
    return torch.polar(torch.ones_like(angles), angles)


# --------------------------------------------------------------------------------------------------
# our model (mythos.model.Mythos)
# --------------------------------------------------------------------------------------------------


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
        attn_norm=borrowed_norm(block.attn_norm),
        attn=decode_attention(cfg.attn_type).weights(block.attn, cfg),
        ffn_norm=borrowed_norm(block.ffn_norm),
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
        final_norm=borrowed_norm(model.norm),
        prelude=[_block(b, cfg, moe=False) for b in model.prelude],
        recurrent=_block(rec.block, cfg, moe=True),
        coda=[_block(b, cfg, moe=False) for b in model.coda],
        recurrent_norm=borrowed_norm(rec.norm),
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


def copied_from(model: nn.Module) -> list[Tensor]:
    """The model's parameters a view holds in another layout (so not live): what :func:`view_from_model`
    must be called again for when they change. Every other tensor of a view is the model's own storage."""
    rec = model.recurrent
    attn = decode_attention(model.cfg.attn_type)
    out = [
        rec.injection.log_A,
        rec.injection.log_dt,
        rec.block.ffn.experts.w_gate_up,
        rec.block.ffn.experts.w_down,
    ]
    for block in [*model.prelude, rec.block, *model.coda]:
        out += attn.copied(block.attn)
    return out


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
        attn = decode_attention(view.attn_type).cast(bw.attn, cast)
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
