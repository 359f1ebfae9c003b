"""Source ids and ``file:`` references: parsing, and resolving a path safely inside the source root."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import PacketError
from .hashing import fnv1a64, line_count
from .vocab import DIRECT_PREFIXES

# Prefixes the contradiction detector groups by. The reference leaves out log:; we keep log: in (it is direct
# evidence everywhere else, so two agents disagreeing about one log are a contradiction too).
CONTRADICTION_PREFIXES = DIRECT_PREFIXES
HASH_ALG = "fnv1a-64"
MAX_FILE_BYTES = 64 * 1024 * 1024

_FILE_ID = re.compile(r"^file:(?P<path>.+):(?P<span>\d+(?:-\d+)?)$")


def is_direct(source_id: str) -> bool:
    return source_id.startswith(DIRECT_PREFIXES)


def parse_file_id(source_id: str) -> tuple[str, str] | None:
    """``file:<path>:<N>`` or ``file:<path>:<A>-<B>`` → (path, span); anything else → None."""
    match = _FILE_ID.match(source_id)
    return (match["path"], match["span"]) if match else None


def parse_span(span: str) -> tuple[int, int] | None:
    """``N`` or ``A-B`` (digits only) → (start, end); None when it is not a line range."""
    head, sep, tail = span.partition("-")
    if not head.isdigit() or not head.isascii() or (sep and (not tail.isdigit() or not tail.isascii())):
        return None
    start = int(head)
    return start, int(tail) if sep else start


@dataclass(frozen=True)
class FileFacts:
    hash: str
    lines: int


def check_relative_path(path: str, *, field: str) -> None:
    """Reject paths that cannot be part of a portable packet: absolute, drive letters, backslashes, empty."""
    if not path:
        raise PacketError(
            "file path is empty", field=field, value=path, fix="cite a path relative to the source root"
        )
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path) or path.startswith("~"):
        raise PacketError(
            f"file path {path!r} is absolute; packets must not leak machine-specific paths",
            field=field,
            value=path,
            fix="cite the path relative to the source root (see --root)",
        )
    if "\\" in path:
        raise PacketError(
            f"file path {path!r} contains a backslash",
            field=field,
            value=path,
            fix="use forward slashes",
        )
    if "\x00" in path:
        raise PacketError("file path contains a NUL byte", field=field, value=path, fix="cite a real path")


class SourceFiles:
    """Resolves and hashes ``file:`` refs under one root, reading each file once per compile or ingest."""

    def __init__(self, root: Path, *, max_bytes: int = MAX_FILE_BYTES):
        self.root = root.resolve()
        self.max_bytes = max_bytes
        self._cache: dict[str, FileFacts | PacketError] = {}

    def resolve(self, path: str, *, field: str = "path") -> Path:
        """The real file for ``path``; PacketError when it escapes the root (``..``, absolute, symlink)."""
        check_relative_path(path, field=field)
        candidate = self.root / path
        real = Path(os.path.realpath(candidate))
        if real != self.root and self.root not in real.parents:
            raise PacketError(
                f"file path {path!r} resolves outside the source root {self.root.name!r}",
                field=field,
                value=path,
                fix="cite only files inside the source root; symlinks and '..' may not leave it",
            )
        return real

    def root_relative(self, path: str) -> str | None:
        """An absolute ``path`` inside the root as a root-relative POSIX path; None when it is not one.

        Subagents cite absolute paths all the time; the reference rewrote those inside its root, so we do too.
        The path is matched as written (after collapsing ``.``/``..``) and, failing that, with symlinks resolved
        (``/tmp`` vs ``/private/tmp``); anything outside the root is left for ``resolve`` to refuse.
        """
        if not path.startswith("/"):
            return None
        for candidate in (Path(os.path.normpath(path)), Path(os.path.realpath(path))):
            try:
                rel = candidate.relative_to(self.root)
            except ValueError:
                continue
            text = rel.as_posix()
            return text if text not in ("", ".") else None
        return None

    def facts(self, path: str, *, field: str = "path") -> FileFacts:
        cached = self._cache.get(path)
        if cached is None:
            try:
                cached = self._read(path, field)
            except PacketError as exc:
                cached = exc
            self._cache[path] = cached
        if isinstance(cached, PacketError):
            raise cached
        return cached

    def _read(self, path: str, field: str) -> FileFacts:
        real = self.resolve(path, field=field)
        try:
            info = os.stat(real)
        except FileNotFoundError:
            raise PacketError(
                f"file {path!r} does not exist under the source root",
                field=field,
                value=path,
                fix="cite an existing file, or pass --root for the project it lives in",
            ) from None
        except OSError as exc:
            raise PacketError(
                f"file {path!r} cannot be read: {exc.strerror}",
                field=field,
                value=path,
                fix="make the file readable",
            ) from None
        if stat.S_ISDIR(info.st_mode):
            raise PacketError(
                f"file {path!r} is a directory, not a file",
                field=field,
                value=path,
                fix="cite a file inside the directory",
            )
        if not stat.S_ISREG(info.st_mode):
            raise PacketError(
                f"file {path!r} is not a regular file (device, FIFO or socket)",
                field=field,
                value=path,
                fix="cite a regular file",
            )
        if info.st_size > self.max_bytes:
            raise PacketError(
                f"file {path!r} is {info.st_size} bytes, over the {self.max_bytes}-byte limit",
                field=field,
                value=path,
                fix="cite a smaller file",
            )
        try:
            fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
            with os.fdopen(fd, "rb") as handle:
                data = handle.read(self.max_bytes + 1)
        except OSError as exc:
            raise PacketError(
                f"file {path!r} cannot be read: {exc.strerror}",
                field=field,
                value=path,
                fix="make the file readable",
            ) from None
        return FileFacts(hash=fnv1a64(data), lines=line_count(data))

    def check_span(self, path: str, span: str | None, *, field: str = "span") -> None:
        if span is None:
            return
        bounds = parse_span(span)
        if bounds is None:
            raise PacketError(
                f"span {span!r} is not a line range",
                field=field,
                value=span,
                fix="write a line number N or a range A-B",
            )
        lines = self.facts(path).lines
        start, end = bounds
        if not 1 <= start <= end <= lines:
            raise PacketError(
                f"span {span!r} is outside file {path!r} line range 1-{lines}",
                field=field,
                value=span,
                fix=f"cite lines between 1 and {lines}",
            )
