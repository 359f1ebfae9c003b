"""The shared math and the attention registries: one definition, used by the modules and the engine."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from mythos.infer.attention import DECODE_ATTENTION, decode_attention
from mythos.infer.engine import Engine
from mythos.infer.view import view_from_model
from mythos.model import Mythos, get_preset
from mythos.model import functional as fn
from mythos.model.attention import ATTENTION, attention_type
from mythos.model.config import ATTN_TYPES
from mythos.model.norm import RMSNorm


def test_every_attention_type_is_registered_for_the_model_and_the_engine() -> None:
    assert set(ATTENTION) == set(DECODE_ATTENTION) == set(ATTN_TYPES)


def test_an_unknown_attention_type_raises_everywhere() -> None:
    with pytest.raises(ValueError, match="known: gqa, mla"):
        attention_type("linear")
    with pytest.raises(ValueError, match="known: gqa, mla"):
        decode_attention("linear")
    torch.manual_seed(0)
    view = view_from_model(Mythos(get_preset("tiny", vocab_size=300)))
    with pytest.raises(ValueError, match="attn_type='linear'"):
        Engine(replace(view, attn_type="linear"), max_len=8)


def test_rms_norm_module_and_function_agree_in_every_mode() -> None:
    norm = RMSNorm(16)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 5, 16, requires_grad=True)
    want = fn.rms_norm(x.detach(), norm.weight.detach(), norm.eps)
    torch.testing.assert_close(norm(x), want)  # training path: the hand-written backward
    with torch.no_grad():
        torch.testing.assert_close(norm(x), want)
        got = norm.to(torch.bfloat16)(x.bfloat16())
    torch.testing.assert_close(got.float(), want, atol=0.05, rtol=0.02)


def test_act_step_pays_the_remainder_on_crossing_and_at_the_final_loop() -> None:
    p = torch.tensor([0.3, 0.5, 0.2])
    cum = torch.tensor([0.0, 0.6, 0.1])
    running = torch.tensor([1.0, 1.0, 0.0])
    step = fn.act_step(p, cum, running, threshold=0.99)
    torch.testing.assert_close(step.weight, torch.tensor([0.3, 0.4, 0.0]))  # 0.6 + 0.5 crosses: pays 0.4
    torch.testing.assert_close(step.cumulative, torch.tensor([0.3, 1.1, 0.1]))
    final = fn.act_step(p, cum, running, threshold=0.99, final=True)
    torch.testing.assert_close(final.weight, torch.tensor([1.0, 0.4, 0.0]))


def test_lti_A_stays_below_one_in_every_dtype() -> None:
    log_A = torch.full((4,), -100.0)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        A = fn.lti_A(log_A.to(dtype), torch.zeros(1, dtype=dtype))
        assert A.dtype == dtype and bool((A < 1).all()) and bool((A > 0).all())
