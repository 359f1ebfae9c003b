"""The loop's invariants: A < 1 in every dtype, ACT remainder, loop embedding width, truncated backprop."""

import math

import pytest
import torch

from mythos.model import Mythos, get_preset
from mythos.model.recurrent import A_MAX, LoopEmbedding, LTIInjection


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("log_rate", [-1e4, -30.0, -20.0, -8.0, 0.0, 30.0])
def test_A_strictly_below_one_at_saturation(dtype, log_rate):
    inj = LTIInjection(8)
    with torch.no_grad():
        inj.log_A.fill_(log_rate)
        inj.log_dt.fill_(0.0)
    inj = inj.to(dtype)
    A = inj.get_A()
    assert A.dtype == dtype
    assert (A < 1).all() and (A > 0).all() or log_rate > 0  # large rates may underflow to exactly 0 ...
    assert (A < 1).all()  # ... but never reach 1
    assert (A.float().to(torch.bfloat16) < 1).all()


def test_reference_formula_would_fail_this_check():
    """The reference's clamp(-20, 20) lets A round to 1.0 in fp32: the check above is not vacuous."""
    s = torch.tensor([-20.0])
    assert torch.exp(-torch.exp(s)).item() == 1.0
    assert A_MAX < 1 and torch.tensor(A_MAX, dtype=torch.bfloat16).item() == A_MAX


def test_loop_embedding_only_on_loop_dim_channels():
    emb = LoopEmbedding(dim=64, loop_dim=8)
    for t in range(1, 5):
        v = emb.vector(t, torch.device("cpu"), torch.float32)
        assert v[8:].abs().sum() == 0 and v[:8].abs().sum() > 0
    assert get_preset("small").loop_dim == 256 // 8


def _loop_trace(model, ids, n_loops):
    """Run the loop by hand: the hidden state and halting probability after each iteration."""
    rec = model.recurrent
    x = model.embed(ids)
    from mythos.model.rope import rope_tables

    cfg = model.cfg
    rope = rope_tables(cfg.rope_dim, 0, ids.shape[1], cfg.rope_theta, x.device)
    for layer in model.prelude:
        x = layer(x, rope)
    e, h, hs, ps = x, x, [], []
    for t in range(n_loops):
        h = rec.step(h, e, rope, t, None, 0)
        hs.append(h)
        ps.append(rec.act(h).float())
    return x, rope, hs, ps


@pytest.mark.parametrize("compat", [False, True])
def test_act_remainder_when_nothing_halts(compat):
    torch.manual_seed(0)
    model = Mythos(get_preset("tiny", reference_compat=compat)).eval()
    with torch.no_grad():
        model.recurrent.act.halt.bias.fill_(-3.0)  # p ~ 0.05 per loop: nothing reaches 0.99 in 3 loops
        ids = torch.randint(0, 256, (2, 6))
        x, rope, hs, ps = _loop_trace(model, ids, 3)
        assert (sum(ps) < model.cfg.act_threshold).all()
        out, stats = model.recurrent(x, x, rope, 3)
        plain = sum(p.unsqueeze(-1) * h for p, h in zip(ps, hs, strict=True))
        if compat:  # the reference: weights sum to < 1, the output shrinks toward 0
            torch.testing.assert_close(out, plain)
        else:  # ours: the final loop receives the remainder, weights sum to exactly 1
            expected = plain - ps[-1].unsqueeze(-1) * hs[-1] + (1 - ps[0] - ps[1]).unsqueeze(-1) * hs[-1]
            torch.testing.assert_close(out, expected)
            assert out.norm() > plain.norm() * 2
        assert stats.depth.item() == 3.0


def test_act_halting_stops_contributions():
    torch.manual_seed(0)
    model = Mythos(get_preset("tiny")).eval()
    with torch.no_grad():
        model.recurrent.act.halt.bias.fill_(10.0)  # p ~ 1: everything halts at the first loop
        ids = torch.randint(0, 256, (1, 5))
        x, rope, hs, ps = _loop_trace(model, ids, 3)
        out, stats = model.recurrent(x, x, rope, 3)
        torch.testing.assert_close(out, hs[0] * ps[0].unsqueeze(-1), atol=1e-5, rtol=1e-4)
        assert math.isclose(stats.depth.item(), 1.0)


def test_act_off_returns_last_hidden_state():
    torch.manual_seed(0)
    model = Mythos(get_preset("tiny", act=False)).eval()
    with torch.no_grad():
        ids = torch.randint(0, 256, (1, 5))
        x, rope, hs, _ = _loop_trace(model, ids, 3)
        out, stats = model.recurrent(x, x, rope, 3)
        torch.testing.assert_close(out, hs[-1])
        assert stats.ponder_cost.item() == 0


def test_ponder_cost_is_differentiable():
    model = Mythos(get_preset("tiny"))
    out = model(torch.randint(0, 256, (1, 5)), n_loops=3, return_aux=True)
    out.aux.ponder_cost.backward()
    assert model.recurrent.act.halt.bias.grad.abs().item() > 0


def test_grad_loops_truncates_backprop():
    torch.manual_seed(0)
    model = Mythos(get_preset("tiny"))
    with torch.no_grad():
        model.recurrent.act.halt.bias.fill_(-3.0)
    ids = torch.randint(0, 256, (2, 6))
    model(ids, n_loops=3, grad_loops=1).square().mean().backward()
    rows = model.recurrent.lora.scale.weight.grad.abs().sum(-1)
    assert rows[0] == 0 and rows[1] == 0 and rows[2] > 0  # row t is only used by loop t
    with pytest.raises(ValueError, match="grad_loops"):
        model(ids, n_loops=3, grad_loops=4)


def test_checkpoint_loops_same_gradients():
    torch.manual_seed(0)
    model = Mythos(get_preset("tiny"))
    ids = torch.randint(0, 256, (2, 6))
    model(ids, n_loops=3).square().mean().backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model(ids, n_loops=3, checkpoint_loops=True).square().mean().backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, plain[name], msg=name)


def test_all_loop_slots_written_even_when_everything_halts():
    """No early exit while a cache is live: every loop depth's cache slot gets the new keys."""
    model = Mythos(get_preset("tiny")).eval()
    with torch.no_grad():
        model.recurrent.act.halt.bias.fill_(10.0)
        cache = model.new_cache(batch_size=1, max_len=8, n_loops=3)
        model(torch.randint(0, 256, (1, 4)), cache=cache)
    for t in range(3):
        latent = cache.loop_slot(t).tensors[0]
        assert latent[:, :4].abs().sum() > 0 and latent[:, 4:].abs().sum() == 0


def test_early_exit_changes_nothing_but_loops_run():
    torch.manual_seed(0)
    model = Mythos(get_preset("tiny")).eval()
    with torch.no_grad():
        model.recurrent.act.halt.bias.fill_(10.0)  # all halt at loop 1
    ids = torch.randint(0, 256, (2, 6))
    fast = model(ids, n_loops=3, return_aux=True)
    model.cfg.act_early_exit = False
    full = model(ids, n_loops=3, return_aux=True)
    assert fast.aux.loops_run == 1 and full.aux.loops_run == 3
    torch.testing.assert_close(fast.logits, full.logits)
    torch.testing.assert_close(fast.aux.ponder_cost, full.aux.ponder_cost)
    assert fast.aux.mean_depth == full.aux.mean_depth == 1.0
