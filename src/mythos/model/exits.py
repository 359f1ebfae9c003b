"""Per-token exit criteria that need no trained halting head: decided from two successive loops.

A looped model trained with random depth (ACT off) has no halting probability to read, but its successive
loops still converge. Each criterion compares loop ``t - 1`` with loop ``t`` for every token at once and says
which tokens may stop looping (Huginn ships the same three signals):

- ``kl:THRESHOLD``     KL(p_t || p_{t-1}) of the next-token distributions, in nats, below THRESHOLD.
                       Needs logits at every loop (the Coda and head run per loop: the costliest signal).
- ``delta:THRESHOLD``  relative change of the latent state ``|h_t - h_{t-1}| / |h_t|`` below THRESHOLD.
                       Reads only the loop state: the cheapest signal.
- ``argmax:N``         the next-token argmax unchanged for N successive loops (N a whole number >= 1).

The same functions serve the decode engine, ``generate``/``serve`` and the text evaluation, so an exit
means the same thing everywhere. All functions are batched over leading dimensions; nothing loops over
tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import torch
from torch import Tensor


class ExitKind(StrEnum):
    KL = "kl"
    DELTA = "delta"
    ARGMAX = "argmax"


NEEDS_LOGITS = frozenset({ExitKind.KL, ExitKind.ARGMAX})
"""Criteria that compare next-token distributions, so the caller must produce logits at every loop."""


def kl_divergence(prev_logits: Tensor, logits: Tensor) -> Tensor:
    """KL(softmax(logits) || softmax(prev_logits)) over the last dimension, in fp32 nats."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    logq = torch.log_softmax(prev_logits.float(), dim=-1)
    return (logp.exp() * (logp - logq)).sum(-1).clamp(min=0.0)


def relative_change(prev_h: Tensor, h: Tensor) -> Tensor:
    """``|h - prev_h| / |h|`` over the last dimension, in fp32 (0 where both are 0)."""
    h32 = h.float()
    return (h32 - prev_h.float()).norm(dim=-1) / h32.norm(dim=-1).clamp(min=1e-12)


@dataclass(frozen=True)
class ExitCriterion:
    """One exit rule, parsed from ``CRITERION:THRESHOLD`` (e.g. ``kl:0.01``, ``delta:0.05``, ``argmax:2``)."""

    kind: ExitKind
    threshold: float

    @classmethod
    def parse(cls, text: str) -> ExitCriterion:
        """Parse ``CRITERION:THRESHOLD``; a ValueError names what is wrong and what would be valid."""
        kinds = ", ".join(k.value for k in ExitKind)
        name, sep, value = str(text).partition(":")
        if not sep:
            raise ValueError(
                f"exit criterion {text!r}: expected CRITERION:THRESHOLD with CRITERION one of {kinds}"
            )
        try:
            kind = ExitKind(name.strip().lower())
        except ValueError:
            raise ValueError(
                f"exit criterion {text!r}: unknown criterion {name!r}; use one of {kinds}"
            ) from None
        try:
            threshold = float(value)
        except ValueError:
            raise ValueError(f"exit criterion {text!r}: threshold {value!r} is not a number") from None
        if not math.isfinite(threshold) or threshold <= 0:
            raise ValueError(f"exit criterion {text!r}: threshold must be a finite number > 0")
        if kind is ExitKind.ARGMAX and threshold != int(threshold):
            raise ValueError(f"exit criterion {text!r}: argmax takes a whole number of loops >= 1")
        return cls(kind, threshold)

    def __str__(self) -> str:
        value = int(self.threshold) if self.kind is ExitKind.ARGMAX else self.threshold
        return f"{self.kind.value}:{value}"

    @property
    def needs_logits(self) -> bool:
        return self.kind in NEEDS_LOGITS

    def step(
        self,
        streak: Tensor,
        prev_h: Tensor,
        h: Tensor,
        prev_logits: Tensor | None = None,
        logits: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Compare loop t-1 with loop t: returns ``(done, streak)`` for every token.

        ``streak`` (an int tensor of the tokens' shape, zeros before the first comparison) counts successive
        loops that met the rule; only ``argmax`` needs more than one. Call it from the second loop on.
        """
        if self.needs_logits and (prev_logits is None or logits is None):
            raise ValueError(f"exit criterion {self}: needs the logits of both loops")
        if self.kind is ExitKind.KL:
            met = kl_divergence(prev_logits, logits) < self.threshold
        elif self.kind is ExitKind.DELTA:
            met = relative_change(prev_h, h) < self.threshold
        else:
            met = prev_logits.argmax(-1) == logits.argmax(-1)
        streak = torch.where(met, streak + 1, torch.zeros_like(streak))
        needed = int(self.threshold) if self.kind is ExitKind.ARGMAX else 1
        return streak >= needed, streak
