"""Forward/backward shapes and aux statistics for both attention types."""

import pytest
import torch

from mythos.model import Mythos, MythosOutput, get_preset


@pytest.fixture(params=["tiny", "tiny-gqa"])
def model(request):
    torch.manual_seed(0)
    return Mythos(get_preset(request.param))


def test_forward_backward_shapes(model):
    ids = torch.randint(0, model.cfg.vocab_size, (2, 10))
    out = model(ids, n_loops=2, return_aux=True)
    assert isinstance(out, MythosOutput)
    assert out.logits.shape == (2, 10, model.cfg.vocab_size)
    assert out.aux.hidden_norms.shape == (2,)
    assert out.aux.expert_load.shape == (model.cfg.n_experts,)
    assert torch.isclose(out.aux.expert_load.sum(), torch.tensor(1.0))
    assert 1.0 <= out.aux.mean_depth <= 2.0
    (out.logits.square().mean() + out.aux.ponder_cost).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.embed.weight.grad.abs().sum() > 0


def test_tied_head(model):
    assert model.head.weight is model.embed.weight


def test_n_loops_changes_output(model):
    ids = torch.randint(0, model.cfg.vocab_size, (1, 6))
    model.cfg.act = False
    a, b = model(ids, n_loops=1), model(ids, n_loops=3)
    assert a.shape == b.shape and not torch.allclose(a, b)


def test_causality(model):
    ids = torch.randint(0, model.cfg.vocab_size, (1, 8))
    ids2 = ids.clone()
    ids2[0, 5:] = (ids2[0, 5:] + 1) % model.cfg.vocab_size
    a, b = model(ids), model(ids2)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_forward_traces_without_graph_breaks():
    """torch.compile friendliness: one graph, no data-dependent Python control flow (bf16: fused grouped mm)."""
    torch.manual_seed(0)
    model = Mythos(get_preset("tiny")).eval().to(torch.bfloat16)
    try:
        explained = torch._dynamo.explain(model)(torch.randint(0, 256, (1, 8)), n_loops=2)
    finally:
        torch._dynamo.reset()
    assert explained.graph_break_count == 0, [b.reason[:200] for b in explained.break_reasons]
