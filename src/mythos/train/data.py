"""Text in, token shards out: read documents, train or load a BPE tokenizer, tokenize once into memmaps.

Shards are flat arrays of token ids with an EOS after every document, so packed training windows never glue two
documents together silently. Sampling a window is a pure function of (seed, index), which makes the data
position a single integer that a checkpoint can store and a resume can continue from.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .textio import ReadReport, binary_reason, iter_jsonl, safe_pieces, stream_text_file

EOS_TOKEN = "<|endoftext|>"
INDEX_NAME = "index.json"


def _text_of(record: dict, field: str, where: str) -> str:
    if field not in record:
        raise ValueError(
            f"{where}: record has no field {field!r} (fields: {sorted(record)}); pass --text-field"
        )
    return str(record[field])


def iter_documents(
    source: str | Path,
    text_field: str = "text",
    limit: int | None = None,
    report: ReadReport | None = None,
    stream: bool = False,
) -> Iterator[str] | Iterator[Iterator[str]]:
    """Yield documents from a text file, a folder, a JSONL or Parquet file, or ``hf:NAME[:CONFIG[:SPLIT]]``.

    A plain text file is one document; a folder is walked in sorted order so the corpus order is reproducible.
    ``stream=True`` yields each document as an iterator of pieces (consume it before the next document): a
    large file is then never held in memory whole. ``report`` collects what was read and skipped.
    """
    report = report if report is not None else ReadReport()
    count = 0
    for pieces in _iter_source(str(source), text_field, report):
        first = next(pieces, None)
        while first == "":
            first = next(pieces, None)
        if first is None:
            continue
        count += 1
        report.documents += 1
        if stream:
            yield _counted(first, pieces, report)
        else:
            text = "".join(_counted(first, pieces, report))
            yield text
        if limit is not None and count >= limit:
            return


def _counted(first: str, rest: Iterator[str], report: ReadReport) -> Iterator[str]:
    report.chars += len(first)
    yield first
    for piece in rest:
        report.chars += len(piece)
        yield piece


def _one(text: str) -> Iterator[str]:
    yield text


def _iter_source(
    source: str, text_field: str, report: ReadReport, top: bool = True
) -> Iterator[Iterator[str]]:
    """Each document as an iterator of its pieces."""
    if source.startswith("hf:"):
        for doc in _iter_hf(source[3:], text_field):
            yield _one(doc)
        return
    if source == STDLIB:
        for child in stdlib_files():
            report.files[child.suffix] += 1
            yield stream_text_file(child)
        return
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(
            f"data source {source!r} does not exist; give a file, a folder, {STDLIB} or hf:NAME"
        )
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            if _hidden(child, path):
                continue  # dot-folders, editor backups, __pycache__: never training text
            yield from _iter_source(str(child), text_field, report, top=False)
        return
    if path.suffix not in (".jsonl", ".parquet"):
        reason = binary_reason(path)
        if reason is not None:
            if top:
                raise ValueError(f"{path} is not a text file ({reason}); give UTF-8 text, .jsonl or .parquet")
            report.skipped.append((str(path), reason))
            return
    report.files[path.suffix] += 1
    if path.suffix == ".jsonl":
        for text in iter_jsonl(path, text_field):
            yield safe_pieces(text)
        return
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.ParquetFile(path)
        if text_field not in table.schema_arrow.names:
            raise ValueError(
                f"{path}: no column {text_field!r} (columns: {table.schema_arrow.names}); pass --text-field"
            )
        for batch in table.iter_batches(columns=[text_field]):
            yield from (safe_pieces(str(t)) for t in batch.column(0).to_pylist() if t is not None)
        return
    yield stream_text_file(path)


class MissingPackage(RuntimeError, ImportError):
    """An optional package a data source needs is not installed (bad input for the command: exit 2)."""


STDLIB = "stdlib:"
"""Data source naming the running interpreter's standard-library .py files: real text on any machine, no download."""


def stdlib_files() -> list[Path]:
    """The running interpreter's standard-library ``.py`` files in sorted order (about 12 MB on CPython 3.11);
    installed packages and the test suites (generated data, odd encodings) are left out."""
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"}
    return sorted(p for p in root.rglob("*.py") if p.is_file() and not skip & set(p.relative_to(root).parts))


def _hidden(child: Path, root: Path) -> bool:
    """Dot-files and dot-folders (.git, editor state) and ``__pycache__`` under a data folder are never read."""
    return any(part.startswith(".") or part == "__pycache__" for part in child.relative_to(root).parts)


