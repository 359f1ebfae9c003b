"""Byte-identical output whatever the locale, time zone, hash seed or file-system creation order."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from .conftest import STATE_FILES

MANIFEST = {
    "run_id": "run-det",
    "objective_id": "obj-det",
    "branch_id": "main",
    "pass_id": "pass-0003",
    "created_at": "2026-04-21T00:00:00Z",
    "source_root": "../project",
}


def _records() -> tuple[list[dict], list[dict]]:
    evidence, findings = [], []
    for n in range(60):
        sid = f"file:src/mod_{n % 7}.py:{n % 5 + 1}"
        evidence.append(
            {
                "id": f"ev-{n:03d}",
                "kind": ["observation", "code-change", "root-cause", "measurement"][n % 4],
                "summary": f"finding {n} über résumé 日本 {'alpha beta' if n % 3 else 'gamma delta'} {n % 11}",
                "source_ids": [f"raw:subagents/lane-{n % 4}.md", sid],
                "source_refs": [
                    {
                        "source_id": sid,
                        "path": f"src/mod_{n % 7}.py",
                        "kind": "file",
                        "hash": "HASH",
                        "hash_alg": "fnv1a-64",
                        "span": str(n % 5 + 1),
                        "observed_at": "2026-04-21T00:00:00Z",
                    }
                ],
                "observed_at": "2026-04-21T00:00:00Z",
                "agent_id": f"agent-{n % 4}",
                "lane": f"lane-{n % 4}",
                "confidence": [0.1, 0.25, 1e-5, 0.999999][n % 4],
            }
        )
    for n in range(12):
        findings.append(
            {
                "id": f"vf-{n}",
                "summary": ["flaky test", "missing doc", f"unique {n}"][n % 3],
                "status": ["passed", "failed", "pending"][n % 3],
                "verifier_score": n / 12,
                "source_ids": [f"evidence:ev-{n:03d}"],
            }
        )
    return evidence, findings


def build_run(base: Path, seed: int) -> Path:
    """The same run content, with files created in a seed-dependent order."""
    from mythos.packets.hashing import fnv1a64

    rng = random.Random(seed)
    run = base / "run"
    files: dict[str, bytes] = {}
    for n in range(7):
        files[f"project/src/mod_{n}.py"] = "".join(f"line {k} of module {n}\n" for k in range(6)).encode()
    for n in range(4):
        files[f"run/raw/subagents/lane-{n}.md"] = f"lane {n} output\n".encode()
    files["run/raw/objective.md"] = b"objective\n"
    files["run/raw/Zeta.md"] = b"capital\n"
    files["run/raw/\u00e9t\u00e9.md"] = b"non-ascii name\n"
    files["run/raw/a/b/deep.md"] = b"deep\n"
    evidence, findings = _records()
    for record in evidence:
        for ref in record["source_refs"]:
            ref["hash"] = fnv1a64(files[f"project/{ref['path']}"])
    files["run/worker-results/evidence.jsonl"] = "".join(json.dumps(r) + "\n" for r in evidence).encode()
    files["run/verifier-results/findings.jsonl"] = "".join(json.dumps(r) + "\n" for r in findings).encode()
    files["run/manifest.json"] = json.dumps(MANIFEST).encode()
    files["run/task.md"] = b"  Determinism objective.  \n"
    order = list(files)
    rng.shuffle(order)
    for rel in order:
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[rel])
    return run


def _compile_in_subprocess(run: Path, env_overrides: dict[str, str]) -> None:
    env = {**os.environ, **env_overrides}
    proc = subprocess.run(
        [sys.executable, "-m", "mythos", "packet", "compile", "--run-dir", str(run)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


def test_compile_is_byte_identical_across_environments(tmp_path: Path):
    environments = [
        {"LC_ALL": "C", "TZ": "UTC", "PYTHONHASHSEED": "0"},
        {"LC_ALL": "en_US.UTF-8", "TZ": "America/Los_Angeles", "PYTHONHASHSEED": "12345"},
        {"LC_ALL": "tr_TR.UTF-8", "TZ": "Asia/Tokyo", "PYTHONHASHSEED": "999", "LANG": "de_DE.UTF-8"},
    ]
    outputs = []
    for seed, env in enumerate(environments):
        run = build_run(tmp_path / f"copy-{seed}", seed)
        _compile_in_subprocess(run, env)
        outputs.append({name: (run / "state" / name).read_bytes() for name in STATE_FILES})
    assert outputs[0] == outputs[1] == outputs[2]
    packet = json.loads(outputs[0]["next_pass_packet.json"])
    assert packet["contradictions"], "the determinism run should exercise contradiction ordering"
    assert packet["recurring_failure_patterns"]
    assert [s["source_id"] for s in packet["sources"]] == sorted(s["source_id"] for s in packet["sources"])
    assert b"/tmp" not in outputs[0]["next_pass_packet.json"]
