"""The training forward under torch.compile: no graph break anywhere in it (the loop body included), the same
values and gradients as eager, and the grouped expert matmul as a compiler op with a correct backward."""

import collections

import pytest
import torch

from mythos.model import Mythos, get_preset
from mythos.model.moe import grouped_matmul, grouped_mm_op, grouped_mm_weight_grad

# every way the trainer calls the forward: fixed depth, truncated backprop, per-row depths with and without
# truncation, activation checkpointing per loop
CALLS = {
    "plain": dict(n_loops=3),
    "grad_loops": dict(n_loops=3, grad_loops=1),
    "row_loops": dict(n_loops=3, row_loops=torch.tensor([1, 3])),
    "row_loops+grad_loops": dict(n_loops=3, row_loops=torch.tensor([2, 3]), grad_loops=1),
    "checkpoint_loops": dict(n_loops=2, checkpoint_loops=True),
}
LOOP_BODY = ("mythos/model/recurrent.py", "mythos/model/block.py", "mythos/model/moe.py")


def _tiny(preset: str = "tiny") -> tuple[Mythos, torch.Tensor]:
    torch.manual_seed(0)
    model = Mythos(get_preset(preset)).train()
    return model, torch.randint(0, model.cfg.vocab_size, (2, 16))


@pytest.mark.parametrize(
    ("preset", "call"), [("tiny", call) for call in CALLS] + [("tiny-gqa", "row_loops+grad_loops")]
)
def test_training_forward_has_no_graph_break(preset, call):
    torch._dynamo.reset()
    model, ids = _tiny(preset)
    explained = torch._dynamo.explain(model)(ids, return_aux=True, **CALLS[call])
    where = collections.Counter(
        f"{frame.filename.split('src/')[-1]}:{frame.lineno} {b.reason.splitlines()[0][:80]}"
        for b in explained.break_reasons
        for frame in b.user_stack[-1:]
    )
    in_loop = sum(n for key, n in where.items() if key.startswith(LOOP_BODY))
    assert in_loop == 0, f"graph breaks in the loop body: {dict(where)}"
    assert explained.graph_break_count == 0, f"graph breaks in the whole forward: {dict(where)}"
    assert explained.graph_count == 1


def _loss_and_grads(forward, model, ids, **kwargs):
    model.zero_grad(set_to_none=True)
    out = forward(ids, return_aux=True, **kwargs)
    loss = out.logits.float().logsumexp(-1).mean() + out.aux.ponder_cost
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach(), out.aux.expert_load.detach(), grads


@pytest.mark.parametrize("call", ["plain", "row_loops+grad_loops", "checkpoint_loops"])
def test_compiled_forward_and_backward_equal_eager(call):
    """Through dynamo and AOTAutograd (the ``aot_eager`` backend: the same graphs inductor would get, minus
    its code generation, which the slow trainer test covers)."""
    torch._dynamo.reset()
    model, ids = _tiny()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True, dynamic=False)
    logits, load, grads = _loss_and_grads(model, model, ids, **CALLS[call])
    c_logits, c_load, c_grads = _loss_and_grads(compiled, model, ids, **CALLS[call])
    torch.testing.assert_close(c_logits, logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c_load, load)
    assert set(c_grads) == set(grads)
    for name in grads:
        torch.testing.assert_close(c_grads[name], grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_compiled_forward_checks_row_loops_inside_the_graph():
    torch._dynamo.reset()
    model, ids = _tiny()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True, dynamic=False)
    compiled(ids, n_loops=3, row_loops=torch.tensor([1, 3]))
    with pytest.raises(RuntimeError, match="row_loops"):
        compiled(ids, n_loops=3, row_loops=torch.tensor([0, 3]))
    with pytest.raises(RuntimeError, match="row_loops"):
        compiled(ids, n_loops=3, row_loops=torch.tensor([4, 3]))


@pytest.mark.parametrize(("k", "n"), [(8, 4), (3, 2)])  # fused kernel, per-expert fallback
def test_grouped_mm_op_registration_and_gradients(k, n):
    """The compiler op: its shape rule and backward pass torch's own checks, and its values and gradients
    are those of the eager grouped matmul."""
    torch.manual_seed(0)
    offsets = torch.tensor([0, 2, 2, 6], dtype=torch.int32)
    x = torch.randn(6, k, requires_grad=True)
    w = torch.randn(4, k, n, requires_grad=True)
    torch.library.opcheck(grouped_mm_op, (x, w, offsets))
    torch.library.opcheck(grouped_mm_weight_grad, (x.detach(), torch.randn(6, n), offsets))
    g = torch.randn(6, n)
    grouped_matmul(x, w, offsets).backward(g)
    expected = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    out = grouped_mm_op(x, w, offsets)
    out.backward(g)
    torch.testing.assert_close(out, grouped_matmul(x, w, offsets))
    torch.testing.assert_close((x.grad, w.grad), expected)
    assert w.grad[0].abs().sum() == 0 and w.grad[2].abs().sum() == 0  # empty groups get no gradient


def test_compiled_autocast_forward_has_no_graph_break_and_matches_eager():
    """bf16 autocast: the experts take the native grouped matmul (bf16), still inside the one graph."""
    torch._dynamo.reset()
    model, ids = _tiny()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        explained = torch._dynamo.explain(model)(ids, n_loops=2)
        assert explained.graph_break_count == 0 and explained.graph_count == 1
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True, dynamic=False)
        logits, _, grads = _loss_and_grads(model, model, ids, n_loops=2)
        c_logits, _, c_grads = _loss_and_grads(compiled, model, ids, n_loops=2)
    assert c_logits.dtype == torch.bfloat16
    torch.testing.assert_close(c_logits, logits, rtol=0.02, atol=0.02)
    for name in ("recurrent.block.ffn.experts.w_gate_up", "recurrent.block.ffn.experts.w_down"):
        assert c_grads[name].dtype == torch.float32
        torch.testing.assert_close(c_grads[name], grads[name], rtol=0.05, atol=1e-4)
