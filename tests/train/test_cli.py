"""The wing's commands end to end as a user runs them: demo --quick, eval, plot, train on a text folder."""

import json
import os
import subprocess
import sys

import pytest

from mythos.cli import main as mythos_in_process

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def mythos(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "mythos", *args], capture_output=True, text=True, env=ENV, timeout=timeout
    )


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = mythos("demo", "--quick", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


def test_demo_quick_prints_a_grid_and_writes_plots(demo_run):
    out, stdout = demo_run
    assert "chain\\loops" in stdout and "wall time" in stdout
    grid = json.loads((out / "grid.json").read_text())
    assert grid["lengths"] == [1, 2, 4] and grid["loops"] == [1, 2, 4]
    assert all(0 <= v <= 1 for row in grid["accuracy"] for v in row)
    for png in ("grid.png", "plots/training.png", "plots/loops_and_experts.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_is_deterministic_given_its_seed(demo_run, tmp_path):
    out, _ = demo_run
    assert mythos_in_process(["demo", "--quick", "--out", str(tmp_path)]) == 0  # in-process: same code path
    assert json.loads((tmp_path / "grid.json").read_text()) == json.loads((out / "grid.json").read_text())


def test_eval_of_the_demo_checkpoint_reproduces_the_demo_grid(demo_run, tmp_path, capsys):
    out, _ = demo_run
    status = mythos_in_process(
        [
            "eval",
            str(out),
            "--lengths",
            "1,2,4",
            "--loops",
            "1,2,4",
            "--samples",
            "16",
            "--json",
            str(tmp_path / "g.json"),
        ]
    )  # default seed: the demo's held-out seed
    assert status == 0
    assert "chain\\loops" in capsys.readouterr().out
    evaluated = json.loads((tmp_path / "g.json").read_text())
    assert evaluated["accuracy"] == json.loads((out / "grid.json").read_text())["accuracy"]
    assert mythos_in_process(["eval", str(tmp_path / "nothing")]) == 2
    assert "neither a checkpoint" in capsys.readouterr().err


def test_plot_and_text_training(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(30):
        (corpus / f"{i}.txt").write_text(
            f"story {i}: a small looped model reads text number {i} and learns. " * 3
        )
    run = tmp_path / "run"
    result = mythos(
        "train",
        "--data",
        str(corpus),
        "--vocab-size",
        "300",
        "--seq-len",
        "16",
        "--batch-size",
        "2",
        "--steps",
        "3",
        "--loops",
        "2",
        "--grad-loops",
        "1",
        "--checkpoint-loops",
        "--set",
        "dim=32",
        "--out",
        str(run),
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "shards" / "index.json").exists() and (run / "shards" / "tokenizer.json").exists()
    assert mythos_in_process(["plot", str(run)]) == 0
    assert (run / "plots" / "training.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert (
        mythos_in_process(["eval", str(run), "--loops", "1,2", "--json"]) == 0
    )  # text: bits per byte per depth
    assert len(json.loads(capsys.readouterr().out)["bits_per_byte"]) == 2
    # the checkpoint carries the tokenizer: `mythos generate` speaks text to the trained model from the run folder
    ckpt = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    assert (ckpt / "tokenizer.json").read_bytes() == (run / "shards" / "tokenizer.json").read_bytes()
    assert mythos_in_process(["generate", str(run), "--prompt", "story 3:", "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.startswith("story 3:")


def test_generate_on_a_task_model_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    run = tmp_path / "demo"
    assert mythos_in_process(["demo", "--quick", "--out", str(run)]) == 0
    capsys.readouterr()
    assert mythos_in_process(["generate", str(run), "--prompt", "1+2="]) == 2
    assert "no text vocabulary" in capsys.readouterr().err
