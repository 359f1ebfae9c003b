"""One `--json` shape for every `mythos` command that has the flag (docs/cli.md), run through the real CLI.

One JSON object on stdout; ``ok`` is true exactly when the exit status is 0; a failure carries ``error`` (and
``field``/``value``/``fix``); a success does not.
"""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

from mythos import cli
from mythos.envelope import failure, success
from mythos.model import Mythos, get_preset, save_checkpoint


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main(argv)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 2
    return status, out.getvalue(), err.getvalue()


def envelope_of(argv: list[str], expected_status: int) -> dict:
    status, out, err = run(argv)
    assert status == expected_status, (out, err)
    payload = json.loads(out)  # exactly one JSON document on stdout
    assert isinstance(payload, dict)
    assert payload["ok"] is (status == 0)
    if status == 0:
        assert "error" not in payload
    else:
        assert isinstance(payload["error"], str) and payload["error"]
        assert {"field", "value", "fix"} <= payload.keys()
        assert payload["error"].splitlines()[0] in err  # the same line a person reads on stderr
    return payload


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(Mythos(get_preset("tiny")), tmp_path_factory.mktemp("env") / "ckpt")


def test_model_list_and_info():
    listing = envelope_of(["model", "list", "--json"], 0)
    assert "tiny" in {row["name"] for row in listing["presets"]}
    info = envelope_of(["model", "info", "tiny", "--json"], 0)
    assert "tiny" in info["target"] and info["params"]["total"] > 0
    bad = envelope_of(["model", "info", "no-such-thing", "--json"], 2)
    assert bad["field"] == "target" and "no-such-thing" in bad["error"]


def test_doctor(ckpt):
    healthy = envelope_of(["doctor", str(ckpt), "--json", "--probe-tokens", "32"], 0)
    assert healthy["findings"] and healthy["target"]
    assert envelope_of(["doctor", "no-such-thing", "--json"], 2)["field"] == "target"
    assert envelope_of(["doctor", "tiny", "--json", "--probe-tokens", "1"], 2)["field"] == "probe_tokens"


def test_doctor_violation_is_a_failure_envelope_with_findings(tmp_path):
    torch.manual_seed(0)
    model = Mythos(get_preset("tiny"))
    with torch.no_grad():
        next(model.recurrent.block.attn.parameters()).view(-1)[:3] = float("nan")
    sick = save_checkpoint(model, tmp_path / "nan")
    report = envelope_of(["doctor", str(sick), "--json"], 1)
    assert report["findings"][0]["invariant"] == "finite_weights"


def test_generate(ckpt):
    argv = ["generate", str(ckpt), "--prompt", "ab", "--prompt", "c", "--max-new-tokens", "3", "--json"]
    result = envelope_of([*argv, "--temperature", "0"], 0)
    assert [c["prompt"] for c in result["completions"]] == ["ab", "c"]
    assert all(0 <= c["tokens"] <= 3 and isinstance(c["text"], str) for c in result["completions"])
    assert result["n_loops"] == get_preset("tiny").max_loop_iters
    assert all(len(row) == 2 for row in result["loops_per_step"])  # loops run per row, per step
    assert envelope_of(["generate", "no-such-thing", "--prompt", "x", "--json"], 2)["field"] == "model"


def test_export_and_import(ckpt, tmp_path):
    exported = envelope_of(["export", str(ckpt), "--hf", str(tmp_path / "hf"), "--json"], 0)
    assert exported["out"] == str(tmp_path / "hf")
    imported = envelope_of(
        ["import", "--hf", str(tmp_path / "hf"), "--out", str(tmp_path / "back"), "--json"], 0
    )
    assert imported["parameters"] == sum(p.numel() for p in Mythos(get_preset("tiny")).parameters())
    envelope_of(["export", str(tmp_path / "missing"), "--hf", str(tmp_path / "x"), "--json"], 2)


def test_skill_and_packet_already_had_this_shape(tmp_path):
    installed = envelope_of(
        ["skill", "install", "--host", "claude", "--dest", str(tmp_path / "c"), "--json"], 0
    )
    assert installed["written"]
    envelope_of(["packet", "init", str(tmp_path / "run"), "--task", "t", "--json"], 0)
    missing = envelope_of(["packet", "status", "--run-dir", str(tmp_path / "nope"), "--json"], 1)
    assert missing["field"] == "run_dir"


def test_helpers_refuse_to_break_the_shape():
    assert success(a=1) == {"ok": True, "a": 1}
    with pytest.raises(ValueError, match="ok"):
        success(ok=False)
    assert failure("x", value=object())["value"].startswith("<object")
