"""A mythos Recurrent-Depth Transformer as a transformers ``PreTrainedModel`` (loaded with trust_remote_code).

The math is not re-implemented here: ``mythos_*.py`` beside this file are mythos's own model modules, copied
verbatim by ``mythos export --hf`` (only their relative import names are prefixed), so the logits are the ones
mythos computes. This file adds what transformers needs: a config class, a generation cache, attention masks
(a padded batch runs row by row, since mythos attention has no padding mask), ``num_steps`` (the loop count,
Huginn's name) and per-token exits (``exit_criterion="kl:0.01"``, the rules of ``mythos_exits.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import GenerationMixin, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_mythos import MythosHFConfig
from .mythos_cache import KVCache
from .mythos_config import MythosConfig
from .mythos_exits import ExitCriterion
from .mythos_model import Mythos
from .mythos_rope import rope_tables

FIRST_CACHE_LEN = 256
"""Positions a generation cache starts with; it doubles when full (up to max_seq_len)."""


@dataclass
class MythosCausalLMOutput(ModelOutput):
    """``exit_depth`` (batch, time): loops each token ran before its exit criterion fired (None without one)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: object | None = None
    exit_depth: torch.Tensor | None = None


class MythosCache:
    """mythos's static KV cache (one slot per prelude layer, loop and coda layer) behind transformers' generate.

    One cache for the whole batch, or one per row when the prompt batch is padded. The static cache is
    reallocated at twice the length when a call would overflow it, so no maximum length is needed up front.
    """

    is_compileable = False
    is_croppable = False

    def __init__(self, model: Mythos, batch_size: int, n_loops: int, per_row: bool, first_len: int) -> None:
        self.model = model
        self.n_loops = n_loops
        self.per_row = per_row
        length = min(max(FIRST_CACHE_LEN, first_len), model.cfg.max_seq_len)
        rows = [1] * batch_size if per_row else [batch_size]
        self.caches = [model.new_cache(batch_size=b, max_len=length, n_loops=n_loops) for b in rows]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return max(c.pos for c in self.caches)

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        """Beam search: row i continues from row ``beam_idx[i]`` (transformers calls this after each step)."""
        if not self.per_row:
            for slot in self.caches[0].slots:
                for t in slot.tensors:
                    t.copy_(t.index_select(0, beam_idx.to(t.device)))
            return
        old = self.caches
        self.caches = [self._copy(old[int(i)]) for i in beam_idx.tolist()]

    def _copy(self, kv: KVCache) -> KVCache:
        new = self.model.new_cache(batch_size=kv.batch_size, max_len=kv.max_len, n_loops=kv.n_loops)
        for a, b in zip(kv.slots, new.slots, strict=True):
            for src, dst in zip(a.tensors, b.tensors, strict=True):
                dst.copy_(src)
        new.pos = kv.pos
        return new

    def room(self, index: int, new_tokens: int) -> KVCache:
        """The cache of ``index`` (0 for a whole batch), grown if ``new_tokens`` would not fit."""
        old = self.caches[index]
        need = old.pos + new_tokens
        if need <= old.max_len or old.max_len >= self.model.cfg.max_seq_len:
            return old  # fits, or cannot grow: the model's forward names the limit
        length = min(max(2 * old.max_len, need), self.model.cfg.max_seq_len)
        new = self.model.new_cache(batch_size=old.batch_size, max_len=length, n_loops=old.n_loops)
        for a, b in zip(old.slots, new.slots, strict=True):
            for src, dst in zip(a.tensors, b.tensors, strict=True):
                dst.narrow(a.time_dim, 0, old.pos).copy_(src.narrow(a.time_dim, 0, old.pos))
        new.pos = old.pos
        self.caches[index] = new
        return new


class MythosPreTrainedModel(PreTrainedModel):
    config_class = MythosHFConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _no_split_modules = ["TransformerBlock", "RecurrentBlock"]

    def _init_weights(self, module: torch.nn.Module) -> None:
        """Nothing: mythos initialises its own modules, and from_pretrained loads every weight."""


