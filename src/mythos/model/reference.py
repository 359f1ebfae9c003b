"""Bring open-mythos (0.5.0) weights into a `Mythos` with reference-compatible semantics.

The reference keeps separate projections where we fuse them; the mapping is pure concatenation:

- GQA ``wq, wk, wv`` -> ``wqkv`` (rows stacked q, k, v);
- MLA ``q_down, kv_down`` -> ``w_down``; ``q_up_nope, q_up_rope`` -> ``q_up``;
- SwiGLU ``gate, up`` -> ``w_gate_up`` (rows gate, then up); ``down`` -> ``w_down``;
- routed experts ``routed_experts.{e}.*`` -> stacked ``experts.w_gate_up[e]`` / ``experts.w_down[e]``
  (transposed to (in, out) for grouped matmul);
- the ``n_shared`` shared experts -> one SwiGLU whose hidden units are theirs side by side
  (sum of SwiGLUs == SwiGLU of the concatenation);
- ``router.weight`` -> ``router.weight``; buffer ``router_bias`` -> ``router.bias``.

Expected input of :func:`convert_open_mythos`: a state dict saved from ``OpenMythos`` (``torch.save(
model.state_dict(), path)``, a ``.pt``/``.pth`` file, or a ``.safetensors`` file) and a JSON object with the
reference ``MythosConfig`` fields (``json.dump(dataclasses.asdict(model.cfg), f)``). The RoPE buffers
(``freqs_cis``, ``freqs_cis_mla``) are ignored: we recompute RoPE.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import MythosConfig
from .model import Mythos

REFERENCE_FIELDS = (
    "vocab_size", "dim", "n_heads", "n_kv_heads", "max_seq_len", "max_loop_iters", "prelude_layers",
    "coda_layers", "attn_type", "kv_lora_rank", "q_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim",
    "v_head_dim", "n_experts", "n_shared_experts", "n_experts_per_tok", "expert_dim", "act_threshold",
    "rope_theta", "lora_rank", "max_output_tokens", "dropout",
)  # fmt: skip
IGNORED_KEYS = ("freqs_cis", "freqs_cis_mla")


def config_from_reference(ref_cfg: Any) -> MythosConfig:
    """Our config for a reference config (dataclass or dict), set to reference-compatible semantics."""
    data = dataclasses.asdict(ref_cfg) if dataclasses.is_dataclass(ref_cfg) else dict(ref_cfg)
    unknown = sorted(set(data) - set(REFERENCE_FIELDS))
    if unknown:
        raise ValueError(f"reference config has fields {unknown} that open-mythos 0.5.0 does not define")
    return MythosConfig(**{k: data[k] for k in REFERENCE_FIELDS if k in data}, reference_compat=True)


def _attention(src: dict[str, torch.Tensor], p: str, cfg: MythosConfig) -> dict[str, torch.Tensor]:
    if cfg.attn_type == "gqa":
        wqkv = torch.cat([src[f"{p}wq.weight"], src[f"{p}wk.weight"], src[f"{p}wv.weight"]])
        return {f"{p}wqkv.weight": wqkv, f"{p}wo.weight": src[f"{p}wo.weight"]}
    if cfg.attn_type != "mla":
        raise ValueError(f"attn_type={cfg.attn_type!r}: the reference converter knows 'gqa' and 'mla'")
    return {
        f"{p}w_down.weight": torch.cat([src[f"{p}q_down.weight"], src[f"{p}kv_down.weight"]]),
        f"{p}q_norm.weight": src[f"{p}q_norm.weight"],
        f"{p}q_up.weight": torch.cat([src[f"{p}q_up_nope.weight"], src[f"{p}q_up_rope.weight"]]),
        f"{p}kv_norm.weight": src[f"{p}kv_norm.weight"],
        f"{p}kv_up.weight": src[f"{p}kv_up.weight"],
        f"{p}wo.weight": src[f"{p}wo.weight"],
    }


def _swiglu(src: dict[str, torch.Tensor], prefixes: list[str], dst: str) -> dict[str, torch.Tensor]:
    gates = [src[f"{p}gate.weight"] for p in prefixes]
    ups = [src[f"{p}up.weight"] for p in prefixes]
    downs = [src[f"{p}down.weight"] for p in prefixes]
    return {f"{dst}w_gate_up.weight": torch.cat(gates + ups), f"{dst}w_down.weight": torch.cat(downs, dim=1)}


def _block(src: dict[str, torch.Tensor], p: str, cfg: MythosConfig, moe: bool) -> dict[str, torch.Tensor]:
    out = {
        f"{p}attn_norm.weight": src[f"{p}attn_norm.weight"],
        f"{p}ffn_norm.weight": src[f"{p}ffn_norm.weight"],
    }
    out.update(_attention(src, f"{p}attn.", cfg))
    if not moe:
        out.update(_swiglu(src, [f"{p}ffn."], f"{p}ffn."))
        return out
    f = f"{p}ffn."
    out[f"{f}router.weight"] = src[f"{f}router.weight"]
    out[f"{f}router.bias"] = src[f"{f}router_bias"]
    experts = range(cfg.n_experts)
    gate_up = [
        torch.cat([src[f"{f}routed_experts.{e}.gate.weight"], src[f"{f}routed_experts.{e}.up.weight"]])
        for e in experts
    ]
    out[f"{f}experts.w_gate_up"] = torch.stack([w.t() for w in gate_up])
    out[f"{f}experts.w_down"] = torch.stack([src[f"{f}routed_experts.{e}.down.weight"].t() for e in experts])
    if cfg.n_shared_experts:
        out.update(
            _swiglu(src, [f"{f}shared_experts.{s}." for s in range(cfg.n_shared_experts)], f"{f}shared.")
        )
    return out


def convert_state_dict(src: dict[str, torch.Tensor], cfg: MythosConfig) -> dict[str, torch.Tensor]:
    """Reference state dict -> our state dict (without the tied ``head.weight``)."""
    out: dict[str, torch.Tensor] = {"embed.weight": src["embed.weight"], "norm.weight": src["norm.weight"]}
    for i in range(cfg.prelude_layers):
        out.update(_block(src, f"prelude.{i}.", cfg, moe=False))
    for i in range(cfg.coda_layers):
        out.update(_block(src, f"coda.{i}.", cfg, moe=False))
    out.update(_block(src, "recurrent.block.", cfg, moe=True))
    r = "recurrent."
    for key in ("injection.log_A", "injection.log_dt", "injection.B", "act.halt.weight", "act.halt.bias",
                "lora.down.weight", "lora.B", "lora.scale.weight", "norm.weight"):  # fmt: skip
        out[r + key] = src[r + key]
    return {k: v.detach().clone() for k, v in out.items()}


def _load_into(cfg: MythosConfig, state: dict[str, torch.Tensor]) -> Mythos:
    with torch.device("meta"):
        model = Mythos(cfg)
    dtype = state["embed.weight"].dtype
    model = model.to_empty(device=state["embed.weight"].device).to(dtype)
    model.head.weight = model.embed.weight
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "head.weight"]
    if missing or unexpected:
        raise ValueError(f"converted state dict mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")
    model.head.weight = model.embed.weight
    return model


def from_open_mythos(ref_module: nn.Module) -> Mythos:
    """A `Mythos` holding the same weights as an ``open_mythos.main.OpenMythos``, reference-compatible."""
    cfg = config_from_reference(ref_module.cfg)
    model = _load_into(cfg, convert_state_dict(dict(ref_module.state_dict()), cfg))
    return model.train(ref_module.training)


def load_reference_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a reference state dict from ``.safetensors`` or a torch pickle (loaded with weights_only=True)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    return state


def convert_open_mythos(
    state_dict_path: str | os.PathLike[str],
    config_json_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
) -> Path:
    """Convert a saved reference checkpoint (state dict + config JSON) into a mythos checkpoint directory."""
    from .checkpoint import save_checkpoint

    ref_cfg = json.loads(Path(config_json_path).read_text(encoding="utf-8"))
    cfg = config_from_reference(ref_cfg)
    state = load_reference_state_dict(state_dict_path)
    model = _load_into(cfg, convert_state_dict(state, cfg))
    return save_checkpoint(model, out_dir)
