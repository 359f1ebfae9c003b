"""The looped core: one MoE transformer block applied ``n_loops`` times with stable input injection.

Each iteration t (h: hidden state, e: prelude output, frozen across loops):

    combined = norm(loop_embedding(h, t) + e)
    out      = block(combined) ;  out = out + lora(out, t)
    h        = A * h + B * e + out                      (LTIInjection, every A in (0, 1))
    p        = act(h)                                   (ACT halting probability)

and the block's output is the ACT-weighted sum of the per-loop hidden states. Once every position has
halted, later loops would only add zero-weighted states, so without a cache the loop stops there
(``act_early_exit``; one host sync per loop, skipped under ``torch.compile``). With a KV cache it never
stops early: every loop depth's cache slot must receive this call's keys, or later tokens would attend
to holes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import Rope
from .block import TransformerBlock
from .cache import KVCache
from .config import MythosConfig
from .functional import A_MAX, act_step, halt_prob, lora_add, lora_delta, lora_scale, lti_A, lti_update
from .norm import RMSNorm

__all__ = ["A_MAX", "ACTHalting", "DepthLoRA", "LTIInjection", "LoopEmbedding", "LoopStats", "RecurrentBlock"]


class LTIInjection(nn.Module):
    """h' = A*h + B*e + out with diagonal A = exp(-exp(log_dt + log_A)): stable (rho(A) < 1) by construction."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.log_A = nn.Parameter(torch.zeros(dim))
        self.log_dt = nn.Parameter(torch.zeros(1))
        self.B = nn.Parameter(torch.full((dim,), 0.1))

    def get_A(self) -> torch.Tensor:
        """Diagonal of A in the parameters' dtype, computed in fp32; every entry in (0, A_MAX]."""
        return lti_A(self.log_A, self.log_dt)

    def forward(self, h: torch.Tensor, e: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return lti_update(h, self.get_A(), self.B, e, out)


class LoopEmbedding(nn.Module):
    """Adds a sinusoid of the loop index to the first ``loop_dim`` channels (sin half, then cos half)."""

    def __init__(self, dim: int, loop_dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        self.dim, self.loop_dim, self.theta = dim, loop_dim, theta

    def vector(self, t: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The (dim,) vector added at loop t, computed in fp32 then cast."""
        freqs = 1.0 / (
            self.theta
            ** (torch.arange(0, self.loop_dim, 2, device=device, dtype=torch.float32) / self.loop_dim)
        )
        angles = t * freqs
        emb = torch.zeros(self.dim, device=device, dtype=torch.float32)
        emb[: self.loop_dim] = torch.cat([angles.sin(), angles.cos()])[: self.loop_dim]
        return emb.to(dtype)

    def forward(self, h: torch.Tensor, t: int) -> torch.Tensor:
        if self.loop_dim == 0:
            return h
        return h + self.vector(t, h.device, h.dtype)


class DepthLoRA(nn.Module):
    """Per-loop low-rank delta: (down(x) * scale[t]) @ B; loops past the table reuse its last row."""

    def __init__(self, dim: int, rank: int, max_loops: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, rank, bias=False)
        self.B = nn.Parameter(torch.randn(rank, dim) * 0.02)
        self.scale = nn.Embedding(max_loops, rank)

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        return lora_delta(x, self.down.weight, self.B, lora_scale(self.scale.weight, t))

    def add_to(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """``x + self(x, t)`` with the addition inside the matmul (one pass over x fewer)."""
        return lora_add(x, self.down.weight, self.B, lora_scale(self.scale.weight, t))


class ACTHalting(nn.Module):
    """Per-position halting probability sigmoid(w . h + b) (Graves, 2016).

    The bias starts at logit(1 / max_loops): p ~ 1/N per loop spends about N loops before the cumulative
    probability crosses the threshold. A bias near 0 (p ~ 0.5) halts every token after 2 loops at init and
    nothing in the loss pushes depth back up (depth collapse).
    """

    def __init__(self, dim: int, max_loops: int | None = None) -> None:
        super().__init__()
        self.halt = nn.Linear(dim, 1)
        if max_loops is not None:
            with torch.no_grad():
                self.halt.bias.fill_(halting_bias(max_loops))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return halt_prob(h, self.halt.weight, self.halt.bias)


def halting_bias(max_loops: int) -> float:
    """logit(1/N): the halting bias whose constant p = 1/N per loop uses about N loops (N = 1: halt at once)."""
    if max_loops <= 1:
        return 4.0
    return -math.log(max_loops - 1)


@dataclass
class LoopStats:
    """What the loop reports besides its output (see ``LoopAux``)."""

    ponder_cost: torch.Tensor
    expert_load: torch.Tensor
    hidden_norms: torch.Tensor
    depth: torch.Tensor


class RecurrentBlock(nn.Module):
    """One MoE TransformerBlock looped with LTI injection, loop embedding, depth LoRA and ACT halting."""

    def __init__(self, cfg: MythosConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.block = TransformerBlock(cfg, use_moe=True)
        self.injection = LTIInjection(cfg.dim)
        self.loop_embedding = LoopEmbedding(cfg.dim, cfg.loop_dim, cfg.loop_theta)
        self.lora = DepthLoRA(cfg.dim, cfg.lora_rank, cfg.max_loop_iters)
        self.act = ACTHalting(cfg.dim, None if cfg.reference_compat else cfg.max_loop_iters)
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)

    @staticmethod
    def _all_halted(halted: torch.Tensor) -> bool:
        """Host-side check (one sync per loop); skipped while compiling so graphs stay static."""
        if torch.compiler.is_compiling():
            return False
        return bool(halted.all())

    def step(
        self,
        h: torch.Tensor,
        e: torch.Tensor,
        rope: Rope,
        t: int,
        cache: KVCache | None,
        start: int,
        return_load: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """One loop iteration: the new hidden state; with ``return_load`` also the MoE's expert load of it,
        returned rather than read back from the module (a compiled or checkpointed loop writes no attribute)."""
        combined = self.norm(self.loop_embedding(h, t) + e)
        slot = cache.loop_slot(t) if cache is not None else None
        out, load = self.block(combined, rope, slot, start, return_load=True)
        out = self.lora.add_to(out, t)
        if return_load:
            return self.injection(h, e, out), load
        return self.injection(h, e, out)

    def forward(
        self,
        h: torch.Tensor,
        e: torch.Tensor,
        rope: Rope,
        n_loops: int,
        cache: KVCache | None = None,
        start: int = 0,
        grad_loops: int | None = None,
        checkpoint_loops: bool = False,
        row_loops: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, LoopStats]:
        """Loop ``n_loops`` times; ``row_loops`` (batch,) gives each row its own depth <= n_loops.

        A row past its depth keeps its state (its exit). With ``grad_loops`` each row backpropagates through
        its own last ``grad_loops`` loops, and ACT counts halting only inside that window: a token that halted
        in a no-grad loop would contribute a constant and train nothing (the ACT + truncation defect).
        """
        cfg = self.cfg
        lead = h.shape[:-1]
        dev = h.device
        cumulative = torch.zeros(lead, device=dev)  # fp32 whatever the model dtype
        halted = torch.zeros(lead, device=dev, dtype=torch.bool)
        used = torch.zeros(lead, device=dev)
        remainder_paid = torch.zeros(lead, device=dev)
        h_out = torch.zeros(h.shape, device=dev, dtype=torch.float32)
        load = torch.zeros(cfg.n_experts, device=dev)
        norms = []
        per_row = row_loops is not None
        if per_row:
            depth = row_loops.to(dev).view(-1, *([1] * (len(lead) - 1))).expand(lead)  # (batch, time)
        else:
            depth = torch.full(lead, n_loops, device=dev, dtype=torch.long)
        window = grad_loops if grad_loops is not None else n_loops
        first_grad = (depth - window).clamp(min=0)  # first loop inside each position's gradient window
        # loops before every row's window need no autograd graph at all
        no_grad_loops = n_loops - grad_loops if (grad_loops is not None and not per_row) else 0
        if per_row and grad_loops is not None and not torch.compiler.is_compiling():
            # (compiled: a host sync would break the graph, so every loop keeps its autograd graph; each row
            # is still detached where its window starts, so the gradients are the same, at more memory)
            no_grad_loops = int(first_grad.min())
        for t in range(n_loops):
            truncated = t < no_grad_loops
            with torch.set_grad_enabled(torch.is_grad_enabled() and not truncated):
                if t == no_grad_loops and no_grad_loops > 0:
                    h = h.detach()
                if per_row and grad_loops is not None and t > no_grad_loops:
                    h = torch.where((first_grad == t).unsqueeze(-1), h.detach(), h)
                if checkpoint_loops and torch.is_grad_enabled() and cache is None:
                    h_new, moe_load = checkpoint(
                        self.step, h, e, rope, t, None, start, return_load=True, use_reentrant=False
                    )
                else:
                    h_new, moe_load = self.step(h, e, rope, t, cache, start, return_load=True)
                active = t < depth
                h = torch.where(active.unsqueeze(-1), h_new, h) if per_row else h_new
                load = load + moe_load
                norms.append(h.detach().float().norm(dim=-1).mean())
                if not cfg.act:
                    continue
                in_window = t >= first_grad
                running = ((~halted) & in_window & active).float()
                p = self.act(h).float()
                # a row's last loop pays the remainder to whoever is still running (not in reference mode)
                final = (t == depth - 1) if not cfg.reference_compat else False
                step = act_step(p, cumulative, running, cfg.act_threshold, final=final)
                h_out = torch.addcmul(h_out, step.weight.unsqueeze(-1), h.float())
                remainder_paid = remainder_paid + torch.where(step.crossing, step.weight, torch.zeros_like(p))
                used = used + running
                cumulative = step.cumulative
                halted = halted | (cumulative >= cfg.act_threshold)
                if not cfg.reference_compat:
                    halted = halted | (t >= depth - 1)
                if cache is None and cfg.act_early_exit and t < n_loops - 1 and self._all_halted(halted):
                    break  # every later weight would be 0: skipping the loops changes nothing but time
        if cfg.act:
            out = h_out.to(h.dtype)
            ponder = (used + remainder_paid).mean()
            used = used + first_grad.float()  # loops run before the window count toward depth
        else:
            out = h
            used = depth.float()
            ponder = torch.zeros((), device=dev)
        stats = LoopStats(
            ponder_cost=ponder,
            expert_load=load / len(norms),
            hidden_norms=torch.stack(norms),
            depth=used.mean(),
        )
        return out, stats
