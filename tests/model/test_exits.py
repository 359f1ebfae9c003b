"""The per-token exit criteria: parsing, and each signal on hand-made loops whose answer is known."""

import pytest
import torch

from mythos.model.exits import ExitCriterion, ExitKind, kl_divergence, relative_change


def test_parse_round_trips_and_names_errors():
    assert ExitCriterion.parse("kl:0.01") == ExitCriterion(ExitKind.KL, 0.01)
    assert str(ExitCriterion.parse("argmax:2")) == "argmax:2"
    for bad, needle in [
        ("kl", "CRITERION:THRESHOLD"),
        ("foo:1", "unknown criterion"),
        ("kl:x", "not a number"),
        ("kl:0", "> 0"),
        ("kl:nan", "> 0"),
        ("argmax:1.5", "whole number"),
    ]:
        with pytest.raises(ValueError, match=needle):
            ExitCriterion.parse(bad)


def test_kl_is_zero_for_equal_and_positive_otherwise():
    a = torch.randn(3, 5, 11)
    assert torch.allclose(kl_divergence(a, a), torch.zeros(3, 5), atol=1e-6)
    b = a.clone()
    b[0, 0, 0] += 5
    kl = kl_divergence(a, b)
    assert kl[0, 0] > 0.01 and (kl[1:] < 1e-6).all()


def test_relative_change():
    h = torch.ones(2, 4)
    assert torch.allclose(relative_change(h, h * 1.1), torch.full((2,), 0.1 / 1.1))


def test_step_marks_only_converged_tokens_and_argmax_needs_a_streak():
    prev_h, h = torch.ones(1, 2, 4), torch.ones(1, 2, 4)
    h[0, 1] *= 2
    done, _ = ExitCriterion.parse("delta:0.01").step(torch.zeros(1, 2, dtype=torch.long), prev_h, h)
    assert done.tolist() == [[True, False]]
    crit = ExitCriterion.parse("argmax:2")
    logits = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    streak = torch.zeros(1, 2, dtype=torch.long)
    done, streak = crit.step(streak, h, h, logits, logits)
    assert not done.any()
    flipped = logits.clone()
    flipped[0, 1] = torch.tensor([0.0, 1.0])
    done, streak = crit.step(streak, h, h, logits, flipped)
    assert done.tolist() == [[True, False]] and streak.tolist() == [[2, 0]]
    with pytest.raises(ValueError, match="logits"):
        crit.step(streak, h, h)
