"""Synthetic multi-hop reasoning tasks whose difficulty is a known number of sequential steps.

Every task labels each supervised position with its *depth*: how many dependent steps separate the answer from
the input. A looped model that performs one step per loop needs at least that many loops, so accuracy against
(depth, loops) shows whether extra loops buy extra reasoning. Sequences keep a fixed length across depths so that
a model tested on deeper chains is not also tested on unseen positions.

Batches are pure functions of a numpy Generator, so a seed and a step number fully determine them.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

PAD, BOS = 0, 1
IGNORE = -100
FIRST_TASK_TOKEN = 2


@dataclass(frozen=True)
class TaskBatch:
    """Inputs, per-position targets (IGNORE where unsupervised) and each target's depth (-1 where none)."""

    inputs: np.ndarray  # (batch, seq) int64
    targets: np.ndarray  # (batch, seq) int64
    depth: np.ndarray  # (batch, seq) int64


class Task(Protocol):
    """What a synthetic task provides: a name, one help line, its vocabulary and sequence shape, and batches.

    Implementations register in ``TASKS``; ``mythos train --task`` and ``--task-option`` are built from it.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    vocab_size: int
    seq_len: int
    max_depth: int

    def sample(
        self, batch_size: int, rng: np.random.Generator, max_hops: int, long_hops: int | None = None
    ) -> TaskBatch: ...


def _check_positive(name: str, value: int, minimum: int = 1) -> None:
    if not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


class VariableBinding:
    """Chains of assignments ``a=3; b=a; c=b; …``, several chains interleaved in one program.

    Each statement is two tokens, ``VAR SRC`` where SRC is a digit or an earlier variable. At the SRC position
    the model must output the digit the variable ends up holding. A statement's depth is its number of hops back
    to a literal, so resolving it takes one lookup per hop: position p can only learn its value after its
    source's value is known, which is exactly one attention hop per loop.
    """

    name = "binding"
    summary = "chains of assignments a=3; b=a; … (depth = hops back to a literal)"

    def __init__(self, n_statements: int = 24, n_values: int = 10, n_names: int = 40) -> None:
        _check_positive("n_statements", n_statements, 2)
        _check_positive("n_values", n_values, 2)
        if n_names < n_statements:
            raise ValueError(
                f"n_names must be >= n_statements ({n_statements}) so every variable is new, got {n_names}"
            )
        self.n_statements, self.n_values, self.n_names = n_statements, n_values, n_names
        self.value_base = FIRST_TASK_TOKEN
        self.name_base = self.value_base + n_values
        self.vocab_size = self.name_base + n_names
        self.seq_len = 1 + 2 * n_statements
        self.max_depth = n_statements - 1

    def _chain_lengths(self, rng: np.random.Generator, max_hops: int, long_hops: int | None) -> list[int]:
        """Hop counts of the chains in one program, filling exactly n_statements statements."""
        lengths: list[int] = []
        room = self.n_statements
        if long_hops is not None:
            lengths.append(long_hops)
            room -= long_hops + 1
        while room > 0:
            hops = int(rng.integers(0, max_hops + 1))
            hops = min(hops, room - 1)
            lengths.append(hops)
            room -= hops + 1
        return lengths

    def _program(self, rng: np.random.Generator, max_hops: int, long_hops: int | None):
        lengths = self._chain_lengths(rng, max_hops, long_hops)
        order = np.repeat(np.arange(len(lengths)), [h + 1 for h in lengths])
        rng.shuffle(order)
        names = rng.permutation(self.n_names)[: self.n_statements]
        roots = rng.integers(0, self.n_values, size=len(lengths))
        progress = [0] * len(lengths)
        last_name = [-1] * len(lengths)
        tokens = [BOS]
        targets = [IGNORE]
        depth = [-1]
        for i, chain in enumerate(order):
            var = int(names[i])
            hop = progress[chain]
            src = self.value_base + int(roots[chain]) if hop == 0 else self.name_base + last_name[chain]
            tokens += [self.name_base + var, src]
            targets += [IGNORE, self.value_base + int(roots[chain])]
            depth += [-1, hop]
            progress[chain] += 1
            last_name[chain] = var
        return tokens, targets, depth

    def sample(
        self, batch_size: int, rng: np.random.Generator, max_hops: int, long_hops: int | None = None
    ) -> TaskBatch:
        """Programs whose chains have 0..max_hops hops; ``long_hops`` adds one chain of exactly that many."""
        _check_positive("batch_size", batch_size)
        if not 0 <= max_hops <= self.max_depth:
            raise ValueError(
                f"max_hops must be in 0..{self.max_depth} for {self.n_statements} statements, got {max_hops}"
            )
        if long_hops is not None and not 0 <= long_hops <= self.max_depth:
            raise ValueError(f"long_hops must be in 0..{self.max_depth}, got {long_hops}")
        rows = [self._program(rng, max_hops, long_hops) for _ in range(batch_size)]
        return TaskBatch(*(np.array([r[k] for r in rows], dtype=np.int64) for k in range(3)))


class GraphWalk:
    """k-hop walk on a random functional graph given as a shuffled edge list.

    The program lists every edge ``u v`` (u's successor is v) in random order, then queries ``START k``; the
    answer at the ``k`` position is the node reached after k hops. Depth is k. Solving it takes k successive
    edge lookups, but the model must also count the hops, so it is harder than :class:`VariableBinding`.
    """

    name = "graph"
    summary = "k-hop walks on a random functional graph (depth = k)"

    def __init__(self, n_nodes: int = 12, n_queries: int = 6, max_k: int = 16) -> None:
        _check_positive("n_nodes", n_nodes, 2)
        _check_positive("n_queries", n_queries)
        _check_positive("max_k", max_k)
        self.n_nodes, self.n_queries, self.max_k = n_nodes, n_queries, max_k
        self.node_base = FIRST_TASK_TOKEN
        self.hop_base = self.node_base + n_nodes
        self.vocab_size = self.hop_base + max_k + 1
        self.seq_len = 1 + 2 * n_nodes + 2 * n_queries
        self.max_depth = max_k

    def sample(
        self, batch_size: int, rng: np.random.Generator, max_hops: int, long_hops: int | None = None
    ) -> TaskBatch:
        """Queries with 1..max_hops hops; ``long_hops`` makes the first query exactly that long."""
        _check_positive("batch_size", batch_size)
        if not 1 <= max_hops <= self.max_k:
            raise ValueError(f"max_hops must be in 1..{self.max_k}, got {max_hops}")
        if long_hops is not None and not 1 <= long_hops <= self.max_k:
            raise ValueError(f"long_hops must be in 1..{self.max_k}, got {long_hops}")
        n = self.n_nodes
        inputs = np.zeros((batch_size, self.seq_len), dtype=np.int64)
        targets = np.full_like(inputs, IGNORE)
        depth = np.full_like(inputs, -1)
        inputs[:, 0] = BOS
        for b in range(batch_size):
            succ = rng.integers(0, n, size=n)
            edges = rng.permutation(n)
            inputs[b, 1 : 1 + 2 * n : 2] = self.node_base + edges
            inputs[b, 2 : 2 + 2 * n : 2] = self.node_base + succ[edges]
            for q in range(self.n_queries):
                k = long_hops if (q == 0 and long_hops is not None) else int(rng.integers(1, max_hops + 1))
                node = start = int(rng.integers(0, n))
                for _ in range(k):
                    node = int(succ[node])
                pos = 1 + 2 * n + 2 * q
                inputs[b, pos] = self.node_base + start
                inputs[b, pos + 1] = self.hop_base + k
                targets[b, pos + 1] = self.node_base + node
                depth[b, pos + 1] = k
        return TaskBatch(inputs, targets, depth)


class CarryChain:
    """Addition of two numbers written least-significant digit first, digit pairs interleaved.

    At each second digit of a pair the model outputs that digit of the sum. The digit depends on a carry that
    may ripple from far below through a run of pairs summing to 9; the depth of a position is how many pairs it
    must look back to settle its carry, so long runs of 9-sums force long sequential chains. ``nine_rate``
    plants 9-sums so that long chains are common enough to learn from (uniform digits give 9 only 10% of the time).
    """

    name = "carry"
    summary = "multi-digit addition, digits least significant first (depth = carry-chain length)"

    def __init__(self, n_digits: int = 20, nine_rate: float = 0.4) -> None:
        _check_positive("n_digits", n_digits, 2)
        if not 0.0 <= nine_rate < 1.0:
            raise ValueError(
                f"nine_rate must be in [0, 1) (share of digit pairs summing to 9), got {nine_rate}"
            )
        self.n_digits, self.nine_rate = n_digits, nine_rate
        self.digit_base = FIRST_TASK_TOKEN
        self.vocab_size = self.digit_base + 10
        self.seq_len = 1 + 2 * n_digits
        self.max_depth = n_digits

    @staticmethod
    def _depths(pair_sums: np.ndarray) -> np.ndarray:
        """Look-back distance that settles each position's incoming carry (1 = the pair just below)."""
        depths = np.zeros(len(pair_sums), dtype=np.int64)
        for i in range(len(pair_sums)):
            j = i - 1
            while j >= 0 and pair_sums[j] == 9:
                j -= 1
            depths[i] = i - j if j >= 0 else i + 1
        return depths

    def sample(
        self, batch_size: int, rng: np.random.Generator, max_hops: int, long_hops: int | None = None
    ) -> TaskBatch:
        """Random additions whose 9-runs are at most ``max_hops - 1`` long; ``long_hops`` plants one run."""
        _check_positive("batch_size", batch_size)
        if not 1 <= max_hops <= self.n_digits:
            raise ValueError(f"max_hops must be in 1..{self.n_digits}, got {max_hops}")
        if long_hops is not None and not 1 <= long_hops <= self.n_digits:
            raise ValueError(f"long_hops must be in 1..{self.n_digits}, got {long_hops}")
        d = self.n_digits
        inputs = np.zeros((batch_size, self.seq_len), dtype=np.int64)
        targets = np.full_like(inputs, IGNORE)
        depth = np.full_like(inputs, -1)
        inputs[:, 0] = BOS
        for b in range(batch_size):
            a = rng.integers(0, 10, size=d)
            c = rng.integers(0, 10, size=d)
            nines = rng.random(d) < self.nine_rate  # random digits rarely chain carries; plant 9-sums
            c = np.where(nines, 9 - a, c)
            sums = a + c
            run = 0
            for i in range(d):  # break runs of 9-sums longer than allowed, so training depth stays bounded
                run = run + 1 if sums[i] == 9 else 0
                if run > max_hops - 1:
                    c[i] = (c[i] + 1) % 10
                    sums[i] = a[i] + c[i]
                    run = 0
            if long_hops is not None:
                start = int(rng.integers(0, d - long_hops + 1))
                stop = start + long_hops - 1
                for i in range(start, stop):
                    c[i] = 9 - a[i]
                if start > 0:  # a generator below the run makes the carry actually ripple through it
                    a[start - 1], c[start - 1] = 9, int(rng.integers(1, 10))
                sums = a + c
            carry = 0
            out = np.zeros(d, dtype=np.int64)
            for i in range(d):
                out[i] = (sums[i] + carry) % 10
                carry = int(sums[i] + carry >= 10)
            inputs[b, 1::2] = self.digit_base + a
            inputs[b, 2::2] = self.digit_base + c
            targets[b, 2::2] = self.digit_base + out
            depth[b, 2::2] = self._depths(sums)
        return TaskBatch(inputs, targets, depth)


TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (VariableBinding, GraphWalk, CarryChain)}


