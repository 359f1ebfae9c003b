"""The training loop end to end on the real model: exact resume, kill -9 safety, NaN guard, checkpoints."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mythos.train.checkpoint import latest_checkpoint, list_checkpoints, read_train_state
from mythos.train.config import TrainConfig, TrainConfigError
from mythos.train.telemetry import read_telemetry
from mythos.train.trainer import NonFiniteLoss, loop_count, train

from .helpers import TINY, tiny_config


def test_resume_reproduces_the_uninterrupted_losses_exactly(tmp_path):
    whole = train(tiny_config(tmp_path / "whole"), log=lambda *_: None)
    first = train(tiny_config(tmp_path / "split"), log=lambda *_: None, stop_after=3)
    assert first.steps_done == 3 and first.last_checkpoint.name == "step_00000003"
    second = train(tiny_config(tmp_path / "split"), log=lambda *_: None)
    assert len(whole.losses) == 6
    assert first.losses + second.losses == whole.losses  # bit-for-bit, not approximately
    records = read_telemetry(tmp_path / "split")
    assert [r["step"] for r in records] == list(range(6))
    state = read_train_state(latest_checkpoint(tmp_path / "split"))
    assert state["step"] == 6 and state["scheduler"]["last_epoch"] == 6


def test_checkpoint_is_loadable_by_the_model_wing_and_pruned(tmp_path):
    from mythos.model.checkpoint import load_checkpoint

    train(tiny_config(tmp_path, steps=9, ckpt_every=2, keep_checkpoints=2), log=lambda *_: None)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["step_00000008", "step_00000009"]
    model = load_checkpoint(latest_checkpoint(tmp_path))
    logits = model(torch.zeros(1, 5, dtype=torch.long), n_loops=2)
    assert logits.shape == (1, 5, model.cfg.vocab_size) and torch.isfinite(logits).all()
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_telemetry_has_every_field(tmp_path):
    train(tiny_config(tmp_path, steps=2), log=lambda *_: None)
    record = read_telemetry(tmp_path)[-1]
    for key in (
        "loss",
        "lr",
        "grad_norm",
        "max_A",
        "hidden_norms",
        "mean_depth",
        "expert_load",
        "tokens_per_s",
    ):
        assert key in record, key
    assert len(record["hidden_norms"]) == record["n_loops"]
    assert 0 < record["max_A"] < 1
    assert abs(sum(record["expert_load"]) - 1) < 1e-4


def test_loop_count_is_a_pure_function_of_seed_and_step():
    cfg = tiny_config(Path("unused"), loops="2:9")
    counts = [loop_count(cfg, s) for s in range(200)]
    assert counts == [loop_count(cfg, s) for s in range(200)]
    assert min(counts) == 2 and max(counts) == 9
    assert {loop_count(tiny_config(Path("u"), loops="5"), s) for s in range(20)} == {5}


def test_nan_steps_are_skipped_reported_and_never_checkpointed(tmp_path, monkeypatch):
    from mythos.model import Mythos

    real_forward = Mythos.forward

    def poisoned(self, *args, **kwargs):
        out = real_forward(self, *args, **kwargs)
        out.logits = out.logits * float("nan")
        return out

    monkeypatch.setattr(Mythos, "forward", poisoned)
    messages = []
    with pytest.raises(NonFiniteLoss, match="spectral radius"):
        train(tiny_config(tmp_path, steps=6, ckpt_every=1, max_bad_steps=2), log=messages.append)
    assert list_checkpoints(tmp_path) == []


def test_invalid_options_name_the_field(tmp_path):
    with pytest.raises(TrainConfigError, match="loops"):
        tiny_config(tmp_path, loops="5:2")
    with pytest.raises(TrainConfigError, match="data"):
        TrainConfig(out=str(tmp_path))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mythos",
            "train",
            "--out",
            str(tmp_path),
            "--task",
            "binding",
            "--precision",
            "bf16",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "precision" in result.stderr


def test_a_killed_run_loses_only_the_steps_since_its_last_checkpoint(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "mythos",
        "train",
        "--out",
        str(tmp_path),
        *TINY,
        "--steps",
        "400",
        "--ckpt-every",
        "2",
        "--warmup",
        "2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            ckpt = latest_checkpoint(tmp_path)
            if ckpt is not None and int(ckpt.name.split("_")[1]) >= 5:
                break
            time.sleep(0.2)
        else:
            pytest.fail("training never reached a checkpoint")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed = {r["step"]: r["loss"] for r in read_telemetry(tmp_path)}
    saved_step = read_train_state(latest_checkpoint(tmp_path))["step"]
    assert max(killed) + 1 - saved_step <= 2, "more steps lost than the checkpoint interval"
    out = subprocess.run([*cmd, "--stop-after", "4"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"at step {saved_step}" in out.stdout + out.stderr
    resumed = read_telemetry(tmp_path)
    steps = [r["step"] for r in resumed]
    assert steps == list(range(saved_step + 4)), "history must be contiguous, no duplicates"
    for record in resumed:  # redone steps reproduce what the killed run had logged
        if saved_step <= record["step"] in killed:
            assert record["loss"] == killed[record["step"]]
    json.loads((tmp_path / "train_config.json").read_text())


def test_gradient_accumulation_equals_the_bigger_batch(tmp_path):
    big = train(tiny_config(tmp_path / "big", batch_size=8, steps=3), log=lambda *_: None)
    accumulated = train(
        tiny_config(tmp_path / "acc", batch_size=4, grad_accum=2, steps=3), log=lambda *_: None
    )
    assert accumulated.losses == pytest.approx(big.losses, rel=1e-5)


def test_act_ponder_cost_checkpointing_and_truncation_train(tmp_path):
    cfg = tiny_config(
        tmp_path,
        model_overrides={"dim": 32, "act": True},
        ponder_weight=0.01,
        grad_loops=1,
        checkpoint_loops=True,
        loops="3",
        steps=2,
    )
    result = train(cfg, log=lambda *_: None)
    assert all(loss == loss for loss in result.losses)
    record = read_telemetry(tmp_path)[-1]
    assert 1 <= record["mean_depth"] <= 3


def test_tensorboard_is_optional_and_its_absence_is_explained(tmp_path):
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="pip install tensorboard"):
            train(tiny_config(tmp_path, steps=1, tensorboard=True), log=lambda *_: None)
    else:
        train(tiny_config(tmp_path, steps=1, tensorboard=True), log=lambda *_: None)
        assert any((tmp_path / "tensorboard").iterdir())
