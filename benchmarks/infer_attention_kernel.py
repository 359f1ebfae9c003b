"""Per-call time of the native MLA decode-attention kernel against torch's equivalent.

Run:  .venv/bin/python benchmarks/infer_attention_kernel.py [--sizes 128 512 2048 4096] [--reps 31]
          [--sites 1] [--shape 8 80 64] [--compare OTHER.c ...] [--quick]

What it measures: one batch-1 decode query row (T = 1) of H heads over S cached rows of C floats (values =
the first r numbers of each row), the shape of one attention site of the engine's decode step. The kernel
source ``src/mythos/infer/native/latent_attention.c`` is compiled here, on its own (``cc -O3 -march=native
-fno-math-errno -fno-trapping-math -shared -fPIC`` into a temp dir, loaded with ctypes), so the numbers do
not depend on how ``mythos.infer.native`` builds or wraps it. Torch's side is what the engine runs without
the kernel: ``torch.baddbmm`` scores (scale and a zero mask fused) + softmax + ``torch.bmm`` with the
latent, after widening a bf16 cache to fp32, on one torch thread.

For fp32 and bf16 keys and each S it prints microseconds per call (median over ``--reps`` repetitions of a
timed loop, ``time.thread_time``; in brackets the 10th-90th percentile of the repetitions) and torch's time
over the kernel's. Variants are timed interleaved in one process, in a shuffled order each repetition, so machine noise hits all alike.
``--sites N`` cycles over N separate caches (the engine has one per layer; 6 sites at S = 2048 fp32 is
about 4 MB, which no longer fits L2). ``--compare`` adds other kernel sources (same C ABI), e.g. an older
version, timed side by side. Every variant's output is checked against float64 torch before timing.
"""

from __future__ import annotations

import argparse
import ctypes
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

import bench_report  # benchmarks/bench_report.py: the results file

SOURCE = Path(__file__).resolve().parents[1] / "src" / "mythos" / "infer" / "native" / "latent_attention.c"
FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC"]
BLOCK = 32


def build(source: Path, out_dir: Path, name: str) -> ctypes.CDLL:
    lib_path = out_dir / f"{name}.so"
    subprocess.run(["cc", *FLAGS, str(source), "-o", str(lib_path)], check=True)
    lib = ctypes.CDLL(str(lib_path))
    ptr, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.latent_attention.restype = ctypes.c_int
    lib.latent_attention.argtypes = [
        ptr,
        i64,
        i64,
        i64,
        i64,
        ptr,
        ctypes.c_int,
        i64,
        i64,
        ptr,
        i64,
        ctypes.c_float,
        ptr,
        ptr,
    ]
    return lib


class Site:
    """One attention site: a cache of max_len rows (keys = its first S rows), a query, output and work space."""

    def __init__(
        self, S: int, H: int, C: int, r: int, dtype: torch.dtype, g: torch.Generator, pad: int = 0
    ) -> None:
        self.cache = (torch.randn(1, S + 64, C + pad, generator=g)).to(dtype)[
            ..., :C
        ]  # pad: row_stride C + pad
        self.keys = self.cache[:, :S]
        self.query = torch.randn(1, 1, H, C, generator=g)
        self.n_keys = torch.tensor([S], dtype=torch.int64)
        self.out = torch.empty(1, 1, H, r)
        self.work = torch.empty(max(H * (C + BLOCK + 2), 8 * (C + BLOCK)) + 16 + BLOCK * C)
        self.mask = torch.zeros(1, H, S)
        self.H, self.C, self.r = H, C, r
        self.scale = C**-0.5
        self.bits = 32 if dtype == torch.float32 else 16
        self.args = None

    def call_kernel(self, lib: ctypes.CDLL) -> None:
        c = self.cache
        status = lib.latent_attention(
            self.query.data_ptr(),
            1,
            1,
            self.H,
            self.C,
            c.data_ptr(),
            self.bits,
            c.stride(0),
            c.stride(1),
            self.n_keys.data_ptr(),
            self.r,
            self.scale,
            self.out.data_ptr(),
            self.work.data_ptr(),
        )
        assert status == 0

    def call_torch(self) -> torch.Tensor:
        keys = self.keys if self.keys.dtype == torch.float32 else self.keys.float()
        scores = torch.baddbmm(
            self.mask, self.query.view(1, self.H, self.C), keys.transpose(1, 2), alpha=self.scale
        )
        return torch.bmm(torch.softmax(scores, dim=-1), keys[..., : self.r])

    def reference(self) -> torch.Tensor:
        k = self.keys.double()
        p = torch.softmax(torch.einsum("hc,sc->hs", self.query[0, 0].double(), k[0]) * self.scale, dim=-1)
        return (p @ k[0, :, : self.r]).view(1, 1, self.H, self.r)


