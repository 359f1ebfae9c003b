"""RoPE: the complex (eager) and real (compiled) rotations agree, keep norms, and match the reference."""

import importlib

import pytest
import torch

from mythos.model.rope import apply_rope, rope_tables, rotate_complex, rotate_real


@pytest.mark.parametrize("offset", [0, 1, 3])
def test_complex_and_real_paths_agree_on_strided_inputs(offset):
    wide = torch.randn(2, 5, 3, 16 + 2 * offset)
    x = wide[..., offset : offset + 16]  # a non-contiguous view, possibly at an odd storage offset
    cos, sin = rope_tables(16, 7, 5, 10000.0, x.device)
    c, s = cos[:, None, :], sin[:, None, :]
    torch.testing.assert_close(rotate_complex(x, torch.complex(c, s)), rotate_real(x, c, s))
    out = apply_rope(x, cos, sin)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))  # a rotation


def test_bf16_input_rotated_in_fp32():
    x = torch.randn(1, 4, 2, 8)
    cos, sin = rope_tables(8, 0, 4, 10000.0, x.device)
    out = apply_rope(x.bfloat16(), cos, sin)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), apply_rope(x, cos, sin), atol=0.05, rtol=0.02)


def test_matches_reference_rope():
    main = importlib.import_module("open_mythos.main")
    x = torch.randn(2, 6, 4, 16)
    freqs = main.precompute_rope_freqs(16, 32, 500000.0)[10:16]
    cos, sin = rope_tables(16, 10, 6, 500000.0, x.device)
    torch.testing.assert_close(apply_rope(x, cos, sin), main.apply_rope(x, freqs), atol=1e-6, rtol=1e-5)
