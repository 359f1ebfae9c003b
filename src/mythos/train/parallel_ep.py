"""Expert parallelism from outside the model: each rank keeps ``n_experts / ep`` experts, tokens travel to them.

The MoE already sorts its (token, expert) assignments by expert and hands ``GroupedExperts`` the sorted rows
with per-expert offsets. :class:`ExpertParallelExperts` replaces that module: rows for experts owned by rank j
are one contiguous block, so one ``all_to_all_single`` (PyTorch's differentiable
``torch.distributed.nn.functional.all_to_all_single``, as torchtitan dispatches) sends every block to its owner,
the owner runs its local experts with one grouped matmul, and a second all-to-all brings the rows back in the
original order. The per-expert counts are exchanged first (a small all-to-all) because the split sizes must be
known on the host; that is one host sync per MoE call, as in torchtitan.

Layout: the world (W ranks) is a 2D mesh (dp, ep) with W = dp * ep; rank r sits at (r // ep, r % ep), so an
ep group is ep consecutive ranks. Tokens are exchanged inside the ep group only. The expert weights are a
DTensor placed ``(Replicate(), Shard(0))``: split over ep by expert, and one replica per dp row, whose
gradients are summed over dp (the Partial -> Replicate redistribution: one all-reduce per backward) and
divided by W so they are the mean over the global batch, like every FSDP2-reduced gradient. FSDP2 (over the
whole world) shards everything else and leaves the expert weights alone via ``ignored_params``.

Why not FSDP2 over dp for the experts too (torchtitan's ``fully_shard(experts, mesh=dp_mesh)``): the experts
run once per loop, and an FSDP2 unit called several times per step reduce-scatters its gradient after its first
backward use only (see ``parallel.py``), so the expert replicas are kept whole over dp instead (their weights,
gradients and AdamW state are not sharded over dp).

Mixed precision: with ``compute_dtype`` set (``--mixed-precision bf16``) the fp32 master weights are cast for
the grouped matmuls and the gradient comes back through the cast in fp32, so the dp reduction is fp32, as with
FSDP2's ``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)``. The router and the balancing bias stay
replicated; the trainer all-reduces the expert load over the world, so the bias update sees the global load.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from mythos.model.moe import grouped_matmul


def expert_mesh(ep: int, device_type: str = "cpu") -> Any:
    """The (dp, ep) DeviceMesh over the whole world; ``ep`` must divide the world size."""
    from torch.distributed.device_mesh import init_device_mesh

    world = dist.get_world_size()
    if ep < 1 or world % ep:
        raise ValueError(f"expert_parallel={ep} must divide the number of ranks ({world})")
    return init_device_mesh(device_type, (world // ep, ep), mesh_dim_names=("dp", "ep"))


class ExpertParallelExperts(nn.Module):
    """Stands in for ``GroupedExperts`` (same call, same parameter names): only this ep rank's contiguous
    group of experts is stored, as the local shard of a DTensor over the (dp, ep) mesh."""

    def __init__(self, experts: nn.Module, mesh: Any, compute_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        from torch.distributed.tensor import DTensor, Replicate, Shard

        ep = mesh["ep"].size()
        if experts.n_experts % ep:
            raise ValueError(f"expert_parallel={ep} must divide n_experts={experts.n_experts}")
        self.group, self.ep = mesh["ep"].get_group(), ep
        self.n_experts = experts.n_experts
        self.local = experts.n_experts // ep
        self.compute_dtype = compute_dtype
        lo = mesh["ep"].get_local_rank() * self.local
        # DTensors sharded on the expert dim: checkpoints (full or DCP) and gradient clipping see the whole
        # expert tensors, while each rank stores and computes only its own group
        for name in ("w_gate_up", "w_down"):
            local = getattr(experts, name).detach()[lo : lo + self.local].clone()
            param = DTensor.from_local(local, mesh, [Replicate(), Shard(0)], run_check=False)
            setattr(self, name, nn.Parameter(param))

    def forward(
        self, x_sorted: torch.Tensor, offsets: torch.Tensor, row_scale: torch.Tensor | None = None
    ) -> torch.Tensor:
        from torch.distributed.nn.functional import all_to_all_single

        counts = torch.diff(offsets.long(), prepend=offsets.new_zeros(1).long())  # rows per global expert
        recv_counts = torch.empty_like(counts)
        dist.all_to_all_single(recv_counts, counts, group=self.group)  # (source rank, local expert) blocks
        send_splits = counts.view(self.ep, self.local).sum(1).tolist()
        recv_matrix = recv_counts.view(self.ep, self.local)
        recv_splits = recv_matrix.sum(1).tolist()

        def dispatch(t: torch.Tensor) -> torch.Tensor:
            """Send each owner its rows, then order them by local expert."""
            received = all_to_all_single(
                t.new_empty(sum(recv_splits), t.shape[-1]),
                t.contiguous(),
                recv_splits,
                send_splits,
                self.group,
            )
            return received.index_select(0, order)

        # received rows come grouped by source rank, then local expert: regroup them by local expert
        expert_of_row = torch.repeat_interleave(
            torch.arange(self.local, device=x_sorted.device).repeat(self.ep), recv_matrix.reshape(-1)
        )
        order = torch.argsort(expert_of_row, stable=True)
        local_offsets = torch.cumsum(recv_matrix.sum(0), dim=0).to(torch.int32)
        w_gate_up, w_down = self.w_gate_up.to_local(), self.w_down.to_local()
        if self.compute_dtype is not None:  # fp32 master weights, compute in the policy's dtype
            w_gate_up, w_down = w_gate_up.to(self.compute_dtype), w_down.to(self.compute_dtype)
        dtype = w_gate_up.dtype
        rows = dispatch(x_sorted).to(dtype)
        gate, up = grouped_matmul(rows, w_gate_up, local_offsets).chunk(2, dim=-1)
        hidden = F.silu(gate) * up
        if row_scale is not None:
            hidden = hidden * dispatch(row_scale).to(dtype)
        out = grouped_matmul(hidden, w_down, local_offsets)
        back = out.to(x_sorted.dtype).index_select(0, torch.argsort(order))  # undo the regrouping
        return all_to_all_single(
            back.new_empty(x_sorted.shape[0], back.shape[-1]), back, send_splits, recv_splits, self.group
        )


def _global_mean(world: int):
    """Gradient hook: sum the dp replicas' gradients (Partial -> Replicate over dp), then divide by the world."""
    from torch.distributed.tensor import DTensor, Partial

    def hook(grad: torch.Tensor) -> torch.Tensor:
        partial = DTensor.from_local(grad.to_local(), grad.device_mesh, [Partial(), grad.placements[1]])
        return partial.redistribute(placements=grad.placements) / world

    return hook


def apply_expert_parallel(
    model: nn.Module, ep: int, compute_dtype: torch.dtype | None = None, device_type: str = "cpu"
) -> list[nn.Parameter]:
    """Swap the looped block's experts for their expert-parallel form over ``ep`` ranks (in place; call before
    FSDP2). Returns the expert parameters: FSDP2 must ignore them (they differ per ep rank)."""
    mesh = expert_mesh(ep, device_type)
    ffn = model.recurrent.block.ffn
    ffn.experts = ExpertParallelExperts(ffn.experts, mesh, compute_dtype)
    params = list(ffn.experts.parameters())
    for param in params:
        param.register_hook(_global_mean(dist.get_world_size()))
    return params
