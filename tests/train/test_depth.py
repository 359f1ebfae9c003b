"""Issue 12: depth sampling, text data with a held-out split, text evaluation and the depth study pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mythos.train.config import TrainConfig, TrainConfigError
from mythos.train.sampler import DepthSampler, DepthSpecError, depth_histogram
from mythos.train.sources import split_documents
from mythos.train.trainer import loop_count, step_depths

# --------------------------------------------------------------------------------------------- sampling


def test_depth_specs_parse_and_bad_ones_name_the_forms():
    assert DepthSampler.parse("8").kind == "fixed"
    assert DepthSampler.parse("2:8") == DepthSampler("uniform", 2, 8, 5.0)
    heavy = DepthSampler.parse("plognormal:6:16")
    assert (heavy.kind, heavy.low, heavy.high, heavy.mean) == ("plognormal", 1, 16, 6.0)
    for bad in ("0", "8:2", "x", "plognormal:1", "plognormal:8:4", "plognormal:a"):
        with pytest.raises(DepthSpecError, match="MIN:MAX"):
            DepthSampler.parse(bad)
    with pytest.raises(TrainConfigError, match="loops"):
        TrainConfig(data="x", loops="plognormal:0.5")


def test_plognormal_is_heavy_tailed_with_the_mean_asked_for():
    draws = DepthSampler.parse("plognormal:6:64").draw(np.random.default_rng(0), 20000)
    assert abs(draws.mean() - 6) < 0.2
    assert draws.min() >= 1 and draws.max() <= 64
    assert np.median(draws) < draws.mean()  # right-skewed: most steps cheap, a few deep
    assert (draws >= 12).mean() > 0.02


def test_per_sequence_depths_differ_within_a_batch_and_every_rank_agrees():
    assert TrainConfig(data="x", loops="1:8").depth_mode == "step"  # the measured default
    cfg = TrainConfig(data="x", loops="1:8", batch_size=4, grad_accum=2, seed=5, depth_per="sequence")
    rows = step_depths(cfg, 3, 16)  # 2 ranks x 2 micro-steps x 4 rows: the whole global batch
    assert len(set(rows.tolist())) > 1
    np.testing.assert_array_equal(rows, step_depths(cfg, 3, 16))  # a pure function of (seed, step)
    per_step = TrainConfig(data="x", loops="1:8", depth_per="step", seed=5)
    assert len(set(step_depths(per_step, 3, 16).tolist())) == 1
    assert TrainConfig(task="carry", loops="1:8").depth_mode == "step"  # the demo's recipe is unchanged
    assert loop_count(cfg, 3) == int(step_depths(cfg, 3, 8).max())
    hist = depth_histogram(np.array([1, 3, 3]))
    assert hist == {"depth_min": 1, "depth_mean": 7 / 3, "depth_max": 3, "depth_hist": [1, 0, 2]}


# --------------------------------------------------------------------------------------------- data


def _corpus(folder: Path, n: int = 30) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        body = "".join(f"def f{i}_{j}(x):\n    return x * {j} + {i}\n\n" for j in range(40))
        (folder / f"mod_{i:02d}.py").write_text(f"# module {i}\n" + body)
    (folder / "blob.bin").write_bytes(b"\x00\x01binary")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "x.py").write_text("never read")
    return folder


def test_folder_of_python_files_is_read_and_held_out_by_whole_file(tmp_path):
    from mythos.train.data import iter_documents

    docs = list(iter_documents(_corpus(tmp_path / "py")))
    assert len(docs) == 30 and all(d.startswith("# module") for d in docs)  # .py read; binary/pycache skipped
    train = list(split_documents(docs, 0.2, heldout=False))
    held = list(split_documents(docs, 0.2, heldout=True))
    assert held and train and not set(train) & set(held)
    assert sorted(train + held) == sorted(docs)  # whole files, each on exactly one side
    assert held == list(split_documents(reversed(docs), 0.2, heldout=True))[::-1]  # order does not matter


def test_a_single_text_file_holds_out_its_tail():
    text = "".join(f"line {i}\n" for i in range(100))
    train = "".join(split_documents([text], 0.1, heldout=False))
    held = "".join(split_documents([text], 0.1, heldout=True))
    assert train + held == text and held.startswith("line 9") and 0 < len(held) < len(text) // 5


# --------------------------------------------------------------------------------------------- eval + study


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> Path:
    from mythos.train.trainer import train

    root = tmp_path_factory.mktemp("textrun")
    cfg = TrainConfig(
        out=str(root / "run"),
        data=str(_corpus(root / "py")),
        vocab_size=300,
        heldout=0.2,
        seq_len=32,
        batch_size=4,
        steps=4,
        warmup=1,
        loops="1:4",
        depth_per="sequence",
        grad_loops=2,
        model_overrides={"dim": 32, "act": False},
        progress=False,
        ckpt_every=4,
    )
    result = train(cfg, log=lambda *_: None)
    assert (root / "run" / "shards" / "heldout" / "index.json").exists()
    records = [json.loads(line) for line in (root / "run" / "telemetry.jsonl").read_text().splitlines()]
    assert all(sum(r["depth_hist"]) == 4 for r in records)  # every row's depth recorded, every step
    assert any(r["depth_min"] < r["depth_max"] for r in records)  # rows of one batch ran different depths
    assert result.steps_done == 4
    return root / "run"


def test_mythos_eval_on_text_prints_bits_per_byte_per_depth(text_run, capsys):
    from mythos.cli import main

    assert main(["eval", str(text_run), "--loops", "1,2,4", "--exit", "kl:0.01", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["loops"] == [1, 2, 4] and len(payload["bits_per_byte"]) == 3
    assert all(0 < b < 20 for b in payload["bits_per_byte"])
    (row,) = payload["adaptive"]
    assert row["exit"] == "kl:0.01" and 1 <= row["mean_loops"] <= 4
    assert Path(payload["png"]).stat().st_size > 1000
    assert main(["eval", str(text_run), "--exit", "nope:1"]) == 2
    assert "unknown criterion" in capsys.readouterr().err


def test_adaptive_exits_at_the_extremes_equal_fixed_depths(text_run):
    """Never exiting is the cap's fixed depth; exiting everyone at the first comparison is 2 loops."""
    from mythos.model.checkpoint import load_checkpoint
    from mythos.model.exits import ExitCriterion
    from mythos.train.checkpoint import resolve_checkpoint
    from mythos.train.text_eval import adaptive_forward

    model = load_checkpoint(resolve_checkpoint(text_run)).eval()
    ids = torch.randint(0, model.cfg.vocab_size, (2, 16))
    with torch.no_grad():
        never, used = adaptive_forward(model, ids, ExitCriterion.parse("delta:1e-30"), 4)
        torch.testing.assert_close(never, model(ids, n_loops=4).float(), rtol=1e-4, atol=1e-4)
        assert bool((used == 4).all())
        at_once, used = adaptive_forward(model, ids, ExitCriterion.parse("delta:1e9"), 4)
        torch.testing.assert_close(at_once, model(ids, n_loops=2).float(), rtol=1e-4, atol=1e-4)
        assert bool((used == 2).all())


