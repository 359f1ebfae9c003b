"""Native decode kernels: C source shipped with the package, built on first use and cached.

Why C: decode attention over an MLA cache is a (heads x 80) by (80 x S) product, a softmax and a
(heads x S) by (S x 64) product — shapes too thin for BLAS (MKL runs them at a fraction of its speed on
this AMD CPU) and too small to amortise torch's per-op overhead. One fused pass over the keys with an
online softmax runs about 2x faster per attention site at S = 2048 (benchmarks/infer_decode.py).

The library is compiled with the machine's C compiler (``$CC``, else ``cc``/``gcc``/``clang``) into
``$MYTHOS_CACHE_DIR`` (default ``~/.cache/mythos``), keyed by a hash of the source and flags, and written
atomically, so concurrent first uses are safe. ``MYTHOS_NATIVE=0`` turns it off; without a compiler it is
off with one warning, and the engine uses torch's kernels.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import warnings
from pathlib import Path

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("latent_attention.c")
FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC"]
BLOCK = 32  # keys per block in the C source


def cache_dir() -> Path:
    root = os.environ.get("MYTHOS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mythos")
    return Path(root) / "native"


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _cpu_flags() -> str:
    """The CPU's feature flags (Linux), so a cache shared between machines never serves a library built
    with -march=native for another CPU."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return platform.processor()


def build(source: Path = SOURCE) -> Path:
    """Compile ``source`` to a shared library (or return the cached one); raises RuntimeError on failure."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set CC, or install gcc)")
    text = source.read_bytes()
    key = hashlib.sha256(text + " ".join([cc, *FLAGS, platform.machine(), _cpu_flags()]).encode()).hexdigest()[:16]
    out = cache_dir() / f"{source.stem}-{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    result = subprocess.run([cc, *FLAGS, str(source), "-o", str(tmp)], capture_output=True, text=True)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{cc} failed to build {source.name}: {result.stderr.strip()[:2000]}")
    os.replace(tmp, out)  # atomic: a concurrent builder either sees no file or a whole one
    return out


@functools.cache
def library() -> ctypes.CDLL | None:
    """The built library, or None when disabled (MYTHOS_NATIVE=0) or unbuildable (warned once)."""
    if os.environ.get("MYTHOS_NATIVE", "1") == "0":
        return None
    try:
        lib = ctypes.CDLL(str(build()))
    except (RuntimeError, OSError) as exc:
        warnings.warn(f"mythos native kernels unavailable, using torch's: {exc}", RuntimeWarning, stacklevel=2)
        return None
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.latent_attention.restype = ctypes.c_int
    lib.latent_attention.argtypes = [ptr, i64, i64, i64, i64, ptr, ctypes.c_int, i64, i64, ptr, i64, ctypes.c_float,
                                     ptr, ptr]
    return lib


@torch.compiler.assume_constant_result  # decided once, outside any traced graph
def available() -> bool:
    return library() is not None


KEY_BITS = {torch.float32: 32, torch.bfloat16: 16}


@torch.library.custom_op("mythos::latent_attention", mutates_args=())
def latent_attention(query: Tensor, keys: Tensor, n_keys: Tensor, scale: float, value_dim: int) -> Tensor:
    """Attention of every head of ``query`` (B, T, H, C) over the shared rows of ``keys`` (B, S, C).

    Values are each row's first ``value_dim`` numbers (MLA's latent). Query (b, t) sees the first
    ``n_keys[b, t]`` rows. The query is fp32; keys fp32 or bf16 (a bf16 cache), widened as they are read;
    all arithmetic is fp32. Returns (B, T, H, value_dim) fp32.
    """
    B, T, H, C = query.shape
    if keys.stride(-1) != 1 or query.dtype != torch.float32 or keys.dtype not in KEY_BITS:
        raise ValueError("latent_attention: an fp32 query and fp32 or bf16 keys with contiguous rows are required")
    lib = library()
    if lib is None:
        raise RuntimeError("latent_attention: the native library is unavailable (check native.available() first)")
    query = query.contiguous()
    counts = n_keys.to(torch.int64).clamp(0, keys.shape[1]).contiguous()
    out = torch.empty(B, T, H, value_dim, dtype=torch.float32, device=query.device)
    work = torch.empty(max(H * (C + BLOCK + 2), 8 * (C + BLOCK)) + 16 + BLOCK * C, dtype=torch.float32)
    status = lib.latent_attention(
        query.data_ptr(), B * T, T, H, C, keys.data_ptr(), KEY_BITS[keys.dtype], keys.stride(0), keys.stride(1),
        counts.data_ptr(), value_dim, scale, out.data_ptr(), work.data_ptr(),
    )
    if status != 0:
        raise ValueError(f"latent_attention: {H} heads is more than the kernel supports (64)")
    return out


@latent_attention.register_fake
def _(query: Tensor, keys: Tensor, n_keys: Tensor, scale: float, value_dim: int) -> Tensor:
    B, T, H, _ = query.shape
    return query.new_empty(B, T, H, value_dim)
