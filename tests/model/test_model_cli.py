"""`mythos model info|list` and `mythos convert`, end to end on real files."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from mythos.model import load_checkpoint, save_checkpoint
from mythos.model.cli import convert_main, model_main
from mythos.model.params import count_params, kv_cache_bytes_per_token
from mythos.model.presets import PRESETS, get_preset

REF_FIELDS = dict(
    vocab_size=97, dim=32, n_heads=4, n_kv_heads=2, max_seq_len=64, max_loop_iters=3, prelude_layers=1,
    coda_layers=1, kv_lora_rank=8, q_lora_rank=12, qk_rope_head_dim=4, qk_nope_head_dim=6, v_head_dim=10,
    n_experts=4, n_shared_experts=1, n_experts_per_tok=2, expert_dim=16, lora_rank=4,
)  # fmt: skip


def test_list_names_every_preset(capsys):
    assert model_main(["list"]) == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert name in out
    assert model_main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["ok"] is True
    rows = listing["presets"]
    assert {row["name"] for row in rows} == set(PRESETS)
    assert all(row["total"] == count_params(get_preset(row["name"])).total for row in rows)


def test_info_json_for_the_largest_preset_is_exact(capsys):
    assert model_main(["info", "1t", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    counts = count_params(get_preset("1t"))
    assert report["params"]["total"] == counts.total
    assert report["params"]["active_per_token"] == counts.active
    assert sum(report["components"].values()) == counts.total
    kv = report["kv_cache"]["per_token"]
    assert kv["mla"]["bytes_bfloat16"] == kv_cache_bytes_per_token(get_preset("1t"), "bfloat16")
    assert kv["mla"]["bytes_float32"] * 2.4 < kv["mla (reference layout)"]["bytes_float32"]


def test_info_table_through_the_real_command():
    result = subprocess.run(
        [sys.executable, "-m", "mythos", "model", "info", "small", "--loops", "8"],
        capture_output=True,
        text=True,
        check=True,
    )
    total = count_params(get_preset("small")).total
    assert f"{total:,}" in result.stdout
    assert "touched at depth 8" in result.stdout
    assert "KV cache per token at depth 8" in result.stdout


def test_info_on_a_checkpoint_reads_config_and_tensor_header(tmp_path, capsys):
    from mythos.model import Mythos

    model = Mythos(get_preset("tiny-gqa"))
    save_checkpoint(model, tmp_path / "ckpt")
    assert model_main(["info", str(tmp_path / "ckpt"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["params"]["total"] == model.num_parameters()
    buffers = sum(b.numel() for b in model.buffers())
    assert (
        report["checkpoint_tensor_elements"]
        == model.num_parameters() + buffers
        == (report["params"]["total"] + report["buffer_elements"])
    )
    assert report["config"]["attn_type"] == "gqa"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["info", "no-such-preset"], "is neither a checkpoint"),
        (["info", "small", "--loops", "0"], "n_loops"),
        (["frobnicate"], "unknown model subcommand"),
    ],
)
def test_info_errors_name_the_problem(argv, message, capsys):
    assert model_main(argv) == 2
    assert message in capsys.readouterr().err


def _reference_files(tmp_path, attn_type: str):
    from open_mythos.main import MythosConfig as RefConfig
    from open_mythos.main import OpenMythos

    torch.manual_seed(3)
    reference = OpenMythos(RefConfig(**REF_FIELDS, attn_type=attn_type)).eval()
    state_path, config_path = tmp_path / "ref.pt", tmp_path / "ref_config.json"
    torch.save(reference.state_dict(), state_path)
    config_path.write_text(json.dumps(dataclasses.asdict(reference.cfg)))
    return reference, state_path, config_path


@pytest.mark.parametrize("attn_type", ["mla", "gqa"])
def test_convert_end_to_end_matches_reference_logits(tmp_path, attn_type, capsys):
    reference, state_path, config_path = _reference_files(tmp_path, attn_type)
    out_dir = tmp_path / "converted"
    assert convert_main([str(state_path), str(config_path), str(out_dir)]) == 0
    assert "wrote" in capsys.readouterr().out
    ours = load_checkpoint(out_dir).eval()
    assert ours.cfg.reference_compat
    ids = torch.randint(0, REF_FIELDS["vocab_size"], (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(ids, n_loops=3)
        actual = ours(ids, n_loops=3)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def test_convert_rejects_bad_inputs(tmp_path, capsys):
    _, state_path, config_path = _reference_files(tmp_path, "mla")
    assert convert_main([str(tmp_path / "missing.pt"), str(config_path), str(tmp_path / "o1")]) == 2
    assert "does not exist" in capsys.readouterr().err

    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    assert convert_main([str(state_path), str(bad_json), str(tmp_path / "o2")]) == 2
    assert "not valid JSON" in capsys.readouterr().err

    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**json.loads(config_path.read_text()), "dim": 64, "n_heads": 4}))
    assert convert_main([str(state_path), str(wrong), str(tmp_path / "o3")]) == 2
    assert "conversion failed" in capsys.readouterr().err
    assert not (tmp_path / "o3" / "model.safetensors").exists()


def test_info_on_a_training_run_reads_its_latest_checkpoint(tmp_path, capsys):
    from mythos.model import Mythos

    run = tmp_path / "run"
    save_checkpoint(Mythos(get_preset("tiny")), run / "checkpoints" / "step_00000010")
    save_checkpoint(Mythos(get_preset("tiny-gqa")), run / "checkpoints" / "step_00000020")
    assert model_main(["info", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["attn_type"] == "gqa"  # newest step
    (run / "checkpoints" / "latest").write_text("step_00000010")
    assert model_main(["info", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["attn_type"] == "mla"  # what `latest` names
    assert model_main(["info", str(tmp_path)]) == 2
    assert "neither a checkpoint" in capsys.readouterr().err
