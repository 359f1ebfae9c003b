"""Ingest: fenced-record extraction, attribution, and every bad-input case from issue 3."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mythos.packets import PacketError, compile_run, ingest_file, ingest_text, init_run
from mythos.packets.ingest import extract_blocks


def fence(*records: object, kind: str = "evidence") -> str:
    lines = "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records)
    return f"Prose that must not reach the packet.\n\n```mythos-{kind}-jsonl\n{lines}\n```\n"


def ev(rid: str, line: int = 3, **extra) -> dict:
    return {
        "id": rid,
        "kind": "observation",
        "summary": f"claim {rid}",
        "source_ids": [f"file:src/app.py:{line}"],
        **extra,
    }


@pytest.fixture
def run(tmp_path: Path, project: Path) -> Path:
    return init_run(tmp_path / "run", task="test objective", root=project)


def evidence_lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "worker-results/evidence.jsonl").read_text().splitlines()]


def quarantine(run: Path) -> list[dict]:
    path = run / "quarantine/rejected.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_good_ingest_stamps_hashes_and_keeps_prose_out(run: Path, project: Path):
    result = ingest_text(run, lane="lane-a", agent_id="agent-1", text=fence(ev("ev-a")) + "SECRET PROSE")
    assert result.added == 2 and not result.quarantined and result.blocked is None
    session, record = evidence_lines(run)[-2:]
    assert session["kind"] == "subagent-session" and session["agent_id"] == "agent-1"
    assert record["agent_id"] == "agent-1" and record["lane"] == "lane-a"
    assert record["source_ids"][0] == result.raw_source_id
    ref = record["source_refs"][0]
    from mythos.packets.hashing import fnv1a64

    assert ref["hash"] == fnv1a64((project / "src/app.py").read_bytes())
    assert ref["path"] == "src/app.py" and ref["span"] == "3"
    packet = compile_run(run)
    assert "SECRET PROSE" not in json.dumps(packet)
    assert "SECRET PROSE" not in (run / "state/next_pass_packet.json").read_text()


def test_agent_supplied_hash_is_replaced_by_real_one(run: Path):
    record = ev("ev-h")
    record["source_refs"] = [
        {
            "source_id": "file:src/app.py:3",
            "path": "src/app.py",
            "kind": "file",
            "hash": "0000000000000000",
            "span": "3",
        }
    ]
    ingest_text(run, lane="a", agent_id="x", text=fence(record))
    assert evidence_lines(run)[-1]["source_refs"][0]["hash"] != "0000000000000000"


def test_blocked_sentinel_makes_a_blocker_record(run: Path):
    result = ingest_text(
        run, lane="lane-b", agent_id="agent-2", text="Tried.\nBLOCKED   no network access  \n"
    )
    assert result.blocked == "no network access"
    assert evidence_lines(run)[-1]["kind"] == "blocker"
    assert evidence_lines(run)[-1]["summary"] == "BLOCKED: no network access"


def test_prose_only_is_an_error_and_leaves_no_raw_file(run: Path):
    with pytest.raises(PacketError, match="no mythos-evidence-jsonl"):
        ingest_text(run, lane="a", agent_id="x", text="just words")
    assert list((run / "raw/subagents").iterdir()) == []


def test_crlf_output_is_understood(run: Path, tmp_path: Path):
    path = tmp_path / "windows.md"
    path.write_bytes(fence(ev("ev-crlf")).replace("\n", "\r\n").encode())
    result = ingest_file(run, lane="w", agent_id="x", path=path)
    assert "ev-crlf" in result.evidence_ids and not result.quarantined


def test_fence_rules():
    text = "```mythos-evidence-jsonl\n{}\n``` \n{}\n```\n" + "prose " * 50 + "\n```jsonl\n{}\n```\n"
    blocks = extract_blocks(text)
    assert [(kind, body) for kind, _, body in blocks] == [("evidence", "{}\n``` \n{}\n")]
    legacy = 'Suggested evidence:\n```jsonl\n{"a":1}\n```\n'
    assert [kind for kind, _, _ in extract_blocks(legacy)] == ["evidence"]


BAD_RECORDS = [
    ("{not json", "not valid JSON"),
    ('{"id":"ev-x","kind":"observation","summary":"s","source_ids":["file:src/app.py:1"]', "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ("null", "must be a JSON object"),
    (
        json.dumps({"id": "ev-x", "kind": "observation", "summary": 5, "source_ids": ["file:src/app.py:1"]}),
        "'summary' must be a string",
    ),
    (
        json.dumps({"id": "ev-x", "kind": 7, "summary": "s", "source_ids": ["file:src/app.py:1"]}),
        "'kind' must be a string",
    ),
    (
        json.dumps({"id": "ev-x", "summary": "s", "source_ids": ["file:src/app.py:1"]}),
        "missing required field 'kind'",
    ),
    (
        json.dumps({"kind": "observation", "summary": "s", "source_ids": ["file:src/app.py:1"]}),
        "missing required field 'id'",
    ),
    (json.dumps({**ev("ev-x"), "colour": "red"}), "unknown field 'colour'"),
    (
        '{"id":"ev-x","id":"ev-y","kind":"observation","summary":"s","source_ids":["file:src/app.py:1"]}',
        "duplicate field 'id'",
    ),
    (json.dumps({**ev("ev-x"), "source_ids": "file:src/app.py:1"}), "source_ids must be a list"),
    (json.dumps({**ev("ev-x"), "confidence": 3}), "confidence must be a number between 0 and 1"),
    (json.dumps({**ev("ev-x"), "observed_at": "yesterday"}), "not an ISO-8601 timestamp"),
    (json.dumps(ev("ev-x", line=99)), "outside file 'src/app.py' line range 1-20"),
    (json.dumps({**ev("ev-x"), "source_ids": ["file:../secret.txt:1"]}), "outside the source root"),
    (json.dumps({**ev("ev-x"), "source_ids": ["file:/etc/passwd:1"]}), "is absolute"),
    (json.dumps({**ev("ev-x"), "source_ids": ["file:src/missing.py:1"]}), "does not exist"),
    (json.dumps({**ev("ev-x"), "source_ids": ["file:src:1"]}), "is a directory"),
    (json.dumps({**ev("ev-x"), "source_ids": ["file:src/app.py"]}), "has no line"),
    (json.dumps({**ev("ev-x"), "source_ids": ["file:src\\app.py:1"]}), "backslash"),
    (
        json.dumps({**ev("ev-x"), "source_refs": [{"source_id": "command:x", "kind": "shell"}]}),
        "has kind 'shell'",
    ),
    (
        json.dumps({**ev("ev-x"), "source_ids": ["evidence:ev-nowhere"]}),
        "cites unknown source id 'evidence:ev-nowhere'",
    ),
    (json.dumps({**ev("ev-x"), "source_ids": ["raw:../manifest.json"]}), "cites unknown source id"),
    (json.dumps({**ev("ev-x"), "source_ids": ["packet:whatever"]}), "cites unknown source id"),
    (
        json.dumps(
            {**ev("ev-x"), "source_refs": [{"source_id": "command:x", "kind": "command", "hash_alg": "md5"}]}
        ),
        "hash_alg",
    ),
    ("1e400", "must be a JSON object"),
    (json.dumps({**ev("ev-x"), "agent_id": "someone-else"}), "differs from this ingest's --agent-id"),
    (json.dumps({**ev("ev-x"), "lane": "other-lane"}), "differs from this ingest's --lane"),
    (
        '{"id":"ev-x","kind":"observation","summary":"s","source_ids":["file:src/app.py:1"],"confidence":NaN}',
        "not valid JSON",
    ),
]


@pytest.mark.parametrize(("line", "problem"), BAD_RECORDS, ids=[p for _, p in BAD_RECORDS])
def test_bad_record_is_quarantined_and_good_ones_survive(run: Path, project: Path, line: str, problem: str):
    (project.parent / "secret.txt").write_text("outside\n")
    ingest_text(run, lane="first", agent_id="agent-0", text=fence(ev("ev-before")))
    before = (run / "worker-results/evidence.jsonl").read_bytes()
    result = ingest_text(
        run, lane="second", agent_id="agent-1", text=fence(ev("ev-good-1"), line, ev("ev-good-2"))
    )
    assert len(result.quarantined) == 1, result.quarantined
    assert problem in result.quarantined[0]["problem"]
    assert result.quarantined[0]["fix"]
    assert result.quarantined[0]["line"] == 2
    after = (run / "worker-results/evidence.jsonl").read_bytes()
    assert after.startswith(before)
    ids = [r["id"] for r in evidence_lines(run)]
    assert "ev-good-1" in ids and "ev-good-2" in ids and "ev-x" not in ids
    assert quarantine(run)[-1]["problem"] == result.quarantined[0]["problem"]
    compile_run(run)  # the run still compiles


def test_symlink_escape_is_refused(run: Path, project: Path, tmp_path: Path):
    (tmp_path / "outside.txt").write_text("secret\n")
    os.symlink(tmp_path / "outside.txt", project / "src" / "link.py")
    result = ingest_text(
        run, lane="a", agent_id="x", text=fence(ev("ev-l", source_ids=["file:src/link.py:1"]))
    )
    assert "outside the source root" in result.quarantined[0]["problem"]


def test_fifo_ref_is_not_read(run: Path, project: Path):
    os.mkfifo(project / "src" / "pipe")
    result = ingest_text(run, lane="a", agent_id="x", text=fence(ev("ev-p", source_ids=["file:src/pipe:1"])))
    assert "not a regular file" in result.quarantined[0]["problem"]


def test_citations_of_existing_records_are_accepted(run: Path):
    first = ingest_text(run, lane="a", agent_id="x", text=fence(ev("ev-base")))
    record = {
        "id": "ev-cite",
        "kind": "observation",
        "summary": "builds on ev-base",
        "source_ids": [
            "evidence:ev-base",
            "evidence:ev-same-output",
            "raw:objective.md",
            first.raw_source_id,
        ],
    }
    result = ingest_text(run, lane="b", agent_id="y", text=fence(record, ev("ev-same-output")))
    assert not result.quarantined and "ev-cite" in result.evidence_ids
    compile_run(run)


def test_reporting_a_finding_again_updates_it(run: Path):
    def finding(status: str) -> str:
        return fence(
            {
                "id": "vf-x",
                "summary": "suite",
                "status": status,
                "verifier_score": 1.0,
                "source_ids": ["test:suite"],
            },
            kind="verifier",
        )

    ingest_text(run, lane="v", agent_id="verifier", text=finding("failed"))
    packet = compile_run(run)
    assert [f["status"] for f in packet["verifier_findings"] if f["id"] == "vf-x"] == ["failed"]
    assert "action:vf-x" in [a["id"] for a in packet["candidate_actions"]]
    result = ingest_text(run, lane="v", agent_id="verifier", text=finding("passed") + finding("failed"))
    assert result.finding_ids == ["vf-x"] and "in one output" in result.quarantined[0]["problem"]
    packet = compile_run(run)
    assert [f["status"] for f in packet["verifier_findings"] if f["id"] == "vf-x"] == ["passed"]
    assert "action:vf-x" not in [a["id"] for a in packet["candidate_actions"]]


def test_duplicate_ids_within_and_across_ingests(run: Path):
    first = ingest_text(run, lane="a", agent_id="x", text=fence(ev("ev-d"), ev("ev-d")))
    assert [q["problem"] for q in first.quarantined] == ["duplicate id 'ev-d'"]
    second = ingest_text(run, lane="b", agent_id="y", text=fence(ev("ev-d")))
    assert [q["problem"] for q in second.quarantined] == ["duplicate id 'ev-d'"]
    assert [r["id"] for r in evidence_lines(run)].count("ev-d") == 1


def test_huge_line_is_quarantined(run: Path):
    huge = json.dumps({**ev("ev-huge"), "rationale": "x" * (1024 * 1024 + 10)})
    result = ingest_text(run, lane="a", agent_id="x", text=fence(ev("ev-ok"), huge))
    assert "over 1048576 bytes" in result.quarantined[0]["problem"]
    assert result.added == 2


def test_file_level_errors_leave_the_run_untouched(run: Path, tmp_path: Path):
    ingest_text(run, lane="a", agent_id="x", text=fence(ev("ev-1")))
    before = (run / "worker-results/evidence.jsonl").read_bytes()
    binary = tmp_path / "binary.md"
    binary.write_bytes(b'```mythos-evidence-jsonl\n{"id": "\xff\xfe"}\n```\n')
    with pytest.raises(PacketError, match="not UTF-8"):
        ingest_file(run, lane="b", agent_id="y", path=binary)
    with pytest.raises(PacketError, match="does not exist"):
        ingest_file(run, lane="b", agent_id="y", path=tmp_path / "nope.md")
    with pytest.raises(PacketError, match="is a directory"):
        ingest_file(run, lane="b", agent_id="y", path=tmp_path)
    os.mkfifo(tmp_path / "fifo.md")
    with pytest.raises(PacketError, match="not a regular file"):
        ingest_file(run, lane="b", agent_id="y", path=tmp_path / "fifo.md")
    with pytest.raises(PacketError, match="empty"):
        ingest_text(run, lane="b", agent_id="y", text="   \n")
    with pytest.raises(PacketError, match="not a usable name"):
        ingest_text(run, lane="../evil", agent_id="y", text=fence(ev("ev-2")))
    with pytest.raises(PacketError, match="does not exist"):
        ingest_text(tmp_path / "no-run", lane="a", agent_id="y", text=fence(ev("ev-3")))
    assert (run / "worker-results/evidence.jsonl").read_bytes() == before
    compile_run(run)


def test_file_inside_raw_subagents_is_used_in_place_once(run: Path):
    target = run / "raw/subagents/lane-c.md"
    target.write_text(fence(ev("ev-c")))
    result = ingest_file(run, lane="lane-c", agent_id="z", path=target)
    assert result.raw_source_id == "raw:subagents/lane-c.md"
    with pytest.raises(PacketError, match="duplicate ingest"):
        ingest_file(run, lane="lane-c", agent_id="z", path=target)


def test_torn_line_from_a_crash(run: Path):
    ingest_text(run, lane="a", agent_id="x", text=fence(ev("ev-1")))
    evidence = run / "worker-results/evidence.jsonl"
    intact = evidence.read_bytes()
    with open(evidence, "ab") as handle:
        handle.write(b'{"id":"ev-torn","kind":"obse')
    with pytest.raises(PacketError, match="incomplete record with no line end"):
        compile_run(run)
    result = ingest_text(run, lane="b", agent_id="y", text=fence(ev("ev-2")))
    assert result.added == 2
    assert evidence.read_bytes().startswith(intact)
    assert any("torn last line" in q["problem"] for q in quarantine(run))
    packet = compile_run(run)
    assert {"ev-1", "ev-2"} <= {r["id"] for r in packet["evidence"]}
    assert "ev-torn" not in {r["id"] for r in packet["evidence"]}


def test_verifier_records(run: Path):
    good = {
        "id": "vf-a",
        "summary": "tests pass",
        "status": "passed",
        "verifier_score": 1,
        "source_ids": ["test:tests/test_app.py"],
    }
    bad = {"id": "vf-b", "summary": "x", "status": "great", "source_ids": ["test:t"]}
    result = ingest_text(run, lane="v", agent_id="verifier", text=fence(good, bad, kind="verifier"))
    assert result.finding_ids == ["vf-a"]
    assert "status 'great'" in result.quarantined[0]["problem"]
    packet = compile_run(run)
    finding = next(f for f in packet["verifier_findings"] if f["id"] == "vf-a")
    assert finding["agent_id"] == "verifier" and finding["source_refs"][0]["kind"] == "test"
