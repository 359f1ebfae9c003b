"""Reading training text in bounded memory: files stream in chunks cut where tokenization cannot change.

Memory while tokenizing must not grow with file size (a 36 MB file once peaked at 6.7 GB: it was read whole and
encoded as one document). Text is read in ~1 MB chunks and cut only between a non-space character and the
whitespace after it (preferably a newline): no pre-token of byte-level BPE (GPT-2's pattern) spans such a
point, so encoding the pieces and concatenating the ids gives exactly the ids of the whole document.

It also says what it read: :class:`ReadReport` counts files per suffix and names what it skipped (binary files
under a text suffix, unknown suffixes) so a run never trains on, or silently ignores, the wrong files.
"""

from __future__ import annotations

import codecs
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CHUNK_CHARS = 1 << 20  # target piece size: large enough for fast batched encoding, small enough to stay flat
SNIFF_BYTES = 8192
# Pre-tokenizer boundaries: no pattern continues a non-space into whitespace. A cut *after* whitespace is not
# safe (a trailing "\n\n" is one pre-token at the end of a piece, two before a word).
_SAFE_CUTS = (re.compile(r"(?<=\S)(?=\n)"), re.compile(r"(?<=\S)(?=\s)"))


@dataclass
class ReadReport:
    """What a walk over a data source read and skipped (filled in as documents are consumed)."""

    files: Counter = field(default_factory=Counter)  # suffix -> files read
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    documents: int = 0
    chars: int = 0

    def summary(self, suffixes: tuple[str, ...] = ()) -> str:
        read = ", ".join(f"{n} {s or '(no suffix)'}" for s, n in sorted(self.files.items())) or "none"
        line = f"read {sum(self.files.values())} files ({read}), {self.documents} documents, {self.chars:,} chars"
        if suffixes:
            line += f"; suffixes read: {' '.join(suffixes)}"
        if self.skipped:
            reasons = Counter(why.split(":")[0] for _, why in self.skipped)
            line += f"; skipped {len(self.skipped)} files (" + ", ".join(
                f"{n} {r}" for r, n in reasons.items()
            )
            line += f"; first: {self.skipped[0][0]})"
        return line


def binary_reason(path: Path) -> str | None:
    """Why a file is not text (NUL bytes, or not UTF-8 in its first 8 KB), or None for text."""
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if b"\x00" in head:
        return "binary: NUL bytes"
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = decoder.decode(
        head
    )  # a multi-byte character cut at the sniff boundary stays pending, not an error
    bad = text.count("\ufffd")
    if bad and bad > len(head) // 100:
        return f"binary: {bad} undecodable bytes in the first {len(head)} (not UTF-8 text)"
    return None


def safe_pieces(text: str, target: int = CHUNK_CHARS) -> Iterator[str]:
    """Cut ``text`` into pieces of about ``target`` chars whose encodings concatenate to the whole's."""
    start = 0
    while len(text) - start > target:
        cut = -1
        window = text[start + target // 2 : start + target]
        for pattern in _SAFE_CUTS:
            matches = [m.start() for m in pattern.finditer(window)]
            if matches and matches[-1] > 0:
                cut = start + target // 2 + matches[-1]
                break
        if cut <= start:  # one enormous token-free run: no exact cut exists, a hard cut is the only bound
            cut = start + target
        yield text[start:cut]
        start = cut
    if start < len(text):
        yield text[start:]


def stream_text_file(path: Path, target: int = CHUNK_CHARS) -> Iterator[str]:
    """A text file as pieces (see :func:`safe_pieces`), read ``target`` bytes at a time; bad UTF-8 -> U+FFFD."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    carry = ""
    with open(path, "rb") as fh:
        while True:
            raw = fh.read(target)
            carry += decoder.decode(raw, final=not raw)
            if not raw:
                break
            if len(carry) > target:
                pieces = list(safe_pieces(carry, target))
                carry = pieces.pop()  # the tail may still continue in the next read
                yield from pieces
    if carry:
        yield from safe_pieces(carry, target)


def iter_jsonl(path: Path, text_field: str) -> Iterator[str]:
    """The ``text_field`` of each JSONL line; a bad line is an error naming file, line and column."""
    with path.open(encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno}); every line of a "
                    ".jsonl file must be one JSON object"
                ) from None
            if not isinstance(record, dict):
                raise ValueError(
                    f"{path}:{lineno}: a JSON {type(record).__name__}, not an object with a {text_field!r} field"
                )
            if text_field not in record:
                raise ValueError(
                    f"{path}:{lineno}: record has no field {text_field!r} (fields: {sorted(record)}); "
                    "pass --text-field"
                )
            yield str(record[text_field])
