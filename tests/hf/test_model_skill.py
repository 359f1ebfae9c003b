"""The model-expert skill installed by `mythos skill install` stays true to the code it points at."""

import re
from pathlib import Path

import pytest

from mythos.cli import COMMANDS
from mythos.model.doctor import INVARIANTS
from mythos.skills.install import TEMPLATES, install_skill

ROOT = Path(__file__).resolve().parents[2]
REL = "skills/mythos-model/SKILL.md"


def _skill(host: str) -> str:
    return (TEMPLATES / host / REL).read_text()


@pytest.mark.parametrize("host", ["claude", "codex"])
def test_installed_for_each_host(tmp_path, host):
    result = install_skill(host, tmp_path / host)
    assert REL in result.written
    text = (tmp_path / host / REL).read_text()
    assert text == _skill(host)
    front = text.split("---")[1]
    assert re.search(r"^name: mythos-model$", front, re.M) and "description:" in front


def test_triggers_name_real_symbols():
    front = _skill("claude").split("---")[1]
    source = "\n".join(p.read_text() for p in (ROOT / "src" / "mythos").rglob("*.py"))
    symbols = re.findall(
        r"\b([A-Z][A-Za-z]+(?:Config|Block|Injection|Embedding|LoRA|Halting|Attention|Cache|"
        r"Criterion|Experts)|Mythos|MoE|Router)\b",
        front,
    )
    assert len(set(symbols)) >= 10
    for name in set(symbols):
        assert re.search(rf"^class {name}\b", source, re.M), name
    for name in ("load_checkpoint", "get_preset"):
        assert f"def {name}(" in source


def test_invariants_commands_and_docs_exist():
    text = _skill("claude")
    named = re.findall(r"^\d+\. `(\w+)`", text, re.M)
    assert sorted(named) == sorted(INVARIANTS)  # one entry per doctor check, no more, no fewer
    for command in set(re.findall(r"`mythos (\w+)", text)):
        assert command in COMMANDS, command
    for doc in re.findall(r"`(docs/[\w-]+\.md)`", text):
        assert (ROOT / doc).is_file(), doc
    assert _skill("codex") == text
