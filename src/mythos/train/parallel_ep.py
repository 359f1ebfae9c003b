"""Expert parallelism from outside the model: each rank keeps ``n_experts / E`` experts, tokens travel to them.

The MoE already sorts its (token, expert) assignments by expert and hands ``GroupedExperts`` the sorted rows
with per-expert offsets. :class:`ExpertParallelExperts` replaces that module: rows for experts owned by rank j
are one contiguous block, so one ``all_to_all_single`` (PyTorch's differentiable
``torch.distributed.nn.functional.all_to_all_single``, as torchtitan dispatches) sends every block to its owner,
the owner runs its local experts with one grouped matmul, and a second all-to-all brings the rows back in the
original order. The per-expert counts are exchanged first (a small all-to-all) because the split sizes must be
known on the host; that is one host sync per MoE call, as in torchtitan.

Scope here: expert parallelism over the whole world (E == world size; FSDP2 shards everything else and leaves
the expert weights alone via ``ignored_params``). The router and the balancing bias stay replicated; the
trainer all-reduces the expert load, so the bias update sees the global load.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from mythos.model.moe import grouped_matmul


class ExpertParallelExperts(nn.Module):
    """Stands in for ``GroupedExperts`` (same call, same parameter names): only this rank's contiguous group of
    experts is stored, as the local shard of a DTensor over all ranks."""

    def __init__(self, experts: nn.Module) -> None:
        super().__init__()
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor import DTensor, Shard

        ep, rank = dist.get_world_size(), dist.get_rank()
        if experts.n_experts % ep:
            raise ValueError(f"expert_parallel={ep} must divide n_experts={experts.n_experts}")
        self.group, self.ep = None, ep
        self.n_experts = experts.n_experts
        self.local = experts.n_experts // ep
        lo, hi = rank * self.local, (rank + 1) * self.local
        device = experts.w_gate_up.device
        mesh = init_device_mesh(device.type, (ep,))
        # DTensors sharded on the expert dim: checkpoints (full or DCP) and gradient clipping see the whole
        # expert tensors, while each rank stores and computes only its own group
        for name in ("w_gate_up", "w_down"):
            local = getattr(experts, name).detach()[lo:hi].clone()
            setattr(self, name, nn.Parameter(DTensor.from_local(local, mesh, [Shard(0)], run_check=False)))

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
        dtype = w_gate_up.dtype  # FSDP2 leaves these weights in their own dtype
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


def apply_expert_parallel(model: nn.Module) -> list[nn.Parameter]:
    """Swap the looped block's experts for their expert-parallel form (in place; call before FSDP2).

    Returns the rank-local expert parameters: FSDP2 must ignore them (they differ per rank), and their
    gradients are divided by the data-parallel size so they average like every FSDP2-reduced gradient.
    """
    ffn = model.recurrent.block.ffn
    ffn.experts = ExpertParallelExperts(ffn.experts)
    world = dist.get_world_size()
    params = list(ffn.experts.parameters())
    for param in params:
        param.register_hook(lambda grad: grad / world)
    return params
