"""Checkpoint round trips are bit-exact, atomic and keep the head tied; reference conversion from files."""

import dataclasses
import importlib
import json

import pytest
import torch
from safetensors.torch import load_file

from mythos.model import Mythos, get_preset, load_checkpoint, save_checkpoint


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_round_trip_bit_exact(tmp_path, dtype):
    torch.manual_seed(0)
    model = Mythos(get_preset("tiny")).to(dtype)
    model.update_router_bias(torch.tensor([0.7, 0.1, 0.1, 0.1]))
    save_checkpoint(model, tmp_path / "ckpt")
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.cfg == model.cfg
    assert loaded.head.weight is loaded.embed.weight
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key
    ids = torch.randint(0, 256, (1, 7))
    assert torch.equal(model(ids), loaded(ids))


def test_tied_weight_stored_once_and_overwrite_is_atomic(tmp_path):
    model = Mythos(get_preset("tiny"))
    target = tmp_path / "ckpt"
    model.save_pretrained(str(target))
    stored = load_file(str(target / "model.safetensors"))
    assert "head.weight" not in stored and "embed.weight" in stored
    config = json.loads((target / "config.json").read_text())
    assert config["dim"] == 64
    # overwrite an existing checkpoint: afterwards only the new one exists, no temp dirs remain
    other = Mythos(get_preset("tiny"))
    save_checkpoint(other, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert torch.equal(Mythos.from_pretrained(str(target)).embed.weight, other.embed.weight)


def test_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_checkpoint(tmp_path)


def test_convert_open_mythos_files(tmp_path):
    main = importlib.import_module("open_mythos.main")
    from mythos.model import convert_open_mythos

    torch.manual_seed(0)
    rc = main.MythosConfig(
        vocab_size=64, dim=32, n_heads=4, n_kv_heads=2, max_seq_len=32, max_loop_iters=2, prelude_layers=1,
        coda_layers=1, attn_type="mla", kv_lora_rank=8, q_lora_rank=16, qk_rope_head_dim=4, qk_nope_head_dim=4,
        v_head_dim=8, n_experts=4, n_shared_experts=1, n_experts_per_tok=2, expert_dim=8, lora_rank=2,
    )  # fmt: skip
    ref = main.OpenMythos(rc).eval()
    torch.save(ref.state_dict(), tmp_path / "ref.pt")
    (tmp_path / "ref.json").write_text(json.dumps(dataclasses.asdict(rc)))
    out = convert_open_mythos(tmp_path / "ref.pt", tmp_path / "ref.json", tmp_path / "converted")
    ours = load_checkpoint(out).eval()
    assert ours.cfg.reference_compat
    ids = torch.randint(0, 64, (1, 9))
    with torch.no_grad():
        assert (ours(ids, n_loops=2) - ref(ids, n_loops=2)).abs().max() < 1e-5