def _iter_hf(spec: str, text_field: str) -> Iterator[str]:
    """Stream a Hugging Face dataset (e.g. ``hf:HuggingFaceFW/fineweb-edu:sample-10BT``) without downloading it all."""
    try:
        import datasets
    except ImportError as exc:
        raise MissingPackage(
            "hf: sources need the `datasets` package: `.venv/bin/pip install datasets` (and network access)"
        ) from exc
    name, _, rest = spec.partition(":")
    config, _, split = rest.partition(":")
    stream = datasets.load_dataset(name, config or None, split=split or "train", streaming=True)
    for record in stream:
        yield _text_of(record, text_field, f"hf:{spec}")


TRAIN_PIECE_CHARS = 1 << 16


def train_tokenizer(documents: Iterable[str], vocab_size: int, path: str | Path):
    """Train a byte-level BPE tokenizer with an EOS special token and save it as tokenizer.json."""
    if vocab_size < 260:
        raise ValueError(f"vocab_size must be >= 260 (256 bytes + specials), got {vocab_size}")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    seen = [0]

    def texts() -> Iterator[str]:  # small pieces: the trainer buffers 256 items from the iterator at a time
        for doc in documents:
            for piece in [doc] if isinstance(doc, str) else doc:
                seen[0] += len(piece)
                yield from safe_pieces(piece, TRAIN_PIECE_CHARS)

    tok.train_from_iterator(texts(), trainer=trainer)
    if not seen[0]:  # a 257-token tokenizer trained on nothing would be silently reused by the next run
        raise ValueError(
            "no text was read to train the tokenizer on: the data source is empty or holds no readable files "
            "(nothing was saved)"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tok.save(str(tmp))
    os.replace(tmp, path)
    return tok


def load_tokenizer(path: str | Path):
    """Load any local tokenizer.json (ours or a Hugging Face one)."""
    from tokenizers import Tokenizer

    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.exists():
        raise FileNotFoundError(
            f"tokenizer {str(path)!r} not found; train one with --vocab-size or give tokenizer.json"
        )
    return Tokenizer.from_file(str(path))


def eos_id(tokenizer) -> int:
    """The id that separates documents: our EOS, else a common end-of-text token the tokenizer already has."""
    for candidate in (EOS_TOKEN, "</s>", "<eos>", "<|end_of_text|>"):
        token_id = tokenizer.token_to_id(candidate)
        if token_id is not None:
            return int(token_id)
    raise ValueError("tokenizer has no end-of-text token (tried <|endoftext|>, </s>, <eos>, <|end_of_text|>)")


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class _ShardWriter:
    """Appends token ids to ``shard_XXXXX.bin`` files as they come (temp + rename per shard): memory stays flat."""

    def __init__(self, out: Path, dtype: type, shard_tokens: int) -> None:
        self.out, self.dtype, self.shard_tokens = out, dtype, shard_tokens
        self.shards: list[dict] = []
        self.fh = None
        self.count = 0

    def write(self, ids: np.ndarray) -> None:
        if self.fh is None:
            self.fh = open(self.out / f"shard_{len(self.shards):05d}.bin.tmp", "wb")  # noqa: SIM115
        self.fh.write(ids.astype(self.dtype).tobytes())
        self.count += len(ids)
        if self.count >= self.shard_tokens:
            self.close()

    def close(self) -> None:
        if self.fh is None:
            return
        name = f"shard_{len(self.shards):05d}.bin"
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.out / (name + ".tmp"), self.out / name)
        self.shards.append({"file": name, "tokens": self.count})
        self.fh, self.count = None, 0


