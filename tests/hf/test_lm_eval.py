"""lm-evaluation-harness runs offline on an exported model with the tasks the export writes (slow tier).

The harness's numbers are recomputed here with mythos itself (same tokenizer, same scoring rules: rolling
log-likelihood after the EOS prefix; multiple choice by summed continuation log-likelihood), so the test fails
if the export, the task files or the harness's use of the model disagree.
"""

import glob
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mythos.cli import main as cli_main
from mythos.model import Mythos, get_preset

pytestmark = pytest.mark.slow

CORPUS = [
    "the cat sat on the mat and the dog sat on the log",
    "a looped transformer reuses one block many times",
    "the quick brown fox jumps over the lazy dog",
] * 20


def _logprobs(model: Mythos, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([ids])).float(), dim=-1)[0]


def test_lm_eval_offline_matches_mythos(tmp_path):
    if importlib.util.find_spec("lm_eval") is None:
        pytest.skip("lm-eval is not installed: pip install 'mythos[eval]'")
    from tokenizers import Tokenizer

    from mythos.train.data import train_tokenizer

    train_tokenizer(CORPUS, 320, tmp_path / "tokenizer.json")
    torch.manual_seed(0)
    model = Mythos(get_preset("tiny", vocab_size=320)).eval()
    model.save_pretrained(tmp_path / "ckpt", tokenizer=tmp_path / "tokenizer.json")
    out = tmp_path / "hf"
    assert cli_main(["export", str(tmp_path / "ckpt"), "--hf", str(out)]) == 0
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        HF_HOME=str(tmp_path / "hf_home"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        OMP_NUM_THREADS="1",
    )
    cmd = [
        sys.executable,
        "-m",
        "lm_eval",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={out},trust_remote_code=True",
        "--include_path",
        str(out / "lm_eval"),
        "--tasks",
        "mythos_heldout,mythos_binding",
        "--batch_size",
        "4",
        "--output_path",
        str(tmp_path / "results"),
    ]
    proc = subprocess.run(
        cmd, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    found = glob.glob(str(tmp_path / "results" / "**" / "results_*.json"), recursive=True)
    results = json.loads(Path(found[0]).read_text())["results"]

    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    # held-out perplexity: every document fits one window, scored after the EOS prefix token
    total_ll, words, n_bytes = 0.0, 0, 0
    for line in (out / "lm_eval" / "heldout.jsonl").read_text().splitlines():
        text = json.loads(line)["text"]
        ids = tok.encode(text).ids
        logp = _logprobs(model, [eos, *ids[:-1]])
        total_ll += float(logp[torch.arange(len(ids)), torch.tensor(ids)].sum())
        words += len(re.split(r"\s+", text))
        n_bytes += len(text.encode("utf-8"))
    heldout = results["mythos_heldout"]
    assert math.isclose(heldout["word_perplexity,none"], math.exp(-total_ll / words), rel_tol=1e-3)
    assert math.isclose(heldout["byte_perplexity,none"], math.exp(-total_ll / n_bytes), rel_tol=1e-4)
    # multiple choice: the harness's accuracy equals ours, choice by choice
    correct, items = 0, [json.loads(x) for x in (out / "lm_eval" / "binding.jsonl").read_text().splitlines()]
    for item in items:
        context = tok.encode(item["question"]).ids
        scores = []
        for choice in item["choices"]:
            whole = tok.encode(item["question"] + " " + choice).ids
            cont = whole[len(context) :]
            logp = _logprobs(model, whole[:-1])[-len(cont) :]
            scores.append(float(logp[torch.arange(len(cont)), torch.tensor(cont)].sum()))
        correct += int(max(range(len(scores)), key=scores.__getitem__) == item["label"])
    assert results["mythos_binding"]["acc,none"] == pytest.approx(correct / len(items), abs=1e-9)