class MythosForCausalLM(MythosPreTrainedModel, GenerationMixin):
    """Causal LM over a mythos ``Mythos`` module (``self.model``); the head is tied to the embedding."""

    _tied_weights_keys = {"model.head.weight": "model.embed.weight"}

    def __init__(self, config: MythosHFConfig) -> None:
        super().__init__(config)
        self.model = Mythos(MythosConfig.from_dict(dict(config.mythos)))
        self.post_init()

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the cache is a MythosCache, made on the first forward

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.model.embed

    def set_input_embeddings(self, value: torch.nn.Module) -> None:
        self.model.embed = value

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.model.head

    # ------------------------------------------------------------------ generation plumbing
    def prepare_inputs_for_generation(
        self,
        input_ids: torch.Tensor,
        cache: MythosCache | None = None,
        past_key_values: MythosCache | None = None,
        attention_mask: torch.Tensor | None = None,
        num_steps: int | None = None,
        exit_criterion: str | ExitCriterion | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> dict:
        """Feed only the tokens the cache has not seen; mask, loop count and exit rule pass through."""
        cache = cache if cache is not None else past_key_values
        if cache is not None:
            input_ids = input_ids[:, cache.get_seq_length() :]
        return {
            "input_ids": input_ids,
            "cache": cache,
            "attention_mask": attention_mask,
            "num_steps": num_steps,
            "exit_criterion": exit_criterion,
            "use_cache": True if use_cache is None else use_cache,
        }

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: MythosCache | None = None,
        past_key_values: MythosCache | None = None,
        use_cache: bool | None = None,
        num_steps: int | None = None,
        exit_criterion: str | ExitCriterion | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> MythosCausalLMOutput:
        """Logits (batch, time, vocab) of ``input_ids`` after ``num_steps`` loops (default ``config.num_steps``).

        ``attention_mask`` zeros mark padding: a padded batch runs row by row on the unpadded tokens (their
        logits scattered back; padding positions get zeros). ``position_ids`` are implied by the mask.
        """
        if inputs_embeds is not None:
            raise ValueError("MythosForCausalLM takes input_ids, not inputs_embeds")
        if input_ids is None:
            raise ValueError("MythosForCausalLM needs input_ids")
        cache = cache if cache is not None else past_key_values
        use_cache = bool(use_cache) if use_cache is not None else cache is not None
        n_loops = num_steps if num_steps is not None else self.config.num_steps
        if cache is not None and n_loops != cache.n_loops:
            raise ValueError(
                f"num_steps={n_loops} but the cache was built with num_steps={cache.n_loops}: each loop "
                "depth has its own cache slot; generate again without the old cache"
            )
        if isinstance(n_loops, bool) or not isinstance(n_loops, int) or n_loops < 1:
            raise ValueError(f"num_steps={n_loops!r} is invalid: must be an integer >= 1")
        criterion = ExitCriterion.parse(exit_criterion) if isinstance(exit_criterion, str) else exit_criterion
        if criterion is not None and self.model.cfg.act:
            raise ValueError(
                "exit_criterion needs a model trained without ACT halting (mythos config act=False): with ACT "
                "the output is the halting-weighted mix of every loop, which a per-token exit would change"
            )
        batch, length = input_ids.shape
        new_mask = attention_mask[:, -length:] if attention_mask is not None else None
        padded = new_mask is not None and not bool(new_mask.bool().all())
        if use_cache and cache is None:
            cache = MythosCache(self.model, batch, n_loops, per_row=padded, first_len=length)
        if cache is not None and padded and not cache.per_row:
            raise ValueError("attention_mask has padding inside a continuation of an unpadded batch's cache")
        depth = None
        if cache is None or not cache.per_row:
            if padded:  # no cache: each row on its own real tokens
                logits, depth = self._rows(input_ids, new_mask, n_loops, None, criterion)
            else:
                kv = cache.room(0, length) if cache is not None else None
                logits, depth = self._run(input_ids, n_loops, kv, criterion)
        else:
            keep = new_mask if new_mask is not None else torch.ones_like(input_ids)
            logits, depth = self._rows(input_ids, keep, n_loops, cache, criterion)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                labels[:, 1:].reshape(-1).to(logits.device),
                ignore_index=-100,
            )
        kept = cache if use_cache else None
        return MythosCausalLMOutput(loss=loss, logits=logits, cache=kept, exit_depth=depth)

    def _rows(
        self,
        input_ids: torch.Tensor,
        keep: torch.Tensor,
        n_loops: int,
        cache: MythosCache | None,
        criterion: ExitCriterion | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each row on its unmasked tokens (mythos attention has no padding mask): a loop over rows, not tokens."""
        batch, length = input_ids.shape
        logits = None
        depth = torch.zeros((batch, length), dtype=torch.long, device=input_ids.device) if criterion else None
        keep = keep.bool().to(input_ids.device)
        for row in range(batch):
            ids = input_ids[row : row + 1, keep[row]]
            if ids.shape[1] == 0:
                continue
            kv = cache.room(row, ids.shape[1]) if cache is not None else None
            out, row_depth = self._run(ids, n_loops, kv, criterion)
            if logits is None:
                logits = out.new_zeros((batch, length, out.shape[-1]))
            logits[row, keep[row]] = out[0]
            if depth is not None:
                depth[row, keep[row]] = row_depth[0]
        if logits is None:
            raise ValueError("attention_mask masks every token of every row")
        return logits, depth

    def _run(
        self, ids: torch.Tensor, n_loops: int, kv: KVCache | None, criterion: ExitCriterion | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if criterion is None:
            return self.model(ids, n_loops=None if kv is not None else n_loops, cache=kv), None
        return self._run_with_exits(ids, n_loops, kv, criterion)

    def _run_with_exits(
        self, ids: torch.Tensor, n_loops: int, kv: KVCache | None, criterion: ExitCriterion
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The mythos forward, loop by loop: a token whose criterion fires keeps its state from then on.

        Later loops still run for the batch (and, with a cache, fill every loop's slot, keys of exited tokens
        computed from their frozen state); without a cache the loop stops once every token has exited.
        """
        m, cfg = self.model, self.model.cfg
        batch, length = ids.shape
        start = kv.pos if kv is not None else 0
        if kv is not None:
            kv.check_room(length)
        x = m.embed(ids)
        rope = rope_tables(cfg.rope_dim, start, length, cfg.rope_theta, x.device)
        for i, layer in enumerate(m.prelude):
            x = layer(x, rope, kv.prelude_slot(i) if kv is not None else None, start)
        e = h = x
        done = torch.zeros((batch, length), dtype=torch.bool, device=x.device)
        streak = torch.zeros((batch, length), dtype=torch.long, device=x.device)
        depth = torch.full((batch, length), n_loops, dtype=torch.long, device=x.device)
        prev_logits = logits = None
        for t in range(n_loops):
            h_new = torch.where(done.unsqueeze(-1), h, m.recurrent.step(h, e, rope, t, kv, start))
            logits = self._coda_head(h_new, rope, kv, start) if criterion.needs_logits else None
            if t > 0:
                fired, streak = criterion.step(streak, h, h_new, prev_logits, logits)
                depth = torch.where(fired & ~done, t + 1, depth)
                done = done | fired
            h, prev_logits = h_new, logits
            if kv is None and t < n_loops - 1 and bool(done.all()):
                break  # nothing left to compute, and no cache slot waits for these tokens
        if logits is None:
            logits = self._coda_head(h, rope, kv, start)
        if kv is not None:
            kv.pos += length
        return logits, depth

    def _coda_head(self, h: torch.Tensor, rope, kv: KVCache | None, start: int) -> torch.Tensor:
        m = self.model
        for i, layer in enumerate(m.coda):
            h = layer(h, rope, kv.coda_slot(i) if kv is not None else None, start)
        return m.head(m.norm(h))
