"""The native decode-attention kernel: numerics against torch, every code path, fallback and safe building."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mythos.infer import native


def torch_attention(query, keys, n_keys, scale, r):
    """What the kernel must compute, in float64: masked softmax(q k^T * scale) @ k[..., :r]."""
    B, T, H, C = query.shape
    scores = torch.einsum("bthc,bsc->bths", query.double(), keys.double()) * scale
    visible = torch.arange(keys.shape[1]).view(1, 1, 1, -1) < n_keys.view(B, T, 1, 1)
    probs = torch.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1)
    return torch.einsum("bths,bsr->bthr", probs, keys[..., :r].double())


def test_the_compilers_build_the_operator() -> None:
    assert shutil.which("cc") or shutil.which("gcc") or os.environ.get("CC"), "the project needs a C compiler"
    assert shutil.which("c++") or shutil.which("g++") or os.environ.get("CXX"), (
        "the project needs a C++ compiler"
    )
    assert native.available()
    assert torch.ops.mythos.latent_attention.default.has_kernel_for_dispatch_key("CPU")


@pytest.mark.parametrize("key_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("H", "C", "r"),
    [
        (8, 80, 64),  # the small config: 8-head path with constant trip counts
        (8, 48, 32),  # 8-head path, other sizes
        (8, 20, 12),  # 8-head path, values not a multiple of 16
        (4, 24, 16),  # generic path, vectorised
        (3, 10, 6),  # generic path, scalar
        (8, 21, 12),
    ],  # 8-head path, odd row length (the last component has no pair)
)
def test_kernel_matches_torch(H: int, C: int, r: int, key_dtype: torch.dtype) -> None:
    """fp32 arithmetic over fp32 keys, or over bf16 keys (a bf16 cache) widened exactly as they are read."""
    g = torch.Generator().manual_seed(H * 1000 + C)
    B, T, S = 2, 3, 77  # S not a multiple of the 32-key block
    buffer = (torch.randn(B + 1, S + 5, C, generator=g) * 3).to(key_dtype)  # a slice of a bigger buffer
    keys = buffer[1:, :S]
    query = torch.randn(B, T, H, C, generator=g)
    n_keys = torch.tensor([[1, 40, 77], [33, 32, 64]])
    out = native.latent_attention(query, keys, n_keys, 0.3, r)
    assert out.shape == (B, T, H, r)
    assert out.dtype == torch.float32
    torch.testing.assert_close(
        out.double(), torch_attention(query, keys.float(), n_keys, 0.3, r), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("key_dtype", [torch.float32, torch.bfloat16])
def test_padded_key_rows(key_dtype: torch.dtype) -> None:
    """Rows further apart than their width (a view of a wider buffer) take the kernel's strided path."""
    g = torch.Generator().manual_seed(7)
    keys = (torch.randn(1, 70, 96, generator=g) * 3).to(key_dtype)[..., :80]
    query = torch.randn(1, 2, 8, 80, generator=g)
    n_keys = torch.tensor([[70, 45]])
    out = native.latent_attention(query, keys, n_keys, 0.2, 64)
    torch.testing.assert_close(
        out.double(), torch_attention(query, keys.float(), n_keys, 0.2, 64), atol=1e-5, rtol=1e-5
    )


def test_large_scores_do_not_overflow() -> None:
    """Online softmax subtracts the running max: scores in the thousands stay finite."""
    g = torch.Generator().manual_seed(0)  # fixed: some draws hold near-ties that fp32 rounds past atol
    keys = torch.randn(1, 100, 80, generator=g) * 30
    query = torch.randn(1, 1, 8, 80, generator=g) * 30
    n_keys = torch.tensor([[100]])
    out = native.latent_attention(query, keys, n_keys, 1.0, 64)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(
        out.double(), torch_attention(query, keys, n_keys, 1.0, 64), atol=1e-4, rtol=1e-5
    )


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="fp32 or bf16 keys"):
        native.latent_attention(
            torch.randn(1, 1, 8, 80).double(), torch.randn(1, 4, 80).double(), torch.tensor([[4]]), 1.0, 64
        )
    with pytest.raises(ValueError, match="64"):
        native.latent_attention(torch.randn(1, 1, 65, 8), torch.randn(1, 4, 8), torch.tensor([[4]]), 1.0, 4)


def test_engine_decode_with_the_kernel_matches_the_model_at_the_small_config() -> None:
    """Eight MLA heads (the kernel's fast path) inside the engine: greedy decode equals the model's forward."""
    from mythos.infer.engine import Engine
    from mythos.model import Mythos, get_preset

    torch.manual_seed(0)
    model = Mythos(get_preset("small", vocab_size=300, max_seq_len=64)).eval()
    ids = torch.randint(0, 300, (1, 24))
    engine = Engine.from_model(model, max_len=32)
    logits = [engine.prefill(0, [ids[0, :16].tolist()])]
    logits += [engine.decode(0, ids[:, j]) for j in range(16, 24)]
    with torch.no_grad():
        full = model(ids)[0, 15:24]
    torch.testing.assert_close(torch.stack([x[0] for x in logits]), full, atol=2e-4, rtol=1e-4)


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )


def test_disabled_kernel_falls_back_to_torch() -> None:
    code = (
        "import torch\nfrom mythos.infer import native\nfrom mythos.infer.engine import Engine\n"
        "from mythos.model import Mythos, get_preset\n"
        "assert not native.available()\n"
        "torch.manual_seed(0); m = Mythos(get_preset('tiny', vocab_size=300)).eval()\n"
        "e = Engine.from_model(m, max_len=16); e.prefill(0, [[1, 2, 3]]); print(e.decode(0, torch.tensor([4])).shape)\n"
    )
    result = run_python(code, {"MYTHOS_NATIVE": "0"})
    assert result.returncode == 0, result.stderr
    assert "torch.Size([1, 300])" in result.stdout


def test_concurrent_first_builds_are_safe(tmp_path: Path) -> None:
    """Four processes build into an empty cache at once: each loads a whole library, no temp file is left."""
    code = "from mythos.infer import native\nassert native.available()\nprint(native.build())"
    env = {"MYTHOS_CACHE_DIR": str(tmp_path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    built = {out.strip() for out, _ in outs}
    assert len(built) == 1
    files = sorted(p.name for p in (tmp_path / "native").iterdir())
    assert files == [Path(built.pop()).name]


def test_a_failing_compiler_is_reported(tmp_path: Path) -> None:
    code = "from mythos.infer import native\nnative.build()"
    result = run_python(code, {"MYTHOS_CACHE_DIR": str(tmp_path), "CC": "false"})
    assert result.returncode != 0 and "failed to build" in result.stderr
