"""Native decode kernels: C/C++ source shipped with the package, built on first use and cached.

Why C: decode attention over an MLA cache is a (heads x 80) by (80 x S) product, a softmax and a
(heads x S) by (S x 64) product — shapes too thin for BLAS to run at speed and too small to amortise
torch's per-op overhead. One fused pass over the keys with an online softmax is faster per attention site
(benchmarks/infer_attention_kernel.py writes the comparison).

Why C++ around it: the kernel is the torch operator ``mythos::latent_attention``, registered from C++
(``torch_op.cpp``), so a compiled decode step calls it through the dispatcher without coming back to
Python (a Python-defined operator re-enters the interpreter and takes the GIL six times per token).

The kernel (``latent_attention.c``) is compiled as C with the machine's C compiler (``$CC``, else
``cc``/``gcc``/``clang``) and linked with the operator by its C++ compiler (``$CXX``, else
``c++``/``g++``/``clang++``) against the installed torch, into ``$MYTHOS_CACHE_DIR`` (default
``~/.cache/mythos``). The file name carries a hash of the sources, flags, compilers, torch version and
CPU features, and is written atomically, so concurrent first uses are safe. ``MYTHOS_NATIVE=0`` turns it
off; when it cannot be built it is off with one warning, and the engine uses torch's kernels.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("latent_attention.c")
OP_SOURCE = Path(__file__).with_name("torch_op.cpp")
C_FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fPIC"]
CXX_FLAGS = ["-O2", "-std=c++20", "-fPIC", "-shared", "-w"]
KEY_BITS = {torch.float32: 32, torch.bfloat16: 16}


def cache_dir() -> Path:
    root = os.environ.get("MYTHOS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mythos"
    )
    return Path(root) / "native"


def _compiler(env: str, names: tuple[str, ...]) -> str | None:
    return os.environ.get(env) or next((p for p in map(shutil.which, names) if p), None)


def _cpu_flags() -> str:
    """The CPU's feature flags (Linux), so a cache shared between machines never serves a library built
    with -march=native for another CPU."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return platform.processor()


def _torch_flags() -> list[str]:
    from torch.utils import cpp_extension

    torch_dir = Path(torch.__file__).parent
    libs = [f"-L{p}" for p in cpp_extension.library_paths()] + [f"-Wl,-rpath,{torch_dir / 'lib'}"]
    return (
        [f"-I{p}" for p in cpp_extension.include_paths()]
        + [f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"]
        + libs
        + ["-lc10", "-ltorch_cpu", "-ltorch"]
    )


def _run(cmd: list[str], what: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed to build {what}: {result.stderr.strip()[:2000]}")


def build() -> Path:
    """Compile the operator library (or return the cached one); raises RuntimeError on failure."""
    cc = _compiler("CC", ("cc", "gcc", "clang"))
    cxx = _compiler("CXX", ("c++", "g++", "clang++"))
    if cc is None or cxx is None:
        raise RuntimeError("no C and C++ compiler found (set CC and CXX, or install gcc and g++)")
    torch_flags = _torch_flags()
    recipe = " ".join(
        [
            cc,
            *C_FLAGS,
            cxx,
            *CXX_FLAGS,
            *torch_flags,
            torch.__version__,
            sys.version,
            platform.machine(),
            _cpu_flags(),
        ]
    )
    key = hashlib.sha256(SOURCE.read_bytes() + OP_SOURCE.read_bytes() + recipe.encode()).hexdigest()[:16]
    out = cache_dir() / f"mythos_native-{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".build-") as tmp:
        obj, lib = Path(tmp) / "latent_attention.o", Path(tmp) / out.name
        _run([cc, *C_FLAGS, "-c", str(SOURCE), "-o", str(obj)], SOURCE.name)
        _run([cxx, *CXX_FLAGS, str(OP_SOURCE), str(obj), "-o", str(lib), *torch_flags], OP_SOURCE.name)
        os.replace(lib, out)  # atomic: a concurrent builder either sees no file or a whole one
    return out


@functools.cache
def library() -> Path | None:
    """The loaded operator library, or None when disabled (MYTHOS_NATIVE=0) or unbuildable (warned once)."""
    if os.environ.get("MYTHOS_NATIVE", "1") == "0":
        return None
    try:
        path = build()
        torch.ops.load_library(str(path))
    except (RuntimeError, OSError) as exc:
        warnings.warn(
            f"mythos native kernels unavailable, using torch's: {exc}", RuntimeWarning, stacklevel=2
        )
        return None
    torch.library.register_fake("mythos::latent_attention")(_latent_attention_shape)
    return path


@torch.compiler.assume_constant_result  # decided once, outside any traced graph
def available() -> bool:
    return library() is not None


def _latent_attention_shape(
    query: Tensor, keys: Tensor, n_keys: Tensor, scale: float, value_dim: int
) -> Tensor:
    B, T, H, _ = query.shape
    return query.new_empty(B, T, H, value_dim)


def latent_attention(query: Tensor, keys: Tensor, n_keys: Tensor, scale: float, value_dim: int) -> Tensor:
    """Attention of every head of ``query`` (B, T, H, C) over the shared rows of ``keys`` (B, S, C).

    Values are each row's first ``value_dim`` numbers (MLA's latent). Query (b, t) sees the first
    ``n_keys[b, t]`` rows. The query is fp32; keys fp32 or bf16 (a bf16 cache), widened as they are read;
    all arithmetic is fp32. Returns (B, T, H, value_dim) fp32. Check :func:`available` first.
    """
    if not available():
        raise RuntimeError(
            "latent_attention: the native library is unavailable (check native.available() first)"
        )
    return torch.ops.mythos.latent_attention(query, keys, n_keys, scale, value_dim)
