"""A drop-in for the reference's users: absolute paths, the reference's messages and report, `mythos-skill`,
the migration section of docs/packets.md, and how numbers print."""

from __future__ import annotations

import json
import os
import random
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from mythos.packets import compile_run, gate_run, ingest_text, init_run

from .conftest import mythos
from .test_ingest import ev, fence

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "packets.md"


def _skill_env(tmp_path: Path) -> dict:
    """PATH with a `mythos-skill` that runs this checkout's console-script target (what pip installs)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "mythos-skill"
    shim.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" -c "from mythos.packets.skill_cli import console; console()" "$@"\n'
    )
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    env = {k: v for k, v in os.environ.items() if k != "MYTHOS_MIN_AGENT_COVERAGE"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO / "src")
    return env


def skill(*args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["mythos-skill", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


# --- absolute file: paths ---------------------------------------------------------------------------------------


def test_absolute_paths_inside_the_root_become_root_relative(tmp_path: Path, project: Path):
    run = init_run(tmp_path / "run", task="dropin", root=project)
    absolute = project.resolve() / "src" / "app.py"
    record_a = {**ev("ev-abs"), "source_ids": [f"file:{absolute}:3"]}
    record_b = {
        **ev("ev-ref", line=4),
        "source_ids": [],
        "source_refs": [
            {"source_id": f"file:{absolute}:4", "kind": "file", "path": str(absolute), "span": "4"}
        ],
    }
    result = ingest_text(run, lane="l", agent_id="a", text=fence(record_a, record_b))
    assert not result.quarantined, result.quarantined
    packet = compile_run(run)
    by_id = {r["id"]: r for r in packet["evidence"]}
    assert "file:src/app.py:3" in by_id["ev-abs"]["source_ids"]
    assert by_id["ev-ref"]["source_refs"][0]["source_id"] == "file:src/app.py:4"
    assert by_id["ev-ref"]["source_refs"][0]["path"] == "src/app.py"
    assert str(project.resolve()) not in (run / "state/next_pass_packet.json").read_text()


def test_absolute_paths_outside_the_root_stay_refused(tmp_path: Path, project: Path):
    outside = tmp_path / "elsewhere.py"
    outside.write_text("x = 1\n")
    run = init_run(tmp_path / "run", task="dropin", root=project)
    result = ingest_text(
        run,
        lane="l",
        agent_id="a",
        text=fence({**ev("ev-out"), "source_ids": [f"file:{outside}:1"]}, ev("ev-ok")),
    )
    assert [q["problem"] for q in result.quarantined] and "absolute" in result.quarantined[0]["problem"]


# --- the reference's report and messages ---------------------------------------------------------------------


def test_gate_format_reference_prints_the_reference_report(tmp_path: Path, project: Path):
    run = init_run(tmp_path / "run", task="dropin", root=project)
    ingest_text(run, lane="l", agent_id="a", text=fence(ev("ev-1", kind="fictional-kind")))
    compile_run(run)
    proc = mythos("packet", "gate", "--run-dir", str(run), "--json", "--format", "reference")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert {"ok", "errors", "warnings"} <= set(report) and report["ok"] is False
    assert all(isinstance(e, str) for e in report["errors"] + report["warnings"])
    assert (
        "run is still pass-0001; strict gate requires at least one promoted recurrence pass"
        in report["errors"]
    )
    assert any("fictional-kind" in w and "unknown kind" in w for w in report["warnings"])
    assert not any("fictional-kind" in e for e in report["errors"])


def test_reference_messages_word_for_word(tmp_path: Path, project: Path):
    run = init_run(tmp_path / "run", task="dropin", root=project)
    (run / "raw/subagents").mkdir(parents=True, exist_ok=True)
    (run / "raw/subagents/prose.md").write_text("just prose, never ingested\n")
    compile_run(run)
    messages = [f["message"] for f in gate_run(run).failures]
    assert (
        "no subagent-session evidence records found; raw subagent output was not ingested mechanically"
        in messages
    )
    assert any(m.startswith("agent-id coverage floor not met: saw 0 distinct agent_id(s)") for m in messages)
    assert any(m.startswith("Codex synthesis was not recorded") for m in messages)
    assert "packet is not ready-to-halt" in messages
    assert any(m.startswith("non-passing verifier findings remain: vf-synthesis-pending") for m in messages)


# --- mythos-skill --------------------------------------------------------------------------------------------------


def test_pyproject_declares_the_console_script():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, func = scripts["mythos-skill"].partition(":")
    assert (module, func) == ("mythos.packets.skill_cli", "console")


def test_skill_verbs_and_exit_codes(tmp_path: Path, project: Path):
    env = _skill_env(tmp_path)
    help_ = skill("help", cwd=project, env=env)
    assert help_.returncode == 0 and all(
        verb in help_.stdout for verb in ("init", "ingest", "compile", "gate", "ready")
    )
    assert skill(cwd=project, env=env).returncode == 0
    version = skill("--version", cwd=project, env=env)
    assert version.returncode == 0 and version.stdout.startswith("mythos-skill 0.1.0")
    assert skill("frobnicate", cwd=project, env=env).returncode == 2
    assert skill("compile", cwd=project, env=env).returncode == 2
    missing = skill("compile", "--run-dir", "r", "--record-synthesis", cwd=project, env=env)
    assert missing.returncode == 2 and "Missing summary for --record-synthesis" in missing.stderr
    assert skill("ingest", "--run-dir", "r", "--lane", "l", "--stdin", cwd=project, env=env).returncode == 2
    nope = skill("gate", "--run-dir", str(tmp_path / "nope"), cwd=project, env=env)
    assert nope.returncode == 1 and not nope.stdout
    objective = skill("compile", "why", "is", "it", "slow", cwd=project, env=env)
    assert objective.returncode == 0, objective.stderr
    assert json.loads(objective.stdout)["objective"] == "why is it slow"
    assert list((project / ".mythos" / "runs").iterdir())


def test_skill_duplicate_ingest_message(tmp_path: Path, project: Path):
    env = _skill_env(tmp_path)
    assert skill("init", "run", cwd=project, env=env).returncode == 0
    out = project / "run" / "raw" / "subagents" / "lane.md"
    out.write_text(fence(ev("ev-1")))
    first = skill(
        "ingest",
        "--run-dir",
        "run",
        "--lane",
        "l",
        "--agent-id",
        "a",
        "--from",
        str(out),
        cwd=project,
        env=env,
    )
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["evidence_records"] == 2  # the session record and ev-1
    second = skill(
        "ingest",
        "--run-dir",
        "run",
        "--lane",
        "l",
        "--agent-id",
        "a",
        "--from",
        str(out),
        cwd=project,
        env=env,
    )
    assert second.returncode == 1 and "duplicate ingest" in second.stderr


def _migration_script() -> str:
    text = DOCS.read_text()
    section = text.split("## Migrating from the reference's `mythos-skill`", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```bash\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert blocks, "the migration section must hold a bash block"
    return "\n".join(blocks)


def test_docs_migration_section_runs_unchanged(tmp_path: Path, project: Path):
    env = _skill_env(tmp_path)
    script = _migration_script()
    assert "mythos-skill init" in script and "mythos-skill gate" in script
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    report = json.loads((project / "gate.json").read_text())
    assert report["ok"] is True and report["errors"] == []
    packet = json.loads((project / "packet.json").read_text())
    assert packet["schema_version"] == "1.1.0"


# --- numbers keep the text they were written with ----------------------------------------------------------------


def test_confidence_prints_as_written(tmp_path: Path, project: Path):
    """We parse numbers correctly rounded and print the shortest text that reads back as the same number, so a
    confidence written in its shortest form (what every JSON writer emits) prints exactly as written. The
    reference's parser rounds some 16-17 digit values to a neighbouring double and prints that instead."""
    rng = random.Random(15)
    written = ["0.92", "0.81", "0.1", "0.3", "1e-7", "0.30000000000000004", "0.0", "1.0"]
    written += [repr(rng.random()) for _ in range(200)]
    run = init_run(tmp_path / "run", task="numbers", root=project)
    lines = [
        f'{{"id": "ev-{n}", "kind": "observation", "summary": "c{n}", "source_ids": ["file:src/app.py:3"], '
        f'"confidence": {text}}}'
        for n, text in enumerate(written)
    ]
    assert not ingest_text(run, lane="l", agent_id="a", text=fence(*lines)).quarantined
    compile_run(run)
    packet_text = (run / "state/next_pass_packet.json").read_text()
    printed = re.findall(r'"summary": "c(\d+)",.*?"confidence": ([^,\n]+)', packet_text, re.DOTALL)
    assert len(printed) == len(written)
    for index, text in printed:
        assert text == written[int(index)], (index, text)


@pytest.mark.parametrize(
    ("written", "printed"), [("1", "1.0"), ("0.50", "0.5"), ("1e-1", "0.1"), ("5E-1", "0.5")]
)
def test_non_shortest_number_text_prints_in_shortest_form(
    tmp_path: Path, project: Path, written: str, printed: str
):
    run = init_run(tmp_path / "run", task="numbers", root=project)
    line = f'{{"id": "ev-n", "kind": "observation", "summary": "n", "source_ids": ["file:src/app.py:3"], "confidence": {written}}}'
    ingest_text(run, lane="l", agent_id="a", text=fence(line))
    compile_run(run)
    assert f'"confidence": {printed}' in (run / "state/next_pass_packet.json").read_text()


def test_mythos_skill_starts_without_torch():
    code = (
        "import sys\n"
        "from mythos.packets.skill_cli import main\n"
        "assert main(['help']) == 0\n"
        "assert 'torch' not in sys.modules, 'mythos-skill imported torch'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
