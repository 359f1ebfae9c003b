"""The top-level dispatcher: every command resolves, and packet commands never import torch."""

import subprocess
import sys

import pytest

from mythos import cli


def test_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_unknown_command_is_an_error(capsys):
    assert cli.main(["no-such-command"]) == 2
    assert "unknown command" in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_command_resolves_to_a_function(command):
    assert callable(cli.resolve(command))


def test_packet_commands_start_without_torch():
    code = "import sys; from mythos import cli; cli.resolve('packet'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
