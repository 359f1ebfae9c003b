"""`mythos train --compile`: the same losses as eager, no graph break, one graph per loop count, the flag saved."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters

from mythos.train import compile as compile_mod
from mythos.train.cli import train_parser
from mythos.train.config import TrainConfigError
from mythos.train.trainer import train

from .helpers import DISTRIBUTED, TINY, losses, one_process_losses, tiny_config, torchrun


def test_compiled_training_gives_the_eager_losses(tmp_path, monkeypatch):
    """Per-row depths 1..3 with truncated backprop (the forward's hardest call), traced by dynamo + AOTAutograd
    (``aot_eager``: inductor's code generation takes minutes here; the slow test below runs it)."""
    monkeypatch.setattr(compile_mod, "BACKEND", "aot_eager")
    torch._dynamo.reset()
    counters.clear()
    changes = dict(steps=5, depth_per="sequence", grad_loops=1)
    eager = train(tiny_config(tmp_path / "eager", **changes), log=lambda *_: None)
    compiled = train(tiny_config(tmp_path / "compiled", compile=True, **changes), log=lambda *_: None)
    assert compiled.losses == pytest.approx(eager.losses, rel=1e-5)
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert 1 <= counters["stats"]["unique_graphs"] <= compile_mod.graphs_needed(3)
    saved = json.loads((tmp_path / "compiled" / "train_config.json").read_text())
    assert saved["compile"] is True
    from mythos.model.checkpoint import load_checkpoint

    load_checkpoint(compiled.last_checkpoint)  # plain state-dict keys (no _orig_mod. prefix)


def test_compile_flag_is_in_the_help():
    text = train_parser().format_help()
    assert "--compile" in text and "torch.compile" in text


def test_compile_with_expert_parallel_is_refused_up_front(tmp_path):
    with pytest.raises(TrainConfigError, match="compile.*expert-parallel"):
        tiny_config(tmp_path, compile=True, parallel="fsdp", expert_parallel=2)
    with pytest.raises(TrainConfigError, match="compile"):
        tiny_config(tmp_path, compile="yes")


def test_graphs_needed_covers_every_depth_with_and_without_rows():
    assert compile_mod.graphs_needed(16) == 32 > torch._dynamo.config.recompile_limit


@pytest.mark.slow
def test_mythos_train_compile_matches_eager_with_inductor(tmp_path):
    """The real thing through the CLI: inductor-compiled steps give the eager run's losses (fp32)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [*TINY, "--steps", "3", "--warmup", "1", "--loops", "2"]
    runs = {}
    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        out = tmp_path / name
        done = subprocess.run(
            [sys.executable, "-m", "mythos", "train", *args, "--out", str(out), *extra],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        runs[name] = losses(out)
    assert runs["compiled"] == pytest.approx(runs["eager"], rel=1e-4)
    assert json.loads((tmp_path / "compiled" / "train_config.json").read_text())["compile"] is True


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_compile_under_torchrun_gives_the_one_process_losses(tmp_path, mode):
    """2 gloo ranks, compiled after DDP / FSDP2 wrapping (FSDP2: each unit its own graph), vs one process."""
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root), os.environ.get("PYTHONPATH", "")]),
    }
    expected = one_process_losses(tmp_path / "single", env)
    out = tmp_path / mode
    cmd = torchrun("tests.train.compile_worker", "--out", str(out), *DISTRIBUTED, "--batch-size", "4")
    cmd += ["--parallel", mode, "--compile"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    assert losses(out) == pytest.approx(expected, rel=1e-5)
    for rank in (0, 1):
        assert json.loads((out / f"compiled_graphs_rank{rank}.json").read_text()) >= 1
