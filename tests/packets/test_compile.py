"""Compile behaviour beyond the fixture: tamper evidence, contradictions, schema, edge cases."""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mythos.packets import PacketError, compile_run, gate_run, ingest_text, init_run
from mythos.packets.contradictions import detect_contradictions
from mythos.packets.schema import validate
from mythos.packets.sources import parse_file_id, parse_span
from mythos.packets.vocab import COMPATIBLE_KIND_PAIRS, INFRASTRUCTURE_KINDS, LOW_KINDS
from mythos.packets.vocab import STRONG_KINDS as HIGH_KINDS

from .test_ingest import ev, fence


@pytest.fixture
def run(tmp_path: Path, project: Path) -> Path:
    return init_run(tmp_path / "run", task="compile tests", root=project)


def test_tampered_source_shows_in_packet_and_fails_gate(run: Path, project: Path):
    ingest_text(run, lane="a", agent_id="agent-a", text=fence(ev("ev-t", line=4)))
    clean = compile_run(run)
    assert not [c for c in clean["contradictions"] if c["id"].startswith("con:integrity:")]
    with open(project / "src/app.py", "a") as handle:
        handle.write("tampered\n")
    packet = compile_run(run)
    issue = next(c for c in packet["contradictions"] if c["id"] == "con:integrity:file:src/app.py:4")
    assert issue["conflicting_item_ids"] == ["ev-t"] and issue["severity"] == "high"
    assert "hash mismatch" in issue["summary"]
    record = next(r for r in packet["evidence"] if r["id"] == "ev-t")
    source = next(s for s in packet["sources"] if s["source_id"] == "file:src/app.py:4")
    assert record["source_refs"][0]["hash"] != source["hash"]
    assert packet["halt_signals"][0]["kind"] == "continue"
    assert not validate(packet)
    result = gate_run(run, min_agents=1)
    failure = next(f for f in result.failures if f["check"] == "integrity" and f["record"] == "ev-t")
    assert "hash mismatch" in failure["message"] and "restore" in failure["fix"]


def test_tampered_raw_subagent_file_is_caught(run: Path):
    result = ingest_text(run, lane="a", agent_id="agent-a", text=fence(ev("ev-r")))
    compile_run(run)
    with open(run / result.raw_path, "a") as handle:
        handle.write("edited after ingest\n")
    packet = compile_run(run)
    assert any(c["id"] == f"con:integrity:{result.raw_source_id}" for c in packet["contradictions"])
    assert any(f["check"] == "integrity" for f in gate_run(run, min_agents=1).failures)


def test_deleted_source_is_reported_not_crashing(run: Path, project: Path):
    ingest_text(
        run, lane="a", agent_id="agent-a", text=fence(ev("ev-del", source_ids=["file:src/util.py:1"]))
    )
    (project / "src/util.py").unlink()
    packet = compile_run(run)
    issue = next(c for c in packet["contradictions"] if c["id"].startswith("con:integrity:file:src/util.py"))
    assert "does not exist" in issue["summary"]


def test_root_override_and_escape_at_compile(run: Path, project: Path, tmp_path: Path):
    ingest_text(run, lane="a", agent_id="agent-a", text=fence(ev("ev-root")))
    other = tmp_path / "other"
    (other / "src").mkdir(parents=True)
    (other / "src/app.py").write_text("different\n")
    packet = compile_run(run, root=other)
    assert any(c["id"].startswith("con:integrity:file:src/app.py") for c in packet["contradictions"])
    with pytest.raises(PacketError, match="not a directory"):
        compile_run(run, root=tmp_path / "missing")


def test_hand_written_escape_is_refused_at_compile(run: Path):
    line = {
        "id": "ev-esc",
        "kind": "observation",
        "summary": "s",
        "source_ids": ["file:../x:1"],
        "source_refs": [
            {
                "source_id": "file:../x:1",
                "path": "../x",
                "kind": "file",
                "hash": "0" * 16,
                "span": "1",
                "observed_at": "2026-01-01T00:00:00Z",
            }
        ],
        "observed_at": "2026-01-01T00:00:00Z",
    }
    with open(run / "worker-results/evidence.jsonl", "a") as handle:
        handle.write(json.dumps(line) + "\n")
    with pytest.raises(PacketError, match="outside the source root"):
        compile_run(run)


