"""One exit-code rule for every `mythos` command: 0 done, 1 the work failed, 2 usage or bad input.

Every command has --help; every command refuses an unknown flag with 2; every command that takes a model says
the same thing, with 2, for a target that is neither a checkpoint nor a preset, and for a damaged checkpoint.
"""

import contextlib
import io

import pytest
import torch

from mythos import cli
from mythos.model import Mythos, get_preset, save_checkpoint

# A positional argument that satisfies each command's parser, so the unknown flag is what gets refused.
POSITIONALS = {
    "eval": ["x"],
    "plot": ["x"],
    "model": ["info", "tiny"],
    "doctor": ["tiny"],
    "convert": ["a", "b", "c"],
    "generate": ["tiny", "--prompt", "x"],
    "serve": ["tiny"],
    "think": ["why?"],
    "packet": ["init"],
    "skill": ["install"],
}
MODEL_COMMANDS = {
    "model info": lambda t: ["model", "info", t],
    "doctor": lambda t: ["doctor", t],
    "eval": lambda t: ["eval", t],
    "generate": lambda t: ["generate", t, "--prompt", "hi", "--max-new-tokens", "1"],
    "serve": lambda t: ["serve", t, "--port", "0"],
}


def run(argv: list[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `mythos ARGV` in this process, argparse's SystemExit included."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main(argv)
        except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
            status = exc.code if isinstance(exc.code, int) else 2
    return status, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_command_has_help(command):
    status, out, err = run([command, "--help"])
    assert status == 0, err
    assert "usage" in (out + err).lower() and command in out + err


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_command_refuses_an_unknown_flag_with_2(command):
    status, out, err = run([command, *POSITIONALS.get(command, []), "--no-such-flag"])
    assert status == 2, (out, err)
    assert "--no-such-flag" in err or "usage" in err.lower()
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """A truncated checkpoint, one whose weights do not fit its config, and one whose config lacks `dim`."""
    root = tmp_path_factory.mktemp("damaged")
    torch.manual_seed(0)
    model = Mythos(get_preset("tiny"))
    truncated = save_checkpoint(model, root / "truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    mismatched = save_checkpoint(model, root / "mismatched")
    config = (mismatched / "config.json").read_text().replace('"dim": 64', '"dim": 96')
    assert config != (mismatched / "config.json").read_text()
    (mismatched / "config.json").write_text(config)
    no_dim = save_checkpoint(model, root / "no_dim")
    (no_dim / "config.json").write_text(
        "{" + ",".join(line for line in config.strip("{}\n").split(",") if '"dim"' not in line) + "}"
    )
    return {"truncated": truncated, "mismatched": mismatched, "no_dim": no_dim}


@pytest.mark.parametrize("command", list(MODEL_COMMANDS))
def test_neither_a_checkpoint_nor_a_preset_is_one_message_and_exit_2(command, tmp_path):
    for target in ("no-such-model", str(tmp_path)):
        status, _, err = run(MODEL_COMMANDS[command](target))
        assert status == 2, err
        assert "is neither a checkpoint" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["doctor", "eval", "generate", "serve"])
@pytest.mark.parametrize("kind, message", [("truncated", "truncated"), ("mismatched", "does not match")])
def test_damaged_checkpoints_are_clean_errors_with_2(command, kind, message, damaged):
    status, _, err = run(MODEL_COMMANDS[command](str(damaged[kind])))
    assert status == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2
    if command != "eval":  # eval refuses earlier: the folder has no train_config.json
        assert message in err


def test_model_info_on_a_config_without_dim_is_exit_2_naming_it(damaged):
    status, out, err = run(["model", "info", str(damaged["no_dim"])])
    assert status == 2 and "lacks dim" in err and out == ""


def test_model_info_on_a_truncated_checkpoint_says_so(damaged):
    status, out, _ = run(["model", "info", str(damaged["truncated"])])
    assert status == 0 and "checkpoint tensors: unreadable: model.safetensors is truncated" in out


def test_model_info_prints_the_checkpoint_tensors_line(tmp_path):
    ckpt = save_checkpoint(Mythos(get_preset("tiny")), tmp_path / "ckpt")
    status, out, _ = run(["model", "info", str(ckpt)])
    assert status == 0
    assert "checkpoint tensors:" in out and "matches parameters + router-bias buffer" in out


def test_an_unknown_preset_names_presets_not_a_config_field():
    from mythos.model import ConfigError

    with pytest.raises(ConfigError) as info:
        get_preset("nope")
    assert "preset 'nope' is unknown" in str(info.value) and "MythosConfig.preset" not in str(info.value)


def test_convert_on_a_corrupt_state_dict_is_exit_2(tmp_path):
    (tmp_path / "ref.pt").write_bytes(b"PK\x03\x04 not really a torch file")
    (tmp_path / "cfg.json").write_text('{"dim": 64}')
    status, _, err = run(
        ["convert", str(tmp_path / "ref.pt"), str(tmp_path / "cfg.json"), str(tmp_path / "o")]
    )
    assert status == 2 and "conversion failed" in err and "Traceback" not in err


def test_doctor_finds_non_finite_weights_first_and_blames_nothing_else(tmp_path):
    torch.manual_seed(0)
    model = Mythos(get_preset("tiny"))
    with torch.no_grad():
        model.recurrent.block.attn.parameters().__next__().view(-1)[:3] = float("nan")
    save_checkpoint(model, tmp_path / "nan")
    status, out, _ = run(["doctor", str(tmp_path / "nan"), "--json"])
    assert status == 1
    import json

    findings = json.loads(out)["findings"]
    assert findings[0]["invariant"] == "finite_weights" and findings[0]["severity"] == "violation"
    assert "recurrent.block.attn" in findings[0]["seen"]
    assert [f["invariant"] for f in findings if f["severity"] == "violation"] == ["finite_weights"]


def test_doctor_out_of_memory_is_an_error_exit_1_not_violations():
    status, out, err = run(["doctor", "tiny", "--probe-tokens", str(10**14)])
    assert status == 1, err
    assert "does not fit in memory" in err and "VIOLATION" not in out
