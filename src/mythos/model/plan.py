"""A training memory and throughput plan for a config on N devices, computed on the meta device.

The model is built on ``torch.device("meta")`` (no storage), so the 1T preset is planned in a second. Parameter
counts come from the meta model's own parameters, grouped by the FSDP2 units :mod:`mythos.train.distributed`
uses. Activations are not guessed from a formula: one training forward (bf16, flash-style attention, the fp32
loss) is traced on meta tensors with ``saved_tensors_hooks``, and every tensor autograd keeps for the backward is
summed, once with 1 loop and once with 2 loops; the difference is the cost of one more loop with gradient.

Per device the plan adds (FSDP2 with bf16 compute, fp32 master weights and reduce):

- sharded state: fp32 params + fp32 grads + AdamW's two fp32 moments = 16 bytes per parameter / N;
- the looped block gathered for its whole forward and backward (bf16 params + bf16 unsharded grads; its
  experts divided by the expert-parallel degree): it is one FSDP2 unit, gathered once per step, because
  re-gathering it every loop would cost 2 * loops all-gathers per step;
- two gathered prelude/coda/root units in flight (the one computing and the one prefetched);
- activations for the chosen strategy: full backprop through every loop, truncated backprop (only the last
  ``grad_loops`` loops keep activations) or activation checkpointing per loop (each loop keeps its input,
  one loop is recomputed at a time).

What this does not model: allocator fragmentation, NCCL buffers, the CUDA context (~0.5-1 GB) and temporary
workspace of kernels; ``fits`` keeps 10% of the device free for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

GiB = 1024**3
HEADROOM = 0.9
"""Fraction of device memory the plan lets a configuration use (the rest: context, NCCL, fragmentation)."""
STATE_BYTES_PER_PARAM = 16
"""fp32 master weight 4 + fp32 gradient 4 + AdamW exp_avg 4 + exp_avg_sq 4, all sharded."""


class PlanError(ValueError):
    """A plan input that cannot be planned; the message names the option and what would be valid."""


class _FlashAttention(TorchFunctionMode):
    """Route causal SDPA to the flash kernel's meta implementation: it saves (q, k, v, out, logsumexp) like
    the GPU kernel does, not the (T x T) probabilities the math fallback would."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention and kwargs.get("is_causal") and len(args) == 3:
            q, k, v = args
            return torch.ops.aten._scaled_dot_product_flash_attention(
                q, k, v, 0.0, True, False, scale=kwargs.get("scale")
            )[0]
        return func(*args, **kwargs)


def build_meta_model(cfg: Any, dtype: torch.dtype = torch.bfloat16) -> torch.nn.Module:
    """The model with every tensor on the meta device (shapes and dtypes only, no memory)."""
    from .model import Mythos

    with torch.device("meta"):
        model = Mythos(cfg.replace(act_early_exit=False))  # the early-exit check needs real values
    return model.to(dtype)


def saved_activation_bytes(
    model: torch.nn.Module,
    batch: int,
    seq_len: int,
    n_loops: int,
    *,
    grad_loops: int | None = None,
    flash: bool = True,
    device: str | torch.device = "meta",
) -> int:
    """Bytes autograd keeps for the backward of one training forward + fp32 cross-entropy loss.

    Parameters (and the same tensor saved twice) are not counted. ``device="cpu"`` traces a real model.
    """
    params = {id(p) for p in model.parameters()}
    seen: dict[int, torch.Tensor] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        base = tensor._base if tensor._base is not None else tensor  # a weight's view is still the weight
        if id(base) not in params and id(tensor) not in seen:
            seen[id(tensor)] = tensor  # held so ids stay unique while tracing
        return tensor

    ids = torch.zeros(batch, seq_len, dtype=torch.long, device=device)
    mode = _FlashAttention() if flash else _NoMode()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), mode:
        logits = model(ids, n_loops=n_loops, grad_loops=grad_loops).float()
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids.reshape(-1))
    return sum(t.numel() * t.element_size() for t in seen.values())


class _NoMode:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def unit_params(model: torch.nn.Module, expert_parallel: int = 1) -> dict[str, int]:
    """Parameters per FSDP2 unit (the grain :func:`mythos.train.distributed.wrap` shards at); the looped
    block is one unit, listed by its parts. With expert parallelism each rank holds ``n_experts / E`` experts.
    """
    units: dict[str, int] = {}
    for i, block in enumerate(model.prelude):
        units[f"prelude.{i}"] = sum(p.numel() for p in block.parameters())
    for i, block in enumerate(model.coda):
        units[f"coda.{i}"] = sum(p.numel() for p in block.parameters())
    ffn = model.recurrent.block.ffn
    units["recurrent.block.ffn.experts"] = sum(p.numel() for p in ffn.experts.parameters()) // expert_parallel
    if ffn.shared is not None:
        units["recurrent.block.ffn.shared"] = sum(p.numel() for p in ffn.shared.parameters())
    units["recurrent.block.attn"] = sum(p.numel() for p in model.recurrent.block.attn.parameters())
    inner = {
        id(p)
        for m in (ffn.experts, ffn.shared, model.recurrent.block.attn)
        if m is not None
        for p in m.parameters()
    }
    units["recurrent (rest)"] = sum(p.numel() for p in model.recurrent.parameters() if id(p) not in inner)
    counted = {id(p) for p in model.prelude.parameters()} | {id(p) for p in model.coda.parameters()}
    counted |= {id(p) for p in model.recurrent.parameters()}
    units["root (embed/head, norm)"] = sum(p.numel() for p in model.parameters() if id(p) not in counted)
    return units


