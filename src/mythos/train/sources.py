"""Batch sources: each step's batch is a pure function of (seed, step, micro-step, rank).

That makes the data position of a run just its step counter, so resuming continues the exact stream, and a
global batch split over N ranks is the same set of samples as one process drawing the whole global batch.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import TrainConfig
from .data import (
    TokenShards,
    WindowSampler,
    iter_documents,
    load_tokenizer,
    train_tokenizer,
    write_shards,
)
from .tasks import IGNORE, make_task
from .textio import ReadReport


@dataclass
class Batch:
    inputs: torch.Tensor
    targets: torch.Tensor  # IGNORE where unsupervised


class TaskSource:
    """Synthetic reasoning programs; the global batch is drawn once and each rank takes its slice."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.task = make_task(cfg.task, **cfg.task_options)
        self.seed, self.max_hops, self.grad_accum = cfg.seed, cfg.train_hops, cfg.grad_accum
        self.vocab_size, self.seq_len = self.task.vocab_size, self.task.seq_len
        self.tokens_per_sample = self.seq_len
        self._cached: tuple[int, object] | None = None

    def batch(self, step: int, micro: int, rank: int, world: int, batch_size: int) -> Batch:
        """Rows of the step's global batch (micro-steps × ranks × batch): accumulation == a bigger batch."""
        if self._cached is None or self._cached[0] != step:
            rng = np.random.default_rng([self.seed, 1, step, 0])
            self._cached = (step, self.task.sample(batch_size * world * self.grad_accum, rng, self.max_hops))
        full = self._cached[1]
        first = (micro * world + rank) * batch_size
        rows = slice(first, first + batch_size)
        return Batch(torch.from_numpy(full.inputs[rows]), torch.from_numpy(full.targets[rows]))


HELDOUT_DIR = "heldout"
"""Sub-folder of a shard folder holding the held-out documents (never seen in training)."""


def is_heldout(document: str, fraction: float) -> bool:
    """Whether a whole document is held out: a hash of its text, so the split is fixed whatever the order."""
    digest = hashlib.blake2b(document.encode("utf-8", errors="replace"), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64 < fraction


def split_documents(
    documents: Iterable[str | Iterator[str]], fraction: float, heldout: bool
) -> Iterator[str | Iterator[str]]:
    """One side of the held-out split by whole documents/files.

    Documents may be strings or streamed pieces (``iter_documents(..., stream=True)``); a streamed document is
    judged by the hash of its first piece (the whole text for any document under ~1 MB), so it is never held
    in memory. A source that is a single document (one text file) cannot be split by document: its last
    ``fraction`` (cut at a line break) is held out instead, which reads that one document whole. When the hash
    holds out no document, the last one is.
    """
    docs = iter(documents)
    first, second = next(docs, None), next(docs, None)
    if first is None:
        return
    if second is None:
        if fraction <= 0:
            if not heldout:
                yield first
            return
        text = first if isinstance(first, str) else "".join(first)
        cut = text.rfind("\n", 0, int(len(text) * (1 - fraction)))
        cut = cut + 1 if cut > 0 else int(len(text) * (1 - fraction))
        part = text[cut:] if heldout else text[:cut]
        if part:
            yield part
        return
    if fraction <= 0:
        if not heldout:
            yield from itertools.chain((first, second), docs)
        return

    def keyed(doc: str | Iterator[str]) -> tuple[str, str | Iterator[str]]:
        if isinstance(doc, str):
            return doc, doc
        head = next(doc, "")
        return head, itertools.chain((head,), doc)

    any_held = False
    key, pending = keyed(first)
    for doc in itertools.chain((second,), docs):
        held = is_heldout(key, fraction)
        any_held |= held
        if held == heldout:
            yield pending
        elif not isinstance(pending, str):
            for _ in pending:  # drain the other side's pieces so a streamed reader's report stays complete
                pass
        key, pending = keyed(doc)
    # the last document is held out also when the hash picked none (small corpora): never an empty split
    if (is_heldout(key, fraction) or not any_held) == heldout:
        yield pending


class TextSource:
    """Next-token prediction over memory-mapped token shards; samples are indexed globally."""

    def __init__(self, cfg: TrainConfig, log=print) -> None:
        shard_dir = Path(cfg.shards) if cfg.shards else Path(cfg.out) / "shards"
        if not (shard_dir / "index.json").exists():
            if cfg.data is None:
                raise FileNotFoundError(f"{shard_dir} holds no shards and no --data was given to build them")
            tok_path = Path(cfg.tokenizer) if cfg.tokenizer else shard_dir / "tokenizer.json"

            def docs(heldout: bool, report: ReadReport):
                streamed = iter_documents(
                    cfg.data, cfg.text_field, cfg.max_documents, report=report, stream=True
                )
                return split_documents(streamed, cfg.heldout, heldout)

            if tok_path.exists():
                tokenizer = load_tokenizer(tok_path)
            else:
                log(f"training a {cfg.vocab_size}-token BPE tokenizer on {cfg.data}")
                seen = ReadReport()
                try:
                    tokenizer = train_tokenizer(docs(False, seen), cfg.vocab_size, tok_path)
                except ValueError as exc:  # say what was (not) read: binary files, wrong data
                    raise ValueError(f"{exc}; {cfg.data}: {seen.summary()}") from None
            if cfg.heldout > 0:  # written before the training index: an index means both halves exist
                log(
                    f"holding out {cfg.heldout:.0%} of the documents of {cfg.data} in {shard_dir / HELDOUT_DIR}"
                )
                write_shards(docs(True, ReadReport()), tokenizer, shard_dir / HELDOUT_DIR)
            log(f"tokenizing {cfg.data} into {shard_dir}")
            report = ReadReport()  # streamed: memory stays flat whatever the file sizes
            write_shards(docs(False, report), tokenizer, shard_dir)
            log(report.summary())
        candidates = [Path(cfg.tokenizer)] if cfg.tokenizer else []
        candidates.append(shard_dir / "tokenizer.json")
        # travels with every checkpoint, so `mythos generate/serve` can speak text to the model
        self.tokenizer_path = next((path for path in candidates if path.is_file()), None)
        self.shards = TokenShards.open(shard_dir)
        self.vocab_size = int(self.shards.index["vocab_size"])
        self.seq_len = cfg.seq_len
        self.tokens_per_sample = cfg.seq_len
        self.sampler = WindowSampler(self.shards, cfg.seq_len, cfg.seed)
        self.grad_accum = cfg.grad_accum

    def batch(self, step: int, micro: int, rank: int, world: int, batch_size: int) -> Batch:
        first = ((step * self.grad_accum + micro) * world + rank) * batch_size
        inputs, targets = self.sampler.batch(first, batch_size)
        return Batch(torch.from_numpy(inputs), torch.from_numpy(targets))


def make_source(cfg: TrainConfig, log=print) -> TaskSource | TextSource:
    return TaskSource(cfg) if cfg.task else TextSource(cfg, log)


__all__ = ["Batch", "TaskSource", "TextSource", "make_source", "IGNORE"]
