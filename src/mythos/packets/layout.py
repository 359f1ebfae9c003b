"""The run directory: where each file lives, the run lock, atomic writes, the manifest and the source root."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from mythos.fsutil import TEMP_SUFFIX, atomic_write

from .errors import PacketError

MANIFEST = "manifest.json"
TASK = "task.md"
RAW = "raw"
SUBAGENTS = "raw/subagents"
EVIDENCE = "worker-results/evidence.jsonl"
FINDINGS = "verifier-results/findings.jsonl"
QUARANTINE = "quarantine/rejected.jsonl"
STATE = "state"
PACKET = "state/next_pass_packet.json"
SNAPSHOT = "state/snapshot.json"
DECISIONS = "state/decision_log.jsonl"
INPUTS = "state/inputs.json"
DIGEST = "state/prime_digest.json"
LOCK = ".mythos-run.lock"

MANIFEST_FIELDS = ("objective_id", "run_id", "branch_id", "pass_id", "created_at")


def require_run_dir(run_dir: str | Path) -> Path:
    path = Path(run_dir)
    if not path.is_dir():
        raise PacketError(
            f"run directory {str(path)!r} does not exist or is not a directory",
            field="run_dir",
            value=str(path),
            fix="create it with `mythos packet init RUN_DIR`",
        )
    if not (path / MANIFEST).is_file():
        raise PacketError(
            f"{path / MANIFEST} is missing: {str(path)!r} is not a mythos run",
            field="run_dir",
            value=str(path),
            fix="create the run with `mythos packet init RUN_DIR`",
        )
    return path


@contextlib.contextmanager
def run_lock(run_dir: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold the run's advisory lock: exclusive for writers (ingest, synthesis), shared for compile.

    ``fcntl.flock`` is released by the kernel when a holder dies, so a crashed ingest never leaves a stale lock,
    and waiters block instead of polling (the reference's O_EXCL lock file gave up after ~5 s and reaped by mtime).
    """
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the flock


# Directories of a run that atomic writes put temp files in (swept by ``reclaim_temps``).
TEMP_DIRS = ("", STATE, RAW, SUBAGENTS, "worker-results", "verifier-results", "quarantine")


def reclaim_temps(run_dir: Path) -> list[str]:
    """Delete temp files whose writer died (``kill -9``, power loss); return their run-relative paths.

    A live writer holds an flock on its temp file until the rename; the kernel drops it when the writer dies, so
    a temp we can lock is an orphan. Compile calls this before reading its inputs (an orphan under raw/ would
    otherwise be hashed into the packet).
    """
    removed: list[str] = []
    for rel in TEMP_DIRS:
        directory = run_dir / rel if rel else run_dir
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if not (entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX)):
                continue
            if not entry.is_file(follow_symlinks=False):
                continue
            try:
                fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue  # a live writer holds it
            try:
                os.unlink(entry.path)
                removed.append(f"{rel}/{entry.name}" if rel else entry.name)
            except FileNotFoundError:
                pass
            finally:
                os.close(fd)
    return removed


def read_manifest(run_dir: Path) -> dict:
    path = run_dir / MANIFEST
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PacketError(
            f"{path} is not valid UTF-8 JSON: {exc}", field="manifest", fix="restore manifest.json"
        ) from exc
    if not isinstance(manifest, dict):
        raise PacketError(f"{path} must hold a JSON object", field="manifest", fix="restore manifest.json")
    for name in MANIFEST_FIELDS:
        value = manifest.get(name)
        if not isinstance(value, str):
            raise PacketError(
                f"manifest field {name!r} must be a string, got {value!r}",
                field=f"manifest.{name}",
                value=value,
                fix=f"set {name!r} to a string in {path}",
            )
    return manifest


def write_manifest(run_dir: Path, manifest: dict) -> None:
    atomic_write(run_dir / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def source_root(run_dir: Path, root: str | Path | None = None, manifest: dict | None = None) -> Path:
    """The one directory relative ``file:`` refs resolve against.

    Order: an explicit ``root`` (``--root``), else the manifest's ``source_root`` (relative to the run dir), else
    the run directory itself. Never the install directory or the cwd (the reference's bug).
    """
    if root is not None:
        chosen = Path(root)
    else:
        if manifest is None:
            try:
                manifest = json.loads((run_dir / MANIFEST).read_text("utf-8"))
            except (OSError, ValueError):
                manifest = {}
        stored = manifest.get("source_root") if isinstance(manifest, dict) else None
        chosen = (run_dir / stored) if isinstance(stored, str) and stored else run_dir
    resolved = chosen.resolve()
    if not resolved.is_dir():
        raise PacketError(
            f"source root {str(chosen)!r} is not a directory",
            field="root",
            value=str(chosen),
            fix="pass --root DIR naming the project the run's file: refs cite",
        )
    return resolved
