"""Every command whose optional extra is missing exits 2 with one line naming it, never a traceback.

Each case runs the real CLI in a subprocess where the extra's modules fail to import exactly as absent ones do
(tests/hf/blocked_cli.py), with arguments that get the command to the point where it needs them.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mythos.cli import COMMANDS, missing_extra
from mythos.model import Mythos, get_preset

HERE = Path(__file__).parent
MODEL = ("torch", "numpy", "safetensors")
TRAIN_ONLY = ("tokenizers", "pyarrow", "tqdm", "matplotlib")
REASON = ("openai", "anthropic", "httpx")
EVERYTHING = (*MODEL, *TRAIN_ONLY, *REASON, "transformers", "lm_eval", "accelerate")
OPENAI = ["--provider", "openai", "--model", "m", "--base-url", "http://127.0.0.1:9/v1"]


def _run(blocked, argv, cwd, env_extra=None):
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1] / "src"), "HOME": str(cwd), "OMP_NUM_THREADS": "1"}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, str(HERE / "blocked_cli.py"), ",".join(blocked), "--", *argv],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A text checkpoint (tokenizer.json), a byte-level one, a run with telemetry, convert inputs."""
    from mythos.train.data import train_tokenizer

    tmp = tmp_path_factory.mktemp("extras")
    train_tokenizer(["the cat sat on the mat"] * 20, 300, tmp / "tokenizer.json")
    torch.manual_seed(0)
    Mythos(get_preset("tiny", vocab_size=300)).save_pretrained(tmp / "text", tokenizer=tmp / "tokenizer.json")
    Mythos(get_preset("tiny")).save_pretrained(tmp / "bytes")
    (tmp / "run").mkdir()
    (tmp / "run" / "telemetry.jsonl").write_text(json.dumps({"step": 1, "loss": 3.0}) + "\n")
    (tmp / "sd.pt").write_bytes(b"x")
    (tmp / "cfg.json").write_text("{}")
    return tmp


# (command, blocked modules, argv after the command, expected extra)
CASES = [
    ("demo", MODEL, [], "train"),
    ("train", MODEL, ["--task", "binding", "--steps", "1"], "train"),
    ("train", ("tqdm",), ["--data", "{tmp}/tokenizer.json", "--steps", "1", "--out", "{tmp}/r"], "train"),
    ("eval", MODEL, ["{tmp}/text"], "train"),
    ("study", MODEL, ["depth", "--quick", "--out", "{tmp}/study"], "train"),
    ("plot", MODEL, ["{tmp}/run"], "train"),
    ("plot", ("matplotlib",), ["{tmp}/run"], "train"),
    ("doctor", MODEL, ["tiny"], "model"),
    ("convert", MODEL, ["{tmp}/sd.pt", "{tmp}/cfg.json", "{tmp}/out"], "model"),
    ("generate", MODEL, ["tiny", "--prompt", "hi"], "serve"),
    ("generate", ("tokenizers",), ["{tmp}/text", "--prompt", "hi"], "serve"),
    ("serve", MODEL, ["tiny"], "serve"),
    ("think", REASON, ["hello", *OPENAI], "reason"),
    ("think", REASON, ["hello", "--provider", "anthropic", "--model", "m"], "reason"),
    ("calibrate", REASON, OPENAI, "reason"),
    ("bench", REASON, [*OPENAI, "--out", "{tmp}/bench"], "reason"),
    ("export", MODEL, ["{tmp}/text", "--hf", "{tmp}/o1"], "hf"),
    ("export", ("tokenizers",), ["{tmp}/bytes", "--hf", "{tmp}/o2"], "hf"),
    ("import", MODEL, ["--hf", "{tmp}/o3"], "hf"),
]
NEEDS_NO_EXTRA = {"model": ["info", "tiny"], "packet": ["--help"], "skill": ["--help"]}


def test_every_command_is_covered():
    assert {c for c, *_ in CASES} | set(NEEDS_NO_EXTRA) == set(COMMANDS)


@pytest.mark.parametrize(
    ("command", "blocked", "argv", "extra"), CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES]
)
def test_missing_extra_is_one_line_exit_2(files, command, blocked, argv, extra):
    argv = [a.format(tmp=files) for a in argv]
    proc = _run(blocked, [command, *argv], files, {"OPENAI_API_KEY": "x", "ANTHROPIC_API_KEY": "x"})
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, err[-2000:])
    assert "Traceback" not in err and "\n" not in err, err
    assert err.startswith(f"mythos {command}: needs ") and err.endswith(f"pip install 'mythos[{extra}]'"), err


@pytest.mark.parametrize("command", sorted(NEEDS_NO_EXTRA))
def test_commands_without_an_extra_run_with_none(files, command):
    proc = _run(EVERYTHING, [command, *NEEDS_NO_EXTRA[command]], files)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_unrelated_missing_module_is_not_blamed_on_an_extra():
    exc = ModuleNotFoundError("No module named 'not_a_mythos_dependency'", name="not_a_mythos_dependency")
    assert missing_extra("think", exc) is None
    assert missing_extra("generate", ModuleNotFoundError("x", name="torch.nn")) == "serve"
    assert missing_extra("packet", ModuleNotFoundError("x", name="openai")) == "reason"
