"""The /mythos command templates: installed by `mythos skill install`, and in step with the engine's keywords."""

import re
from pathlib import Path

import pytest

from mythos.reason.routing import KEYWORDS
from mythos.skills.install import TEMPLATES, install_skill

FILES = {"claude": "commands/mythos.md", "codex": "prompts/mythos.md"}


@pytest.mark.parametrize("host", sorted(FILES))
def test_install_copies_the_command(host, tmp_path):
    result = install_skill(host, tmp_path / host)
    assert FILES[host] in result.written
    text = (tmp_path / host / FILES[host]).read_text()
    assert text == (TEMPLATES / host / FILES[host]).read_text()


@pytest.mark.parametrize("host", sorted(FILES))
def test_command_calls_the_engine_and_names_every_keyword(host):
    text = (Path(TEMPLATES) / host / FILES[host]).read_text()
    assert text.startswith("---\n") and "\ndescription:" in text.split("---")[1]
    assert "mythos think $ARGUMENTS" in text
    for keyword in KEYWORDS:
        assert re.search(rf"`{keyword}`", text), keyword
    assert "*Depth:" in text and "status 2" in text
