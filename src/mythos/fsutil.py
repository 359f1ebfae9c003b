"""Atomic file and directory writes and the slug rule, written once (standard library only: `mythos packet`
imports this and must start without torch).

``mythos.model.checkpoint.save_checkpoint`` and ``Mythos.save_pretrained`` keep their own few lines of the same
rule on purpose: ``mythos export`` ships the ``mythos.model`` modules inside the exported directory, which must
load without mythos installed, so those modules may import only each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

TEMP_SUFFIX = ".tmp"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _current_umask()


def temp_beside(path: Path) -> tuple[int, str]:
    """A temp file next to ``path`` (``.NAME.XXXX.tmp``), flock-ed by its writer until it is renamed.

    The lock lets a sweeper (``mythos.packets.layout.reclaim_temps``) tell a live writer's temp from one left by a
    writer killed with ``kill -9``. Permissions are what a plain ``open(path, "w")`` would give (not mkstemp's 0600).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink:
            break
        os.close(fd)  # a sweeper took it in the instant before we locked it: make another
    os.fchmod(fd, 0o666 & ~UMASK)
    return fd, tmp


def fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (best effort: some filesystems refuse a directory fsync)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], *, fsync: bool = True) -> Iterator[IO[bytes]]:
    """Yield a binary file that replaces ``path`` atomically when the block ends without an error.

    Readers see the old file or the new one, never a torn one; on an error the temp file is removed and ``path``
    is untouched. The temp stays open (and flock-ed) until after ``os.replace`` (see ``temp_beside``).
    """
    path = Path(path)
    fd, tmp = temp_beside(path)
    handle = os.fdopen(fd, "wb")
    try:
        yield handle
        handle.flush()
        if fsync:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        handle.close()
    if fsync:
        fsync_dir(path.parent)


def atomic_write(path: str | os.PathLike[str], data: bytes | str, *, fsync: bool = True) -> None:
    """Write ``data`` (str is UTF-8) via a temp file in the same directory and ``os.replace``."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_file(path, fsync=fsync) as handle:
        handle.write(payload)


def atomic_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, fsync: bool = True) -> None:
    """Copy ``src`` onto ``dst`` atomically (streamed, so a large file is not read into memory)."""
    with open(src, "rb") as source, atomic_file(dst, fsync=fsync) as handle:
        shutil.copyfileobj(source, handle)


def temp_dir_beside(target: str | os.PathLike[str]) -> Path:
    """A fresh staging directory next to ``target`` for ``replace_dir`` (same filesystem, so rename is atomic)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))


def replace_dir(staged: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Put the finished directory ``staged`` at ``target``, replacing any old one.

    Two renames (old aside, new in), so a reader sees the old directory or the new one; the window in between
    has no ``target`` at all, never a half-written one. The old directory is deleted afterwards.
    """
    staged, target = Path(staged), Path(target)
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rmdir(old)
        os.rename(target, old)
        os.rename(staged, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staged, target)
    fsync_dir(target.parent)


def slug(text: str, limit: int | None = 64, *, default: str = "item") -> str:
    """ASCII letters and digits, lowercased, with each other run of characters as one dash; at most ``limit``.

    File and id names built from free text (objectives, questions, lanes, failure summaries) use this one rule,
    so the same text always gives the same name; ``default`` is returned when nothing is left (all punctuation).
    """
    value = re.sub(r"[^A-Za-z0-9]+", "-", text).lower().strip("-")
    if limit is not None:
        value = value[:limit].strip("-")
    return value or default
