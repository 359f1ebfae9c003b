"""Autoregressive generation over the static KV cache: greedy or sampled (temperature, top-k, top-p).

The prompt is prefilled in one call, then each step feeds one token per row. Rows that emit a stop token
(``stop_tokens`` or ``eos_token_id``) keep that token and are padded afterwards; generation ends when every
row has stopped or ``max_new_tokens`` is reached. Sampling draws from a private ``torch.Generator`` seeded
by ``seed``, so a seed reproduces a run without touching the global RNG.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .model import Mythos


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the smallest nucleus with mass >= top_p."""
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # probability of strictly better tokens
        drop_sorted = mass_before >= top_p  # the best token always survives (mass_before = 0)
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _validate(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None) -> None:
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens} is invalid: must be >= 0")
    if temperature < 0:
        raise ValueError(f"temperature={temperature} is invalid: must be >= 0 (0 = greedy)")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k={top_k} is invalid: must be >= 1 or None")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p={top_p} is invalid: must be in (0, 1] or None")


@torch.no_grad()
def generate(
    model: Mythos,
    prompt_ids: torch.Tensor,
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_tokens: Iterable[int] = (),
    eos_token_id: int | None = None,
    seed: int | None = None,
    n_loops: int | None = None,
    pad_token_id: int | None = None,
) -> torch.Tensor:
    """New token ids (batch, new) with new <= max_new_tokens; ``prompt_ids`` is (batch, time) or (time,)."""
    _validate(max_new_tokens, temperature, top_k, top_p)
    if prompt_ids.dim() == 1:
        prompt_ids = prompt_ids.unsqueeze(0)
    batch, prompt_len = prompt_ids.shape
    if prompt_len < 1:
        raise ValueError("prompt_ids is empty: generation needs at least one prompt token")
    device = model.embed.weight.device
    prompt_ids = prompt_ids.to(device)
    if max_new_tokens == 0:
        return prompt_ids.new_zeros((batch, 0))
    total = prompt_len + max_new_tokens - 1  # the last sampled token is never fed back
    if total > model.cfg.max_seq_len:
        raise ValueError(
            f"prompt ({prompt_len}) + max_new_tokens ({max_new_tokens}) needs {total} positions > "
            f"max_seq_len={model.cfg.max_seq_len}; shorten the prompt or lower max_new_tokens"
        )
    stops = sorted({*stop_tokens, *([eos_token_id] if eos_token_id is not None else [])})
    stop_tensor = torch.tensor(stops, device=device, dtype=torch.long)
    pad = pad_token_id if pad_token_id is not None else (eos_token_id if eos_token_id is not None else 0)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)

    was_training = model.training
    model.eval()
    try:
        cache = model.new_cache(batch_size=batch, max_len=max(total, prompt_len), n_loops=n_loops)
        logits = model(prompt_ids, cache=cache)[:, -1]
        finished = torch.zeros(batch, dtype=torch.bool, device=device)
        out = []
        for step in range(max_new_tokens):
            token = _pick(logits.float(), temperature, top_k, top_p, generator)
            token = torch.where(finished, torch.full_like(token, pad), token)
            out.append(token)
            if stops:
                finished = finished | torch.isin(token, stop_tensor)
                if bool(finished.all()):
                    break
            if step + 1 < max_new_tokens:
                logits = model(token.unsqueeze(1), cache=cache)[:, -1]
        return torch.stack(out, dim=1)
    finally:
        model.train(was_training)


def _pick(
    logits: torch.Tensor,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    if temperature == 0.0:
        return logits.argmax(dim=-1)
    probs = filter_logits(logits / temperature, top_k, top_p).softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