def test_symlink_in_raw_is_refused(run: Path, tmp_path: Path):
    (tmp_path / "passwd").write_text("root:x:0:0\n")
    os.symlink(tmp_path / "passwd", run / "raw/leak.md")
    with pytest.raises(PacketError, match="symbolic link"):
        compile_run(run)


def test_symlinked_jsonl_input_is_refused(run: Path, tmp_path: Path):
    target = tmp_path / "elsewhere.jsonl"
    target.write_text("")
    (run / "verifier-results/findings.jsonl").unlink()
    os.symlink(target, run / "verifier-results/findings.jsonl")
    with pytest.raises(PacketError, match="symbolic link"):
        compile_run(run)
    with pytest.raises(PacketError, match="symbolic link"):
        ingest_text(
            run,
            lane="v",
            agent_id="x",
            text=fence(
                {"id": "vf-s", "summary": "s", "status": "passed", "source_ids": ["test:t"]}, kind="verifier"
            ),
        )
    assert target.read_text() == ""
    assert list((run / "raw/subagents").iterdir()) == []


def test_duplicate_ids_written_by_hand_are_named(run: Path):
    with open(run / "worker-results/evidence.jsonl", "a") as handle:
        handle.write(
            json.dumps(
                {
                    "id": "ev-objective",
                    "kind": "objective",
                    "summary": "again",
                    "source_ids": ["raw:objective.md"],
                    "observed_at": "2026-01-01T00:00:00Z",
                }
            )
            + "\n"
        )
    with pytest.raises(PacketError, match="'ev-objective' is used by two records"):
        compile_run(run)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"id": 1}\n', "'id' must be a string"),
        (b"\xff\xfe\n", "not valid UTF-8"),
        (
            b'{"id":"a","summary":"s","status":"passed","verifier_score":1,"source_ids":["raw:objective.md"]}\n'
            b'{"id":"b"}{\n',
            "line 2 is not valid JSON",
        ),
        (b"\xef\xbb\xbf{}\n", "byte-order mark"),
    ],
)
def test_bad_jsonl_names_file_line_and_fix(run: Path, content: bytes, message: str):
    (run / "verifier-results/findings.jsonl").write_bytes(content)
    with pytest.raises(PacketError, match=re.escape(message)) as info:
        compile_run(run)
    assert "findings.jsonl" in str(info.value) and info.value.fix


def test_run_without_findings_compiles(run: Path):
    (run / "verifier-results/findings.jsonl").write_text("")
    packet = compile_run(run)
    assert packet["halt_signals"][0]["kind"] == "continue"
    assert "No verifier findings" in packet["halt_signals"][0]["rationale"]
    assert not validate(packet)


def test_missing_task_and_manifest_errors(tmp_path: Path, run: Path):
    (run / "task.md").unlink()
    with pytest.raises(PacketError, match="task.md"):
        compile_run(run)
    with pytest.raises(PacketError, match="not a mythos run"):
        compile_run(tmp_path)


def test_overlapping_spans_contradict(run: Path):
    ingest_text(
        run,
        lane="p",
        agent_id="agent-p",
        text=fence(
            {
                "id": "ev-p",
                "kind": "code-change",
                "summary": "retry loop added",
                "source_ids": ["file:src/app.py:4-8"],
            }
        ),
    )
    ingest_text(
        run,
        lane="q",
        agent_id="agent-q",
        text=fence(
            {
                "id": "ev-q",
                "kind": "root-cause",
                "summary": "no retry anywhere",
                "source_ids": ["file:src/app.py:6"],
            },
            {"id": "ev-r", "kind": "root-cause", "summary": "unrelated", "source_ids": ["file:src/app.py:9"]},
        ),
    )
    packet = compile_run(run, contradictions="pairwise")
    auto = [c for c in packet["contradictions"] if c["id"].startswith("con:auto:")]
    assert [c["id"] for c in auto] == ["con:auto:ev-p:ev-q"]
    assert "overlapping direct spans (file:src/app.py:4-8, file:src/app.py:6)" in auto[0]["summary"]
    assert [r["source_id"] for r in auto[0]["source_refs"]] == ["file:src/app.py:4-8", "file:src/app.py:6"]
    assert not validate(packet)


