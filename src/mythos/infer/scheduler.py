"""Continuous batching: one thread owns the engine; requests join and leave the running batch per step.

Active requests always occupy slots ``0..n-1`` of the cache, so a decode step is one call over a
contiguous block (cache views, no gathers). When a request finishes or its client goes away, the last
active slot is moved into the hole (one copy of that sequence's cache). New requests are prefilled
together, in the slots after the active ones, between decode steps.

Each request has its own sampling settings, loop count, per-token exit criterion and seed; results flow back through a queue of
events: ``("token", id)``, then ``("done", reason)`` with reason ``stop`` or ``length``, or
``("error", message)``.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from dataclasses import dataclass, field

import torch

from mythos.infer.engine import Engine
from mythos.infer.sampling import SamplingParams, sample
from mythos.model.exits import ExitCriterion


@dataclass
class Request:
    prompt: list[int]
    max_new_tokens: int
    sampling: SamplingParams = field(default_factory=SamplingParams)
    n_loops: int | None = None
    stop_ids: frozenset[int] = frozenset()
    events: queue.Queue = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    generated: list[int] = field(default_factory=list)
    id: int = 0
    exit: ExitCriterion | None = None  # per-token exit (None: fixed depth, or the engine's own exit)
    loops_run: list[int] = field(default_factory=list)  # loops the forward producing each generated token ran

    def cancel(self) -> None:
        """Ask the scheduler to drop this request; its slot is freed before the next decode step."""
        self.cancelled.set()


class Scheduler:
    """Owns an :class:`Engine` on a background thread and batches whatever requests are live."""

    def __init__(self, engine: Engine, max_waiting: int = 256) -> None:
        self.engine = engine
        self.slots = engine.cache.slots
        self.max_waiting = max_waiting
        self._waiting: queue.Queue[Request] = queue.Queue()
        self._active: list[Request] = []
        self._generators: dict[int, torch.Generator | None] = {}
        self._ids = itertools.count(1)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.steps = 0
        self.tokens_out = 0

    # ------------------------------------------------------------------ client side
    def validate(self, prompt: list[int], max_new_tokens: int, n_loops: int | None) -> None:
        """Raise ValueError (naming the field) for a request the engine cannot run."""
        if not prompt:
            raise ValueError("prompt is empty: give at least one token of text")
        if len(prompt) >= self.engine.max_len:
            raise ValueError(
                f"prompt has {len(prompt)} tokens but the context holds {self.engine.max_len}: shorten the prompt"
            )
        if max_new_tokens < 1:
            raise ValueError(f"max_tokens={max_new_tokens} is invalid: use an integer >= 1")
        if n_loops is not None and not 1 <= n_loops <= self.engine.max_loops:
            raise ValueError(f"n_loops={n_loops} is invalid: use an integer in 1..{self.engine.max_loops}")

    def submit(self, request: Request) -> Request:
        self.validate(request.prompt, request.max_new_tokens, request.n_loops)
        if request.exit is not None and not isinstance(request.exit, ExitCriterion):
            raise ValueError(
                f"exit={request.exit!r} is invalid: give CRITERION:THRESHOLD parsed by ExitCriterion.parse, "
                "e.g. 'kl:0.01', 'delta:0.05' or 'argmax:2'"
            )
        if self._waiting.qsize() >= self.max_waiting:
            raise OverflowError(f"{self.max_waiting} requests already waiting: retry later")
        request.id = next(self._ids)
        self._waiting.put(request)
        self._wake.set()
        return request

    @property
    def active(self) -> int:
        return len(self._active)

    @property
    def waiting(self) -> int:
        return self._waiting.qsize()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Scheduler:
        self._thread = threading.Thread(target=self._run, name="mythos-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while not self._stop.is_set():
            try:
                self._drop_cancelled()
                self._admit()
                if self._active:
                    self._decode()
                else:
                    self._wake.wait(timeout=0.1)
                    self._wake.clear()
            except Exception as exc:  # a failed step fails its requests, never the server
                for req in self._active:
                    req.events.put(("error", f"{type(exc).__name__}: {exc}"))
                self._active.clear()
                time.sleep(0.01)

    # ------------------------------------------------------------------ the work
    def _admit(self) -> None:
        new: list[Request] = []
        while len(self._active) + len(new) < self.slots:
            try:
                req = self._waiting.get_nowait()
            except queue.Empty:
                break
            if not req.cancelled.is_set():
                new.append(req)
        if not new:
            return
        slot0 = len(self._active)
        for i in range(len(new)):
            self.engine.reset(slot0 + i)
        logits = self.engine.prefill(
            slot0,
            [r.prompt for r in new],
            n_loops=[self._loops(r) for r in new],
            exits=[self._exit(r) for r in new],
        )
        self._active.extend(new)
        for r in new:
            self._generators[r.id] = r.sampling.generator()
        self._emit(new, logits, slot0)

    def _decode(self) -> None:
        n = len(self._active)
        width = self.engine.decode_width(n)  # > n only for a compiled engine: pad with idle slots
        loops = [self._loops(r) for r in self._active]
        tokens = torch.tensor([r.generated[-1] for r in self._active] + [0] * (width - n), dtype=torch.long)
        exits = [self._exit(r) for r in self._active] + [None] * (width - n)
        logits = self.engine.decode(0, tokens, n_loops=loops + [max(loops)] * (width - n), exits=exits)[:n]
        for slot in range(n, width):  # padding rows wrote junk into idle slots: forget it
            self.engine.reset(slot)
        self.steps += 1
        self._emit(list(self._active), logits, 0)

    def _loops(self, req: Request) -> int:
        return req.n_loops or self.engine.max_loops

    def _exit(self, req: Request) -> ExitCriterion | None:
        return req.exit if req.exit is not None else self.engine.exit

    def _emit(self, reqs: list[Request], logits: torch.Tensor, slot0: int) -> None:
        chosen = sample(logits, [r.sampling for r in reqs], [self._generators[r.id] for r in reqs])
        loops = self.engine.last_loops.tolist()
        finished = []
        for i, (req, tok) in enumerate(zip(reqs, chosen.tolist(), strict=True)):
            req.generated.append(tok)
            req.loops_run.append(loops[i])
            self.tokens_out += 1
            req.events.put(("token", tok))
            used = self.engine.cache.host_positions[slot0 + i] + 1
            if tok in req.stop_ids:
                finished.append((req, "stop"))
            elif len(req.generated) >= req.max_new_tokens or used >= self.engine.max_len:
                finished.append((req, "length"))
        for req, reason in finished:
            req.events.put(("done", reason))
            self._release(req)

    def _drop_cancelled(self) -> None:
        for req in [r for r in self._active if r.cancelled.is_set()]:
            self._release(req)

    def _release(self, req: Request) -> None:
        """Free a request's slot, moving the last active request into it to keep slots contiguous."""
        slot = self._active.index(req)
        last = len(self._active) - 1
        if slot != last:
            self.engine.cache.move_slot(last, slot)
            self._active[slot] = self._active[last]
        self._active.pop()
        self.engine.reset(last)
        self._generators.pop(req.id, None)
