"""Issue 12 §1 defects of the loop: ACT + truncated backprop, depth collapse at init, per-row depth."""

from __future__ import annotations

import pytest
import torch

from mythos.model import Mythos, get_preset


def _grads(model: Mythos, ids: torch.Tensor, **kwargs) -> tuple[float, float]:
    model.zero_grad(set_to_none=True)
    model(ids, **kwargs).float().pow(2).mean().backward()

    def total(module: torch.nn.Module) -> float:
        return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)

    return total(model.prelude), total(model.recurrent.block)


@pytest.mark.parametrize("early_exit", [True, False])
def test_act_with_truncated_backprop_trains_prelude_and_loop(early_exit):
    """The issue's reproduction: halting weight 0 / bias 0.5 halts every token in a no-grad loop."""
    torch.manual_seed(0)
    model = Mythos(get_preset("tiny", max_loop_iters=8, act_early_exit=early_exit))
    with torch.no_grad():
        model.recurrent.act.halt.weight.zero_()
        model.recurrent.act.halt.bias.fill_(0.5)
    ids = torch.randint(0, 256, (2, 16))
    prelude, loop = _grads(model, ids, n_loops=8, grad_loops=3)
    assert prelude > 0 and loop > 0
    prelude3, loop3 = _grads(model, ids, n_loops=3, grad_loops=3)
    assert prelude3 > 0 and loop3 > 0


def test_fresh_model_uses_the_depth_it_is_asked_for():
    """Depth collapse: a fresh `small` model asked for 16 loops used 2.0 of them on average."""
    torch.manual_seed(0)
    model = Mythos(get_preset("small", max_loop_iters=16)).eval()
    ids = torch.randint(0, model.cfg.vocab_size, (2, 32))
    with torch.no_grad():
        out = model(ids, n_loops=16, return_aux=True)
    assert out.aux.mean_depth >= 12, out.aux.mean_depth


@pytest.mark.parametrize("act", [False, True])
def test_row_loops_match_rows_run_alone(act):
    """Each row of a batch with per-row depths equals that row run on its own at its depth."""
    torch.manual_seed(0)
    model = Mythos(get_preset("tiny", max_loop_iters=6, act=act, act_early_exit=False)).eval()
    ids = torch.randint(0, 256, (3, 12))
    depths = torch.tensor([1, 4, 6])
    with torch.no_grad():
        batched = model(ids, row_loops=depths)
        for r, d in enumerate(depths.tolist()):
            alone = model(ids[r : r + 1], n_loops=d)
            torch.testing.assert_close(batched[r : r + 1], alone, rtol=1e-4, atol=1e-5)


def test_row_loops_with_grad_window_gives_every_row_a_gradient():
    """Rows that exit before the batch's last loops still backpropagate through their own last loops."""
    torch.manual_seed(0)
    model = Mythos(get_preset("tiny", max_loop_iters=8, act=False))
    ids = torch.randint(0, 256, (2, 8))
    emb = model.embed.weight
    model.zero_grad(set_to_none=True)
    logits = model(ids, row_loops=torch.tensor([2, 8]), grad_loops=2)
    logits[0].pow(2).mean().backward()  # only the shallow row's loss
    assert float(model.recurrent.block.attn.parameters().__next__().grad.abs().sum()) > 0
    assert emb.grad is not None and float(emb.grad.abs().sum()) > 0


def test_row_loops_validation():
    model = Mythos(get_preset("tiny"))
    ids = torch.randint(0, 256, (2, 4))
    with pytest.raises(ValueError, match="row_loops"):
        model(ids, row_loops=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="row_loops"):
        model(ids, row_loops=torch.tensor([0, 2]))


def test_doctor_reports_depth_collapse_as_a_symptom_with_its_fix():
    from mythos.model.doctor import check_depth_collapse, make_probe

    torch.manual_seed(0)
    model = Mythos(get_preset("tiny", max_loop_iters=8)).eval()
    probe = make_probe(model.cfg, 64)
    (fresh,) = check_depth_collapse(model, probe)
    assert fresh.severity == "ok", fresh
    with torch.no_grad():
        model.recurrent.act.halt.bias.zero_()  # the old init: p ~ 0.5 per loop
    (sick,) = check_depth_collapse(model, probe)
    assert sick.severity == "warning" and "depth collapse" in sick.seen and "act=false" in sick.fix
