"""Scaffolding a new run directory."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from mythos.fsutil import atomic_write

from .appendlog import compact
from .errors import PacketError
from .layout import EVIDENCE, FINDINGS, MANIFEST, STATE, SUBAGENTS, TASK, write_manifest
from .vocab import EvidenceKind, FindingStatus

SYNTHESIS_PENDING_ID = "vf-synthesis-pending"


def init_run(
    run_dir: str | Path,
    *,
    task: str = "",
    root: str | Path | None = None,
    contradictions: str | None = None,
) -> Path:
    """Create a run (see docs/packets.md) and compile its first packet, so Prime always has one to read."""
    run = Path(run_dir)
    if run.exists() and (not run.is_dir() or any(run.iterdir())):
        raise PacketError(
            f"{str(run)!r} already exists and is not an empty directory",
            field="run_dir",
            value=str(run),
            fix="choose a new run directory",
        )
    source = Path(root) if root is not None else Path.cwd()
    if not source.is_dir():
        raise PacketError(
            f"source root {str(source)!r} is not a directory",
            field="root",
            value=str(source),
            fix="pass --root DIR naming the project the run's file: refs cite",
        )
    run.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    created_at = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    name = run.resolve().name
    objective = task.strip() or name
    try:
        stored_root = os.path.relpath(source.resolve(), run.resolve())
    except ValueError:  # different drives on Windows
        stored_root = str(source.resolve())
    manifest = {
        "run_id": f"run-{stamp}",
        "objective_id": f"obj-{stamp}",
        "objective": objective,
        "branch_id": "main",
        "pass_id": "pass-0001",
        "created_at": created_at,
        "source_root": Path(stored_root).as_posix(),
    }
    (run / SUBAGENTS).mkdir(parents=True)
    (run / "worker-results").mkdir()
    (run / "verifier-results").mkdir()
    (run / STATE).mkdir()
    atomic_write(
        run / TASK,
        (task.strip() if task.strip() else f"# {name}\n\nDescribe the objective of this run here.") + "\n",
    )
    atomic_write(
        run / "raw" / "objective.md", f"# Objective\n\n{objective}\n\nCreated by `mythos packet init`.\n"
    )
    atomic_write(
        run / EVIDENCE,
        compact(
            {
                "id": "ev-objective",
                "kind": EvidenceKind.OBJECTIVE.value,
                "summary": objective,
                "source_ids": ["raw:objective.md"],
                "observed_at": created_at,
            }
        )
        + "\n",
    )
    atomic_write(
        run / FINDINGS,
        compact(
            {
                "id": SYNTHESIS_PENDING_ID,
                "summary": "Prime has not yet recorded a synthesis of the compiled packet",
                "status": FindingStatus.PENDING.value,
                "verifier_score": 0.0,
                "source_ids": ["raw:objective.md"],
            }
        )
        + "\n",
    )
    write_manifest(run, manifest)
    assert (run / MANIFEST).is_file()
    from .compiler import compile_run

    compile_run(run, root=root, return_packet=False, contradictions=contradictions)
    return run
