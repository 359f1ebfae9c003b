"""Feed-forward layers: the dense SwiGLU of prelude/coda blocks and the fine-grained MoE of the looped block.

The MoE routes each token to ``top_k`` of ``n_experts`` small SwiGLU experts plus always-on shared experts
(DeepSeekMoE). Dispatch is grouped, not looped: the (token, expert) assignments are sorted by expert, the
tokens gathered into that order, and each projection is ONE grouped matmul over the stacked expert weights
(``torch._grouped_mm`` with per-expert offsets), then scattered back with ``index_add_``. Nothing in the
hot path loops over experts or tokens in Python, and nothing syncs with the host.

Balancing is aux-loss-free (DeepSeek-V3): ``router.bias`` shifts which experts are *selected* but the gate
weights come from the unbiased softmax, so the bias never enters the loss; ``update_router_bias`` nudges
it toward uniform load from the per-call statistics in ``last_load``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from .config import MythosConfig
from .functional import grouped_mm_available, route, swiglu_hidden
from .onednn import Linear


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)) with gate and up fused into one projection (rows: gate, then up)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.w_gate_up = Linear(dim, 2 * hidden, bias=False)
        self.w_down = Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_down(swiglu_hidden(self.w_gate_up(x)))


class Router(nn.Module):
    """Token -> expert logits; ``bias`` (a buffer, not a parameter) only affects top-k selection."""

    def __init__(self, dim: int, n_experts: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_experts, dim))
        self.register_buffer("bias", torch.zeros(n_experts))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        # keep the bias in fp32 under model.to(bf16): its small update steps would round away in bf16
        super()._apply(fn, recurse)
        if self.bias.dtype != torch.float32:
            self.bias = self.bias.float()
        return self


def grouped_matmul(x: torch.Tensor, weight: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Rows ``offsets[e-1]:offsets[e]`` of x times ``weight[e]`` (E, K, N), for every expert e at once.

    Under ``torch.autocast`` it runs in the autocast dtype, as autocast runs ``mm`` (autocast does not cover
    the grouped matmul itself); gradients reach fp32 weights in fp32 through the cast. Falls back to a
    per-expert loop (which needs the offsets on the host) only where the fused kernel is unavailable for this
    device/dtype. Under ``torch.compile`` it is one op the compiler sees through: the native one where
    inductor lowers it (bf16), else :func:`grouped_mm_op`, opaque to the compiler — no graph break either way.
    """
    device_type = x.device.type
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):  # not meta
        dtype = torch.get_autocast_dtype(device_type)
        x, weight = x.to(dtype), weight.to(dtype)
    if torch.compiler.is_compiling():
        if x.dtype == torch.bfloat16 and _native_grouped_mm(device_type, x.dtype):
            return torch._grouped_mm(x, weight, offs=offsets)
        return grouped_mm_op(x, weight, offsets)
    if _fused(x, weight):
        if x.device.type == "cpu" and torch.get_num_threads() > 1:
            return _CpuGroupedMatmul.apply(x, weight, offsets)
        return torch._grouped_mm(x, weight, offs=offsets)
    return _per_expert_matmul(x, weight, offsets)


@torch.compiler.assume_constant_result
def _native_grouped_mm(device_type: str, dtype: torch.dtype) -> bool:
    """``grouped_mm_available`` as a constant while tracing (the probe itself cannot be traced)."""
    return grouped_mm_available(torch.device(device_type), dtype)


