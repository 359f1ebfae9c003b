"""Issue 15's five defects, each reproduced the way a user hit it (real CLI processes, real files)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mythos.packets import PacketError, compile_run, gate_run, ingest_text, init_run
from mythos.packets.status import run_status

from .conftest import mythos
from .test_ingest import ev, fence

SURROGATE_LINE = '{"id": "ev-bad", "kind": "observation", "summary": "bad \\ud800 text", "source_ids": ["file:src/app.py:3"]}'


def _env(project: Path) -> dict:
    """The child processes import the same mythos as this test process."""
    import mythos

    return {**os.environ, "PYTHONPATH": str(Path(mythos.__file__).resolve().parents[1])}


def _run_with_failing_finding(tmp_path: Path, project: Path) -> Path:
    run = init_run(tmp_path / "run", task="defects", root=project)
    for n, agent in enumerate(("a", "b", "c"), start=1):
        ingest_text(
            run, lane=f"lane-{agent}", agent_id=f"agent-{agent}", text=fence(ev(f"ev-{agent}", line=n))
        )
    finding = {"id": "vf-1", "summary": "still broken", "status": "failed", "source_ids": ["test:t"]}
    ingest_text(run, lane="verify", agent_id="agent-v", text=fence(finding, kind="verifier"))
    compile_run(run)
    compile_run(run, record_synthesis="ev-a, ev-b and ev-c read; vf-1 still fails.")
    return run


def _forge(run: Path) -> None:
    """What a user (or a model) did by hand: every finding passed, halt ready, the to-do lists emptied."""
    path = run / "state/next_pass_packet.json"
    packet = json.loads(path.read_text())
    for finding in packet["verifier_findings"]:
        finding["status"] = "passed"
    packet["halt_signals"][0]["kind"] = "ready-to-halt"
    packet["candidate_actions"] = []
    packet["active_hypotheses"] = []
    packet["open_questions"] = []
    path.write_text(json.dumps(packet, indent=2))


# --- 1. the gate does not trust a hand-edited packet ------------------------------------------------------


def test_gate_and_status_see_through_a_hand_edited_packet(tmp_path: Path, project: Path):
    run = _run_with_failing_finding(tmp_path, project)
    assert mythos("packet", "gate", "--run-dir", str(run), "--min-agents", "3").returncode == 1
    _forge(run)
    gate = mythos("packet", "gate", "--run-dir", str(run), "--min-agents", "3", "--json")
    assert gate.returncode == 1, gate.stdout
    failures = json.loads(gate.stdout)["failures"]
    checks = {f["check"] for f in failures}
    assert "packet" in checks and "verifier" in checks, failures
    assert any(f["record"] == "vf-1" for f in failures)
    status = mythos("packet", "status", "--run-dir", str(run))
    assert "packet fresh" not in status.stdout and "packet edited" in status.stdout, status.stdout
    assert run_status(run)["stale"] is True


def test_forging_the_recorded_hash_too_does_not_fool_the_gate(tmp_path: Path, project: Path):
    run = _run_with_failing_finding(tmp_path, project)
    _forge(run)
    inputs = run / "state/inputs.json"
    stored = json.loads(inputs.read_text())
    stored["packet_sha256"] = hashlib.sha256((run / "state/next_pass_packet.json").read_bytes()).hexdigest()
    inputs.write_text(json.dumps(stored))
    result = gate_run(run, min_agents=3)
    assert not result.passed
    assert {"packet", "verifier", "halt"} <= {f["check"] for f in result.failures}
    judged = {f["id"]: f["status"] for f in result.packet["verifier_findings"]}
    assert judged["vf-1"] == "failed"  # judged from the inputs, not from the forged packet


def test_recompiling_restores_a_fresh_status(tmp_path: Path, project: Path):
    run = _run_with_failing_finding(tmp_path, project)
    _forge(run)
    compile_run(run)
    assert run_status(run)["packet_state"] == "fresh"
    assert "packet" not in {f["check"] for f in gate_run(run).failures}


# --- 2. lone surrogate escapes ------------------------------------------------------------------------------


def test_surrogate_in_a_record_is_a_clear_rejection_not_a_traceback(tmp_path: Path, project: Path):
    run = init_run(tmp_path / "run", task="defects", root=project)
    text = "```mythos-evidence-jsonl\n" + SURROGATE_LINE + "\n```\n"
    result = mythos(
        "packet",
        "ingest",
        "--run-dir",
        str(run),
        "--lane",
        "l",
        "--agent-id",
        "a",
        "--stdin",
        "--json",
        input=text,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1  # the lane contributed nothing
    payload = json.loads(result.stdout)
    assert payload["ok"] is False
    assert "surrogate" in payload["quarantined"][0]["problem"]
    # the raw copy is the quarantined session's evidence, cited by its session record: no orphan
    cited = {
        sid
        for line in (run / "worker-results/evidence.jsonl").read_text().splitlines()
        for sid in json.loads(line)["source_ids"]
    }
    for raw in (run / "raw/subagents").iterdir():
        assert f"raw:subagents/{raw.name}" in cited
    compiled = mythos("packet", "compile", "--run-dir", str(run), "--json")
    assert compiled.returncode == 0, compiled.stderr
    packet = json.loads((run / "state/next_pass_packet.json").read_text())
    assert "surrogate" in packet["rejected_records"][0]["reasons"][0]["problem"]


def test_surrogate_beside_good_records_keeps_the_good_ones(tmp_path: Path, project: Path):
    run = init_run(tmp_path / "run", task="defects", root=project)
    text = fence(ev("ev-good"), SURROGATE_LINE)
    result = ingest_text(run, lane="l", agent_id="a", text=text)
    assert "ev-good" in result.evidence_ids and len(result.quarantined) == 1


def test_surrogate_written_into_evidence_jsonl_fails_compile_cleanly(tmp_path: Path, project: Path):
    run = init_run(tmp_path / "run", task="defects", root=project)
    with open(run / "worker-results/evidence.jsonl", "a") as handle:
        handle.write(SURROGATE_LINE.replace('"file:src/app.py:3"', '"raw:objective.md"') + "\n")
    result = mythos("packet", "compile", "--run-dir", str(run), "--json")
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1
    error = json.loads(result.stdout)
    assert "surrogate" in error["error"] and "line 2" in error["error"]
    assert not list((run / "state").glob(".*.tmp"))


# --- 3. kill -9 leaves no temp files behind ----------------------------------------------------------------

_WRITER = """
import sys, time
from pathlib import Path
from mythos.fsutil import atomic_file
with atomic_file(Path(sys.argv[1])) as handle:
    handle.write(b"{ partial packet")
    handle.flush()
    print("writing", flush=True)
    time.sleep(120)