@dataclass
class Strategy:
    name: str
    activations: int
    peak: int
    fits: bool
    max_batch: int  # largest micro batch per device that fits (0: not even 1)


@dataclass
class Plan:
    """Everything `mythos model plan` prints (``to_dict`` is the --json form)."""

    preset: str
    devices: int
    device_memory_gb: float
    expert_parallel: int
    seq_len: int
    batch: int
    loops: int
    grad_loops: int
    total_params: int
    units: dict[str, int]
    state_bytes: int
    looped_resident_bytes: int
    gathered_bytes: int
    base_activations: int
    per_loop_activations: int
    loop_input_bytes: int
    strategies: list[Strategy]
    flops_per_token: float
    mfu: float
    peak_tflops: float
    tokens_per_s_per_device: float
    allgathers_per_step: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def make_plan(
    cfg: Any,
    *,
    label: str,
    devices: int,
    device_memory_gb: float,
    expert_parallel: int = 1,
    seq_len: int | None = None,
    batch: int = 1,
    loops: int | None = None,
    grad_loops: int | None = None,
    mfu: float = 0.4,
    peak_tflops: float = 989.0,
) -> Plan:
    """Plan one training configuration; raises :class:`PlanError` naming the bad option."""
    from .params import count_params

    checks = [
        (devices, "devices", "an integer >= 1"),
        (expert_parallel, "expert-parallel", "an integer >= 1"),
        (batch, "batch", "an integer >= 1"),
    ]
    for value, name, text in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PlanError(f"--{name}={value!r} is invalid: must be {text}")
    if not device_memory_gb > 0:
        raise PlanError(f"--device-memory={device_memory_gb!r} is invalid: must be a number of GB > 0")
    if devices % expert_parallel or cfg.n_experts % expert_parallel:
        raise PlanError(
            f"--expert-parallel={expert_parallel} is invalid: must divide --devices={devices} and "
            f"n_experts={cfg.n_experts}"
        )
    seq_len = cfg.max_seq_len if seq_len is None else seq_len
    if not 1 <= seq_len <= cfg.max_seq_len:
        raise PlanError(f"--seq-len={seq_len} is invalid: must be in 1..max_seq_len={cfg.max_seq_len}")
    loops = cfg.max_loop_iters if loops is None else loops
    if loops < 1:
        raise PlanError(f"--loops={loops} is invalid: must be >= 1")
    grad_loops = min(4, loops) if grad_loops is None else grad_loops
    if not 1 <= grad_loops <= loops:
        raise PlanError(f"--grad-loops={grad_loops} is invalid: must be in 1..--loops={loops}")
    if not 0 < mfu <= 1 or not peak_tflops > 0:
        raise PlanError(f"--mfu={mfu} / --peak-tflops={peak_tflops}: need 0 < mfu <= 1 and peak-tflops > 0")

    model = build_meta_model(cfg)
    total = sum(p.numel() for p in model.parameters())
    units = unit_params(model, expert_parallel)
    looped = sum(v for k, v in units.items() if k.startswith("recurrent"))
    others = [v for k, v in units.items() if not k.startswith("recurrent")]
    # expert parallelism keeps each ep rank's experts whole on every dp replica (not sharded over dp)
    experts = units["recurrent.block.ffn.experts"] * expert_parallel if expert_parallel > 1 else 0
    state = STATE_BYTES_PER_PARAM * ((total - experts) // devices + experts // expert_parallel)
    looped_resident = 2 * 2 * looped  # bf16 params + bf16 unsharded grads, kept for the whole step
    gathered = 2 * 2 * max(others)  # the computing unit and the prefetched one, bf16

    one = saved_activation_bytes(model, batch, seq_len, 1)
    two = saved_activation_bytes(model, batch, seq_len, 2)
    per_loop = two - one
    base = one - per_loop
    loop_input = batch * seq_len * cfg.dim * 2  # a checkpointed loop keeps its bf16 input h
    acts = {
        "full backprop": base + loops * per_loop,
        f"truncated (grad_loops={grad_loops})": base + grad_loops * per_loop,
        "checkpoint per loop": base + loops * loop_input + per_loop,
        f"checkpoint + truncated ({grad_loops})": base + grad_loops * loop_input + per_loop,
    }
    budget = device_memory_gb * 1e9 * HEADROOM
    fixed = state + looped_resident + gathered
    strategies = []
    for name, act in acts.items():
        peak = fixed + act
        per_sample = act / batch  # activations are linear in the micro batch
        max_batch = int((budget - fixed) // per_sample) if budget > fixed else 0
        strategies.append(Strategy(name, act, peak, peak <= budget, max(max_batch, 0)))

    # FLOPs per token: 6 x parameter applications for loops with gradient, 2x for no-grad loops, plus
    # causal attention (q.k and p.v over seq_len/2 keys on average).
    counts1, counts2 = count_params(cfg, 1), count_params(cfg, 2)
    loop_applied = counts2.applied - counts1.applied
    rest_applied = counts1.applied - loop_applied
    if cfg.attn_type == "mla":
        attn_width = cfg.n_heads * (cfg.qk_nope_head_dim + cfg.qk_rope_head_dim + cfg.v_head_dim)
    else:
        attn_width = 2 * cfg.dim
    attn_fwd = 2 * attn_width * seq_len / 2  # per token per attention layer
    layers_rest = cfg.prelude_layers + cfg.coda_layers
    fwd_loop = 2 * loop_applied + attn_fwd
    flops = 6 * rest_applied + 3 * layers_rest * attn_fwd + grad_loops * 3 * fwd_loop
    flops += (loops - grad_loops) * fwd_loop
    tokens = mfu * peak_tflops * 1e12 / flops

    n_dense = cfg.prelude_layers + cfg.coda_layers  # gathered in forward and again in backward
    return Plan(
        preset=label,
        devices=devices,
        device_memory_gb=device_memory_gb,
        expert_parallel=expert_parallel,
        seq_len=seq_len,
        batch=batch,
        loops=loops,
        grad_loops=grad_loops,
        total_params=total,
        units=units,
        state_bytes=state,
        looped_resident_bytes=looped_resident,
        gathered_bytes=gathered,
        base_activations=base,
        per_loop_activations=per_loop,
        loop_input_bytes=loop_input,
        strategies=strategies,
        flops_per_token=flops,
        mfu=mfu,
        peak_tflops=peak_tflops,
        tokens_per_s_per_device=tokens,
        allgathers_per_step={
            # root once, each dense block twice, the looped block once (kept from its forward into backward)
            "per step": 1 + 2 * n_dense + 1,
            "if re-gathered every loop": 1 + 2 * n_dense + 2 * loops,
        },
    )


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB"


def format_plan(plan: Plan) -> str:
    """The human-readable table `mythos model plan` prints."""
    ep = plan.expert_parallel
    experts_note = f", experts /{ep}" if 1 < ep < plan.devices else ""
    lines = [
        f"{plan.preset}: {plan.total_params / 1e9:.2f} B parameters on {plan.devices} x "
        f"{plan.device_memory_gb:g} GB (FSDP2 over {plan.devices}, expert-parallel {plan.expert_parallel}), "
        f"micro batch {plan.batch} x seq {plan.seq_len}, {plan.loops} loops",
        "",
        "per device:",
        f"  {f'params + grads + AdamW (fp32, sharded /{plan.devices}{experts_note})':<52}"
        f"{_gb(plan.state_bytes):>12}",
        f"  {'looped block kept gathered (bf16 params + grads)':<52}{_gb(plan.looped_resident_bytes):>12}",
        f"  {'two gathered dense units in flight (bf16)':<52}{_gb(plan.gathered_bytes):>12}",
        f"  {'activations outside the loop':<52}{_gb(plan.base_activations):>12}",
        f"  {'activations per loop with gradient':<52}{_gb(plan.per_loop_activations):>12}",
        "",
        f"{'activation strategy':<34}{'activations':>14}{'peak/device':>14}{'fits':>6}{'max batch':>11}",
    ]
    for s in plan.strategies:
        lines.append(
            f"{s.name:<34}{_gb(s.activations):>14}{_gb(s.peak):>14}{'yes' if s.fits else 'no':>6}"
            f"{s.max_batch:>11}"
        )
    lines += [
        "",
        f"throughput at {plan.mfu:.0%} MFU of {plan.peak_tflops:g} TFLOP/s: "
        f"{plan.tokens_per_s_per_device:,.0f} tokens/s per device, "
        f"{plan.tokens_per_s_per_device * plan.devices:,.0f} tokens/s in all "
        f"({plan.flops_per_token / 1e9:.1f} GFLOP per token, grad_loops={plan.grad_loops})",
        f"all-gathers per step: {plan.allgathers_per_step['per step']} whatever the loop depth (the looped "
        f"block is one unit, gathered once); re-gathered every loop it would be "
        f"{plan.allgathers_per_step['if re-gathered every loop']}",
        f"fits = peak <= {HEADROOM:.0%} of device memory (CUDA context, NCCL buffers, fragmentation not modelled)",
    ]
    return "\n".join(lines)