def _fused(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``torch._grouped_mm`` takes these operands: available here, 16-byte-aligned row strides."""
    aligned = (x.shape[-1] * x.element_size()) % 16 == 0 and (
        weight.shape[-1] * weight.element_size()
    ) % 16 == 0
    return aligned and grouped_mm_available(x.device, x.dtype)


@contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _cpu_threads(device: torch.device):  # type: ignore[no-untyped-def]
    """One intra-op thread for the CPU kernel (see ``_CpuGroupedMatmul``); nothing elsewhere."""
    return _one_thread() if device.type == "cpu" and torch.get_num_threads() > 1 else nullcontext()


class _CpuGroupedMatmul(torch.autograd.Function):
    """``torch._grouped_mm`` run single-threaded, forward and backward.

    On CPU the kernel parallelises over groups *and* inside each group's matmul; with more than one
    intra-op thread that nesting made it several times slower than simply running it on one thread.
    """

    @staticmethod
    def forward(ctx, x, weight, offsets):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(x, weight, offsets)
        with _one_thread():
            return torch._grouped_mm(x, weight, offs=offsets)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        x, weight, offsets = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_w = None
        with _one_thread():
            if ctx.needs_input_grad[0]:
                grad_x = torch._grouped_mm(grad, weight.transpose(-2, -1), offs=offsets)
            if ctx.needs_input_grad[1]:
                grad_w = torch._grouped_mm(x.t(), grad, offs=offsets)  # (E, K, N): per-group x_g^T @ grad_g
        return grad_x, grad_w, None


def _per_expert_matmul(x: torch.Tensor, weight: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Fallback for shapes/devices the fused kernel rejects; needs the offsets on the host."""
    ends = offsets.tolist()
    starts = [0, *ends[:-1]]
    return torch.cat([x[s:e] @ weight[i] for i, (s, e) in enumerate(zip(starts, ends, strict=True))], dim=0)


# ------------------------------------------------------------------ the grouped matmul as one compiler op
# torch.compile cannot trace the fp32 grouped matmul (the native op's tracing rule accepts bf16 only) nor the
# fallback (host offsets): as custom ops with a shape rule and a backward, both stay inside one graph.
# The namespace is this module's name, so an exported copy of this file (mythos export --hf) loaded next to
# mythos registers its own ops instead of colliding with these.
_OPS = re.sub(r"\W", "_", __name__)


@torch.library.custom_op(f"{_OPS}::grouped_mm", mutates_args=())
def grouped_mm_op(x: torch.Tensor, weight: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """:func:`grouped_matmul`'s eager kernels as one op (x (M, K), weight (E, K, N) -> (M, N))."""
    if _fused(x, weight):
        with _cpu_threads(x.device):
            return torch._grouped_mm(x, weight, offs=offsets)
    return _per_expert_matmul(x, weight, offsets)


@grouped_mm_op.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    return x.new_empty(x.shape[0], weight.shape[-1])


@torch.library.custom_op(f"{_OPS}::grouped_mm_weight_grad", mutates_args=())
def grouped_mm_weight_grad(x: torch.Tensor, grad: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Per-expert ``x_e^T @ grad_e`` (E, K, N): the gradient of :func:`grouped_mm_op` for its weight."""
    if _fused(x, grad):
        with _cpu_threads(x.device):
            return torch._grouped_mm(x.t(), grad, offs=offsets)
    out = x.new_zeros(offsets.shape[0], x.shape[1], grad.shape[1])
    ends = offsets.tolist()
    for i, (s, e) in enumerate(zip([0, *ends[:-1]], ends, strict=True)):
        out[i] = x[s:e].t() @ grad[s:e]
    return out


@grouped_mm_weight_grad.register_fake
def _(x: torch.Tensor, grad: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    return x.new_empty(offsets.shape[0], x.shape[1], grad.shape[1])


def _grouped_mm_setup(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
    x, weight, offsets = inputs
    ctx.save_for_backward(x, weight, offsets)


def _grouped_mm_backward(ctx, grad):  # type: ignore[no-untyped-def]
    x, weight, offsets = ctx.saved_tensors
    grad = grad.contiguous()
    grad_x = grouped_mm_op(grad, weight.transpose(-2, -1), offsets) if ctx.needs_input_grad[0] else None
    grad_w = grouped_mm_weight_grad(x, grad, offsets) if ctx.needs_input_grad[1] else None
    return grad_x, grad_w, None


grouped_mm_op.register_autograd(_grouped_mm_backward, setup_context=_grouped_mm_setup)


class GroupedExperts(nn.Module):
    """``n_experts`` SwiGLU experts as stacked weights: ``w_gate_up`` (E, dim, 2*hidden), ``w_down`` (E, hidden, dim)."""

    def __init__(self, n_experts: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.n_experts, self.dim, self.hidden = n_experts, dim, hidden
        self.w_gate_up = nn.Parameter(torch.empty(n_experts, dim, 2 * hidden))
        self.w_down = nn.Parameter(torch.empty(n_experts, hidden, dim))
        nn.init.normal_(self.w_gate_up, std=0.02)
        nn.init.normal_(self.w_down, std=0.02)

    def forward(
        self, x_sorted: torch.Tensor, offsets: torch.Tensor, row_scale: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x_sorted: rows grouped by expert (expert e owns rows offsets[e-1]:offsets[e]).

        ``row_scale`` (rows, 1), e.g. the gate weights, multiplies the hidden activations: the same as
        scaling the output (``w_down`` is linear) on a narrower tensor.
        """
        hidden = swiglu_hidden(grouped_matmul(x_sorted, self.w_gate_up, offsets))
        if row_scale is not None:  # in the experts' dtype (the autocast dtype under autocast), not promoted
            hidden = hidden * row_scale.to(hidden.dtype)
        return grouped_matmul(hidden, self.w_down, offsets)


class MoE(nn.Module):
    """Routed top-k fine-grained experts plus shared experts, grouped dispatch, aux-loss-free balancing."""

    def __init__(self, cfg: MythosConfig) -> None:
        super().__init__()
        self.n_experts, self.top_k = cfg.n_experts, cfg.n_experts_per_tok
        self.bias_rate = cfg.router_bias_rate
        self.router = Router(cfg.dim, cfg.n_experts)
        self.experts = GroupedExperts(cfg.n_experts, cfg.dim, cfg.expert_dim)
        # n_shared experts of width expert_dim*top_k, summed == one SwiGLU of the concatenated width
        shared_hidden = cfg.n_shared_experts * cfg.expert_dim * cfg.n_experts_per_tok
        self.shared = SwiGLU(cfg.dim, shared_hidden) if cfg.n_shared_experts else None
        self.last_load: torch.Tensor | None = None  # fraction of assignments per expert, last forward

    def route(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(expert ids, gate weights), each (N, top_k); selection uses the bias, weights do not."""
        return route(self.router(flat), self.router.bias, self.top_k, flat.dtype)

    def forward(
        self, x: torch.Tensor, return_load: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The output; with ``return_load`` also this call's fraction of assignments per expert, returned
        instead of stored in ``last_load``: the looped block asks for it so nothing inside a compiled or
        checkpointed loop writes a module attribute."""
        out, load = self._dispatch(x)
        if return_load:
            return out, load
        self.last_load = load
        return out

    def _dispatch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        n = flat.shape[0]
        selected, gates = self.route(flat)
        expert_of = selected.reshape(-1)  # (N*k,) assignment -> expert
        order = torch.argsort(expert_of, stable=True)
        token_of = order // self.top_k  # sorted assignment -> token row
        counts = torch.zeros(self.n_experts, dtype=torch.long, device=x.device)
        counts = counts.index_add_(0, expert_of, torch.ones_like(expert_of))  # static shape, unlike bincount
        offsets = torch.cumsum(counts, dim=0).to(torch.int32)
        routed = self.experts(
            flat.index_select(0, token_of), offsets, gates.reshape(-1, 1).index_select(0, order)
        )
        # routed outputs summed straight into the shared experts' output (no zeros, no extra add)
        # (under autocast both are in the autocast dtype, like every other projection)
        out = self.shared(flat) if self.shared is not None else torch.zeros_like(flat, dtype=routed.dtype)
        out = out.index_add_(0, token_of, routed.to(out.dtype))
        return out.view(shape), (counts.float() / max(n * self.top_k, 1)).detach()

    @torch.no_grad()
    def update_router_bias(self, load: torch.Tensor, rate: float | None = None) -> torch.Tensor:
        """Raise the bias of under-loaded experts and lower it for over-loaded ones; returns the step taken.

        ``load`` is any per-expert load (counts or fractions, e.g. ``aux.expert_load``); experts are compared
        with the mean load, so the scale does not matter.
        """
        load = load.detach().to(self.router.bias.device, torch.float32).reshape(-1)
        if load.numel() != self.n_experts:
            raise ValueError(
                f"update_router_bias: load has {load.numel()} entries, expected n_experts={self.n_experts}"
            )
        step = (rate if rate is not None else self.bias_rate) * torch.sign(load.mean() - load)
        self.router.bias.add_(step.to(self.router.bias.dtype))
        return step
