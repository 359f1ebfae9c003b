"""Packets Prime can read at scale: grouped contradictions, the pairwise form kept, and the bounded digest."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mythos.packets import compile_run, gate_run, ingest_text, init_run
from mythos.packets.contradictions import CONTRADICTION_RULES, detect_contradictions
from mythos.packets.digest import MAX_ITEMS, MAX_MEMBERS
from mythos.packets.schema import validate

from .conftest import mythos
from .test_compile import record
from .test_ingest import fence

CLAIMS = ["cache never expires", "expiry runs hourly", "ttl is ignored on reads", "entries are evicted at 1k"]


def _hot_span_run(tmp_path: Path, project: Path, agents: int = 30) -> Path:
    run = init_run(tmp_path / "run", task="hot span", root=project)
    for n in range(agents):
        claim = {
            "id": f"ev-{n:03d}",
            "kind": "code-change" if n % 2 else "root-cause",
            "summary": CLAIMS[n % len(CLAIMS)],
            "source_ids": ["file:src/app.py:3"],
        }
        ingest_text(run, lane=f"lane-{n}", agent_id=f"agent-{n}", text=fence(claim))
    return run


def test_rules_are_named_once():
    names = [rule.name for rule in CONTRADICTION_RULES]
    assert names == ["different-claims", "incompatible-kinds", "independent-sources", "dissimilar-wording"]
    assert all(rule.description for rule in CONTRADICTION_RULES)


def test_hot_span_is_one_grouped_entry_and_many_pairs(tmp_path: Path, project: Path):
    run = _hot_span_run(tmp_path, project)
    grouped = compile_run(run)
    auto = [c for c in grouped["contradictions"] if not c["id"].startswith("con:integrity:")]
    assert [c["id"] for c in auto] == ["con:span:file:src/app.py:3"]
    (group,) = auto
    assert len(group["members"]) == 30 and group["severity"] == "high"
    assert group["conflicting_item_ids"] == sorted(m["id"] for m in group["members"])
    assert "30 records from 30 agent(s) make 4 conflicting claims" in group["summary"]
    assert not validate(grouped)
    pairwise = compile_run(run, contradictions="pairwise")
    pairs = [c for c in pairwise["contradictions"] if c["id"].startswith("con:auto:")]
    assert len(pairs) > 300
    assert {i for c in pairs for i in c["conflicting_item_ids"]} == set(group["conflicting_item_ids"])
    assert len((run / "state/next_pass_packet.json").read_bytes()) > 2 * len(json.dumps(grouped))


def test_form_is_kept_across_compiles_and_the_gate_uses_it(tmp_path: Path, project: Path):
    run = _hot_span_run(tmp_path, project, agents=4)
    compile_run(run, contradictions="pairwise")
    packet = compile_run(run)  # no flag: the run's form is kept
    assert any(c["id"].startswith("con:auto:") for c in packet["contradictions"])
    assert "packet" not in {f["check"] for f in gate_run(run).failures}
    bad = mythos("packet", "compile", "--run-dir", str(run), "--contradictions", "triples")
    assert bad.returncode == 2 and "--contradictions" in bad.stderr


def test_digest_is_bounded_and_strongest_first(tmp_path: Path, project: Path):
    run = init_run(tmp_path / "run", task="digest", root=project)
    long = "x" * 5000
    for n in range(60):
        kind = ("observation", "code-change")[n % 2]
        records = [
            {
                "id": f"ev-{n}-{k}",
                "kind": kind,
                "summary": f"{long} {n} {k} claim{n * 7 + k}",
                "source_ids": [sid],
            }
            for k, sid in enumerate((f"file:src/app.py:{1 + n % 20}", f"command:c{n % 30}"))
        ]
        ingest_text(run, lane=f"lane-{n}", agent_id=f"agent-{n}", text=fence(*records))
    packet = compile_run(run)
    path = run / "state/prime_digest.json"
    digest = json.loads(path.read_text())
    assert path.stat().st_size < 250_000 < len((run / "state/next_pass_packet.json").read_bytes())
    shown = digest["contradictions"]["shown"]
    assert len(shown) == MAX_ITEMS and digest["contradictions"]["total"] == len(packet["contradictions"])
    assert digest["contradictions"]["more"] == len(packet["contradictions"]) - MAX_ITEMS
    ranks = {"high": 0, "medium": 1, "low": 2}
    assert [ranks[c["severity"]] for c in shown] == sorted(ranks[c["severity"]] for c in shown)
    assert all(len(c["member_ids"]) <= MAX_MEMBERS and len(c["summary"]) <= 300 for c in shown)
    every_id = {c["id"] for c in packet["contradictions"]}
    assert {c["id"] for c in shown} <= every_id
    assert digest["counts"]["evidence"] == len(packet["evidence"])


def test_edited_digest_fails_the_gate(tmp_path: Path, project: Path):
    run = _hot_span_run(tmp_path, project, agents=3)
    compile_run(run)
    path = run / "state/prime_digest.json"
    digest = json.loads(path.read_text())
    digest["halt"]["kind"] = "ready-to-halt"
    path.write_text(json.dumps(digest))
    failures = [f for f in gate_run(run).failures if f["check"] == "packet"]
    assert [f["record"] for f in failures] == ["state/prime_digest.json"]


@settings(max_examples=150, deadline=None)
@given(st.lists(record, max_size=14))
def test_grouped_members_cover_every_pairwise_contradiction(evidence):
    pairwise = detect_contradictions(evidence, "pairwise")
    grouped = detect_contradictions(evidence, "grouped")
    in_pairs = {i for c in pairwise for i in c["conflicting_item_ids"]}
    in_groups = {i for c in grouped for i in c["conflicting_item_ids"]}
    assert in_pairs <= in_groups
    if not any(sid.startswith("file:") for r in evidence for sid in r["source_ids"]):
        assert in_pairs == in_groups  # without line ranges, groups are exactly the spans' pairs
    for con in grouped:
        assert len(con["members"]) >= 2 and con["source_ids"]
