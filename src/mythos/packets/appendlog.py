"""Crash-safe appends to the run's JSONL files (callers hold the run's exclusive lock)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

from .errors import PacketError
from .records import loads_strict
from .vocab import EvidenceKind


def heal_torn_tail(path: Path) -> str | None:
    """If a crash left a last line without its newline, cut it off and return it (to be quarantined).

    A tail that is complete JSON merely lacks its newline; it is kept and terminated instead.
    """
    if path.is_symlink():
        return None  # append_lines refuses it with a clear error
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size == 0:
        return None
    with open(path, "rb+") as handle:
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return None
        chunk = min(size, 1 << 20)
        start = size
        while start > 0:
            step = min(chunk, start)
            handle.seek(start - step)
            block = handle.read(step)
            cut = block.rfind(b"\n")
            if cut >= 0:
                start = start - step + cut + 1
                break
            start -= step
        handle.seek(start)
        tail = handle.read()
        try:
            loads_strict(tail.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            handle.truncate(start)
            handle.flush()
            os.fsync(handle.fileno())
            return tail.decode("utf-8", "replace")
        handle.seek(size)
        handle.write(b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    return None


def append_lines(path: Path, lines: list[str]) -> None:
    """Append whole lines with one O_APPEND write loop and fsync, so readers never see half a record."""
    if not lines:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = ("\n".join(lines) + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PacketError(
                f"{path.name} is a symbolic link; run inputs must be the files themselves",
                field=path.name,
                fix="replace the link with a copy of the file",
            ) from None
        raise
    try:
        view = memoryview(payload)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def compact(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def scan_ids(path: Path) -> tuple[set[str], list[dict]]:
    """Ids already in a JSONL file, and its subagent-session records (bad lines are skipped, compile names them)."""
    ids: set[str] = set()
    sessions: list[dict] = []
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ids, sessions
    except OSError as exc:
        raise PacketError(
            f"{path.parent.name}/{path.name} cannot be read: {exc.strerror}",
            field=path.name,
            value=str(path),
            fix=f"restore {path.name} as a regular JSONL file",
        ) from None
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            continue
        if isinstance(obj, dict):
            if isinstance(obj.get("id"), str):
                ids.add(obj["id"])
            if obj.get("kind") == EvidenceKind.SUBAGENT_SESSION:
                sessions.append(obj)
    return ids, sessions
