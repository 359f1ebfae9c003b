"""Next-token sampling with per-row settings, so one batched decode step serves requests that differ.

Greedy (temperature 0), temperature, top-k and top-p are applied to the whole batch at once; only the
random draw is per row, from each request's own seeded generator, so a request's output does not depend on
what else shares its batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SamplingParams:
    """How one request picks tokens. ``top_k``/``top_p`` of None mean no filtering."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if not (self.temperature >= 0.0 and self.temperature < float("inf")):
            raise ValueError(
                f"temperature={self.temperature!r} is invalid: use a finite number >= 0 (0 = greedy)"
            )
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise ValueError(f"top_k={self.top_k!r} is invalid: use an integer >= 1, or omit it")
        if self.top_p is not None and not (0.0 < self.top_p <= 1.0):
            raise ValueError(f"top_p={self.top_p!r} is invalid: use a number in (0, 1], or omit it")

    def generator(self) -> torch.Generator | None:
        if self.seed is None:
            return None
        g = torch.Generator()
        g.manual_seed(int(self.seed))
        return g


def filter_logits(logits: Tensor, temperature: Tensor, top_k: Tensor, top_p: Tensor) -> Tensor:
    """Scale by temperature, then mask everything outside each row's top-k and top-p nucleus to -inf.

    ``temperature`` (B,) > 0, ``top_k`` (B,) long (0 = off), ``top_p`` (B,) float (1 = off).
    """
    scaled = logits.float() / temperature.unsqueeze(1)
    sorted_logits, order = scaled.sort(dim=-1, descending=True)
    rank = torch.arange(scaled.shape[-1], device=scaled.device).unsqueeze(0)
    drop = (top_k.unsqueeze(1) > 0) & (rank >= top_k.unsqueeze(1))
    probs = torch.softmax(sorted_logits.masked_fill(drop, float("-inf")), dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # mass of strictly better tokens
    drop = drop | (mass_before >= top_p.unsqueeze(1))  # the best token is always kept
    return scaled.scatter(1, order, sorted_logits.masked_fill(drop, float("-inf")))


def sample(logits: Tensor, params: list[SamplingParams], generators: list[torch.Generator | None]) -> Tensor:
    """One token id per row of ``logits`` (B, V)."""
    B = logits.shape[0]
    greedy = logits.argmax(dim=-1)
    if all(p.temperature == 0.0 for p in params):
        return greedy
    temperature = torch.tensor([p.temperature or 1.0 for p in params])
    top_k = torch.tensor([p.top_k or 0 for p in params], dtype=torch.long)
    top_p = torch.tensor([1.0 if p.top_p is None else p.top_p for p in params])
    filtered = filter_logits(logits, temperature, top_k, top_p)
    # Gumbel-max: argmax(logits + Gumbel noise) is a draw from softmax(logits); noise comes per row
    noise = torch.stack([torch.rand(logits.shape[-1], generator=g) for g in generators])
    gumbel = -torch.log(-torch.log(noise.clamp(1e-10, 1.0 - 1e-7)))
    drawn = (filtered + gumbel).argmax(dim=-1)
    is_greedy = torch.tensor([p.temperature == 0.0 for p in params])
    return torch.where(is_greedy, greedy, drawn).view(B)
