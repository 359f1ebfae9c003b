"""The training step's fast paths compute the same numbers as the plain formulas they replace."""

import pytest
import torch
import torch.nn.functional as F

from mythos.model.attention import CAUSAL_BLOCK, _attend, _causal_blocked
from mythos.model.norm import RMSNorm
from mythos.model.recurrent import DepthLoRA


def test_rmsnorm_hand_written_backward_matches_autograd():
    torch.manual_seed(0)
    norm = RMSNorm(64)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 5, 64, requires_grad=True)
    grad = torch.randn(3, 5, 64)
    norm(x).backward(grad)
    x64 = x.detach().double().requires_grad_()
    w64 = norm.weight.detach().double().requires_grad_()
    expected = x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + norm.eps) * w64
    expected.backward(grad.double())
    torch.testing.assert_close(norm(x).double(), expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(x.grad.double(), x64.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(norm.weight.grad.double(), w64.grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("heads", "kv_heads", "qk_dim", "v_dim", "length"),
    [
        (4, 4, 12, 8, CAUSAL_BLOCK * 2 + 17),  # MLA-like: value narrower than query/key, ragged last block
        (8, 2, 8, 8, CAUSAL_BLOCK + 1),  # GQA: four query heads per key head
        (2, 1, 8, 8, 5),  # shorter than one block
    ],
)
def test_blocked_causal_attention_matches_sdpa(heads, kv_heads, qk_dim, v_dim, length):
    torch.manual_seed(0)
    q = torch.randn(2, heads, length, qk_dim, requires_grad=True)
    k = torch.randn(2, kv_heads, length, qk_dim, requires_grad=True)
    v = torch.randn(2, kv_heads, length, v_dim, requires_grad=True)
    grad = torch.randn(2, heads, length, v_dim)
    out = _causal_blocked(q, k, v, qk_dim**-0.5)
    out.backward(grad)
    got = [out, q.grad, k.grad, v.grad]
    for t in (q, k, v):
        t.grad = None
    groups = heads // kv_heads
    expected = F.scaled_dot_product_attention(
        q, k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1), is_causal=True
    )
    expected.backward(grad)
    for a, b in zip(got, [expected, q.grad, k.grad, v.grad], strict=True):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)


def test_attend_takes_the_blocked_path_only_for_whole_causal_sequences_without_dropout():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 6, 8) for _ in range(3))
    whole = _attend(q, k, v, start=0, dropout=0.0)
    torch.testing.assert_close(whole, F.scaled_dot_product_attention(q, k, v, is_causal=True))
    # a chunk continuing at position 2 over 6 cached keys: SDPA with a boolean mask
    chunk = _attend(q[:, :, 2:], k, v, start=2, dropout=0.0)
    torch.testing.assert_close(chunk, whole[:, :, 2:], atol=1e-6, rtol=1e-5)


def test_depth_lora_add_to_equals_adding_its_delta():
    torch.manual_seed(0)
    lora = DepthLoRA(16, 4, max_loops=3)
    with torch.no_grad():
        lora.scale.weight.normal_()
    x = torch.randn(2, 5, 16)
    for t in (0, 2, 7):  # 7: past the table, reuses its last row
        torch.testing.assert_close(lora.add_to(x, t), x + lora(x, t), atol=1e-6, rtol=1e-5)