def test_study_depth_quick_writes_json_and_png_and_resumes(tmp_path, capsys):
    from mythos.cli import main

    data = str(_corpus(tmp_path / "py"))
    out = tmp_path / "study"
    assert main(["study", "depth", "--quick", "--data", data, "--out", str(out)]) == 0
    study = json.loads((out / "study.json").read_text())
    assert set(study["models"]) == {"looped", "dense-unique", "dense-depth"}
    looped, unique, deep = (study["models"][k] for k in ("looped", "dense-unique", "dense-depth"))
    assert looped["loops"] == [1, 2, 3] and len(looped["bits_per_byte"]) == 3 and looped["adaptive"]
    assert unique["loops"] == [1] and deep["parameters"] > unique["parameters"]
    assert looped["train_flops"] > unique["train_flops"] > 0
    assert (out / "study.png").stat().st_size > 1000
    assert "dense-depth" in capsys.readouterr().out
    for name, m in study["models"].items():  # both rates with seed 0; the better one again with seed 1
        assert set(m["lr_sweep"]) == {"0.001", "0.01"}
        assert m["lr_sweep"][f"{m['lr']:g}"] == min(m["lr_sweep"].values())
        per_seed = m["bits_per_byte_per_seed"]
        assert m["seeds"] == [0, 1] and min(per_seed["0"]) == pytest.approx(
            min(m["lr_sweep"].values()), abs=1e-5
        )
        assert (out / f"{name}-lr{m['lr']:g}-seed1" / "study_eval.json").exists()
        mean = [(a + b) / 2 for a, b in zip(per_seed["0"], per_seed["1"], strict=True)]
        assert m["bits_per_byte"] == pytest.approx(mean, abs=1e-5)
    mtime = (out / "looped-lr0.01" / "study_eval.json").stat().st_mtime
    assert (
        main(["study", "depth", "--quick", "--data", data, "--out", str(out)]) == 0
    )  # resumes: nothing redone
    assert (out / "looped-lr0.01" / "study_eval.json").stat().st_mtime == mtime
    assert main(["study", "depth", "--out", str(tmp_path / "bad"), "--eval-loops", "0,2"]) == 2
    assert "--eval-loops" in capsys.readouterr().err
    assert main(["study", "depth", "--out", str(tmp_path / "bad"), "--lr", "4e-3,fast"]) == 2
    assert "--lr '4e-3,fast'" in capsys.readouterr().err
    assert main(["study", "depth", "--out", str(tmp_path / "bad"), "--seeds", "1,1"]) == 2
    assert "--seeds '1,1'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_a_small_corpus_always_gets_a_held_out_document():
    docs = [f"doc {i}\n" for i in range(5)]
    held = list(split_documents(docs, 0.001, heldout=True))
    train = list(split_documents(docs, 0.001, heldout=False))
    assert held == ["doc 4\n"] and train == docs[:4]


def test_text_runs_default_to_the_depth_recipe_without_act_and_tasks_keep_a_fixed_depth_and_act():
    from mythos.train.config import TASK_LOOPS, TEXT_LOOPS, TrainConfig
    from mythos.train.trainer import build_model_config

    text = TrainConfig(out="r", data="corpus/")
    task = TrainConfig(out="r", task="carry")
    assert (text.loops, task.loops) == (TEXT_LOOPS, TASK_LOOPS) == ("1:6", "4")
    assert text.grad_loops is None  # full backprop
    assert build_model_config(text, 512, 64).act is False  # the recipe: no ACT on text
    assert build_model_config(task, 512, 64).act is True  # the preset's ACT on tasks
    chosen = TrainConfig(out="r", data="corpus/", loops="8", model_overrides={"act": True})
    assert chosen.loops == "8" and build_model_config(chosen, 512, 64).act is True
