"""Reading a run's inputs for compile: the raw/ walk and the two JSONL files, strictly and deterministically."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

from .errors import PacketError
from .hashing import fnv1a64
from .layout import EVIDENCE, FINDINGS, MANIFEST, QUARANTINE, RAW, TASK
from .records import loads_strict
from .sources import HASH_ALG, MAX_FILE_BYTES


def walk_raw(run_dir: Path, observed_at: str, fingerprint: dict[str, str] | None = None) -> list[dict]:
    """Every regular file under raw/ as a ``raw:`` source, sorted by source id.

    Unlike the reference we never follow symlinks (a link to /etc/passwd or a loop would leak or explode) and
    refuse FIFOs and devices; each directory is listed in byte order so file-system order never matters.
    """
    base = run_dir / RAW
    refs: list[dict] = []
    if not base.is_dir():
        return refs
    stack: list[tuple[Path, str]] = [(base, "")]
    while stack:
        directory, prefix = stack.pop()
        with os.scandir(directory) as entries:
            names = sorted((os.fsencode(entry.name), entry) for entry in entries)
        for name_bytes, entry in names:
            try:
                name = name_bytes.decode("utf-8")
            except UnicodeDecodeError:
                raise PacketError(
                    f"raw/{prefix}{name_bytes!r} has a non-UTF-8 file name",
                    field="raw",
                    value=repr(name_bytes),
                    fix="rename the file with a UTF-8 name",
                ) from None
            rel = prefix + name
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                raise PacketError(
                    f"raw/{rel} is a symbolic link; raw/ must hold the quarantined bytes themselves",
                    field="raw",
                    value=rel,
                    fix=f"replace raw/{rel} with a copy of the file it points to",
                )
            if stat.S_ISDIR(info.st_mode):
                stack.append((Path(entry.path), rel + "/"))
                continue
            if not stat.S_ISREG(info.st_mode):
                raise PacketError(
                    f"raw/{rel} is not a regular file", field="raw", value=rel, fix=f"remove raw/{rel}"
                )
            if info.st_size > MAX_FILE_BYTES:
                raise PacketError(
                    f"raw/{rel} is {info.st_size} bytes, over the {MAX_FILE_BYTES}-byte limit",
                    field="raw",
                    value=rel,
                    fix="keep raw artefacts smaller",
                )
            data = Path(entry.path).read_bytes()
            if fingerprint is not None:
                fingerprint[f"raw/{rel}"] = hashlib.sha256(data).hexdigest()
            refs.append(
                {
                    "source_id": f"raw:{rel}",
                    "path": f"raw/{rel}",
                    "kind": "raw",
                    "hash": fnv1a64(data),
                    "hash_alg": HASH_ALG,
                    "span": None,
                    "observed_at": observed_at,
                }
            )
    refs.sort(key=lambda ref: ref["source_id"])
    return refs


def read_jsonl(
    run_dir: Path, rel: str, parse: Callable[[object, str], dict], fingerprint: dict[str, str] | None = None
) -> list[dict]:
    """Parse every non-blank line of ``rel`` with ``parse``; the first bad line stops the compile, named."""
    path = run_dir / rel
    if path.is_symlink():
        raise PacketError(
            f"{rel} is a symbolic link; run inputs must be the files themselves",
            field=rel,
            fix=f"replace {rel} with a copy of the file it points to",
        )
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except IsADirectoryError:
        raise PacketError(f"{rel} is a directory", field=rel, fix=f"remove the directory {rel}") from None
    if fingerprint is not None:
        fingerprint[rel] = hashlib.sha256(data).hexdigest()
    if data.startswith(b"\xef\xbb\xbf"):
        raise PacketError(
            f"{rel} starts with a UTF-8 byte-order mark", field=rel, fix="save the file without a BOM"
        )
    records: list[dict] = []
    lines = data.split(b"\n")
    last = len(lines) - 1
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        where = f"{rel} line {number}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PacketError(
                f"{where} is not valid UTF-8 (byte {exc.start})",
                field=rel,
                value=number,
                fix="re-encode the line as UTF-8 or remove it",
            ) from None
        try:
            obj = loads_strict(text)
        except (json.JSONDecodeError, ValueError, RecursionError) as exc:
            if number - 1 == last:
                raise PacketError(
                    f"{where} is an incomplete record with no line end (a write was cut off by a crash?): {exc}",
                    field=rel,
                    value=number,
                    fix="run any `mythos packet ingest` (it quarantines the torn tail) or delete that last line",
                ) from None
            raise PacketError(
                f"{where} is not valid JSON: {exc}", field=rel, value=number, fix="fix or remove the line"
            ) from None
        records.append(parse(obj, where))
    return records


def fingerprint_file(run_dir: Path, rel: str, fingerprint: dict[str, str]) -> bytes | None:
    try:
        data = (run_dir / rel).read_bytes()
    except FileNotFoundError:
        return None
    fingerprint[rel] = hashlib.sha256(data).hexdigest()
    return data


def current_fingerprint(run_dir: Path) -> dict[str, str]:
    """sha256 of every compile input, used to tell a stale packet from a fresh one."""
    fingerprint: dict[str, str] = {}
    for rel in (MANIFEST, TASK, EVIDENCE, FINDINGS, QUARANTINE):
        fingerprint_file(run_dir, rel, fingerprint)
    walk_raw(run_dir, "", fingerprint)
    return dict(sorted(fingerprint.items()))


def read_rejected(run_dir: Path, fingerprint: dict[str, str] | None = None) -> list[dict]:
    """The quarantine log's lines (records ingest refused), for the packet's ``rejected_records`` section.

    The log is ours, but a hand-edited line must not stop a compile: an unreadable line becomes an entry that
    says so, so nothing disappears silently.
    """
    path = run_dir / QUARANTINE
    if path.is_symlink():
        raise PacketError(
            f"{QUARANTINE} is a symbolic link; run inputs must be the files themselves",
            field=QUARANTINE,
            fix=f"replace {QUARANTINE} with a copy of the file it points to",
        )
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    if fingerprint is not None:
        fingerprint[QUARANTINE] = hashlib.sha256(data).hexdigest()
    lines: list[dict] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = loads_strict(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            obj = None
        if not isinstance(obj, dict):
            obj = {"problem": f"{QUARANTINE} line {number} is not a JSON object"}
        lines.append(obj)
    return lines