def test_contradiction_quotes_follow_ids_and_log_counts(run: Path):
    ingest_text(
        run,
        lane="z",
        agent_id="agent-z",
        text=fence(
            {
                "id": "ev-b",
                "kind": "code-change",
                "summary": "the loop is bounded",
                "source_ids": ["log:build"],
            }
        ),
    )
    ingest_text(
        run,
        lane="y",
        agent_id="agent-y",
        text=fence(
            {
                "id": "ev-a",
                "kind": "root-cause",
                "summary": "cache never expires",
                "source_ids": ["log:build"],
            }
        ),
    )
    packet = compile_run(run, contradictions="pairwise")
    con = next(c for c in packet["contradictions"] if c["id"] == "con:auto:ev-a:ev-b")
    assert con["summary"].endswith('"cache never expires" vs "the loop is bounded"')
    assert con["severity"] == "high" and con["source_ids"] == ["log:build"]


# --- the linear detector agrees with the all-pairs definition -----------------------------------------------


def _naive(evidence: list[dict]) -> list[dict]:
    tokens = [frozenset(re.findall(r"[a-z0-9]+", r["summary"].lower())) for r in evidence]
    direct = [
        frozenset(s for s in r["source_ids"] if s.startswith(("file:", "command:", "test:", "log:")))
        for r in evidence
    ]
    found: dict[str, dict] = {}
    for i, j in itertools.combinations(range(len(evidence)), 2):
        a, b = evidence[i], evidence[j]
        if (
            a["summary"] == b["summary"]
            or a["kind"] in INFRASTRUCTURE_KINDS
            or b["kind"] in INFRASTRUCTURE_KINDS
        ):
            continue
        if a["kind"] != b["kind"] and frozenset((a["kind"], b["kind"])) in COMPATIBLE_KIND_PAIRS:
            continue
        shared = set(direct[i] & direct[j])
        for x in direct[i]:
            for y in direct[j]:
                px, py = parse_file_id(x), parse_file_id(y)
                if px and py and px[0] == py[0] and x != y:
                    (a0, a1), (b0, b1) = parse_span(px[1]), parse_span(py[1])
                    if a0 <= a1 and b0 <= b1 and a0 <= b1 and b0 <= a1:
                        shared.update((x, y))
        if not shared:
            continue
        differ = (
            a.get("agent_id") is not None and b.get("agent_id") is not None and a["agent_id"] != b["agent_id"]
        ) or (a.get("lane") is not None and b.get("lane") is not None and a["lane"] != b["lane"])
        if not differ:
            continue
        union = tokens[i] | tokens[j]
        jac = len(tokens[i] & tokens[j]) / len(union) if union else 1.0
        if a["kind"] == b["kind"] and jac >= 0.5:
            continue
        low, high = sorted((a["id"], b["id"]))
        key = f"con:auto:{low}:{high}"
        if key in found:
            continue
        sev = (
            "high"
            if a["kind"] in HIGH_KINDS and b["kind"] in HIGH_KINDS
            else "low"
            if a["kind"] in LOW_KINDS and b["kind"] in LOW_KINDS
            else "medium"
        )
        found[key] = {"id": key, "ids": [low, high], "severity": sev, "shared": sorted(shared)}
    return [found[k] for k in sorted(found)]


record = st.fixed_dictionaries(
    {
        "id": st.sampled_from([f"ev-{n}" for n in range(12)]),
        "kind": st.sampled_from(
            ["observation", "proposal", "root-cause", "code-change", "symptom", "blocker", "gap"]
        ),
        "summary": st.sampled_from(["a b c", "a b d", "x y z", "", "A B C", "fix it now"]),
        "source_ids": st.lists(
            st.sampled_from(
                [
                    "file:a:1",
                    "file:a:2",
                    "file:a:1-3",
                    "file:a:3-2",
                    "file:b:2",
                    "command:t",
                    "log:l",
                    "raw:x",
                    "test:u",
                ]
            ),
            max_size=3,
        ),
    },
    optional={"agent_id": st.sampled_from(["p", "q"]), "lane": st.sampled_from(["l1", "l2"])},
)


@settings(max_examples=150, deadline=None)
@given(st.lists(record, max_size=14))
def test_linear_detector_matches_all_pairs(evidence):
    fast = detect_contradictions(evidence)
    slow = _naive(evidence)
    assert [c["id"] for c in fast] == [c["id"] for c in slow]
    assert [c["conflicting_item_ids"] for c in fast] == [c["ids"] for c in slow]
    assert [c["severity"] for c in fast] == [c["severity"] for c in slow]
    assert [c["source_ids"] for c in fast] == [c["shared"] for c in slow]