def timed(fn, sites: list[Site], calls: int) -> float:
    """Microseconds per call of fn(site), cycling over the sites."""
    t0 = time.thread_time()
    for i in range(calls):
        fn(sites[i % len(sites)])
    return (time.thread_time() - t0) / calls * 1e6


def summary(xs: list[float]) -> str:
    xs = sorted(xs)
    lo, hi = xs[len(xs) // 10], xs[(len(xs) * 9) // 10]
    return f"{statistics.median(xs):8.2f} [{lo:.2f}-{hi:.2f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 512, 2048, 4096])
    ap.add_argument("--reps", type=int, default=31)
    ap.add_argument("--sites", type=int, default=1)
    ap.add_argument("--shape", type=int, nargs=3, default=[8, 80, 64], metavar=("H", "C", "R"))
    ap.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument(
        "--compare", type=Path, nargs="*", default=[], help="other kernel sources to time alongside"
    )
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument(
        "--no-check", action="store_true", help="skip the output check (for deliberately broken variants)"
    )
    ap.add_argument("--quick", action="store_true", help="S = 128 and 2048, 5 repetitions")
    bench_report.add_results_flag(ap, "infer_attention_kernel")
    args = ap.parse_args()
    bench_report.start(args)
    if args.quick:
        args.sizes, args.reps = [128, 2048], 5
    torch.set_num_threads(1)
    H, C, r = args.shape
    with tempfile.TemporaryDirectory() as tmp:
        libs = {"kernel": build(SOURCE, Path(tmp), "kernel")}
        for i, src in enumerate(args.compare):
            libs[f"{src.stem}"] = build(src, Path(tmp), f"cmp{i}")
        print(
            f"H={H} C={C} r={r} T=1 batch 1, {args.sites} site(s); us per call, median [p10-p90] of {args.reps}"
        )
        for dname in args.dtypes:
            dtype = torch.float32 if dname == "fp32" else torch.bfloat16
            for S in args.sizes:
                g = torch.Generator().manual_seed(S)
                sites = [Site(S, H, C, r, dtype, g) for _ in range(args.sites)]
                checks = [sites[0], Site(S - 1, H, C, r, dtype, g, pad=16)]  # and padded rows, odd S
                for name, lib in ({} if args.no_check else libs).items():  # correctness first
                    for site in checks:
                        site.call_kernel(lib)
                        err = (site.out.double() - site.reference()).abs().max().item()
                        assert err < 1e-4, f"{name}: max abs error {err} at S={site.keys.shape[1]} {dname}"
                calls = max(20, min(2000, 400_000 // S))
                fns = {n: (lambda s, lib=lib: s.call_kernel(lib)) for n, lib in libs.items()}
                if not args.no_torch:
                    fns["torch"] = Site.call_torch
                for fn in fns.values():  # warm up
                    timed(fn, sites, calls // 4 + 1)
                times: dict[str, list[float]] = {n: [] for n in fns}
                order = list(fns)
                for rep in range(args.reps):
                    random.Random(rep).shuffle(order)  # no variant always runs first
                    for n in order:
                        times[n].append(timed(fns[n], sites, calls))
                base = statistics.median(times["kernel"])
                cols = "  ".join(
                    f"{n} {summary(ts)} ({statistics.median(ts) / base:.2f}x)" for n, ts in times.items()
                )
                print(f"{dname} S={S:5d}: {cols}", flush=True)


if __name__ == "__main__":
    main()
    bench_report.finish()