def write_shards(
    documents: Iterable[str] | Iterable[Iterable[str]],
    tokenizer,
    out_dir: str | Path,
    shard_tokens: int = 50_000_000,
    batch_docs: int = 256,
    batch_chars: int = 1 << 20,
) -> dict:
    """Tokenize documents once into ``shard_XXXXX.bin`` memmaps plus an index; returns the index.

    A document is a string or an iterator of pieces (``iter_documents(..., stream=True)``); pieces are encoded
    in batches of about ``batch_chars`` and written straight to disk, so peak memory does not grow with the
    corpus or with one huge file. The index is written last, so a folder without one is an interrupted job,
    never a half-valid dataset.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = tokenizer.get_vocab_size()
    dtype = np.uint16 if vocab <= 65536 else np.uint32
    eos = eos_id(tokenizer)
    writer = _ShardWriter(out, dtype, shard_tokens)
    encode_batch = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)  # no offsets: less memory
    pending: list[str] = []
    ends: list[bool] = []  # an EOS follows this piece: it closes a document
    pending_chars = 0
    n_docs = 0

    def encode() -> None:
        nonlocal pending, ends, pending_chars
        for enc, end in zip(encode_batch(pending), ends, strict=True):
            ids = np.asarray(enc.ids + [eos] if end else enc.ids, dtype=np.int64)
            if len(ids):
                writer.write(ids)
        pending, ends, pending_chars = [], [], 0

    try:
        for doc in documents:
            for piece in [doc] if isinstance(doc, str) else doc:
                for part in safe_pieces(piece, max(4096, batch_chars // 8)):  # several per batch: parallel
                    pending.append(part)
                    ends.append(False)
                    pending_chars += len(part)
                    if pending_chars >= batch_chars:
                        encode()
            pending.append("")  # the document's end: encodes to nothing, then its EOS
            ends.append(True)
            n_docs += 1
            if len(pending) >= batch_docs:
                encode()
        if pending:
            encode()
        writer.close()
    finally:
        if writer.fh is not None:  # failed mid-shard: leave no temp file behind
            writer.fh.close()
            Path(writer.fh.name).unlink(missing_ok=True)
    shards = writer.shards
    if not shards:
        raise ValueError("no documents were read: the data source is empty")
    index = {
        "dtype": np.dtype(dtype).name,
        "vocab_size": vocab,
        "eos_id": eos,
        "documents": n_docs,
        "tokens": sum(s["tokens"] for s in shards),
        "shards": shards,
    }
    _atomic_write_text(out / INDEX_NAME, json.dumps(index, indent=2, sort_keys=True))
    return index


@dataclass
class TokenShards:
    """Read-only view over a shard folder as one long token array (memory-mapped, nothing loaded up front)."""

    root: Path
    index: dict
    arrays: list[np.ndarray]
    offsets: np.ndarray  # start of each shard in the concatenated stream

    @classmethod
    def open(cls, root: str | Path) -> TokenShards:
        root = Path(root)
        index_path = root / INDEX_NAME
        if not index_path.exists():
            raise FileNotFoundError(
                f"{root} has no {INDEX_NAME}: tokenize first (`mythos train --data … --shards {root}`)"
            )
        index = json.loads(index_path.read_text())
        arrays = [np.memmap(root / s["file"], dtype=index["dtype"], mode="r") for s in index["shards"]]
        offsets = np.cumsum([0] + [len(a) for a in arrays])
        return cls(root, index, arrays, offsets)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def window(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start+length) across shard boundaries, as int64."""
        if start < 0 or start + length > len(self):
            raise IndexError(f"window [{start}, {start + length}) outside 0..{len(self)}")
        pieces = []
        pos, end = start, start + length
        while pos < end:
            shard = int(np.searchsorted(self.offsets, pos, side="right") - 1)
            local = pos - int(self.offsets[shard])
            take = min(end - pos, len(self.arrays[shard]) - local)
            pieces.append(np.asarray(self.arrays[shard][local : local + take], dtype=np.int64))
            pos += take
        return np.concatenate(pieces)


class WindowSampler:
    """Maps a global sample index to a training window: a fresh seeded permutation of windows every epoch.

    Stateless by design: the data position of a run is just how many samples it has consumed.
    """

    def __init__(self, shards: TokenShards, seq_len: int, seed: int) -> None:
        self.shards, self.seq_len, self.seed = shards, seq_len, seed
        self.n_windows = (len(shards) - 1) // seq_len
        if self.n_windows < 1:
            raise ValueError(
                f"dataset has {len(shards)} tokens, fewer than one window of seq_len+1={seq_len + 1}"
            )
        self._perm_epoch = -1
        self._perm: np.ndarray | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n_windows)
            self._perm_epoch = epoch
        assert self._perm is not None
        return self._perm

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        epoch, slot = divmod(index, self.n_windows)
        start = int(self._permutation(epoch)[slot]) * self.seq_len
        tokens = self.shards.window(start, self.seq_len + 1)
        return tokens[:-1], tokens[1:]

    def batch(self, first_index: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        pairs = [self.sample(first_index + i) for i in range(batch_size)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
