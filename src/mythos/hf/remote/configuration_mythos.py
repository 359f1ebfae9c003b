"""Hugging Face config of an exported mythos model: the full mythos config rides along under ``mythos``.

Written by ``mythos export --hf``; loads with only torch and transformers installed.
"""

from __future__ import annotations

from transformers import PretrainedConfig


class MythosHFConfig(PretrainedConfig):
    """``mythos``: every MythosConfig field (RoPE convention, cache layout and ``reference_compat`` included);
    ``num_steps``: the default loop count of a forward pass (Huginn's name for it)."""

    model_type = "mythos"

    def __init__(self, mythos: dict | None = None, num_steps: int | None = None, **kwargs) -> None:
        self.mythos = dict(mythos or {})
        self.num_steps = num_steps if num_steps is not None else self.mythos.get("max_loop_iters")
        # standard names generic tools read (pipelines, lm-eval's max length, tied embeddings)
        self.vocab_size = self.mythos.get("vocab_size")
        self.hidden_size = self.mythos.get("dim")
        self.num_attention_heads = self.mythos.get("n_heads")
        self.max_position_embeddings = self.mythos.get("max_seq_len")
        kwargs.setdefault("tie_word_embeddings", True)
        super().__init__(**kwargs)
