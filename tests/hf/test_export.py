"""`mythos export --hf` directories load with torch + transformers only and compute what mythos computes.

Each exported model is loaded in a fresh process where ``import mythos`` fails (tests/hf/hf_child.py); the
child writes its logits, cached decode, generations and pipeline text, and this process compares them with
mythos's own model on the same weights.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mythos.cli import main as cli_main
from mythos.hf.export import ROPE_CONVENTION, code_files, module_closure
from mythos.model import Mythos, get_preset, load_checkpoint

pytest.importorskip("transformers")

HERE = Path(__file__).parent
PROMPT = "the cat sat on the mat"
CORPUS = [
    "the cat sat on the mat and the dog sat on the log",
    "a looped transformer reuses one block many times",
    "the quick brown fox jumps over the lazy dog",
] * 20


def _child(out: Path, job: dict, tmp: Path) -> dict:
    job_file, result = tmp / "job.json", tmp / "result.pt"
    job_file.write_text(json.dumps(job))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        HF_HOME=str(tmp / "hf_home"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1"
    )
    proc = subprocess.run(
        [sys.executable, str(HERE / "hf_child.py"), str(out), str(job_file), str(result)],
        env=env,
        cwd=tmp,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return torch.load(result, weights_only=False)


def _mythos_decode(model: Mythos, ids: torch.Tensor, prefill: int, n_loops: int) -> torch.Tensor:
    cache = model.new_cache(batch_size=ids.shape[0], max_len=ids.shape[1], n_loops=n_loops)
    steps = [model(ids[:, :prefill], cache=cache)]
    steps += [model(ids[:, i : i + 1], cache=cache) for i in range(prefill, ids.shape[1])]
    return torch.cat(steps, dim=1)


def _close(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a.float() - b.float()).abs().max())


@pytest.fixture(scope="module")
def mla_export(tmp_path_factory):
    """MLA, reference_compat=True, with a BPE tokenizer trained here (so it has an EOS token)."""
    from mythos.train.data import train_tokenizer

    tmp = tmp_path_factory.mktemp("mla")
    train_tokenizer(CORPUS, 320, tmp / "tokenizer.json")
    torch.manual_seed(0)
    model = Mythos(get_preset("tiny", vocab_size=320, reference_compat=True)).eval()
    with torch.no_grad():  # visible router bias: it must survive the round trip
        model.recurrent.block.ffn.router.bias.copy_(torch.randn(model.cfg.n_experts) * 0.01)
    run = tmp / "run"
    ckpt = run / "checkpoints" / "step_00000040"
    model.save_pretrained(ckpt, tokenizer=tmp / "tokenizer.json")
    train_cfg = {
        "data": "corpus.txt",
        "steps": 40,
        "batch_size": 4,
        "grad_accum": 1,
        "seq_len": 64,
        "loops": "4",
    }
    (ckpt / "train_config.json").write_text(json.dumps(train_cfg))
    (run / "eval.json").write_text(json.dumps({"perplexity": 12.5, "loss": 2.53}))
    out = tmp / "hf"
    assert cli_main(["export", str(run), "--hf", str(out)]) == 0
    return model, out, tmp


@pytest.fixture(scope="module")
def gqa_export(tmp_path_factory):
    """GQA, ACT off (so per-token exits apply), byte-level vocabulary (no tokenizer.json in the run)."""
    tmp = tmp_path_factory.mktemp("gqa")
    torch.manual_seed(1)
    model = Mythos(get_preset("tiny-gqa", act=False, max_seq_len=1024)).eval()  # room past the first cache
    model.save_pretrained(tmp / "ckpt")
    out = tmp / "hf"
    assert cli_main(["export", str(tmp / "ckpt"), "--hf", str(out)]) == 0
    return model, out, tmp


def _parity(model: Mythos, child: dict, ids: torch.Tensor, loops: list[int], prefill: int, decode_loops: int):
    with torch.no_grad():
        for n in loops:
            assert _close(child["logits"][n], model(ids, n_loops=n)) <= 1e-5, n
        assert _close(child["decode"], _mythos_decode(model, ids, prefill, decode_loops)) <= 1e-5
        # and the cached decode matches the uncached forward, as in mythos
        assert _close(child["decode"], model(ids, n_loops=decode_loops)) <= 1e-4


def test_mla_export_parity_generate_pipeline(mla_export):
    from tokenizers import Tokenizer

    model, out, tmp = mla_export
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    prompt = tok.encode(PROMPT).ids
    ids = torch.tensor([prompt + prompt[:3]])
    with torch.no_grad():
        greedy = model.generate(torch.tensor([prompt]), max_new_tokens=8, n_loops=3)
    stop_at = int(greedy[0, len(prompt) + 2])  # the third new token becomes the EOS of a second run
    job = {
        "ids": ids.tolist(),
        "loops": [1, 2, 5],
        "prefill": 4,
        "decode_loops": 3,
        "generate": {
            "greedy": {"input_ids": [prompt], "max_new_tokens": 8, "num_steps": 3, "do_sample": False},
            "eos": {
                "input_ids": [prompt],
                "max_new_tokens": 8,
                "num_steps": 3,
                "do_sample": False,
                "eos_token_id": stop_at,
            },
        },
        "pipeline": {
            "text": PROMPT,
            "kwargs": {"max_new_tokens": 6, "do_sample": False, "num_steps": 2},
            "decode": prompt,
        },
    }
    child = _child(out, job, tmp)
    assert child["class"] == "MythosForCausalLM" and child["dtype"] == "torch.float32"
    cfg = child["config"]
    assert cfg["rope_convention"] == ROPE_CONVENTION and cfg["cache_layout"].startswith("mla")
    assert cfg["mythos"]["reference_compat"] is True and cfg["eos_token_id"] == eos
    _parity(model, child, ids, job["loops"], job["prefill"], job["decode_loops"])
    assert torch.equal(child["generate"]["greedy"], greedy)
    eos_run = child["generate"]["eos"]
    first = greedy[0, len(prompt) :].tolist().index(stop_at)  # stops at the first emission of stop_at
    assert eos_run.tolist() == [greedy[0, : len(prompt) + first + 1].tolist()]
    # tokenizer and pipeline: same ids as the run's tokenizer, text = prompt + greedy continuation
    assert child["tok_ids"] == prompt and child["tok_decode"] == tok.decode(prompt)
    with torch.no_grad():
        cont = model.generate(torch.tensor([prompt]), max_new_tokens=6, n_loops=2)[0, len(prompt) :]
    cont = cont.tolist()
    if eos in cont:
        cont = cont[: cont.index(eos)]
    assert child["pipeline"] == PROMPT + tok.decode(cont)


def test_gqa_export_parity_padding_sampling_exits(gqa_export):
    model, out, tmp = gqa_export
    torch.manual_seed(3)
    ids = torch.randint(0, 256, (2, 9))
    rows = [[5, 9, 200, 17, 3], [44, 12, 99]]
    long_prompt = torch.randint(0, 256, (1, 250))  # + 20 new tokens: the cache grows past its first 256
    padded = [[0, 0, *rows[1]]]
    job = {
        "ids": ids.tolist(),
        "loops": [1, 3, 6],
        "prefill": 5,
        "decode_loops": 4,
        "forward_exits": {
            "all_at_2": {"num_steps": 4, "exit_criterion": "delta:1e9"},
            "never": {"num_steps": 4, "exit_criterion": "delta:1e-12"},
        },
        "generate": {
            "padded": {
                "input_ids": [rows[0], *padded],
                "attention_mask": [[1] * 5, [0, 0, 1, 1, 1]],
                "max_new_tokens": 6,
                "num_steps": 2,
                "do_sample": False,
                "pad_token_id": 0,
            },
            "long": {
                "input_ids": long_prompt.tolist(),
                "max_new_tokens": 20,
                "num_steps": 2,
                "do_sample": False,
            },
            "beam": {
                "input_ids": [rows[0]],
                "max_new_tokens": 6,
                "num_steps": 2,
                "num_beams": 3,
                "do_sample": False,
            },
            "beam_nocache": {
                "input_ids": [rows[0]],
                "max_new_tokens": 6,
                "num_steps": 2,
                "num_beams": 3,
                "do_sample": False,
                "use_cache": False,
            },
            "beam_row1": {
                "input_ids": [rows[1]],
                "max_new_tokens": 6,
                "num_steps": 2,
                "num_beams": 2,
                "do_sample": False,
            },
            "beam_padded": {
                "input_ids": [rows[0], *padded],
                "attention_mask": [[1] * 5, [0, 0, 1, 1, 1]],
                "max_new_tokens": 6,
                "num_steps": 2,
                "num_beams": 2,
                "do_sample": False,
                "pad_token_id": 0,
            },
            "top_k_1": {
                "input_ids": [rows[0]],
                "max_new_tokens": 6,
                "num_steps": 2,
                "do_sample": True,
                "top_k": 1,
            },
            "sample_a": {
                "input_ids": [rows[0]],
                "max_new_tokens": 12,
                "do_sample": True,
                "seed": 7,
                "top_k": 0,
            },
            "sample_b": {
                "input_ids": [rows[0]],
                "max_new_tokens": 12,
                "do_sample": True,
                "seed": 7,
                "top_k": 0,
            },
            "exits_never": {
                "input_ids": [rows[0]],
                "max_new_tokens": 6,
                "num_steps": 3,
                "do_sample": False,
                "exit_criterion": "delta:1e-12",
            },
            "exits_kl": {
                "input_ids": [rows[0]],
                "max_new_tokens": 6,
                "num_steps": 3,
                "do_sample": False,
                "exit_criterion": "kl:0.5",
            },
        },
    }
    child = _child(out, job, tmp)
    assert child["config"]["cache_layout"].startswith("gqa")
    _parity(model, child, ids, job["loops"], job["prefill"], job["decode_loops"])
    gen = child["generate"]
    with torch.no_grad():
        expect = [model.generate(torch.tensor([r]), max_new_tokens=6, n_loops=2)[0, len(r) :] for r in rows]
        # left padding: each row's continuation is the one it gets alone
        assert torch.equal(gen["padded"][0, 5:], expect[0]) and torch.equal(gen["padded"][1, 5:], expect[1])
        assert torch.equal(
            gen["top_k_1"], model.generate(torch.tensor([rows[0]]), max_new_tokens=6, n_loops=2)
        )
        assert torch.equal(gen["sample_a"], gen["sample_b"]) and gen["sample_a"].shape == (1, 5 + 12)
        greedy = model.generate(torch.tensor([rows[0]]), max_new_tokens=12)
        assert not torch.equal(gen["sample_a"], greedy)  # 12 tokens from a 256-way, nearly flat distribution
        # exits: a rule that never fires changes nothing; one that always fires at loop 2 == two loops
        assert torch.equal(
            gen["exits_never"], model.generate(torch.tensor([rows[0]]), max_new_tokens=6, n_loops=3)
        )
        assert gen["exits_kl"].shape == (1, 11)
        logits, depth = child["exit_all_at_2"]
        assert _close(logits, model(ids, n_loops=2)) <= 1e-5 and bool((depth == 2).all())
        logits, depth = child["exit_never"]
        assert _close(logits, model(ids, n_loops=4)) <= 1e-5 and bool((depth == 4).all())


def test_import_round_trip_bit_exact(mla_export, tmp_path, capsys):
    model, out, _ = mla_export
    assert cli_main(["import", "--hf", str(out), "--out", str(tmp_path / "back")]) == 0
    back = load_checkpoint(tmp_path / "back")
    assert back.cfg == model.cfg
    a, b = model.state_dict(), back.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
    assert (tmp_path / "back" / "tokenizer.json").read_bytes() == (out / "tokenizer.json").read_bytes()
    assert Mythos.from_pretrained(tmp_path / "back").checkpoint_dir == tmp_path / "back"


def test_export_ships_mythos_own_modules(mla_export):
    _, out, _ = mla_export
    model_dir = Path(__import__("mythos.model", fromlist=["x"]).__file__).parent
    exits = (model_dir / "exits.py").read_text()
    assert (out / "mythos_exits.py").read_text() == exits  # the exit rules are the same file
    assert "model" in module_closure() and "exits" in module_closure()
    for name, text in code_files().items():
        assert (out / name).read_text() == text
        assert "import mythos" not in text and "from mythos" not in text, name


def test_model_card_and_generation_config(mla_export):
    model, out, _ = mla_export
    card = (out / "README.md").read_text()
    assert "library_name: transformers" in card
    assert "MLA" in card and "reference_compat: True" in card and "interleaved" in card
    assert "corpus.txt" in card and "tokens seen: 10,240 per process" in card  # 40 steps x 4 x 64
    assert "| `perplexity` | `12.5` |" in card
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["eos_token_id"] == json.loads((out / "config.json").read_text())["eos_token_id"] is not None


def test_export_errors_are_one_line_exit_2(tmp_path, capsys, gqa_export):
    assert cli_main(["export", str(tmp_path / "missing"), "--hf", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mythos export:") and "\n" not in err
    _, out, tmp = gqa_export
    assert cli_main(["export", str(tmp / "ckpt"), "--hf", str(out)]) == 2  # exists, no --force
    assert "--force" in capsys.readouterr().err
    (tmp_path / "notmythos").mkdir()
    (tmp_path / "notmythos" / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "notmythos" / "model.safetensors").write_bytes(b"")
    assert cli_main(["import", "--hf", str(tmp_path / "notmythos")]) == 2
    assert "model_type='llama'" in capsys.readouterr().err


def test_mythos_generate_method_and_save_pretrained_tokenizer(tmp_path):
    torch.manual_seed(0)
    model = Mythos(get_preset("tiny")).eval()
    prompt = torch.tensor([[3, 1, 4, 1, 5]])
    from mythos.model.generate import generate

    out = model.generate(prompt, max_new_tokens=5, n_loops=2)
    assert torch.equal(out[:, :5], prompt) and torch.equal(out[:, 5:], generate(model, prompt, 5, n_loops=2))
    (tmp_path / "tok.json").write_text("{}")
    model.save_pretrained(tmp_path / "a", tokenizer=tmp_path / "tok.json")
    loaded = Mythos.from_pretrained(tmp_path / "a")
    loaded.save_pretrained(tmp_path / "b")  # carries the tokenizer it was loaded with
    assert (tmp_path / "b" / "tokenizer.json").read_text() == "{}"
    assert torch.equal(loaded.generate(prompt, max_new_tokens=5, n_loops=2), out)
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        model.save_pretrained(tmp_path / "c", tokenizer=tmp_path / "nope.json")
