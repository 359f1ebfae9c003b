"""`mythos packet …` through the real CLI in subprocesses: every command, human and --json output, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import mythos


def _lane(agent: str, line: int) -> str:
    record = {
        "id": f"ev-{agent}",
        "kind": "observation",
        "summary": f"{agent} saw line {line}",
        "source_ids": [f"file:src/app.py:{line}"],
    }
    return f"```mythos-evidence-jsonl\n{json.dumps(record)}\n```\n"


def test_full_loop_with_json(tmp_path: Path, project: Path):
    run = tmp_path / "run"
    out = mythos("packet", "init", str(run), "--root", str(project), "--task", "cli loop", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["pass_id"] == "pass-0001"
    for n, agent in enumerate(("a1", "a2"), start=1):
        lane_file = tmp_path / f"{agent}.md"
        lane_file.write_text(_lane(agent, n))
        out = mythos(
            "packet",
            "ingest",
            "--run-dir",
            str(run),
            "--lane",
            f"l{n}",
            "--agent-id",
            agent,
            "--from",
            str(lane_file),
            "--json",
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["evidence_ids"][1] == f"ev-{agent}"
    verifier = {
        "id": "vf-1",
        "summary": "checked",
        "status": "passed",
        "verifier_score": 1.0,
        "source_ids": ["command:pytest"],
    }
    out = mythos(
        "packet",
        "ingest",
        "--run-dir",
        str(run),
        "--lane",
        "v",
        "--agent-id",
        "a3",
        "--stdin",
        "--json",
        input=f"```mythos-verifier-jsonl\n{json.dumps(verifier)}\n```\n",
    )
    assert out.returncode == 0 and json.loads(out.stdout)["finding_ids"] == ["vf-1"]
    out = mythos("packet", "compile", "--run-dir", str(run), "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["evidence"] == 6
    out = mythos(
        "packet", "compile", "--run-dir", str(run), "--record-synthesis", "a1 and a2 agree", "--json"
    )
    assert json.loads(out.stdout)["pass_id"] == "pass-0002"
    out = mythos("packet", "gate", "--run-dir", str(run), "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 1 and not report["passed"]
    assert [f["check"] for f in report["failures"]] == ["coverage"]
    assert all(set(f) == {"check", "record", "message", "fix"} for f in report["failures"])
    out = mythos("packet", "gate", "--run-dir", str(run), "--min-agents", "2")
    assert out.returncode == 0 and "gate: passed" in out.stdout
    out = mythos("packet", "status", "--run-dir", str(run), "--json")
    status = json.loads(out.stdout)
    assert out.returncode == 0 and status["pass_id"] == "pass-0002" and status["stale"] is False
    assert status["evidence"] == 7 and status["halt"] == "ready-to-halt" and status["quarantined"] == 0
    out = mythos("packet", "validate", "--run-dir", str(run))
    assert out.returncode == 0 and "valid" in out.stdout
    out = mythos("packet", "compile", "--run-dir", str(run), "--print")
    assert out.stdout == (run / "state/next_pass_packet.json").read_text()


def test_errors_and_usage(tmp_path: Path, project: Path):
    out = mythos("packet", "ingest", "--run-dir", str(tmp_path), "--lane", "x")
    assert out.returncode == 2
    out = mythos("packet", "compile", "--run-dir", str(tmp_path / "nope"), "--json")
    assert out.returncode == 1
    error = json.loads(out.stdout)
    assert error["ok"] is False and "does not exist" in error["error"] and error["fix"]
    run = tmp_path / "run"
    assert mythos("packet", "init", str(run), "--root", str(project)).returncode == 0
    out = mythos("packet", "init", str(run))
    assert out.returncode == 1 and "not an empty directory" in out.stderr
    prose = tmp_path / "prose.md"
    prose.write_text("no records here")
    out = mythos(
        "packet", "ingest", "--run-dir", str(run), "--lane", "l", "--agent-id", "a", "--from", str(prose)
    )
    assert out.returncode == 1 and "no mythos-evidence-jsonl" in out.stderr
    out = mythos("packet", "compile", "--run-dir", str(run), "--record-synthesis", "x")
    assert out.returncode == 0  # init compiled, so the packet is fresh
    out = mythos("packet", "gate", "--run-dir", str(run))
    assert out.returncode == 1 and "FAIL [traceability]" in out.stdout and "fix:" in out.stdout


def test_ready_prints_passed_and_never_imports_torch():
    code = (
        "import sys; from mythos.cli import main; rc = main(['packet', 'ready']); "
        "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "mythos readiness: passed" in out.stdout
