"""benchmarks/bench_report.py: a full benchmark run leaves its results file; a smoke run leaves nothing."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import bench_report  # noqa: E402


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    bench_report.add_results_flag(parser, "demo_bench")
    return parser.parse_args(argv)


def test_a_finished_run_writes_what_it_printed(tmp_path, capsys):
    out = tmp_path / "r.md"
    bench_report.start(_args(["--results", str(out)]))
    print("attn  ratio\nmla   1.50x")
    bench_report.finish()
    text = out.read_text()
    assert text.startswith("# benchmarks/demo_bench.py")
    assert "attn  ratio\nmla   1.50x\n```" in text and "load average" in text
    assert "mla   1.50x" in capsys.readouterr().out  # still printed for the person running it


@pytest.mark.parametrize("argv", [["--quick"], ["--results", "none"]])
def test_smoke_runs_write_nothing(argv, monkeypatch, tmp_path):
    monkeypatch.setattr(bench_report, "RESULTS", tmp_path)
    bench_report.start(_args(argv))
    print("numbers")
    bench_report.finish()
    assert list(tmp_path.iterdir()) == []


def test_a_failed_run_writes_nothing(tmp_path):
    """The file is written after main() returns, so a run that raised leaves the old results in place."""
    script = (
        f"import sys; sys.path.insert(0, {str(BENCH)!r}); import argparse, bench_report\n"
        "p = argparse.ArgumentParser(); bench_report.add_results_flag(p, 'x')\n"
        f"bench_report.start(p.parse_args(['--results', {str(tmp_path / 'r.md')!r}]))\n"
        "def main():\n    print('half a table'); raise RuntimeError('benchmark broke')\n"
        "main()\nbench_report.finish()\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "benchmark broke" in result.stderr
    assert not (tmp_path / "r.md").exists()


def test_every_listed_benchmark_writes_a_results_file():
    """The benchmarks whose numbers docs quote record them through bench_report, and their results file exists."""
    for name in ("model_train_step", "infer_decode", "model_kv_cache", "infer_adaptive", "train_throughput",
                 "infer_attention_kernel"):  # fmt: skip
        source = (BENCH / f"{name}.py").read_text()
        assert "bench_report.add_results_flag(" in source and "bench_report.finish()" in source, name
        assert (BENCH / "results" / f"{name}.md").is_file(), name
