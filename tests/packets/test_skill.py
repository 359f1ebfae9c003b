"""`mythos skill install`: the contract it writes names commands that exist and work end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mythos.packets import PacketError
from mythos.skills.contract import HOSTS
from mythos.skills.install import CONTRACT_REL, TEMPLATES, install_skill

from .conftest import mythos

BIN = Path(sys.executable).parent


def contract_commands(text: str) -> list[str]:
    blocks = re.findall(r"^```bash\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    return [
        line.strip() for block in blocks for line in block.splitlines() if line.strip().startswith("mythos ")
    ]


def _sh(line: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("host", HOSTS)
def test_install_writes_contract_and_every_named_command_exists(tmp_path: Path, host: str):
    proc = mythos("skill", "install", "--host", host, "--dest", str(tmp_path / "skill"), "--json")
    assert proc.returncode == 0, proc.stderr
    contract = (tmp_path / "skill" / CONTRACT_REL).read_text()
    commands = contract_commands(contract)
    assert {c.split()[2] for c in commands} == {"init", "ingest", "compile", "gate", "ready"}
    for words in {tuple(c.split()[1:3]) for c in commands}:
        assert mythos(*words, "--help").returncode == 0, words
    for needle in (
        "Subagent Lanes",
        "mythos-evidence-jsonl",
        "mythos-verifier-jsonl",
        "source_refs",
        "BLOCKED",
    ):
        assert needle in contract


def test_contract_commands_run_end_to_end(tmp_path: Path, project: Path):
    install_skill("claude", tmp_path / "skill")
    commands = contract_commands((tmp_path / "skill" / CONTRACT_REL).read_text())
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RUN": str(tmp_path / "run"),
        "ROOT": str(project),
        "OBJECTIVE": "Explain src/app.py",
        "MYTHOS_MIN_AGENT_COVERAGE": "3",
    }
    by_step = {c.split()[2] + (" synth" if "--record-synthesis" in c else ""): c for c in commands}
    assert _sh(by_step["init"], env).returncode == 0
    lanes = [("reader", "agent-r", 1), ("tester", "agent-t", 2), ("historian", "agent-h", 3)]
    for lane, agent, line in lanes:
        record = {
            "id": f"ev-{lane}-1",
            "kind": "observation",
            "summary": f"line {line} of app.py reads 'line {line}'",
            "source_ids": [f"file:src/app.py:{line}"],
        }
        text = f"notes\n```mythos-evidence-jsonl\n{json.dumps(record)}\n```\n"
        if lane == "tester":
            finding = {
                "id": "vf-tester-1",
                "summary": "app.py lines checked",
                "status": "passed",
                "verifier_score": 1.0,
                "source_ids": ["test:tests/test_app.py::test_x"],
            }
            text += f"```mythos-verifier-jsonl\n{json.dumps(finding)}\n```\n"
        (tmp_path / "run" / "raw" / "subagents" / f"{lane}.md").write_text(text)
        proc = _sh(by_step["ingest"], {**env, "LANE": lane, "AGENT": agent})
        assert proc.returncode == 0, proc.stderr
    assert _sh(by_step["gate"], env).returncode == 1  # still pass-0001
    assert _sh(by_step["compile"], env).returncode == 0
    proc = _sh(by_step["compile synth"], {**env, "SYNTHESIS": "app.py lines 1-3 are as cited (ev-reader-1)."})
    assert proc.returncode == 0, proc.stderr
    gate = _sh(by_step["gate"], env)
    assert gate.returncode == 0, gate.stdout + gate.stderr
    ready = _sh(by_step["ready"], env)
    assert ready.returncode == 0 and "mythos readiness: passed" in ready.stdout


def test_templates_are_copied_with_layout_and_force_rules(tmp_path: Path):
    templates = tmp_path / "templates"
    (templates / "claude" / "commands").mkdir(parents=True)
    (templates / "claude" / "commands" / "mythos.md").write_text("/mythos command\n")
    dest = tmp_path / "dest"
    result = install_skill("claude", dest, templates=templates)
    assert sorted(result.written) == ["commands/mythos.md", CONTRACT_REL]
    assert (dest / "commands" / "mythos.md").read_text() == "/mythos command\n"
    assert install_skill("claude", dest, templates=templates).written == []  # idempotent
    (dest / "commands" / "mythos.md").write_text("edited\n")
    with pytest.raises(PacketError, match="--force"):
        install_skill("claude", dest, templates=templates)
    assert install_skill("claude", dest, templates=templates, force=True).written == ["commands/mythos.md"]
    with pytest.raises(PacketError, match="unknown host"):
        install_skill("vim", dest)


@pytest.mark.parametrize("host", HOSTS)
def test_real_templates_are_installed(tmp_path: Path, host: str):
    result = install_skill(host, tmp_path / host)
    shipped = (
        sorted(
            p.relative_to(TEMPLATES / host).as_posix()
            for p in (TEMPLATES / host).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        )
        if (TEMPLATES / host).is_dir()
        else []
    )
    assert sorted(result.written) == sorted([CONTRACT_REL, *shipped])


def test_default_destination_is_under_the_project(tmp_path: Path):
    proc = mythos("skill", "install", "--host", "codex", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / ".codex" / "skills" / "mythos" / "SKILL.md").is_file()
    for template in (TEMPLATES / "codex").rglob("*"):
        if template.is_file() and "__pycache__" not in template.parts:
            assert (
                tmp_path / ".codex" / template.relative_to(TEMPLATES / "codex")
            ).read_bytes() == template.read_bytes()


def test_the_contract_sends_prime_to_a_digest_that_compile_writes(tmp_path: Path):
    """The contract tells Prime to read the bounded digest first; a real compile writes it where it says."""
    from mythos.packets import runs
    from mythos.skills.contract import render_contract

    text = render_contract("claude")
    assert "$RUN/state/prime_digest.json" in text
    run_dir = tmp_path / "run"
    runs.init_run(run_dir)
    assert (run_dir / "state" / "prime_digest.json").exists()
