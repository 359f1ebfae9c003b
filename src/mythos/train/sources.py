"""Batch sources: each step's batch is a pure function of (seed, step, micro-step, rank).

That makes the data position of a run just its step counter, so resuming continues the exact stream, and a
global batch split over N ranks is the same set of samples as one process drawing the whole global batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import TrainConfig
from .data import (
    TEXT_SUFFIXES,
    TokenShards,
    WindowSampler,
    iter_documents,
    load_tokenizer,
    train_tokenizer,
    write_shards,
)
from .tasks import IGNORE, make_task
from .textio import ReadReport

SUFFIXES_READ = TEXT_SUFFIXES + (".jsonl", ".parquet")


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


class TextSource:
    """Next-token prediction over memory-mapped token shards; samples are indexed globally."""

    def __init__(self, cfg: TrainConfig, log=print) -> None:
        shard_dir = Path(cfg.shards) if cfg.shards else Path(cfg.out) / "shards"
        if not (shard_dir / "index.json").exists():
            if cfg.data is None:
                raise FileNotFoundError(f"{shard_dir} holds no shards and no --data was given to build them")
            tok_path = Path(cfg.tokenizer) if cfg.tokenizer else shard_dir / "tokenizer.json"
            if tok_path.exists():
                tokenizer = load_tokenizer(tok_path)
            else:
                log(f"training a {cfg.vocab_size}-token BPE tokenizer on {cfg.data}")
                seen = ReadReport()
                try:
                    tokenizer = train_tokenizer(
                        iter_documents(cfg.data, cfg.text_field, cfg.max_documents, report=seen, stream=True),
                        cfg.vocab_size,
                        tok_path,
                    )
                except ValueError as exc:  # say what was (not) read: the usual cause is the wrong suffixes
                    raise ValueError(f"{exc}; {cfg.data}: {seen.summary(SUFFIXES_READ)}") from None
            log(f"tokenizing {cfg.data} into {shard_dir}")
            report = ReadReport()  # streamed: memory stays flat whatever the file sizes
            docs = iter_documents(cfg.data, cfg.text_field, cfg.max_documents, report=report, stream=True)
            write_shards(docs, tokenizer, shard_dir)
            log(report.summary(SUFFIXES_READ))
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
