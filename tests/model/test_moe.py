"""MoE: grouped dispatch equals a naive per-expert computation; aux-loss-free bias balancing."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mythos.model import Mythos, get_preset
from mythos.model.moe import MoE, grouped_matmul


def naive_moe(moe: MoE, x: torch.Tensor) -> torch.Tensor:
    """Token by token, expert by expert: the definition the grouped dispatch must reproduce."""
    flat = x.reshape(-1, x.shape[-1])
    logits = flat @ moe.router.weight.t()
    scores = logits.softmax(-1)
    out = torch.zeros_like(flat)
    hidden = moe.experts.hidden
    for n in range(flat.shape[0]):
        chosen = (logits[n] + moe.router.bias).topk(moe.top_k).indices
        gates = scores[n, chosen] / scores[n, chosen].sum()
        for gate, e in zip(gates, chosen.tolist(), strict=True):
            w1, w3 = moe.experts.w_gate_up[e, :, :hidden], moe.experts.w_gate_up[e, :, hidden:]
            out[n] += gate * ((F.silu(flat[n] @ w1) * (flat[n] @ w3)) @ moe.experts.w_down[e])
        if moe.shared is not None:
            out[n] += moe.shared(flat[n])
    return out.view(x.shape)


@settings(max_examples=20, deadline=None)
@given(
    tokens=st.integers(1, 12),
    n_experts=st.integers(1, 6),
    top_k=st.integers(1, 6),
    shared=st.integers(0, 2),
    seed=st.integers(0, 10_000),
)
def test_grouped_dispatch_equals_naive(tokens, n_experts, top_k, shared, seed):
    top_k = min(top_k, n_experts)
    torch.manual_seed(seed)
    cfg = get_preset("tiny").replace(
        dim=16, n_heads=2, n_experts=n_experts, n_experts_per_tok=top_k, n_shared_experts=shared, expert_dim=8
    )
    moe = MoE(cfg)
    with torch.no_grad():
        moe.router.bias.normal_(0, 0.1)
    x = torch.randn(1, tokens, 16)
    torch.testing.assert_close(moe(x), naive_moe(moe, x), atol=1e-5, rtol=1e-4)
    assert torch.isclose(moe.last_load.sum(), torch.tensor(1.0))


@pytest.mark.parametrize(("k", "n"), [(8, 4), (3, 2)])  # aligned (fused kernel) and unaligned (fallback)
def test_grouped_matmul_with_empty_groups(k, n):
    x = torch.randn(5, k)
    w = torch.randn(4, k, n)
    offsets = torch.tensor([0, 2, 2, 5], dtype=torch.int32)
    out = grouped_matmul(x, w, offsets)
    torch.testing.assert_close(out, torch.cat([x[:2] @ w[1], x[2:] @ w[3]]))


def test_bias_changes_selection_not_gate_weights():
    torch.manual_seed(0)
    moe = MoE(get_preset("tiny"))
    flat = torch.randn(20, 64)
    idx0, gates0 = moe.route(flat)
    with torch.no_grad():
        moe.router.bias[3] = 100.0
    idx1, gates1 = moe.route(flat)
    assert (idx1 == 3).any(-1).all()  # expert 3 now always chosen
    scores = (flat @ moe.router.weight.t()).softmax(-1)
    expected = scores.gather(-1, idx1)
    torch.testing.assert_close(gates1, expected / expected.sum(-1, keepdim=True))  # bias not in the weights


def test_update_router_bias_moves_toward_balance():
    torch.manual_seed(0)
    model = Mythos(get_preset("tiny"))
    with torch.no_grad():
        model.recurrent.block.ffn.router.weight[0] += 0.5  # make expert 0 popular
    ids = torch.randint(0, 256, (4, 16))
    first = model(ids, n_loops=2, return_aux=True).aux.expert_load
    bias_before = model.recurrent.block.ffn.router.bias.clone()
    for _ in range(200):
        load = model(ids, n_loops=2, return_aux=True).aux.expert_load
        model.update_router_bias(load, rate=0.01)
    last = model(ids, n_loops=2, return_aux=True).aux.expert_load
    bias = model.recurrent.block.ffn.router.bias
    assert bias[0] < bias_before[0]  # the overloaded expert was pushed down
    assert (last.max() - last.min()) < (first.max() - first.min())
    assert not any(p is bias for p in model.parameters())  # a buffer, never trained by gradients


@pytest.mark.parametrize("offsets", [[0, 2, 2, 6], [1, 3, 6, 6], [6, 6, 6, 6]])
def test_single_thread_grouped_matmul_autograd(offsets):
    """The multi-thread CPU path (its own autograd Function) gives the native op's values and gradients."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        offs = torch.tensor(offsets, dtype=torch.int32)
        x = torch.randn(6, 8, requires_grad=True)
        w = torch.randn(4, 8, 16, requires_grad=True)
        g = torch.randn(6, 16)
        y = grouped_matmul(x, w, offs)
        y.backward(g)
        assert torch.get_num_threads() == 2  # restored
        gx, gw = x.grad.clone(), w.grad.clone()
        x.grad = w.grad = None
        expected = torch._grouped_mm(x, w, offs=offs)
        expected.backward(g)
        assert "CpuGroupedMatmul" in y.grad_fn.name()  # the single-thread path really ran
        torch.testing.assert_close(y, expected)
        torch.testing.assert_close(gx, x.grad)
        torch.testing.assert_close(gw, w.grad)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("dim", [16, 6])  # fused grouped kernel; per-expert fallback (unaligned rows)
def test_experts_run_in_the_autocast_dtype(dim):
    """Under autocast the routed experts compute in bf16 like every other projection, match fp32 within bf16
    rounding, and their fp32 master weights get fp32 gradients close to the fp32 ones."""
    torch.manual_seed(0)
    cfg = get_preset("tiny").replace(dim=dim, n_heads=2, expert_dim=8)
    moe = MoE(cfg)
    x = torch.randn(2, 10, dim)
    g = torch.randn(2, 10, dim)
    reference = moe(x)
    reference.backward(g)
    grads = {name: p.grad.clone() for name, p in moe.named_parameters()}
    moe.zero_grad(set_to_none=True)
    flat = x.reshape(-1, dim)
    offsets = torch.tensor([5, 10, 15, 20], dtype=torch.int32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert moe.experts(flat.repeat(2, 1), offsets).dtype == torch.bfloat16
        out = moe(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference, rtol=0.05, atol=0.02)
    out.float().backward(g)
    for name, param in moe.named_parameters():
        assert param.dtype == torch.float32 and param.grad.dtype == torch.float32, name
        scale = grads[name].abs().max()
        assert (param.grad - grads[name]).abs().max() <= 0.05 * scale, name
