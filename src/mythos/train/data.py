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

EOS_TOKEN = "<|endoftext|>"
TEXT_SUFFIXES = (".txt", ".md", ".text")
INDEX_NAME = "index.json"


def _text_of(record: dict, field: str, where: str) -> str:
    if field not in record:
        raise ValueError(
            f"{where}: record has no field {field!r} (fields: {sorted(record)}); pass --text-field"
        )
    return str(record[field])


def iter_documents(source: str | Path, text_field: str = "text", limit: int | None = None) -> Iterator[str]:
    """Yield documents from a text file, a folder, a JSONL or Parquet file, or ``hf:NAME[:CONFIG[:SPLIT]]``.

    A plain text file is one document; a folder is walked in sorted order so the corpus order is reproducible.
    """
    count = 0
    for doc in _iter_source(str(source), text_field):
        if not doc:
            continue
        yield doc
        count += 1
        if limit is not None and count >= limit:
            return


def _iter_source(source: str, text_field: str) -> Iterator[str]:
    if source.startswith("hf:"):
        yield from _iter_hf(source[3:], text_field)
        return
    if source == STDLIB:
        for child in stdlib_files():
            yield child.read_text(encoding="utf-8", errors="replace")
        return
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(
            f"data source {source!r} does not exist; give a file, a folder, {STDLIB} or hf:NAME"
        )
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            if _walked(child, path):
                yield from _iter_source(str(child), text_field)
        return
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    yield _text_of(json.loads(line), text_field, f"{path}:{lineno}")
        return
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.ParquetFile(path)
        if text_field not in table.schema_arrow.names:
            raise ValueError(
                f"{path}: no column {text_field!r} (columns: {table.schema_arrow.names}); pass --text-field"
            )
        for batch in table.iter_batches(columns=[text_field]):
            yield from (str(t) for t in batch.column(0).to_pylist() if t is not None)
        return
    yield path.read_text(encoding="utf-8", errors="replace")


STDLIB = "stdlib:"
"""Data source naming the running interpreter's standard-library .py files: real text on any machine, no download."""


def stdlib_files() -> list[Path]:
    """The running interpreter's standard-library ``.py`` files in sorted order (about 12 MB on CPython 3.11);
    installed packages and the test suites (generated data, odd encodings) are left out."""
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"}
    return sorted(p for p in root.rglob("*.py") if p.is_file() and not skip & set(p.relative_to(root).parts))


def _walked(child: Path, root: Path) -> bool:
    """A folder's file is read when it is text: any suffix (.py, .c, …), no hidden parts, no NUL byte up front."""
    if any(part.startswith(".") or part == "__pycache__" for part in child.relative_to(root).parts):
        return False
    if child.suffix in TEXT_SUFFIXES + (".jsonl", ".parquet"):
        return True
    try:
        with child.open("rb") as fh:
            head = fh.read(8192)
    except OSError:
        return False
    return b"\0" not in head


def _iter_hf(spec: str, text_field: str) -> Iterator[str]:
    """Stream a Hugging Face dataset (e.g. ``hf:HuggingFaceFW/fineweb-edu:sample-10BT``) without downloading it all."""
    try:
        import datasets
    except ImportError as exc:
        raise RuntimeError(
            "hf: sources need the `datasets` package: `.venv/bin/pip install datasets` (and network access)"
        ) from exc
    name, _, rest = spec.partition(":")
    config, _, split = rest.partition(":")
    stream = datasets.load_dataset(name, config or None, split=split or "train", streaming=True)
    for record in stream:
        yield _text_of(record, text_field, f"hf:{spec}")


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
    tok.train_from_iterator(documents, trainer=trainer)
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


def write_shards(
    documents: Iterable[str],
    tokenizer,
    out_dir: str | Path,
    shard_tokens: int = 50_000_000,
    batch_docs: int = 256,
) -> dict:
    """Tokenize documents once into ``shard_XXXXX.bin`` memmaps plus an index; returns the index.

    The index is written last, so a folder without one is an interrupted job, never a half-valid dataset.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = tokenizer.get_vocab_size()
    dtype = np.uint16 if vocab <= 65536 else np.uint32
    eos = eos_id(tokenizer)
    shards: list[dict] = []
    buffer: list[np.ndarray] = []
    buffered = 0
    n_docs = 0

    def flush() -> None:
        nonlocal buffer, buffered
        if not buffered:
            return
        name = f"shard_{len(shards):05d}.bin"
        data = np.concatenate(buffer).astype(dtype)
        tmp = out / (name + ".tmp")
        data.tofile(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out / name)
        shards.append({"file": name, "tokens": int(len(data))})
        buffer, buffered = [], 0

    def encode(batch: list[str]) -> None:
        nonlocal buffered, n_docs
        for enc in tokenizer.encode_batch(batch):
            ids = np.asarray(enc.ids + [eos], dtype=np.int64)
            buffer.append(ids)
            buffered += len(ids)
            n_docs += 1
            if buffered >= shard_tokens:
                flush()

    pending: list[str] = []
    for doc in documents:
        pending.append(doc)
        if len(pending) >= batch_docs:
            encode(pending)
            pending = []
    if pending:
        encode(pending)
    flush()
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