"""


def _writer(target: Path, env: dict) -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert child.stdout.readline().strip() == "writing"
    return child


def test_temps_of_a_killed_writer_are_reclaimed_and_a_live_writers_are_not(tmp_path: Path, project: Path):
    run = init_run(tmp_path / "run", task="defects", root=project)
    env = _env(project)
    killed = _writer(run / "state/next_pass_packet.json", env)
    killed_raw = _writer(run / "raw/subagents/0009-x.md", env)
    for child in (killed, killed_raw):
        child.send_signal(signal.SIGKILL)
        child.wait()
    live = _writer(run / "state/snapshot.json", env)
    try:
        orphans = sorted(p.name for p in run.rglob(".*.tmp"))
        assert len(orphans) == 3
        compiled = mythos("packet", "compile", "--run-dir", str(run), "--json", env=env)
        assert compiled.returncode == 0, compiled.stderr
        left = sorted(p.name for p in run.rglob(".*.tmp"))
        assert left == [p for p in orphans if p.startswith(".snapshot.json.")]  # only the live writer's
        packet = json.loads((run / "state/next_pass_packet.json").read_text())
        assert not [s for s in packet["sources"] if ".tmp" in s["source_id"]]  # no orphan hashed as raw
    finally:
        live.kill()
        live.wait()


# --- 4. gate thresholds are validated ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--min-direct-ratio", "nan"),
        ("--min-direct-ratio", "-5"),
        ("--min-direct-ratio", "7"),
        ("--min-direct-ratio", "inf"),
        ("--min-direct-ratio", "half"),
        ("--min-agents", "-1"),
        ("--min-agents", "two"),
    ],
)
def test_bad_gate_thresholds_are_usage_errors(tmp_path: Path, project: Path, flag: str, value: str):
    run = init_run(tmp_path / "run", task="defects", root=project)
    result = mythos("packet", "gate", "--run-dir", str(run), f"{flag}={value}")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert flag in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("ratio", [math.nan, -5.0, 7.0, math.inf])
def test_gate_run_refuses_bad_ratios(tmp_path: Path, project: Path, ratio: float):
    run = init_run(tmp_path / "run", task="defects", root=project)
    with pytest.raises(PacketError) as info:
        gate_run(run, min_direct_ratio=ratio)
    assert info.value.field == "min_direct_ratio"
    with pytest.raises(PacketError) as info:
        gate_run(run, min_agents=-1)
    assert info.value.field == "min_agents"


# --- 5. a lane whose every record was rejected is visible and fails the gate ------------------------------


def test_a_lane_that_lost_every_record_is_in_the_packet_and_fails_the_gate(tmp_path: Path, project: Path):
    run = init_run(tmp_path / "run", task="defects", root=project)
    ingest_text(run, lane="good", agent_id="agent-g", text=fence(ev("ev-g")))
    bad = fence({"id": "ev-x", "kind": "observation", "summary": "no source"}, "{not json")
    result = mythos(
        "packet",
        "ingest",
        "--run-dir",
        str(run),
        "--lane",
        "lost",
        "--agent-id",
        "agent-l",
        "--stdin",
        "--json",
        input=bad,
    )
    assert result.returncode == 1 and json.loads(result.stdout)["ok"] is False
    assert "every record was rejected" in result.stdout
    packet = compile_run(run)
    (entry,) = packet["rejected_records"]
    assert (entry["lane"], entry["agent_id"], entry["accepted"], entry["rejected"]) == (
        "lost",
        "agent-l",
        0,
        2,
    )
    assert all(reason["problem"] for reason in entry["reasons"])
    digest = json.loads((run / "state/prime_digest.json").read_text())
    assert digest["counts"]["rejected_records"] == 2
    failures = [f for f in gate_run(run).failures if f["check"] == "rejected"]
    assert [f["record"] for f in failures] == [entry["source_id"]]
    assert "'lost'" in failures[0]["message"] and "contributed nothing" in failures[0]["message"]


def test_a_partly_rejected_lane_is_listed_but_only_warned(tmp_path: Path, project: Path):
    run = init_run(tmp_path / "run", task="defects", root=project)
    ingest_text(run, lane="half", agent_id="agent-h", text=fence(ev("ev-h"), "{not json"))
    packet = compile_run(run)
    assert [(e["accepted"], e["rejected"]) for e in packet["rejected_records"]] == [(1, 1)]
    result = gate_run(run)
    assert "rejected" not in {f["check"] for f in result.failures}
    assert "quarantine" in {w["check"] for w in result.warnings}


def test_a_failed_ingest_leaves_no_orphan_raw_copy(tmp_path: Path, project: Path):
    run = init_run(tmp_path / "run", task="defects", root=project)
    findings = run / "verifier-results/findings.jsonl"
    findings.unlink()
    findings.mkdir()  # the OS refuses to read it after the raw copy was written
    result = mythos(
        "packet",
        "ingest",
        "--run-dir",
        str(run),
        "--lane",
        "l",
        "--agent-id",
        "a",
        "--stdin",
        "--json",
        input=fence(ev("ev-1")),
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "findings.jsonl" in json.loads(result.stdout)["error"]
    assert not list((run / "raw/subagents").glob("*"))


def test_a_superseded_finding_still_counts_as_its_lanes_contribution(tmp_path: Path, project: Path):
    run = init_run(tmp_path / "run", task="defects", root=project)
    finding = {"id": "vf-1", "summary": "checked", "status": "failed", "source_ids": ["test:t"]}
    ingest_text(run, lane="v1", agent_id="agent-1", text=fence(finding, "{not json", kind="verifier"))
    ingest_text(
        run, lane="v2", agent_id="agent-2", text=fence({**finding, "status": "passed"}, kind="verifier")
    )
    packet = compile_run(run)
    assert [(e["lane"], e["accepted"]) for e in packet["rejected_records"]] == [("v1", 1)]
    assert "rejected" not in {f["check"] for f in gate_run(run).failures}


def test_kill_9_during_a_real_compile_leaves_nothing_after_the_next_compile(tmp_path: Path):
    """The issue's reproduction: SIGKILL a compile while it writes state/, then compile again."""
    import importlib.util
    import time

    spec = importlib.util.spec_from_file_location(
        "packets_scale", Path(__file__).resolve().parents[2] / "benchmarks" / "packets_scale.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    run = bench.generate(tmp_path / "big", 10, 1000)
    env = _env(tmp_path)
    child = subprocess.Popen(
        [sys.executable, "-m", "mythos", "packet", "compile", "--run-dir", str(run)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen: list[str] = []
    deadline = time.monotonic() + 300  # a bound on the wait, not an assertion on speed
    while child.poll() is None and time.monotonic() < deadline:
        seen = [p.name for p in (run / "state").glob(".*.tmp")]
        if seen:
            child.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    child.wait()
    if not seen:
        pytest.skip("the compile finished before a temp file was observed; nothing to reclaim")
    assert child.returncode == -signal.SIGKILL
    assert list((run / "state").glob(".*.tmp")), "the killed compile should have left its temp file"
    again = mythos("packet", "compile", "--run-dir", str(run), env=env)
    assert again.returncode == 0, again.stderr
    assert not list(run.rglob(".*.tmp"))
