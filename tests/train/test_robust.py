"""`mythos train` under faults and wrong input: mismatched resumes, damaged checkpoints, Ctrl-C, bad data.

Real runs of the tiny model on real files and real processes; each test names the failure it guards against.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mythos.cli import main as mythos_in_process
from mythos.train.checkpoint import latest_checkpoint, load_latest, read_train_state
from mythos.train.config import TrainConfig
from mythos.train.data import (
    TokenShards,
    eos_id,
    iter_documents,
    load_tokenizer,
    train_tokenizer,
    write_shards,
)
from mythos.train.runfolder import RunMismatch
from mythos.train.telemetry import read_telemetry
from mythos.train.textio import ReadReport, safe_pieces, stream_text_file
from mythos.train.trainer import train

from .helpers import TINY as TINY_ARGS
from .helpers import tiny_config

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
QUIET = {"log": lambda *_: None}
TINY = [*TINY_ARGS, "--warmup", "2"]


def tiny(out: Path, **changes) -> TrainConfig:
    return tiny_config(out, **{"steps": 4, "ckpt_every": 2, **changes})


def mythos(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "mythos", *args], capture_output=True, text=True, env=ENV, timeout=timeout
    )


# ---------------------------------------------------------------------------------------------- run folder


def test_a_different_model_or_data_is_refused_and_the_config_is_left_alone(tmp_path, capsys):
    train(tiny(tmp_path), **QUIET)
    before = (tmp_path / "train_config.json").read_text()
    for argv, named in (
        (["--set", "dim=48"], "model_overrides"),
        (["--model", "tiny-gqa"], "model"),
        (["--task-option", "n_names=16"], "task_options"),
    ):
        base = list(TINY)
        if argv[0] == "--set":
            base[base.index("dim=32")] = "dim=48"
        elif argv[0] == "--model":
            base[base.index("tiny")] = "tiny-gqa"
        else:
            base[base.index("n_names=12")] = "n_names=16"
        status = mythos_in_process(["train", "--out", str(tmp_path), *base, "--steps", "6"])
        err = capsys.readouterr().err
        assert status == 2, err
        assert named in err and "different model or data" in err and "--out" in err
        assert (tmp_path / "train_config.json").read_text() == before  # never rewritten to claim the new run
    assert latest_checkpoint(tmp_path).name == "step_00000004"


def test_changed_schedule_needs_allow_changes_and_then_really_applies(tmp_path, capsys):
    train(tiny(tmp_path), **QUIET)
    with pytest.raises(RunMismatch, match=r"lr: 0\.003 -> 0\.0001.*--allow-changes"):
        train(tiny(tmp_path, lr=1e-4, steps=6), **QUIET)
    assert json.loads((tmp_path / "train_config.json").read_text())["lr"] == 3e-3
    notes = []
    train(tiny(tmp_path, lr=1e-4, steps=6), log=notes.append, allow_changes=True)
    assert any("lr: 0.003 -> 0.0001" in n for n in notes), notes
    assert json.loads((tmp_path / "train_config.json").read_text())["lr"] == 1e-4
    # the optimizer ran with the new peak lr (the schedule's factor at steps 4-5 is <= 1)
    lrs = {r["step"]: r["lr"] for r in read_telemetry(tmp_path)}
    assert lrs[4] <= 1e-4 + 1e-12 and lrs[3] > 1e-4
    # extending --steps alone is an ordinary resume
    result = train(tiny(tmp_path, lr=1e-4, steps=8), **QUIET)
    assert result.steps_done == 8


def test_a_failed_run_without_checkpoint_can_be_rerun_with_fixed_data(tmp_path):
    run = tmp_path / "run"
    code = tmp_path / "code"
    code.mkdir()
    for i in range(5):  # binary files only: nothing to read (any text file, .py included, is read)
        (code / f"m{i}.bin").write_bytes(bytes(range(256)) * 8)
    result = mythos("train", "--data", str(code), "--out", str(run), "--vocab-size", "300", "--no-progress")
    assert result.returncode == 2
    assert "no text was read" in result.stderr and "skipped 5 files" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (run / "shards" / "tokenizer.json").exists()  # no 257-token tokenizer trained on nothing
    text = tmp_path / "text"
    text.mkdir()
    for i in range(20):
        (text / f"{i}.txt").write_text(f"story {i}: a looped model reads text number {i}. " * 4)
    args = ["--vocab-size", "300", "--seq-len", "16", "--batch-size", "2", "--steps", "2", "--loops", "1"]
    result = mythos(
        "train", "--data", str(text), "--out", str(run), *args, "--set", "dim=32", "--no-progress"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "read 20 files (20 .txt)" in result.stdout
    longer = [a if a != "16" else "100000" for a in args]
    result = mythos(
        "train", "--data", str(text), "--out", str(run), *longer, "--set", "dim=32", "--allow-changes"
    )
    assert result.returncode == 2 and "exceeds the model's max_seq_len" in result.stderr
    # now the shards exist: other data would silently reuse them, so it is refused
    result = mythos(
        "train", "--data", str(code), "--out", str(run), *args, "--set", "dim=32", "--no-progress"
    )
    assert result.returncode == 2 and "data:" in result.stderr


def test_device_and_parallel_the_machine_cannot_honour_are_usage_errors(tmp_path, capsys):
    if not torch.cuda.is_available():
        assert mythos_in_process(["train", "--out", str(tmp_path), *TINY, "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    assert mythos_in_process(["train", "--out", str(tmp_path), *TINY, "--device", "nonsense"]) == 2
    assert "TrainConfig.device" in capsys.readouterr().err
    env_world = os.environ.pop("WORLD_SIZE", None)
    try:
        assert mythos_in_process(["train", "--out", str(tmp_path), *TINY, "--parallel", "ddp"]) == 2
        assert "torchrun" in capsys.readouterr().err
    finally:
        if env_world is not None:
            os.environ["WORLD_SIZE"] = env_world
    assert not (tmp_path / "train_config.json").exists()


# ---------------------------------------------------------------------------------------------- checkpoints


def test_a_truncated_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    train(tiny(tmp_path, steps=4, ckpt_every=2), **QUIET)
    latest = latest_checkpoint(tmp_path)
    weights = latest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    messages = []
    ckpt, state = load_latest(tmp_path, messages.append)
    assert ckpt.name == "step_00000002" and state["step"] == 2
    assert "skipping damaged checkpoint" in messages[0] and "truncated" in messages[0]
    # the commands that read a run folder fall back the same way, with a warning
    assert mythos_in_process(["model", "info", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "step_00000002" in captured.out and "skipping damaged checkpoint" in captured.err
    # an unreadable train_state.pt is damage too
    (tmp_path / "checkpoints" / "step_00000002" / "train_state.pt").write_bytes(b"\x80\x02garbage")
    messages.clear()
    assert load_latest(tmp_path, messages.append) == (None, None) and len(messages) == 2
    # resuming redoes the lost steps and rewrites the damaged checkpoint
    result = train(tiny(tmp_path, steps=4, ckpt_every=2), log=messages.append)
    assert result.steps_done == 4 and read_train_state(latest_checkpoint(tmp_path))["step"] == 4


def test_temp_folders_of_killed_checkpoint_writes_are_removed_on_the_next_start(tmp_path):
    train(tiny(tmp_path, steps=2), **QUIET)
    root = tmp_path / "checkpoints"
    (root / ".tmp-step_00000004-abc123").mkdir()
    (root / ".tmp-step_00000004-abc123" / "model.safetensors").write_bytes(b"half")
    (root / "..tmp-step_00000004-x.tmp-y").mkdir()
    (root / ".latestabc.tmp").write_text("step_")
    messages = []
    train(tiny(tmp_path, steps=4), log=messages.append)
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_00000002", "step_00000004"]
    assert any("killed" in m for m in messages)


def test_ctrl_c_checkpoints_the_step_it_finished_and_exits_130(tmp_path):
    cmd = [sys.executable, "-m", "mythos", "train", "--out", str(tmp_path), *TINY]
    proc = subprocess.Popen(
        [*cmd, "--steps", "100000", "--ckpt-every", "1000"], stderr=subprocess.PIPE, text=True, env=ENV
    )
    try:
        deadline = time.time() + 120
        telemetry = tmp_path / "telemetry.jsonl"
        while time.time() < deadline and not (telemetry.exists() and len(read_telemetry(tmp_path)) >= 3):
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted (SIGINT)" in err and "Traceback" not in err
    steps_logged = max(r["step"] for r in read_telemetry(tmp_path)) + 1
    ckpt = latest_checkpoint(tmp_path)
    assert read_train_state(ckpt)["step"] == steps_logged  # nothing lost, although no checkpoint was due
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]
    resumed = mythos("train", "--out", str(tmp_path), *TINY, "--steps", "100000", "--ckpt-every", "1000",
                     "--stop-after", "1")  # fmt: skip
    assert resumed.returncode == 0 and f"at step {steps_logged}" in resumed.stdout + resumed.stderr


# ---------------------------------------------------------------------------------------------- data


def test_binary_files_are_skipped_with_a_report_and_bad_jsonl_names_file_and_line(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text("real text, the kind a model should read.\n" * 3)
    (folder / "b.txt").write_bytes(bytes(range(256)) * 40)  # a binary file wearing a .txt name
    (folder / "c.md").write_text("# notes\nmore text\n")
    (folder / "d.py").write_text("x = 1\n")
    report = ReadReport()
    docs = list(iter_documents(folder, report=report))
    assert len(docs) == 3 and report.files == {".txt": 1, ".md": 1, ".py": 1}  # any text file is read
    assert [Path(p).name for p, _ in report.skipped] == ["b.txt"]
    summary = report.summary()
    assert "read 3 files" in summary and "skipped 1 files" in summary and "binary" in summary
    with pytest.raises(ValueError, match="b.txt is not a text file"):
        list(iter_documents(folder / "b.txt"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n\n{"text": "also fine"}\n{"text": oops}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:4: not valid JSON .*column 10"):
        list(iter_documents(bad))
    bad.write_text('{"text": "fine"}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: a JSON list"):
        list(iter_documents(bad))


def test_an_empty_source_never_persists_a_tokenizer(tmp_path):
    with pytest.raises(ValueError, match="no text was read"):
        train_tokenizer(iter_documents(tmp_path, stream=True), 300, tmp_path / "tok" / "tokenizer.json")
    assert not (tmp_path / "tok" / "tokenizer.json").exists()


def test_streamed_pieces_tokenize_exactly_like_the_whole_document(tmp_path):
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "  spaced", "\n", "\n\n", "tab\t", "x" * 40, "123", "!?", " é", "日本"]
    text = "".join(rng.choice(words, size=20000).tolist())
    pieces = list(safe_pieces(text, target=997))
    assert "".join(pieces) == text and len(pieces) > 50 and max(map(len, pieces)) <= 997
    (tmp_path / "big.txt").write_text(text, encoding="utf-8")
    tok = train_tokenizer([text], 400, tmp_path / "tokenizer.json")
    whole = tok.encode(text).ids
    chunked = [i for p in pieces for i in tok.encode(p).ids]
    assert chunked == whole
    # a file read in small chunks and written in small batches gives the same stream
    docs = [stream_text_file(tmp_path / "big.txt", target=1500)]
    index = write_shards(docs, tok, tmp_path / "shards", shard_tokens=3000, batch_chars=2000)
    stream = TokenShards.open(tmp_path / "shards").window(0, index["tokens"])
    assert stream.tolist() == whole + [eos_id(load_tokenizer(tmp_path / "tokenizer.json"))]
    assert len(index["shards"]) > 1 and not list((tmp_path / "shards").glob("*.tmp"))


def test_the_same_data_spelled_another_way_is_not_a_mismatch(tmp_path, monkeypatch):
    from mythos.train.runfolder import check_resume

    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus").mkdir()
    ckpt = tmp_path / "run" / "checkpoints" / "step_00000002"
    ckpt.mkdir(parents=True)
    first = TrainConfig(out="run", data="corpus/", seq_len=16)
    (ckpt / "train_config.json").write_text(first.to_json())
    assert check_resume(TrainConfig(out="run", data="./corpus", seq_len=16), ckpt) == []
    assert check_resume(TrainConfig(out="run", data=str(tmp_path / "corpus"), seq_len=16), ckpt) == []
    with pytest.raises(RunMismatch, match="data: 'corpus/' -> 'other'"):
        check_resume(TrainConfig(out="run", data="other", seq_len=16), ckpt)
    notes = check_resume(TrainConfig(out="run", data="corpus", seq_len=16, steps=500), ckpt)
    assert notes and "steps" in notes[0]
