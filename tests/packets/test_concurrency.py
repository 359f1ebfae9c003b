"""Parallel ingests from separate processes: nothing lost, duplicated or interleaved."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mythos.packets import compile_run, init_run

WORKER = r"""
import json, sys
from mythos.packets import ingest_text
run, worker = sys.argv[1], int(sys.argv[2])
for batch in range(10):
    records = [json.dumps({"id": f"ev-w{worker}-b{batch}-r{n}", "kind": "observation",
                           "summary": f"worker {worker} batch {batch} record {n} " + "x" * 2000,
                           "source_ids": [f"file:src/app.py:{(n % 20) + 1}"]}) for n in range(5)]
    text = "```mythos-evidence-jsonl\n" + "\n".join(records) + "\n```\n"
    result = ingest_text(run, lane=f"lane-{worker}", agent_id=f"agent-{worker}", text=text)
    assert result.added == 6 and not result.quarantined, result.quarantined
"""


def test_eight_processes_fifty_records_each(tmp_path: Path, project: Path):
    run = init_run(tmp_path / "run", task="concurrency", root=project)
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(run), str(w)], stderr=subprocess.PIPE, text=True)
        for w in range(8)
    ]
    compiles = 0
    while any(proc.poll() is None for proc in procs):
        packet = compile_run(run)  # compile holds the lock shared: it never sees half an ingest
        sessions = {r["source_ids"][0] for r in packet["evidence"] if r["kind"] == "subagent-session"}
        for record in packet["evidence"]:
            if record["id"].startswith("ev-w"):
                assert record["source_ids"][0] in sessions
        compiles += 1
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert compiles >= 1
    lines = (run / "worker-results/evidence.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one whole record
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids))
    expected = {f"ev-w{w}-b{b}-r{n}" for w in range(8) for b in range(10) for n in range(5)}
    assert expected <= set(ids)
    sessions = [r for r in records if r["kind"] == "subagent-session"]
    assert len(sessions) == 80
    assert len(list((run / "raw/subagents").iterdir())) == 80
    # each record's raw source is the session file that holds it
    by_raw = {s["source_ids"][0]: s["agent_id"] for s in sessions}
    for record in records:
        if record["id"].startswith("ev-w"):
            assert by_raw[record["source_ids"][0]] == record["agent_id"]
    packet = compile_run(run)
    assert len(packet["evidence"]) == 1 + 80 + 400