def task_options(name: str) -> dict[str, object]:
    """A task's options and their defaults (its constructor's keyword arguments)."""
    params = inspect.signature(TASKS[name].__init__).parameters
    return {p.name: p.default for p in params.values() if p.name != "self"}


def tasks_help() -> str:
    """One line per registered task, with its options: the help text of ``--task``."""
    lines = []
    for name, cls in TASKS.items():
        opts = ", ".join(f"{k}={v}" for k, v in task_options(name).items())
        lines.append(f"{name}: {cls.summary} [{opts}]")
    return "; ".join(lines)


def make_task(name: str, **kwargs) -> Task:
    """Build a task by name; unknown names list what exists."""
    if name not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {name!r}")
    valid = list(task_options(name))
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"task option {unknown[0]!r} is not an option of task {name!r}; valid: {valid}")
    return TASKS[name](**kwargs)


def accuracy_by_depth(predictions: np.ndarray, batch: TaskBatch, max_depth: int) -> np.ndarray:
    """Fraction of supervised positions answered correctly at each depth 0..max_depth (NaN where none)."""
    correct = (predictions == batch.targets) & (batch.targets != IGNORE)
    out = np.full(max_depth + 1, np.nan)
    for d in range(max_depth + 1):
        mask = batch.depth == d
        if mask.any():
            out[d] = correct[mask].mean()
    return out
