"""Arbitrary subagent output never crashes ingest with anything but PacketError, and never breaks the run."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mythos.packets import PacketError, compile_run, ingest_text, init_run

FRAGMENTS = [
    "```mythos-evidence-jsonl\n",
    "```mythos-verifier-jsonl\n",
    "```\n",
    "```jsonl\n",
    "suggested evidence\n",
    "BLOCKED stuck\n",
    "\n",
    "{",
    "}",
    '"id"',
    ":",
    ",",
    "[",
    "]",
    "null",
    "1e999",
    '"file:src/app.py:2"',
    '"file:../x:1"',
    '"evidence:ev-objective"',
    '"raw:objective.md"',
    '"kind"',
    '"summary"',
    '"source_ids"',
    '"status"',
    '"passed"',
    '"verifier_score"',
    "\u2028",
    "\x00",
    "é",
    "\r\n",
    json.dumps({"id": "ev-f", "kind": "observation", "summary": "s", "source_ids": ["file:src/app.py:1"]})
    + "\n",
    json.dumps({"id": "vf-f", "summary": "s", "status": "failed", "source_ids": ["test:t"]}) + "\n",
]


@settings(
    max_examples=int(os.environ.get("MYTHOS_FUZZ_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=20)), max_size=25))
def test_random_output_is_ingested_or_refused_cleanly(project: Path, pieces: list[str]):
    base = Path(tempfile.mkdtemp())
    try:
        run = init_run(base / "run", task="fuzz", root=project)
        evidence = run / "worker-results/evidence.jsonl"
        before = evidence.read_bytes()
        try:
            result = ingest_text(run, lane="fuzz", agent_id="agent-f", text="".join(pieces))
        except PacketError as exc:
            assert exc.message and exc.fix
            assert evidence.read_bytes() == before
        else:
            assert evidence.read_bytes().startswith(before)
            assert all(problem["problem"] and problem["fix"] for problem in result.quarantined)
        compile_run(run)  # whatever was accepted compiles
    finally:
        shutil.rmtree(base, ignore_errors=True)
