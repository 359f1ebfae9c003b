"""oneDNN linear: the same numbers as F.linear (values and gradients), every shape the model uses, fallbacks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from mythos.model import onednn


def test_it_is_enabled_here() -> None:
    assert onednn.enabled(), "this torch build ships oneDNN; the fp32 CPU fast path must be on"


@pytest.mark.parametrize("shape", [(7, 33), (2, 5, 64), (3, 4, 5, 16)])
@pytest.mark.parametrize("out_features", [1, 24, 300])
def test_values_and_gradients_match_float64(shape, out_features) -> None:
    g = torch.Generator().manual_seed(out_features)
    x = torch.randn(*shape, generator=g, requires_grad=True)
    w = torch.randn(out_features, shape[-1], generator=g, requires_grad=True)
    b = torch.randn(out_features, generator=g, requires_grad=True)
    upstream = torch.randn(*shape[:-1], out_features, generator=g)
    out = onednn.linear(x, w, b)
    (out * upstream).sum().backward()
    x64, w64, b64 = (t.detach().double().requires_grad_() for t in (x, w, b))
    ref = F.linear(x64, w64, b64)
    (ref * upstream.double()).sum().backward()
    tol = dict(atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(out.double(), ref, **tol)
    torch.testing.assert_close(x.grad.double(), x64.grad, **tol)
    torch.testing.assert_close(w.grad.double(), w64.grad, **tol)
    torch.testing.assert_close(b.grad.double(), b64.grad, **tol)


def test_non_contiguous_input_and_frozen_weight() -> None:
    x = torch.randn(16, 10).t()  # (10, 16), transposed view
    w = torch.randn(8, 16)
    x.requires_grad_()
    out = onednn.linear(x, w)
    out.sum().backward()
    torch.testing.assert_close(out, F.linear(x.detach(), w), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x.grad, torch.ones(10, 8) @ w, atol=1e-5, rtol=1e-5)


def test_other_dtypes_use_f_linear() -> None:
    for dtype in (torch.bfloat16, torch.float64):
        x, w = torch.randn(4, 8, dtype=dtype), torch.randn(3, 8, dtype=dtype)
        assert not onednn.applies(x, w)
        assert torch.equal(onednn.linear(x, w), F.linear(x, w))


def test_cpu_autocast_still_runs_in_bf16() -> None:
    x, w = torch.randn(4, 8), torch.randn(3, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not onednn.applies(x, w)
        assert onednn.linear(x, w).dtype == torch.bfloat16


def test_linear_module_keeps_nn_linear_state_dict() -> None:
    layer = onednn.Linear(8, 4, bias=False)
    assert list(layer.state_dict()) == ["weight"]
    plain = torch.nn.Linear(8, 4, bias=False)
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(2, 8)
    torch.testing.assert_close(layer(x), plain(x), atol=1e-6, rtol=1e-6)


def test_switch_off_with_the_environment() -> None:
    code = "from mythos.model import onednn; import torch; print(onednn.enabled())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "MYTHOS_ONEDNN": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.strip() == "False", out.stderr
